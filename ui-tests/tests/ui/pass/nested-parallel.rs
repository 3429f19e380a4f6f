#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[task]
async fn size(url: String) -> Result<u64, TaskError> {
    Ok(url.len() as u64)
}

#[process]
async fn crawl(_ctx: &Ctx, url: String) -> Result<u64, ProcessError> {
    let (page, (head, tail)) =
        parallel!(fetch(url.clone()), parallel!(size(url.clone()), size(url)),)?;
    let (one, (two, three)): (String, (String, u64)) = parallel!(
        fetch(page.clone()),
        parallel!(fetch(page.clone()), size(page))
    )?;
    Ok(head + tail + one.len() as u64 + two.len() as u64 + three)
}

fn main() {}

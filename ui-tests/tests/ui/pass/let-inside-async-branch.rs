#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[task]
async fn summarize(page: String) -> Result<usize, TaskError> {
    Ok(page.len())
}

#[process]
async fn digest(_ctx: &Ctx, urls: (String, String)) -> Result<usize, ProcessError> {
    // The second branch binds its own `a` before using it.
    let (a, b) = parallel!(fetch(urls.0), async {
        let a = fetch(urls.1).await?;
        summarize(a).await
    })?;
    Ok(a.len() + b)
}

fn main() {}

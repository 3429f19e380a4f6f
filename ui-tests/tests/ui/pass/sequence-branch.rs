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
async fn digest(_ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
    // A branch that is a sequence: its second step uses its own first step.
    let (page, words) = parallel!(fetch(url.clone()), async {
        let x = fetch(url).await?;
        summarize(x).await
    })?;
    Ok(page.len() + words)
}

fn main() {}

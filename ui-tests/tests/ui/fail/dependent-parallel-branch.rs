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
    // `page` is produced by the first branch, which runs at the same time as the second.
    let (page, words) = parallel!(fetch(url), summarize(page))?;
    Ok(page.len() + words)
}

fn main() {}

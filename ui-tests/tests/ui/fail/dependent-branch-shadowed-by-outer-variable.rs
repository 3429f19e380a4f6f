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
    // Without the check this compiles: `summarize` would get the outer, empty `page`.
    let page = String::new();
    let (page, words) = parallel!(fetch(url), summarize(page.clone()))?;
    Ok(page.len() + words)
}

fn main() {}

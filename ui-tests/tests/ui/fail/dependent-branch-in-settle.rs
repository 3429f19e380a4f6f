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
    let page = String::from("cached");
    let (page, words) = parallel!(settle: fetch(url), summarize(page));
    Ok(page?.len() + words?)
}

fn main() {}

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
    let mut page = String::new();
    let mut words = 0;
    for _ in 0..2 {
        (page, words) = parallel!(fetch(url.clone()), summarize(page))?;
    }
    Ok(page.len() + words)
}

fn main() {}

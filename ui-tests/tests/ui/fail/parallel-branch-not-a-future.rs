use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

// A plain function: its result is ready at once, there is nothing to run in parallel.
fn word_count(text: &str) -> Result<usize, TaskError> {
    Ok(text.split_whitespace().count())
}

#[process]
async fn digest(_ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
    let (page, words) = parallel!(fetch(url.clone()), word_count(&url))?;
    Ok(page.len() + words)
}

fn main() {}

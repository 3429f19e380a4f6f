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
    // The argument is awaited when the `parallel!` is created, before the block starts, not
    // inside the branch.
    let (words, size) = parallel!(
        if url.is_empty() {
            summarize(String::new())
        } else {
            summarize(fetch(url.clone()).await?)
        },
        summarize(url),
    )?;
    Ok(words + size)
}

fn main() {}

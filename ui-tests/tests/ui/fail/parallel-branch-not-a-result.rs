use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[process]
async fn digest(_ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
    let (page, size) = parallel!(fetch(url.clone()), async { url.len() })?;
    Ok(page.len() + size)
}

fn main() {}

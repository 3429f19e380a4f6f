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
    let page = String::new();
    let (page, words) = parallel!(fetch(url), async {
        let first = summarize(String::from("intro")).await?;
        let rest = summarize(page.clone()).await?;
        Ok(first + rest)
    })?;
    Ok(page.len() + words)
}

fn main() {}

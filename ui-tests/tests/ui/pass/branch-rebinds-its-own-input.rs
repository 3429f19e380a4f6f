#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn normalize(page: String) -> Result<String, TaskError> {
    Ok(page.trim().to_string())
}

#[task]
async fn count(text: String) -> Result<usize, TaskError> {
    Ok(text.len())
}

#[process]
async fn tidy(_ctx: &Ctx, page: String) -> Result<usize, ProcessError> {
    // Like `let page = normalize(page).await?`: the branch takes the earlier `page` and its own
    // result takes the name. No sibling's result is involved.
    let (page, words) = parallel!(normalize(page), count(String::from("intro")))?;
    Ok(page.len() + words)
}

fn main() {}

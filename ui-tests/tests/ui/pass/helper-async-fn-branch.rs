#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

// Not a task: a plain async fn that calls tasks. Its steps are journaled in its branch.
async fn fetch_both(a: String, b: String) -> Result<String, TaskError> {
    Ok(fetch(a).await? + &fetch(b).await?)
}

#[process]
async fn mirror(_ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
    let (one, two) = parallel!(fetch(url.clone()), fetch_both(url.clone(), url))?;
    Ok(one.len() + two.len())
}

fn main() {}

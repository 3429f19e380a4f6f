// Format strings that name no result of a sibling branch: escaped braces, named arguments,
// positional arguments, a width taken from an argument, and text that only looks like a
// capture in an argument or in a non-format macro.
#![deny(warnings)]

use minder::prelude::*;
use std::fmt::Write as _;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[task]
async fn summarize(text: String) -> Result<usize, TaskError> {
    Ok(text.len())
}

#[process]
async fn mirror(_ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
    let page = String::from("p");
    let _ = &page;
    let (page, n) = parallel!(fetch(url.clone()), summarize(format!("{{page}}")))?;
    let (page2, m) = parallel!(fetch(url.clone()), summarize(format!("{page}", page = url)))?;
    let (width, k) = parallel!(summarize(url.clone()), summarize(format!("{0:>1$}", url, 8)))?;
    let (text, j) = parallel!(fetch(url.clone()), async {
        let mut s = String::new();
        write!(s, "{}", "{text}").map_err(|e| TaskError::new(e.to_string()))?;
        summarize(s).await
    })?;
    let (words, i) = parallel!(fetch(url.clone()), summarize(vec!["{words}"].concat()))?;
    Ok(page.len() + n + page2.len() + m + width + k + text.len() + j + words.len() + i)
}

fn main() {
    let _ = Runner::run::<mirror>;
}

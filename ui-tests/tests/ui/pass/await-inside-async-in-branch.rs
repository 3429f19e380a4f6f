#![deny(warnings)]

use minder::prelude::*;
use std::time::Duration;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[task]
async fn size(page: String) -> Result<usize, TaskError> {
    Ok(page.len())
}

#[process]
async fn digest(ctx: &Ctx, urls: Vec<String>) -> Result<usize, ProcessError> {
    // `.await` inside `async` blocks and closures runs when the branch is polled, in its scope.
    let (a, b, c, d) = parallel!(
        async {
            ctx.sleep(Duration::from_millis(1)).await;
            size(urls[0].clone()).await
        },
        async move { size(fetch(String::from("b")).await?).await },
        {
            let url = String::from("c");
            async move { size(fetch(url).await?).await }
        },
        parallel!(size(String::from("d")), size(String::from("e"))),
    )?;
    // The syn path: a method-call branch whose closures are `async`.
    let (sizes, pages) = parallel!(
        ctx.map("sizes", urls.clone(), async |u: String| size(u).await),
        ctx.map("pages", urls, |u| async move { fetch(u).await }),
    )?;
    Ok(a + b + c + d.0 + d.1 + sizes.iter().sum::<usize>() + pages.len())
}

fn main() {}

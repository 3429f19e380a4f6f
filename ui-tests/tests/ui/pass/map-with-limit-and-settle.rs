#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn size(file: String) -> Result<usize, TaskError> {
    Ok(file.len())
}

#[process]
async fn sizes(ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    let all: Vec<usize> = ctx.map("size", files.clone(), size).limit(8).await?;
    let each: Vec<Result<usize, TaskError>> = ctx
        .map("size-again", files, |f| size(f))
        .limit(2)
        .settle()
        .await;
    let ok = each.into_iter().filter_map(Result::ok).count();
    Ok(all.iter().sum::<usize>() + ok)
}

fn main() {}

#![deny(warnings)]

use minder::prelude::*;

#[task(
    retries = 3,
    timeout = "1m30s",
    backoff = "250ms",
    reads = [Repo, Config],
    writes = [Cache],
    name = "lint-files",
    crate = "::minder",
)]
async fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[process(name = "checks", crate = "minder")]
async fn checks(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    Ok(lint(files).await?)
}

fn main() {}

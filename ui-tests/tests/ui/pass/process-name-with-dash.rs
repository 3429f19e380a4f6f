#![deny(warnings)]

use minder::prelude::*;

#[process(name = "batch-files")]
async fn batch_files(ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    ctx.log(format!("{} files", files.len()));
    Ok(files.len())
}

#[process(name = "batch_files_v2")]
async fn batch_files_v2(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    Ok(files.len())
}

fn main() {
    use minder::Process;
    assert_eq!(<batch_files as Process>::NAME, "batch-files");
    assert_eq!(<batch_files_v2 as Process>::NAME, "batch_files_v2");
}

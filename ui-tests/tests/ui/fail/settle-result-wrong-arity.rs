use minder::prelude::*;

#[task]
async fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[process]
async fn checks(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    let (first, second, third) = parallel!(settle: lint(files.clone()), lint(files));
    Ok(first? + second? + third?)
}

fn main() {}

use minder::prelude::*;

#[task]
async fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[task]
async fn test(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[task]
async fn audit(files: Vec<String>) -> Result<bool, TaskError> {
    Ok(files.is_empty())
}

#[process]
async fn checks(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    let (lint, tests) = parallel!(lint(files.clone()), test(files.clone()), audit(files))?;
    Ok(lint + tests)
}

fn main() {}

use minder::prelude::*;

#[task]
async fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[task]
async fn audit(files: Vec<String>) -> Result<bool, TaskError> {
    Ok(files.is_empty())
}

#[process]
async fn checks(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    // The results come back in branch order: (usize, bool), not (bool, usize).
    let (clean, issues): (bool, usize) = parallel!(lint(files.clone()), audit(files))?;
    Ok(if clean { 0 } else { issues })
}

fn main() {}

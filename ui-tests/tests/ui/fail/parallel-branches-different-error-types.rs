use minder::prelude::*;

#[data]
struct MyError {
    reason: String,
}

impl From<TaskError> for MyError {
    fn from(e: TaskError) -> Self {
        MyError {
            reason: e.to_string(),
        }
    }
}

#[task]
async fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

#[task]
async fn audit(files: Vec<String>) -> Result<bool, MyError> {
    Ok(files.is_empty())
}

#[process]
async fn checks(_ctx: &Ctx, files: Vec<String>) -> Result<usize, ProcessError> {
    let (issues, _clean) = parallel!(lint(files.clone()), audit(files))?;
    Ok(issues)
}

fn main() {}

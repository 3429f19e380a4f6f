use minder::prelude::*;

#[task]
async fn lint(files: &[String]) -> Result<usize, TaskError> {
    Ok(files.len())
}

fn main() {
    let _ = lint(&[]);
}

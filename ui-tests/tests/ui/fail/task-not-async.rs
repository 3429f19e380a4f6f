use minder::prelude::*;

#[task]
fn lint(files: Vec<String>) -> Result<usize, TaskError> {
    Ok(files.len())
}

fn main() {
    let _ = lint(Vec::new());
}

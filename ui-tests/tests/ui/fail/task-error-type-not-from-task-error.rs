use minder::prelude::*;

#[task]
async fn count(files: Vec<String>) -> Result<usize, String> {
    Ok(files.len())
}

fn main() {
    let _ = count(Vec::new());
}

use minder::prelude::*;

#[task]
async fn count(files: Vec<String>) -> usize {
    files.len()
}

fn main() {
    let _ = count(Vec::new());
}

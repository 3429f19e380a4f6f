use minder::prelude::*;

#[task]
async fn count<T: Send + 'static>(items: Vec<T>) -> Result<usize, TaskError> {
    Ok(items.len())
}

fn main() {
    let _ = count(vec![1, 2, 3]);
}

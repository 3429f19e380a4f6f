use minder::prelude::*;
use std::rc::Rc;

async fn upload(bytes: usize) {
    let _ = bytes;
}

#[task]
async fn publish(page: String) -> Result<usize, TaskError> {
    let shared = Rc::new(page);
    upload(shared.len()).await;
    Ok(shared.len())
}

fn main() {
    let _ = publish(String::new());
}

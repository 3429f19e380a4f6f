use minder::prelude::*;

#[task(backoff = "10")]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

fn main() {
    let _ = fetch(String::new());
}

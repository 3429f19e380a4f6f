use minder::prelude::*;

#[task(timeout = "30s", retries = 2, timeout = "60s")]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

fn main() {
    let _ = fetch(String::new());
}

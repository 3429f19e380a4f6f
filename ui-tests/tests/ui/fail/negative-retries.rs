use minder::prelude::*;

#[task(retries = -1)]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

fn main() {
    let _ = fetch(String::new());
}

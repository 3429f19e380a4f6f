use minder::prelude::*;

#[task(timeout = "10 parsecs")]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

fn main() {
    let _ = fetch(String::new());
}

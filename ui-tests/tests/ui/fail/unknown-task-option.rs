use minder::prelude::*;

#[task(retry = 3)]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

fn main() {
    let _ = fetch(String::new());
}

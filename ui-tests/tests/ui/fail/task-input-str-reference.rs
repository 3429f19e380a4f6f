use minder::prelude::*;

#[task]
async fn greet(name: &str) -> Result<String, TaskError> {
    Ok(format!("hello {name}"))
}

fn main() {
    let _ = greet("world");
}

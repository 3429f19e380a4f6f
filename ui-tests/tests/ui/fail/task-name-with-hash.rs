use minder::prelude::*;

#[task(name = "charge#2")]
async fn charge(cents: u64) -> Result<u64, TaskError> {
    Ok(cents)
}

fn main() {}

use minder::prelude::*;

#[task(name = "charge card")]
async fn charge(cents: u64) -> Result<u64, TaskError> {
    Ok(cents)
}

fn main() {}

use minder::prelude::*;

// Missing `#[data]`: a task's result is journaled.
struct Receipt {
    id: u64,
}

#[task]
async fn ship(id: u64) -> Result<Receipt, TaskError> {
    Ok(Receipt { id })
}

fn main() {
    let _ = ship(1);
}

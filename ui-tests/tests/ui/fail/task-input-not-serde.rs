use minder::prelude::*;

// Missing `#[data]`: a task's arguments are journaled.
struct Order {
    id: u64,
}

#[task]
async fn ship(order: Order) -> Result<u64, TaskError> {
    Ok(order.id)
}

fn main() {
    let _ = ship(Order { id: 1 });
}

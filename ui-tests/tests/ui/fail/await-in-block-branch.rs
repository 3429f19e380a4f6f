use minder::prelude::*;
use std::time::Duration;

#[task]
async fn fetch(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

#[process]
async fn nightly(ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    // The block is evaluated when the `parallel!` is created: the sleep runs before the block
    // starts, while the branch's step scope is set.
    let (a, b) = parallel!(
        {
            ctx.sleep(Duration::from_secs(60)).await;
            fetch(n)
        },
        fetch(n + 1),
    )?;
    Ok(a + b)
}

fn main() {}

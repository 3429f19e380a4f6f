use minder::prelude::*;

#[task]
async fn fetch(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

#[process]
async fn nightly(_ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    // The inner block awaits when the outer branch is evaluated, before the outer block starts.
    let (a, b) = parallel!(fetch(n), {
        let (x, y) = parallel!(fetch(n + 1), fetch(n + 2))?;
        fetch(x + y)
    })?;
    Ok(a + b)
}

fn main() {}

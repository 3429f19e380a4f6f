// The escape hatch covers calls, not races: the journal cannot replay which future won.
use minder::prelude::*;

// Stands in for the `futures` crate, so the case needs no extra dependency.
mod futures {
    pub mod future {
        pub fn select<A, B>(a: A, _b: B) -> A {
            a
        }
    }
}

#[task]
async fn fetch(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

#[process]
async fn nightly(_ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    #[deterministic]
    let first = futures::future::select(fetch(n), fetch(n + 1)).await?;
    Ok(first)
}

fn main() {}

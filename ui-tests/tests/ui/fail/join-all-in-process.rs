use minder::prelude::*;

// Stands in for the `futures` crate, so the case needs no extra dependency.
mod futures {
    pub mod future {
        pub fn join_all<I: IntoIterator>(futures: I) -> Vec<I::Item> {
            futures.into_iter().collect()
        }
    }
}

use futures::future::join_all;

#[task]
async fn fetch(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

#[process]
async fn nightly(_ctx: &Ctx, n: u32) -> Result<usize, ProcessError> {
    let pending = join_all((0..n).map(fetch));
    Ok(pending.len())
}

fn main() {}

use minder::prelude::*;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let seed = RandomState::new().hash_one(&job);
    let _ = seed;
    Ok(job)
}

fn main() {}

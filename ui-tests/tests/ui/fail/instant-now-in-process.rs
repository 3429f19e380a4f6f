use minder::prelude::*;
use std::time::Instant;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let started = Instant::now();
    let _ = started.elapsed();
    Ok(job)
}

fn main() {}

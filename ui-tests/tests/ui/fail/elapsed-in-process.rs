use minder::prelude::*;
use std::time::UNIX_EPOCH;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    // No `now` in sight, but `elapsed` reads the wall clock.
    let since_epoch = UNIX_EPOCH.elapsed();
    Ok(format!("{job} {since_epoch:?}"))
}

fn main() {}

use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    use std::time::SystemTime as Clock;
    let started = Clock::now();
    let _ = started;
    Ok(job)
}

fn main() {}

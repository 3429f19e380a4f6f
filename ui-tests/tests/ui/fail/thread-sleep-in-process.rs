use minder::prelude::*;
use std::time::Duration;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    std::thread::sleep(Duration::from_secs(60));
    Ok(job)
}

fn main() {}

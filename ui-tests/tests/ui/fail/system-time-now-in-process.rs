use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let started = std::time::SystemTime::now();
    let _ = started;
    Ok(job)
}

fn main() {}

use minder::prelude::*;

struct Job {
    name: String,
}

#[process]
async fn nightly(_ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
    Ok(job.name)
}

fn main() {}

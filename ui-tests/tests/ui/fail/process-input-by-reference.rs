use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: &String) -> Result<String, ProcessError> {
    Ok(job.clone())
}

fn main() {}

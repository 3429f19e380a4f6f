use minder::prelude::*;

#[process(queue = "nightly deploys")]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

use minder::prelude::*;

#[process(name = "billing/nightly")]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

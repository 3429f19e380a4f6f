use minder::prelude::*;

#[process]
async fn nightly(ctx: Ctx, job: String) -> Result<String, ProcessError> {
    ctx.log("started");
    Ok(job)
}

fn main() {}

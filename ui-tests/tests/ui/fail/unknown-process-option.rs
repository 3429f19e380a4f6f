use minder::prelude::*;

#[process(name = "nightly", retries = 3)]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

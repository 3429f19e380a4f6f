use minder::prelude::*;

#[process(name = "nightly build!")]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

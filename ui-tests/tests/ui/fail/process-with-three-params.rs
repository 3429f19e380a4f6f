use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String, retries: u32) -> Result<String, ProcessError> {
    Ok(format!("{job} x{retries}"))
}

fn main() {}

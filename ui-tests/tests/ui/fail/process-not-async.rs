use minder::prelude::*;

#[process]
fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

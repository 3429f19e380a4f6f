use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    #[deterministic]
    let upper = job.to_uppercase();
    Ok(upper)
}

fn main() {}

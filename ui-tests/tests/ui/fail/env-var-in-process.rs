use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let home = std::env::var("HOME");
    let _ = home;
    Ok(job)
}

fn main() {}

use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let config = std::fs::read_to_string("config.toml");
    let _ = config;
    Ok(job)
}

fn main() {}

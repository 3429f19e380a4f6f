use minder::prelude::*;

#[process]
async fn nightly(job: String) -> Result<String, ProcessError> {
    Ok(job)
}

fn main() {}

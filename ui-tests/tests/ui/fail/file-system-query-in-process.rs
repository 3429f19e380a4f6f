use minder::prelude::*;
use std::path::Path;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let done = Path::new(&job).exists();
    let size = Path::new(&job).metadata().map(|m| m.len());
    Ok(format!("{done} {size:?}"))
}

fn main() {}

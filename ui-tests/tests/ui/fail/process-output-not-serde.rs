use minder::prelude::*;

struct Summary {
    lines: usize,
}

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<Summary, ProcessError> {
    Ok(Summary { lines: job.len() })
}

fn main() {}

use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> String {
    job
}

fn main() {}

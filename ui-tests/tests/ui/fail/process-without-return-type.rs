use minder::prelude::*;

#[process]
async fn nightly(ctx: &Ctx, job: String) {
    ctx.log(job);
}

fn main() {}

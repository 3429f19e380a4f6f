use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    fn stamp(job: &str) -> String {
        format!("{job}-{:?}", std::time::SystemTime::now())
    }
    Ok(stamp(&job))
}

fn main() {}

use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let pid = std::process::id();
    let thread = std::thread::current().id();
    Ok(format!("{job} {pid} {thread:?}"))
}

fn main() {}

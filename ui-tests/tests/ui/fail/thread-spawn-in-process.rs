use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let worker = std::thread::spawn(|| 1 + 1);
    let _ = worker.join();
    Ok(job)
}

fn main() {}

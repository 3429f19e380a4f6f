use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let jobs = vec![job.clone()];
    let stamps: Vec<_> = jobs.iter().map(|_| std::time::SystemTime::now()).collect();
    let _ = stamps;
    Ok(job)
}

fn main() {}

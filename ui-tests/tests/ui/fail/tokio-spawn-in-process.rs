use minder::prelude::*;

// Stands in for the `tokio` crate, so the case needs no extra dependency.
mod tokio {
    pub fn spawn<F>(future: F) -> F {
        future
    }
}

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    let handle = tokio::spawn(async { 1 });
    let _ = handle.await;
    Ok(job)
}

fn main() {}

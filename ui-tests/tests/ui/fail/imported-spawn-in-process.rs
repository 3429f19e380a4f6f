use minder::prelude::*;

#[process]
async fn nightly(_ctx: &Ctx, job: String) -> Result<String, ProcessError> {
    use std::env::*;
    use std::thread::spawn;
    let worker = spawn(|| 1 + 1);
    let home = var("HOME");
    let _ = (worker, home);
    Ok(job)
}

fn main() {}

use minder::prelude::*;
use std::future::Future;

#[task(reads = [Config], writes = [Cache])]
async fn warm_cache(key: String) -> Result<(), TaskError> {
    let _ = key;
    Ok(())
}

#[task(writes = [Cache])]
async fn clear_cache(key: String) -> Result<(), TaskError> {
    let _ = key;
    Ok(())
}

#[task]
async fn ping(host: String) -> Result<(), TaskError> {
    let _ = host;
    Ok(())
}

#[process]
async fn refresh(_ctx: &Ctx, key: String) -> Result<(), ProcessError> {
    parallel!(warm_cache(key.clone()), ping(key.clone()), clear_cache(key))?;
    Ok(())
}

// The access check runs when the process is compiled into the program, as it is when `main`
// runs it. Any executor does; this one polls once, since the case only has to build.
fn main() {
    let runner = Runner::in_memory();
    let run = std::pin::pin!(runner.run::<refresh>(String::new()));
    let _ = run.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

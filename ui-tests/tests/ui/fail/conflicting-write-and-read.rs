use minder::prelude::*;
use std::future::Future;

#[task(writes = [Db])]
async fn save_user(name: String) -> Result<(), TaskError> {
    let _ = name;
    Ok(())
}

#[task(reads = [Db])]
async fn count_users(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64)
}

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let ((), count) = parallel!(save_user(name.clone()), count_users(name))?;
    Ok(count)
}

// The access check runs when the process is compiled into the program, as it is when `main`
// runs it. Any executor does; this one polls once, since the case only has to build.
fn main() {
    let runner = Runner::in_memory();
    let run = std::pin::pin!(runner.run::<signup>(String::new()));
    let _ = run.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

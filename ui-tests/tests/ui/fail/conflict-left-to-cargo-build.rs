// Shapes the constant of `#[process]` cannot read (a `parallel!` outside a process body, a
// task called through a local): `parallel!` checks the tasks its branches call directly when
// the program is compiled to code (`cargo build`).
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

async fn save_and_count(name: String) -> Result<u64, TaskError> {
    let ((), count) = parallel!(save_user(name.clone()), count_users(name))?;
    Ok(count)
}

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let count = save_and_count(name.clone()).await?;
    let store = save_user;
    let ((), again) = parallel!(store(name.clone()), count_users(name))?;
    Ok(count + again)
}

// Compiled to code when `main` runs the process. Any executor does; this one polls once.
fn main() {
    let runner = Runner::in_memory();
    let run = std::pin::pin!(runner.run::<signup>(String::new()));
    let _ = run.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

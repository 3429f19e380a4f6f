// Shapes the constant of `#[process]` cannot name (`parallel!` outside a process, a task called
// through a collection): `parallel!` checks every call of its branches, at any depth, when the
// program is compiled to code (`cargo build`).
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

#[task]
async fn normalize(name: String) -> Result<String, TaskError> {
    Ok(name.to_lowercase())
}

// Outside a process: direct calls, a sequence, a nested block and a map closure.
async fn save_and_count(ctx: &Ctx, name: String) -> Result<u64, TaskError> {
    let ((), a) = parallel!(save_user(name.clone()), count_users(name.clone()))?;
    let ((), b) = parallel!(save_user(name.clone()), async {
        let filter = normalize(name.clone()).await?;
        count_users(filter).await
    })?;
    let ((), (_, c)) = parallel!(
        save_user(name.clone()),
        parallel!(normalize(name.clone()), count_users(name.clone())),
    )?;
    let ((), d) = parallel!(
        save_user(name.clone()),
        ctx.map("count", vec![name], |n| count_users(n)),
    )?;
    Ok(a + b + c + d.len() as u64)
}

#[process]
async fn signup(ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let count = save_and_count(ctx, name.clone()).await?;
    let steps = [count_users];
    let ((), again) = parallel!(save_user(name.clone()), async {
        steps[0](name.clone()).await
    })?;
    Ok(count + again)
}

// Compiled to code when `main` runs the process. Any executor does; this one polls once.
fn main() {
    let runner = Runner::in_memory();
    let run = std::pin::pin!(runner.run::<signup>(String::new()));
    let _ = run.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
}

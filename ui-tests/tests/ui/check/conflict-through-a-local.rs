// Tasks reached through locals: a task bound to a name, a closure that calls one, and a task's
// future created before the block. The error sits under the call or the value in the branch.
use minder::prelude::*;

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
    let store = save_user;
    let ((), a) = parallel!(store(name.clone()), count_users(name.clone()))?;
    let tally = |filter: String| count_users(filter);
    let ((), b) = parallel!(save_user(name.clone()), async { tally(name.clone()).await })?;
    let pending = count_users(name.clone());
    let ((), c) = parallel!(save_user(name), pending)?;
    Ok(a + b + c)
}

fn main() {}

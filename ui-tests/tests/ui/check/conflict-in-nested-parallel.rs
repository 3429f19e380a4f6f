// A reader in a nested `parallel!` runs beside the writer of the outer block.
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

#[task]
async fn ping(host: String) -> Result<u64, TaskError> {
    Ok(host.len() as u64)
}

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let ((), (up, count)) = parallel!(
        save_user(name.clone()),
        parallel!(ping(name.clone()), count_users(name)),
    )?;
    Ok(up + count)
}

fn main() {}

#![deny(warnings)]

use minder::prelude::*;

#[task(reads = [Db])]
async fn count_users(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64)
}

#[task(reads = [Db, Config])]
async fn count_orders(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64)
}

#[task(writes = [Cache])]
async fn warm_cache(key: String) -> Result<(), TaskError> {
    let _ = key;
    Ok(())
}

#[process]
async fn report(_ctx: &Ctx, filter: String) -> Result<u64, ProcessError> {
    // Two readers of `Db` and a writer of an unrelated resource may run together.
    let (users, orders, ()) = parallel!(
        count_users(filter.clone()),
        count_orders(filter.clone()),
        warm_cache(filter),
    )?;
    Ok(users + orders)
}

fn main() {}

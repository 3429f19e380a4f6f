// Readers inside `ctx.map` (in a closure, or passed by name) run beside the writer.
use minder::prelude::*;

#[task(writes = [Db])]
async fn save_users(names: Vec<String>) -> Result<(), TaskError> {
    let _ = names;
    Ok(())
}

#[task(reads = [Db])]
async fn count_users(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64)
}

#[process]
async fn signup(ctx: &Ctx, names: Vec<String>) -> Result<usize, ProcessError> {
    let ((), by_closure, by_name) = parallel!(
        save_users(names.clone()),
        ctx.map("count", names.clone(), |name| count_users(name)),
        ctx.map("count-again", names, count_users),
    )?;
    Ok(by_closure.len() + by_name.len())
}

fn main() {}

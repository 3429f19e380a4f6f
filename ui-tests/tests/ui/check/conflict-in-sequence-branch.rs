// A reader inside an `async { .. }` branch runs beside the writer of the other branch.
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
async fn normalize(name: String) -> Result<String, TaskError> {
    Ok(name.to_lowercase())
}

#[process]
async fn signup(_ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    let ((), count) = parallel!(save_user(name.clone()), async {
        let filter = normalize(name).await?;
        count_users(filter).await
    })?;
    Ok(count)
}

fn main() {}

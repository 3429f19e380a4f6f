// A library's process that nothing in the crate runs is checked all the same: the check is a
// constant of the process body, evaluated by `cargo check`.
use minder::prelude::*;

#[task(writes = [Ledger])]
pub async fn post_entry(amount: u64) -> Result<(), TaskError> {
    let _ = amount;
    Ok(())
}

#[task(reads = [Ledger])]
pub async fn balance(account: String) -> Result<u64, TaskError> {
    Ok(account.len() as u64)
}

#[process]
pub async fn transfer(ctx: &Ctx, amount: u64) -> Result<u64, ProcessError> {
    let ((), before) = parallel!(
        post_entry(amount),
        async {
            ctx.sleep(std::time::Duration::from_secs(1)).await;
            balance("main".to_string()).await
        },
    )?;
    Ok(before)
}

fn main() {}

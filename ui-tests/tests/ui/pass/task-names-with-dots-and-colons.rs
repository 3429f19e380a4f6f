#![deny(warnings)]

use minder::prelude::*;

#[task(name = "billing.charge:v2")]
async fn charge(cents: u64) -> Result<u64, TaskError> {
    Ok(cents)
}

#[task(name = "refund-card_2")]
async fn refund(cents: u64) -> Result<u64, TaskError> {
    Ok(cents)
}

// A raw identifier: the task is named `type`, the process `match`, without the `r#`.
#[task]
async fn r#type(cents: u64) -> Result<u64, TaskError> {
    Ok(cents)
}

#[process]
async fn r#match(_ctx: &Ctx, cents: u64) -> Result<u64, ProcessError> {
    Ok(charge(cents).await? + refund(cents).await? + r#type(cents).await?)
}

fn main() {
    use minder::Process;
    assert_eq!(<r#match as Process>::NAME, "match");
}

// One-expression task bodies, in a crate that denies every warning.
#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn double(x: u64) -> Result<u64, TaskError> { Ok(x * 2) }

#[task]
async fn greet(name: String) -> Result<String, TaskError> { Ok(format!("hello {name}")) }

#[task]
async fn nothing() -> Result<(), TaskError> { Ok(()) }

#[task]
async fn block_tail(x: u64) -> Result<u64, TaskError> {
    {
        Ok(x + 1)
    }
}

#[task]
async fn with_inner_attribute(x: u64) -> Result<u64, TaskError> {
    #![allow(clippy::identity_op)]
    Ok(x + 0)
}

#[process]
async fn twice(_ctx: &Ctx, x: u64) -> Result<String, ProcessError> {
    nothing().await?;
    let (a, b) = parallel!(double(x), block_tail(x))?;
    let a = a + with_inner_attribute(a).await?;
    Ok(greet(format!("{a}{b}")).await?)
}

fn main() {
    let _ = Runner::run::<twice>;
}

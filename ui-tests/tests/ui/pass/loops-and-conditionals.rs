#![deny(warnings)]

use minder::prelude::*;
use std::time::Duration;

#[task(retries = 2)]
async fn improve(score: u32) -> Result<u32, TaskError> {
    Ok(score + 10)
}

#[task]
async fn review(score: u32) -> Result<bool, TaskError> {
    Ok(score > 50)
}

#[process]
async fn converge(ctx: &Ctx, target: u32) -> Result<u32, ProcessError> {
    let mut score = 0;
    let mut round = 0;
    while score < target {
        round += 1;
        score = improve(score).await?;
        if round % 3 == 0 && !review(score).await? {
            ctx.log(format!("round {round}: score {score} not approved yet"));
            ctx.sleep(Duration::from_millis(10)).await;
        } else if round > 100 {
            break;
        }
    }
    for extra in 0..2 {
        score = improve(score + extra).await?;
    }
    // The deterministic helpers are the replacements the body checks point to.
    let _started = ctx.now();
    let _salt = ctx.random();
    Ok(score)
}

fn main() {}

#![deny(warnings)]

use minder::prelude::*;

#[task]
async fn count(words: Vec<String>) -> Result<usize, TaskError> {
    Ok(words.len())
}

#[task]
async fn total(lengths: Vec<usize>) -> Result<usize, TaskError> {
    Ok(lengths.iter().sum())
}

#[process]
async fn stats(_ctx: &Ctx, words: Vec<String>) -> Result<usize, ProcessError> {
    // `a` in the closure is the closure's own parameter, not the first branch's result.
    let (a, b) = parallel!(
        count(words.clone()),
        total(words.iter().map(|a| a.len() + 1).collect()),
    )?;
    Ok(a + b)
}

fn main() {}

#![deny(warnings)]

use minder::prelude::*;

#[data]
struct Pair {
    a: String,
    b: String,
}

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[process]
async fn mirror(_ctx: &Ctx, cfg: Pair) -> Result<usize, ProcessError> {
    // `cfg.a` and `cfg.b` are fields, not the results `a` and `b`.
    let (a, b) = parallel!(fetch(cfg.a.clone()), fetch(cfg.b.clone()))?;
    Ok(a.len() + b.len())
}

fn main() {}

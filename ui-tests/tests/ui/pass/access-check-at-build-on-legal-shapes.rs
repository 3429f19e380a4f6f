// `parallel!`'s own check (outside a process, or for a block the process's constant cannot
// name) taps every call of its branches: legal code around those calls still compiles and runs,
// and tasks that only read, or touch different resources, run side by side.
#![deny(warnings)]

use minder::prelude::*;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[task(reads = [Db])]
async fn count_users(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64)
}

#[task(reads = [Db])]
async fn count_orders(filter: String) -> Result<u64, TaskError> {
    Ok(filter.len() as u64 * 2)
}

#[task(writes = [Cache])]
async fn warm(key: String) -> Result<u64, TaskError> {
    Ok(key.len() as u64)
}

fn parse<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

fn pick<T>(a: T, _b: T) -> T {
    a
}

const fn width() -> usize {
    2
}

async fn report(name: String) -> Result<u64, TaskError> {
    let ((a, b), c, d) = parallel!(
        parallel!(count_users(name.clone()), count_orders(name.clone())),
        async {
            let n: u64 = parse("3").unwrap_or_default();
            let f = pick(count_users, count_users);
            let waited = f(name.clone()).await?;
            #[cfg(any())]
            let _never = warm(String::new());
            let s = Some(n).map(|x| x + 1).unwrap_or(0);
            // Constant contexts: an array's length, a type, a `const` block.
            let row: [u64; width()] = [0; width()];
            let w = const { width() } as u64;
            Ok::<u64, TaskError>(waited + s + std::cmp::max(1, 2) + row[1] + w - 2)
        },
        warm(name.clone()),
    )?;
    let counters = [count_users, count_users];
    let (x, y) = parallel!(counters[0](name.clone()), async {
        let n = counters[1](name.clone()).await?;
        Ok(n + 1)
    })?;
    Ok(a + b + c + d + x + y)
}

#[process]
async fn dashboard(ctx: &Ctx, name: String) -> Result<u64, ProcessError> {
    // Called through a collection: this block is checked by `parallel!` itself.
    let counters = [count_users, count_users];
    let (x, y, z) = parallel!(
        counters[0](name.clone()),
        async {
            let n = counters[1](name.clone()).await?;
            Ok(n + 1)
        },
        ctx.map("orders", vec![name.clone()], count_orders),
    )?;
    let v: Vec<u64> = ctx.map("users", vec![name], |n| count_users(n)).await?;
    Ok(x + y + z.len() as u64 + v.len() as u64)
}

/// Outside a process a task runs its body, so one poll finishes the whole fan-out.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("nothing here waits"),
    }
}

fn main() {
    let _ = Runner::run::<dashboard>;
    // "ab": 2 + 4 (the nested block), 2 + 4 + 2 (the sequence), 2 (warm), 2 + 3 (the second block).
    assert_eq!(block_on(report("ab".into())).unwrap(), 21);
}

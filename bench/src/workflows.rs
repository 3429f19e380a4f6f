//! The processes and tasks the benchmarks run: a no-op task, a fan-out, a sequential loop, and a
//! loop that ends on a gate so a journal can be left completed-but-not-finished.

use minder::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// The concurrency limit of every fan-out (minder's and the floor's).
pub const LIMIT: usize = 256;

/// A task that does nothing but hand its argument back.
#[task]
pub async fn noop(i: u64) -> Result<u64, TaskError> {
    Ok(i)
}

/// `n` no-op tasks through `ctx.map(..).limit(256)`.
#[process(name = "bench-fan-out")]
pub async fn fan_out(ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let all = ctx.map("items", 0..n, noop).limit(LIMIT).await?;
    Ok(all.len() as u64)
}

/// `n` no-op tasks one after another.
#[process(name = "bench-sequential")]
pub async fn sequential(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(noop(i).await?);
    }
    Ok(sum)
}

/// Set once the gate task has started (the `n` steps before it are journaled).
static GATE_REACHED: Notify = Notify::const_new();
/// While false, the gate task never finishes.
static GATE_OPEN: AtomicBool = AtomicBool::new(false);

/// Opens the gate: from now on [`gate`] returns at once.
pub fn open_gate() {
    GATE_OPEN.store(true, Ordering::SeqCst);
}

/// Resolves once a [`gate`] task has started while the gate was closed.
pub async fn gate_reached() {
    GATE_REACHED.notified().await;
}

/// The last step of [`replay_steps`]: waits forever unless the gate is open.
#[task]
pub async fn gate(n: u64) -> Result<u64, TaskError> {
    if !GATE_OPEN.load(Ordering::SeqCst) {
        GATE_REACHED.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(n)
}

/// `n` no-op tasks one after another, then the [`gate`]: run it with the gate closed and drop
/// it once the gate is reached, and its journal holds `n` completed steps and no run end.
#[process(name = "bench-replay")]
pub async fn replay_steps(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(noop(i).await?);
    }
    gate(n).await?;
    Ok(sum)
}

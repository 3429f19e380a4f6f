//! Benchmark 1: `n` no-op tasks through `ctx.map(..).limit(256)`, against the same futures
//! joined with plain `futures` + `tokio` (each spawning a tokio task, as minder spawns every
//! task body).

use crate::stats::median;
use crate::workflows::{fan_out, LIMIT};
use futures::stream::{self, StreamExt};
use minder::{FileStore, Runner};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

/// The figures of one fan-out size, medians of the repetitions.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// Tasks per run.
    pub n: u64,
    /// Repetitions of each variant.
    pub reps: usize,
    /// (a) µs per task, plain futures + tokio.
    pub floor_us: f64,
    /// (b) µs per task, minder on the in-memory journal.
    pub memory_us: f64,
    /// (c) µs per task, minder on the file journal.
    pub file_us: f64,
    /// (c) journal syncs per task.
    pub fsyncs_per_task: f64,
}

/// The floor: a `buffer_unordered(256)` of trivial async fns that each spawn a tokio task and
/// await it; results stored by index, like `ctx.map`. Returns µs per task.
pub async fn floor(n: u64) -> f64 {
    let start = Instant::now();
    let mut results = vec![0u64; n as usize];
    let mut running = stream::iter(0..n)
        .map(|i| async move {
            let value = tokio::spawn(async move { Ok::<u64, ()>(black_box(i)) }).await;
            (i, value)
        })
        .buffer_unordered(LIMIT);
    while let Some((i, value)) = running.next().await {
        results[i as usize] = value.expect("the floor's task panicked").expect("no error");
    }
    black_box(&results);
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Runs the fan-out process once on `runner`; returns µs per task.
pub async fn minder(runner: &Runner, n: u64) -> f64 {
    let start = Instant::now();
    let done = runner
        .run::<fan_out>(n)
        .await
        .expect("the fan-out run failed");
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    assert_eq!(done.output, n);
    us
}

/// Measures every variant at size `n`, `reps` times interleaved (so drift hits all alike), with
/// the file journal under `dir`.
pub async fn measure(n: u64, reps: usize, dir: &Path) -> FanOut {
    let (mut a, mut b, mut c, mut syncs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        a.push(floor(n).await);
        b.push(minder(&Runner::in_memory(), n).await);
        let store = FileStore::new(dir.join(format!("fan-out-{n}-{rep}")));
        let runner = Runner::new(store.clone());
        let before = store.sync_count();
        c.push(minder(&runner, n).await);
        syncs.push((store.sync_count() - before) as f64 / n as f64);
    }
    FanOut {
        n,
        reps,
        floor_us: median(&mut a),
        memory_us: median(&mut b),
        file_us: median(&mut c),
        fsyncs_per_task: median(&mut syncs),
    }
}

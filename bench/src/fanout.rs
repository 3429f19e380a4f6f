//! Benchmark 1: `n` no-op tasks through `ctx.map(..).limit(256)`, against the same futures
//! joined with plain `futures` + `tokio` (each spawning a tokio task, as minder spawns every
//! task body); the file journal also against its durability floor: the same bytes appended
//! with one `fdatasync` per batch of as many tasks as minder's syncs covered.

use crate::stats::median;
use crate::workflows::{fan_out, LIMIT};
use futures::stream::{self, StreamExt};
use minder::{FileStore, Runner};
use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::Write;
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
    /// (d) µs per task, the file journal's durability floor: the journal's bytes per task
    /// appended `n` times, with one `fdatasync` per batch of as many tasks as one of minder's
    /// syncs covered (each batch written with one `write`, as minder's writer does).
    pub file_floor_us: f64,
}

/// The durability floor of a file journal of `n` tasks taking `bytes_per_task` each, synced
/// once per `batch` tasks: a new file in `dir`, each batch of records written with one
/// `write_all` and synced with `sync_data`. Returns µs per task.
pub fn file_floor(dir: &Path, n: u64, bytes_per_task: usize, batch: u64) -> f64 {
    fs::create_dir_all(dir).expect("cannot create the floor directory");
    let path = dir.join("fan-out-floor.log");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .expect("cannot create the floor file");
    file.sync_all().expect("cannot sync the floor file");
    let record = vec![b'x'; bytes_per_task];
    let mut pending = Vec::with_capacity(bytes_per_task * batch as usize);
    let start = Instant::now();
    for i in 0..n {
        pending.extend_from_slice(&record);
        if (i + 1) % batch == 0 || i + 1 == n {
            file.write_all(&pending).expect("floor append failed");
            file.sync_data().expect("floor sync failed");
            pending.clear();
        }
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(file);
    let _ = fs::remove_file(&path);
    us
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

/// Runs the fan-out process once on `runner`; returns µs per task and the run id.
pub async fn minder(runner: &Runner, n: u64) -> (f64, String) {
    let start = Instant::now();
    let done = runner
        .run::<fan_out>(n)
        .await
        .expect("the fan-out run failed");
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    assert_eq!(done.output, n);
    (us, done.run_id)
}

/// Measures every variant at size `n`, `reps` times interleaved (so drift hits all alike), with
/// the file journal under `dir`.
pub async fn measure(n: u64, reps: usize, dir: &Path) -> FanOut {
    let (mut a, mut b, mut c, mut syncs, mut d) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        a.push(floor(n).await);
        b.push(minder(&Runner::in_memory(), n).await.0);
        let runs = dir.join(format!("fan-out-{n}-{rep}"));
        let store = FileStore::new(&runs);
        let runner = Runner::new(store.clone());
        let before = store.sync_count();
        let (us, run_id) = minder(&runner, n).await;
        c.push(us);
        let synced = (store.sync_count() - before).max(1);
        syncs.push(synced as f64 / n as f64);
        let journal = store.journal_path(&run_id).expect("a valid run id");
        let len = fs::metadata(&journal).expect("the journal exists").len();
        let bytes_per_task = (len as f64 / n as f64).round() as usize;
        let batch = ((n as f64 / synced as f64).round() as u64).max(1);
        d.push(tokio::task::block_in_place(|| {
            file_floor(&runs.join("floor"), n, bytes_per_task, batch)
        }));
    }
    FanOut {
        n,
        reps,
        floor_us: median(&mut a),
        memory_us: median(&mut b),
        file_us: median(&mut c),
        fsyncs_per_task: median(&mut syncs),
        file_floor_us: median(&mut d),
    }
}

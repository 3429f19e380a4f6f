//! Benchmark 2: `n` tasks one after another on the file journal, against the physical floor —
//! `n` appends of the bytes one step adds to the journal, each followed by `File::sync_data`,
//! in the same directory.

use crate::stats::median;
use crate::workflows::sequential;
use minder::store::Store;
use minder::{FileStore, Runner};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The figures of the sequential benchmark, medians of the repetitions.
#[derive(Debug, Clone)]
pub struct Sequential {
    /// Tasks per run.
    pub n: u64,
    /// Repetitions.
    pub reps: usize,
    /// µs per task, minder on the file journal.
    pub minder_us: f64,
    /// µs per append + `sync_data`.
    pub floor_us: f64,
    /// The median of the ratios minder / floor of each pair of runs.
    pub ratio: f64,
    /// Bytes each floor append writes: what one step adds to the journal (its started and
    /// completed records, which minder writes with one sync).
    pub append_bytes: usize,
    /// Average journal record size (header included).
    pub record_bytes: f64,
    /// Journal syncs per task.
    pub fsyncs_per_task: f64,
    /// µs per task when the run is driven from a task spawned on a worker thread (where the
    /// lone flush first hands the worker's other tasks away with `block_in_place`), not from
    /// `block_on`.
    pub spawned_us: f64,
    /// The median of the ratios spawned / floor.
    pub spawned_ratio: f64,
}

/// The floor: `n` appends of `size` bytes to a new file in `dir`, each followed by
/// `sync_data`. Returns µs per append.
pub fn floor(dir: &Path, n: u64, size: usize) -> f64 {
    fs::create_dir_all(dir).expect("cannot create the floor directory");
    let path = dir.join("floor.log");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)
        .expect("cannot create the floor file");
    file.sync_all().expect("cannot sync the floor file");
    let record = vec![b'x'; size];
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&record).expect("floor append failed");
        file.sync_data().expect("floor sync failed");
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    drop(file);
    let _ = fs::remove_file(&path);
    us
}

/// [`run_once`] from a task spawned on a worker thread of the runtime.
async fn run_spawned(runs: &Path, n: u64) -> f64 {
    let runs = runs.to_path_buf();
    tokio::spawn(async move { run_once(&runs, n).await.0 })
        .await
        .expect("the spawned sequential run panicked")
}

/// Runs the sequential process once on a new file store under `runs`; returns µs per task,
/// syncs per task, and the journal's size and event count.
async fn run_once(runs: &Path, n: u64) -> (f64, f64, usize, usize) {
    let store = FileStore::new(runs);
    let runner = Runner::new(store.clone());
    let before = store.sync_count();
    let start = Instant::now();
    let done = runner
        .run::<sequential>(n)
        .await
        .expect("the sequential run failed");
    let us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let syncs = (store.sync_count() - before) as f64 / n as f64;
    let journal = store.journal_path(&done.run_id).expect("a valid run id");
    let len = fs::metadata(&journal).expect("the journal exists").len() as usize;
    let events = store
        .read(&done.run_id)
        .await
        .expect("the journal reads back")
        .len();
    (us, syncs, len, events)
}

/// Runs the sequential process `reps` times, each between two runs of its floor in the same
/// directory. Disk latency drifts over seconds, so each run is compared with the mean of the
/// floors around it, and the ratio reported is the median of those.
pub async fn measure(n: u64, reps: usize, dir: &Path) -> Sequential {
    // An untimed run: warms up, and gives the bytes one step adds to the journal.
    let (_, _, len, events) = run_once(&dir.join("sequential-warm-up"), n).await;
    // 12-byte file header; run created + n × (started + completed) + run completed.
    let record_bytes = (len - 12) as f64 / events as f64;
    let append_bytes = ((len - 12) as f64 / n as f64).round() as usize;

    let (mut minder_us, mut floor_us, mut ratios, mut syncs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut spawned_us, mut spawned_ratios) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let runs = dir.join(format!("sequential-{rep}"));
        let before = tokio::task::block_in_place(|| floor(&runs.join("floor-0"), n, append_bytes));
        let (us, per_task, _, _) = run_once(&runs, n).await;
        let after = tokio::task::block_in_place(|| floor(&runs.join("floor-1"), n, append_bytes));
        let spawned = run_spawned(&runs.join("spawned"), n).await;
        let last = tokio::task::block_in_place(|| floor(&runs.join("floor-2"), n, append_bytes));
        let floor = (before + after) / 2.0;
        minder_us.push(us);
        floor_us.push(floor);
        ratios.push(us / floor);
        syncs.push(per_task);
        spawned_us.push(spawned);
        spawned_ratios.push(spawned / ((after + last) / 2.0));
    }
    Sequential {
        n,
        reps,
        minder_us: median(&mut minder_us),
        floor_us: median(&mut floor_us),
        ratio: median(&mut ratios),
        append_bytes,
        record_bytes,
        fsyncs_per_task: median(&mut syncs),
        spawned_us: median(&mut spawned_us),
        spawned_ratio: median(&mut spawned_ratios),
    }
}

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
    /// Bytes each floor append writes: what one step adds to the journal (its started and
    /// completed records, which minder writes with one sync).
    pub append_bytes: usize,
    /// Average journal record size (header included).
    pub record_bytes: f64,
    /// Journal syncs per task.
    pub fsyncs_per_task: f64,
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

/// Runs the sequential process `reps` times, each followed by its floor in the same directory.
pub async fn measure(n: u64, reps: usize, dir: &Path) -> Sequential {
    let (mut minder_us, mut floor_us, mut syncs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut append_bytes, mut record_bytes) = (0, 0.0);
    for rep in 0..reps {
        let runs = dir.join(format!("sequential-{rep}"));
        let store = FileStore::new(&runs);
        let runner = Runner::new(store.clone());
        let before = store.sync_count();
        let start = Instant::now();
        let done = runner
            .run::<sequential>(n)
            .await
            .expect("the sequential run failed");
        minder_us.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
        syncs.push((store.sync_count() - before) as f64 / n as f64);

        let journal = store.journal_path(&done.run_id).expect("a valid run id");
        let len = fs::metadata(&journal).expect("the journal exists").len() as usize;
        let events = store.read(&done.run_id).expect("the journal reads back").len();
        // 12-byte file header; run created + n × (started + completed) + run completed.
        record_bytes = (len - 12) as f64 / events as f64;
        append_bytes = ((len - 12) as f64 / n as f64).round() as usize;

        let floor_dir = runs.join("floor");
        floor_us.push(tokio::task::block_in_place(|| {
            floor(&floor_dir, n, append_bytes)
        }));
    }
    Sequential {
        n,
        reps,
        minder_us: median(&mut minder_us),
        floor_us: median(&mut floor_us),
        append_bytes,
        record_bytes,
        fsyncs_per_task: median(&mut syncs),
    }
}

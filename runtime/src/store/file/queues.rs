//! Queue limits of a runs directory, shared by every worker process on the machine:
//! `<runs_dir>/.queues/<queue>.json` holds the limits ([`QueueLimits`]);
//! `<queue>.slots/<i>` are the concurrency slots, one locked by each worker for each run of the
//! queue it holds (a worker that dies lets its slots go with its locks); `<queue>.claims` the
//! times of the recent claims, for the rate limit; `<queue>.lock` serializes claims of the
//! queue across processes.

use super::lock::{create_private_dir, run_file_options, sync_dir};
use super::{io_error, FileStore};
use crate::journal::Event;
use crate::store::{now_ms, validate_run_id, QueueLimits, RunLog, StoreError};
use futures::future::BoxFuture;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

const QUEUES_DIR: &str = ".queues";

fn dir(store: &FileStore) -> PathBuf {
    store.runs_dir().join(QUEUES_DIR)
}

fn ensure_dir(path: &std::path::Path) -> Result<(), StoreError> {
    match create_private_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => fs::create_dir_all(path)
            .map_err(|_| io_error(format!("cannot create {}", path.display()), e)),
        _ => Ok(()),
    }
}

/// Sets (or with no limits, removes) a queue's limits.
pub(super) fn set(store: &FileStore, name: &str, limits: QueueLimits) -> Result<(), StoreError> {
    validate_run_id(name).map_err(|_| StoreError::InvalidRunId(name.to_string()))?;
    let dir = dir(store);
    ensure_dir(&dir)?;
    let path = dir.join(format!("{name}.json"));
    if limits == QueueLimits::none() {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot remove {}", path.display()), e))
            }
            _ => sync_dir(&dir),
        };
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = run_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec(&limits).expect("plain data"))?;
        file.sync_data()?;
        fs::rename(&tmp, &path)
    })();
    written.map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
    sync_dir(&dir)
}

/// Every queue with limits.
pub(super) fn list(store: &FileStore) -> Result<Vec<(String, QueueLimits)>, StoreError> {
    let dir = dir(store);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot list {}", dir.display()), e)),
    };
    let mut queues = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(queue) = name.strip_suffix(".json").filter(|q| !q.starts_with('.')) {
            if let Some(limits) = limits(store, queue) {
                queues.push((queue.to_string(), limits));
            }
        }
    }
    queues.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(queues)
}

fn limits(store: &FileStore, queue: &str) -> Option<QueueLimits> {
    let bytes = fs::read(dir(store).join(format!("{queue}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The right to claim runs of a limited queue, held (the queue's lock) while a claim looks at
/// its runs.
pub(super) struct Gate {
    _lock: File,
    limits: QueueLimits,
    slots: PathBuf,
    claims_path: PathBuf,
    /// Claim times within the rate period, oldest first.
    claims: Vec<u64>,
    changed: bool,
}

impl Gate {
    /// The gate of `queue`, or `None` when it has no limits.
    pub(super) fn open(store: &FileStore, queue: &str) -> Result<Option<Gate>, StoreError> {
        let Some(limits) = limits(store, queue) else {
            return Ok(None);
        };
        let dir = dir(store);
        let lock_path = dir.join(format!("{queue}.lock"));
        let lock = run_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error(format!("cannot open {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| io_error(format!("cannot lock {}", lock_path.display()), e))?;
        let claims_path = dir.join(format!("{queue}.claims"));
        let mut claims: Vec<u64> = fs::read_to_string(&claims_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if let Some(rate) = limits.rate {
            let since = now_ms().saturating_sub(rate.period_ms);
            claims.retain(|t| *t > since);
        }
        let slots = dir.join(format!("{queue}.slots"));
        ensure_dir(&slots)?;
        Ok(Some(Gate {
            _lock: lock,
            limits,
            slots,
            claims_path,
            claims,
            changed: false,
        }))
    }

    /// A slot for one more run of the queue (a locked slot file, held while the run is), or
    /// `None` when the queue is at its concurrency or rate limit.
    pub(super) fn take(&mut self) -> Result<Option<Option<File>>, StoreError> {
        if let Some(rate) = self.limits.rate {
            if self.claims.len() >= rate.max as usize {
                return Ok(None);
            }
        }
        let Some(n) = self.limits.concurrency else {
            return Ok(Some(None));
        };
        for i in 0..n {
            let path = self.slots.join(i.to_string());
            let file = run_file_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error(format!("cannot open {}", path.display()), e))?;
            if file.try_lock().is_ok() {
                return Ok(Some(Some(file)));
            }
        }
        Ok(None)
    }

    /// Counts a claim against the rate limit.
    pub(super) fn claimed(&mut self) {
        if self.limits.rate.is_some() {
            self.claims.push(now_ms());
            self.changed = true;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if self.changed {
            let text: String = self.claims.iter().map(|t| format!("{t}\n")).collect();
            let _ = fs::write(&self.claims_path, text);
        }
    }
}

/// A claimed run's log that also holds its queue slot until the run is let go.
#[derive(Debug)]
pub(super) struct SlotLog {
    inner: Arc<dyn RunLog>,
    _slot: File,
}

impl SlotLog {
    pub(super) fn new(inner: Arc<dyn RunLog>, slot: File) -> Self {
        SlotLog { inner, _slot: slot }
    }
}

impl RunLog for SlotLog {
    fn append(&self, event: Event) -> Result<(), StoreError> {
        self.inner.append(event)
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.flush()
    }

    fn close(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.inner.close()
    }

    fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }
}

//! Live workers of a runs directory: `<runs_dir>/.workers/<worker-id>`, one file per worker,
//! locked by it while it lives (so a worker that died, even by `kill -9`, is seen as gone: its
//! lock is free) and holding `{"id","host","pid","started_ms"}`. The runs a worker holds are
//! those whose lock is held and names its pid (see `lock::lock_holder`).

use super::lock::{create_private_dir, lock_holder, run_file_options};
use super::ready::scan;
use super::{io_error, FileStore};
use crate::store::{hostname, now_ms, StoreError, WorkerGuard, WorkerInfo};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;

const WORKERS_DIR: &str = ".workers";

#[derive(Serialize, Deserialize)]
struct Record {
    id: String,
    host: String,
    pid: u32,
    started_ms: u64,
}

/// Removes the worker's file when the worker stops (a worker that dies leaves it, unlocked).
struct Registration {
    path: PathBuf,
    _lock: File,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub(super) fn register(store: &FileStore, id: &str) -> Result<WorkerGuard, StoreError> {
    let dir = store.runs_dir().join(WORKERS_DIR);
    match create_private_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            // The runs directory may not exist yet.
            fs::create_dir_all(&dir)
                .map_err(|_| io_error(format!("cannot create {}", dir.display()), e))?;
        }
        _ => {}
    }
    let name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(name);
    let mut file = run_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io_error(format!("cannot create {}", path.display()), e))?;
    file.try_lock()
        .map_err(|e| io_error(format!("cannot lock {}", path.display()), e.into()))?;
    let record = Record {
        id: id.to_string(),
        host: hostname(),
        pid: std::process::id(),
        started_ms: now_ms(),
    };
    let mut line = serde_json::to_vec(&record).expect("plain data");
    line.push(b'\n');
    file.write_all(&line)
        .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
    Ok(WorkerGuard::keeping(Registration { path, _lock: file }))
}

pub(super) fn list(store: &FileStore) -> Result<Vec<WorkerInfo>, StoreError> {
    let dir = store.runs_dir().join(WORKERS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot list {}", dir.display()), e)),
    };
    // Who holds which run: the runs workers may hold are those in the ready index.
    let mut held: Vec<(u32, String)> = Vec::new();
    for (run_id, _) in scan(store)? {
        if let Some(pid) = lock_holder(&store.runs_dir().join(&run_id)) {
            held.push((pid, run_id));
        }
    }
    let mut workers = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(file) = run_file_options().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            // Its worker is gone.
            drop(file);
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some(record) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        else {
            continue;
        };
        let holds = held
            .iter()
            .filter(|(pid, _)| *pid == record.pid && record.host == hostname())
            .map(|(_, run)| run.clone())
            .collect();
        workers.push(
            WorkerInfo::new(record.id, record.host, record.pid, record.started_ms).holding(holds),
        );
    }
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(workers)
}

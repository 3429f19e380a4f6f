//! Helpers for the example tests, written independently of the examples' own code.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

/// FNV-1a 64 as hex, computed here independently of `minder_examples::support`.
pub fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 14695981039346656037;
    for b in bytes {
        h = (h ^ *b as u64).wrapping_mul(1099511628211);
    }
    format!("{h:016x}")
}

/// Writes `content` to `dir/rel`, creating parent directories.
pub fn write(dir: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A runner whose `ctx.log` lines are collected.
pub fn logging_runner() -> (minder::Runner, Arc<Mutex<Vec<String>>>) {
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let runner = minder::Runner::in_memory().on_notice(move |_, notice| {
        if let minder::Notice::Log { message, .. } = notice {
            sink.lock().unwrap().push(message.clone());
        }
    });
    (runner, logs)
}

/// The message of a failed run.
pub fn failure<T: std::fmt::Debug>(result: Result<T, minder::RunError>) -> String {
    match result {
        Err(minder::RunError::Failed { message, .. }) => message,
        other => panic!("expected a failed run, got {other:?}"),
    }
}

/// The directory of the shipped sample data.
pub fn data_dir(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

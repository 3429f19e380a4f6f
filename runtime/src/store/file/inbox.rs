//! A run's inbox on disk: `<run>/inbox/<id>.json`, one item a file (written whole, synced,
//! renamed into place, the directory synced: a posted answer survives a crash once `post`
//! returns), and `<id>.answer` beside it once the holder gave its verdict.

use super::io_error;
use super::lock::{create_private_dir, run_file_options, sync_dir};
use crate::store::{InboxAnswer, InboxItem, StoreError};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const INBOX: &str = "inbox";

fn item_path(run_dir: &Path, id: &str, ext: &str) -> PathBuf {
    run_dir.join(INBOX).join(format!("{id}.{ext}"))
}

/// Writes `bytes` to `path` through a temporary file renamed into place; `durable` syncs the
/// file and its directory.
fn write_whole(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path.parent().expect("an inbox file has a directory");
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = run_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(format!("cannot write {}", path.display()), e));
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let mut text = Vec::new();
    run_file_options()
        .read(true)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut text))
        .ok()?;
    serde_json::from_slice(&text).ok()
}

pub(super) fn post(run_dir: &Path, item: &InboxItem) -> Result<(), StoreError> {
    let dir = run_dir.join(INBOX);
    match create_private_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(io_error(format!("cannot create {}", dir.display()), e))
        }
        _ => {}
    }
    let bytes = serde_json::to_vec(item).expect("an inbox item is plain data");
    write_whole(&item_path(run_dir, &item.id, "json"), &bytes, true)
}

pub(super) fn unanswered(run_dir: &Path) -> Result<Vec<InboxItem>, StoreError> {
    let dir = run_dir.join(INBOX);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot read {}", dir.display()), e)),
    };
    let mut items: Vec<InboxItem> = entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json")?;
            if id.starts_with('.') || item_path(run_dir, id, "answer").exists() {
                return None;
            }
            read_json(&dir.join(&name))
        })
        .collect();
    // Ids are ULIDs: by time.
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(items)
}

pub(super) fn answer(run_dir: &Path, id: &str, answer: &InboxAnswer) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(answer).expect("an answer is plain data");
    write_whole(&item_path(run_dir, id, "answer"), &bytes, false)
}

pub(super) fn take_answer(run_dir: &Path, id: &str, withdraw: bool) -> Option<InboxAnswer> {
    let answer = read_json(&item_path(run_dir, id, "answer"));
    if answer.is_none() && !withdraw {
        return None;
    }
    let _ = fs::remove_file(item_path(run_dir, id, "json"));
    let _ = fs::remove_file(item_path(run_dir, id, "answer"));
    answer
}

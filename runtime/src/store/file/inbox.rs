//! A run's inbox on disk: `<run>/inbox/<id>.json`, one item a file (written whole, synced,
//! renamed into place, the directory synced: a posted answer survives a crash once `post`
//! returns), and `<id>.answer` beside it once the holder gave its verdict.

use super::io_error;
use super::lock::{create_private_dir, run_file_options, write_whole};
use crate::store::{InboxAnswer, InboxItem, StoreError};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const INBOX: &str = "inbox";

fn item_path(run_dir: &Path, id: &str, ext: &str) -> PathBuf {
    run_dir.join(INBOX).join(format!("{id}.{ext}"))
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

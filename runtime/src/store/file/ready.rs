//! The index of runs workers may claim: `<runs_dir>/.ready/<run-id>`, one small file per run
//! that is ready or due (see [`Readiness`]), so a claim reads those files and not every
//! journal.
//!
//! An entry is one line of JSON: `{"process":..,"fingerprint":..,"queue":..,"priority":..}`
//! plus `"due_ms"` for a run that is due later. It is written by the writer that holds the run
//! (under the run's lock) when it closes the run: from the readiness of what it made durable.
//! A run created is indexed as ready (durably, with its directory). A run that ended or parks
//! (waits for a person or system) leaves the index, and comes back when a decision or a posted
//! result is journaled for it.
//!
//! The index is a hint that errs on the side of work: an entry is written durably (file and
//! directory synced) when the run becomes ready, so a crash never strands a run that has work;
//! an entry that outlived its run's readiness (a crash just before it was removed) costs a
//! worker one open that finds nothing to do and fixes the entry. A runs directory written
//! before the index existed has no `.ready` directory; the first claim builds it from every
//! journal once.

use super::lock::{create_private_dir, run_file_options, sync_dir, write_whole};
use super::queues::{Gate, SlotLog};
use super::{io_error, FileStore, JOURNAL};
use crate::journal::Event;
use crate::store::claim::{created_facts, ClaimRequest, Claimed, Readiness};
use crate::store::{now_ms, OpenRun, RunLog, StoreError};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The index directory inside the runs directory.
pub(super) const READY_DIR: &str = ".ready";

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Entry {
    process: String,
    fingerprint: String,
    queue: String,
    #[serde(default)]
    priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due_ms: Option<u64>,
}

impl Entry {
    /// The entry of a run created with `first`, at `readiness` (`None`: not indexed).
    pub(super) fn of(first: &Event, readiness: Readiness) -> Option<Entry> {
        let (process, fingerprint, queue, priority) = created_facts(first)?;
        let due_ms = match readiness {
            Readiness::Ready => None,
            Readiness::Due(due) => Some(due),
            _ => return None,
        };
        Some(Entry {
            process: process.to_string(),
            fingerprint: fingerprint.to_string(),
            queue: queue.to_string(),
            priority,
            due_ms,
        })
    }

    fn readiness(&self) -> Readiness {
        self.due_ms.map_or(Readiness::Ready, Readiness::Due)
    }
}

fn entry_path(runs_dir: &Path, run_id: &str) -> PathBuf {
    runs_dir.join(READY_DIR).join(run_id)
}

/// Reads a run's entry; `None` when it has none (or it cannot be read).
pub(super) fn read_entry(runs_dir: &Path, run_id: &str) -> Option<Entry> {
    let text = fs::read(entry_path(runs_dir, run_id)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes (or with `None`, removes) a run's entry. A new or changed entry that makes the run
/// claimable now is synced with its directory; the others need not be (see the module docs).
pub(super) fn write_entry(
    runs_dir: &Path,
    run_id: &str,
    entry: Option<&Entry>,
) -> Result<(), StoreError> {
    let dir = runs_dir.join(READY_DIR);
    let path = dir.join(run_id);
    let Some(entry) = entry else {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot remove {}", path.display()), e))
            }
            _ => Ok(()),
        };
    };
    match create_private_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(io_error(format!("cannot create {}", dir.display()), e))
        }
        _ => {}
    }
    let mut line = serde_json::to_vec(entry).expect("an index entry is plain data");
    line.push(b'\n');
    write_whole(&path, &line, entry.due_ms.is_none())
}

/// Every entry of the index, by run id. Builds the index first when the runs directory has
/// none (runs written by an older minder).
pub(super) fn scan(store: &FileStore) -> Result<Vec<(String, Entry)>, StoreError> {
    let runs_dir = store.runs_dir();
    let dir = runs_dir.join(READY_DIR);
    if !dir.is_dir() {
        rebuild(store)?;
    }
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(format!("cannot list {}", dir.display()), e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(format!("cannot list {}", dir.display()), e))?;
        let Ok(run_id) = entry.file_name().into_string() else {
            continue;
        };
        if run_id.starts_with('.') {
            continue;
        }
        if !runs_dir.join(&run_id).join(JOURNAL).is_file() {
            // The run was deleted: its entry goes too.
            let _ = fs::remove_file(entry.path());
            continue;
        }
        if let Some(e) = read_entry(runs_dir, &run_id) {
            found.push((run_id, e));
        }
    }
    Ok(found)
}

/// Builds the index from every journal (once, for a runs directory that has none).
fn rebuild(store: &FileStore) -> Result<(), StoreError> {
    for run_id in store.list_now()? {
        let Ok(events) = store.read_now(&run_id) else {
            continue;
        };
        if let Some(first) = events.first() {
            let entry = Entry::of(first, Readiness::of(&events));
            write_entry(store.runs_dir(), &run_id, entry.as_ref())?;
        }
    }
    let dir = store.runs_dir().join(READY_DIR);
    match create_private_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_error(format!("cannot create {}", dir.display()), e))
        }
        _ => sync_dir(store.runs_dir()),
    }
}

/// Claims runs for a worker: the claimable entries it wants, lowest priority value first, then
/// oldest (run ids sort by creation time), each opened without waiting for a busy lock.
pub(super) fn claim(store: &FileStore, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    let now = now_ms();
    let mut candidates: Vec<(i32, String, Entry)> = scan(store)?
        .into_iter()
        .filter(|(_, e)| {
            request.wants(&e.process, &e.fingerprint, &e.queue) && e.readiness().claimable_at(now)
        })
        .map(|(id, e)| (e.priority, id, e))
        .collect();
    candidates.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut claimed = Vec::new();
    // The limited queues met so far, each held (its lock) until the claim ends; `None` for a
    // queue at its limit or without limits.
    let mut gates: std::collections::HashMap<String, Option<Gate>> = Default::default();
    let mut full: std::collections::HashSet<String> = Default::default();
    for (_, run_id, entry) in candidates {
        if claimed.len() >= request.max {
            break;
        }
        if full.contains(&entry.queue) {
            continue;
        }
        if !gates.contains_key(&entry.queue) {
            gates.insert(entry.queue.clone(), Gate::open(store, &entry.queue)?);
        }
        let slot = match gates.get_mut(&entry.queue).and_then(Option::as_mut) {
            None => None,
            Some(gate) => match gate.take()? {
                Some(slot) => slot,
                None => {
                    full.insert(entry.queue.clone());
                    continue;
                }
            },
        };
        match store.open_now(&run_id) {
            Ok(open) => {
                if Readiness::of(&open.events).claimable_at(now) {
                    let open = match slot {
                        Some(slot) => {
                            let OpenRun { events, log, .. } = open;
                            OpenRun::new(events, Arc::new(SlotLog::new(log, slot)))
                        }
                        None => open,
                    };
                    if let Some(gate) = gates.get_mut(&entry.queue).and_then(Option::as_mut) {
                        gate.claimed();
                    }
                    claimed.push(Claimed::new(run_id, entry.process, open));
                }
                // Else the entry was stale: closing the log just opened fixes it.
            }
            Err(StoreError::Locked(_) | StoreError::UnknownRun(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(claimed)
}

/// The claimable runs of the index whose process or structure `request` does not have, by
/// (process, fingerprint).
pub(super) fn left_for_others(
    store: &FileStore,
    request: &ClaimRequest,
) -> Result<Vec<crate::store::LeftOut>, StoreError> {
    let now = now_ms();
    let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for (_, e) in scan(store)? {
        let queued = request.queues.is_empty() || request.queues.contains(&e.queue);
        let known = request
            .processes
            .iter()
            .any(|(p, f)| *p == e.process && *f == e.fingerprint);
        if queued && !known && e.readiness().claimable_at(now) {
            *counts.entry((e.process, e.fingerprint)).or_default() += 1;
        }
    }
    Ok(counts
        .into_iter()
        .map(|((p, f), n)| crate::store::LeftOut::new(p, f, n))
        .collect())
}

/// A run's log that keeps its index entry current: it follows the readiness of what was made
/// durable and writes the entry when the log closes, while it still holds the run's lock.
#[derive(Debug)]
pub(super) struct IndexedLog {
    inner: Arc<dyn RunLog>,
    runs_dir: PathBuf,
    run_id: String,
    /// The run's first event, when known (else read from the journal when needed).
    first: Option<Event>,
    state: Arc<Mutex<Tracked>>,
}

#[derive(Debug)]
struct Tracked {
    /// How many events were appended, and the readiness after the last.
    appended: (u64, Option<Readiness>),
    /// The number of the last event made durable, and the readiness after it (`None`: not
    /// known, for a journal opened as a stream, until something is appended).
    durable: (u64, Option<Readiness>),
}

impl IndexedLog {
    fn new(inner: Arc<dyn RunLog>, runs_dir: &Path, run_id: &str, events: &[Event]) -> Self {
        let readiness = (!events.is_empty()).then(|| Readiness::of(events));
        IndexedLog {
            inner,
            runs_dir: runs_dir.to_path_buf(),
            run_id: run_id.to_string(),
            first: events.first().cloned(),
            state: Arc::new(Mutex::new(Tracked {
                appended: (0, readiness),
                durable: (0, readiness),
            })),
        }
    }

    /// The log of a run just created with `first` (its entry, ready, is written).
    pub(super) fn created(
        inner: Arc<dyn RunLog>,
        runs_dir: &Path,
        run_id: &str,
        first: &Event,
    ) -> Self {
        Self::new(inner, runs_dir, run_id, std::slice::from_ref(first))
    }
}

impl RunLog for IndexedLog {
    fn is_lost(&self) -> bool {
        self.inner.is_lost()
    }

    fn append(&self, event: Event) -> Result<(), StoreError> {
        let readiness = Readiness::after(&event);
        self.inner.append(event)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.appended = (state.appended.0 + 1, Some(readiness));
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let target = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .appended;
        let flushed = self.inner.flush();
        let state = self.state.clone();
        Box::pin(async move {
            flushed.await?;
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            if target.0 > state.durable.0 {
                state.durable = target;
            }
            Ok(())
        })
    }
}

impl Drop for IndexedLog {
    fn drop(&mut self) {
        let Some(readiness) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .durable
            .1
        else {
            // Opened as a stream and nothing made durable since: the entry stands.
            return;
        };
        let update = || {
            let indexed = read_entry(&self.runs_dir, &self.run_id);
            let entry = match &self.first {
                Some(first) => Entry::of(first, readiness),
                None => match first_event(&self.runs_dir.join(&self.run_id).join(JOURNAL)) {
                    Some(first) => Entry::of(&first, readiness),
                    None => return,
                },
            };
            if entry == indexed {
                return;
            }
            if let Err(e) = write_entry(&self.runs_dir, &self.run_id, entry.as_ref()) {
                tracing::warn!(run_id = %self.run_id, error = %e, "cannot update the ready index");
            }
        };
        // A sync may be involved: never on a tokio worker thread that others wait behind.
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(update),
            _ => update(),
        }
    }
}

/// The first event of a journal (its first record), or `None` when it cannot be read.
fn first_event(journal: &Path) -> Option<Event> {
    use std::io::Read;
    let mut file = run_file_options().read(true).open(journal).ok()?;
    let mut head = [0u8; 20];
    file.read_exact(&mut head).ok()?;
    let len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    if len == 0 || len > 64 << 20 {
        return None;
    }
    let mut payload = vec![0u8; len];
    file.read_exact(&mut payload).ok()?;
    (crc32fast::hash(&payload) == crc)
        .then(|| serde_json::from_slice(&payload).ok())
        .flatten()
}

/// Wraps a run's log so that it keeps the run's index entry current; `events` is its journal
/// so far (empty when it is read as a stream).
pub(super) fn indexed(
    store: &FileStore,
    run_id: &str,
    events: &[Event],
    log: Arc<dyn RunLog>,
) -> Arc<dyn RunLog> {
    Arc::new(IndexedLog::new(log, store.runs_dir(), run_id, events))
}

//! The embedded file journal: one append-only, checksummed log file per run, written with group
//! commit.
//!
//! # Layout
//!
//! ```text
//! <runs_dir>/                     default `.minder/runs`
//!   <run-id>/                     mode 0700
//!     journal.log                 the run's events (mode 0600, as every file below)
//!     lock                        held (flock-style exclusive lock) by the one writer
//!     cancel-request              a request to cancel, left for the writer (while pending)
//!     durable-offset              after a failed write or sync only: `minder durable offset
//!                                 <n>\n`, the end of the last successful sync (see below)
//!     end                         once the run has ended: where its end record is, so that
//!                                 resuming it reads two records (see `ended.rs`)
//! ```
//!
//! # Links and modes
//!
//! Nothing inside the runs directory is reached through a symbolic link: a run directory must
//! be a real directory (checked with `symlink_metadata`), and its files are opened with
//! `O_NOFOLLOW`, so a `journal.log`, `lock` or `cancel-request` that is a link is refused with
//! [`StoreError::Symlink`] naming it (a dangling `lock` link never creates its target). The
//! runs directory itself may be a link. Files are created mode 0600 and directories (a run's,
//! and the runs directory and its missing parents when the store creates them) mode 0700,
//! whatever the umask.
//!
//! # On-disk format of `journal.log`
//!
//! All integers are little-endian.
//!
//! ```text
//! offset 0   header, 12 bytes:  b"MINDERJ1" (8 bytes) | format version: u32 = 1
//! offset 12  record*            back to back until the end of the file
//!
//! record:    payload length: u32 (> 0) | CRC-32 of the payload: u32 | payload
//! payload:   one journal `Event` as compact JSON (serde_json, `{"event":"step_completed",...}`)
//! ```
//!
//! The CRC is CRC-32/ISO-HDLC (the zlib / PNG / Ethernet one: reflected polynomial `0xEDB88320`,
//! initial value and final XOR `0xFFFFFFFF`; `crc32("123456789") == 0xCBF43926`), computed over
//! the payload bytes only. A record is `8 + length` bytes; there is no padding and no trailer.
//!
//! # Reading and recovery
//!
//! Records are decoded from offset 12 to the end of the file. The first record that is not
//! intact stops decoding, and is one of two things:
//!
//! * a **torn tail**: the bad record is the last thing in the file — fewer than 8 header bytes
//!   remain, or the header claims more payload bytes than remain, or the payload ends exactly at
//!   the end of the file but its CRC does not match, or everything from the record to the end of
//!   the file is zero bytes — *and* no intact record (length > 0, matching CRC, decodable event)
//!   starts anywhere after it. This is what a crash during an unsynced append leaves behind; such
//!   a record was never reported durable. [`Store::read`] ignores it; [`Store::open`] truncates
//!   the file back to the end of the last good record (and syncs) before appending.
//! * **damage**: anything else — a CRC mismatch or a zero length followed by more data, a record
//!   whose CRC matches but whose payload is not a known event, or a torn-looking record followed
//!   by an intact one. This is [`StoreError::Corrupt`] naming the file and the byte offset of
//!   the bad record, and the file is not modified. A missing or wrong header, or another format
//!   version, is `Corrupt` too, and so is a journal without a complete first record (only its
//!   header, or cut inside the first record): a run is created with its first event synced, so
//!   such a file was cut short or damaged.
//!
//! [`Store::open_stream`] (what resuming a run uses) applies the same rules record by record
//! while its reader consumes the events, without holding the file in memory: damage ends the
//! stream with the same `Corrupt` error (the file not modified), and the torn tail is cut only
//! once every record before it was read.
//!
//! # Ended runs
//!
//! Once the sync that made a run's end record (`run_completed`, `run_failed`,
//! `run_cancelled`) durable succeeded, the writer leaves an `end` note beside the journal: the
//! journal's length and where the end record starts, with a CRC (written to `end.tmp` and
//! renamed; not synced). [`Store::open_unless_ended`] (what resuming a run uses) reads the
//! journal's first record and the noted end record, and nothing else, when the note is intact,
//! the journal is exactly as long as noted, no `durable-offset` record waits, and both records
//! are intact (the end one ending the file). Otherwise — no note (a crash before it was
//! written, or a journal that ended before notes existed), a torn, stale or foreign note, a
//! journal cut or grown since — it opens and reads the journal whole, as [`Store::open`] does.
//! The journal between the two records is not checked on that path (a full read still is).
//!
//! # Durability
//!
//! * **Creation** is atomic and durable: the run is assembled in a staging directory
//!   (`<runs_dir>/.create-<run-id>-<pid>-<n>`: lock file, header and first event, file synced,
//!   directory synced), renamed to `<runs_dir>/<run-id>`, and `<runs_dir>` is synced. After a
//!   crash a run either exists with its first event or not at all (a leftover staging directory
//!   is ignored by [`Store::list`]).
//! * **Appends** are encoded on the caller's thread, straight into the buffer of pending
//!   records. Each open run has one writer thread; [`RunLog::flush`] registers a waiter for
//!   everything appended so far and wakes the thread if it is idle.
//!   The thread takes *all* buffered records, writes them with one `write_all`, calls
//!   `fdatasync` once, then completes every waiter the sync covers: flushes that arrive while a
//!   sync is under way share the next one (group commit). Before a sync, while fewer than 128
//!   flushes wait and steps of the run are still in flight (each will complete and flush
//!   soon), the thread waits for their flushes, at most half as long as its last sync took
//!   (and at most 1 ms); a flush with no step in flight (a sequential step) never waits.
//! * **A failed write or sync poisons the log** (the lesson of Postgres' "fsyncgate": after a
//!   failed `fsync` the kernel may drop the dirty pages or mark them clean, so the page cache
//!   can show bytes that will never reach the disk, and a retried sync reports success). That
//!   flush and every later `append`/`flush` returns [`StoreError::Poisoned`], and nothing more
//!   is written to the journal. The writer records the *last durable offset* — the end of the
//!   bytes its last successful sync covered — in `durable-offset` (written to a temporary file,
//!   synced, renamed into place, directory synced; the same boot sees it even if those syncs
//!   fail, and the stale pages are a same-boot hazard). If it cannot even record it, it cuts
//!   the journal back to that offset itself. The next [`Store::open`] (or
//!   [`FileStore::recover`]) trusts nothing past the recorded offset: it truncates the journal
//!   there, syncs it, removes the record (syncing the directory) and reports what it dropped;
//!   nothing acknowledged is lost, and the steps after that point run again. [`Store::read`]
//!   stops at the recorded offset too, without changing the file.
//! * **Opening syncs the journal** once before appending, so what was read (perhaps written by
//!   a writer that crashed before its sync) is durable, and the offset a later failure records
//!   is the end of bytes known to be on disk.
//! * **A lone flush is done in place.** When nothing could share its sync — no other step of
//!   the run in flight (every `step_started` appended has its `step_completed` or
//!   `step_cancelled`), no flush waiting, no write under way, and no other journal open for
//!   writing in the process — [`RunLog::flush`] writes and syncs on the caller's thread and
//!   returns a ready future. This is the sequential case (one step after another): handing the
//!   sync to the writer thread and back would add two thread wake-ups to every step, a third
//!   or more of the sync itself. The caller's thread is blocked for that one sync, as it would
//!   have waited for it anyway; with several runs open, syncs stay on the writer threads.
//! * Dropping the log writes and syncs anything still buffered, stops the thread and releases
//!   the lock.
//!
//! # Code
//!
//! [`FileStore`] (here) creates, reads, lists and deletes runs; `open` opens a run for
//! writing (its journal read whole, or streamed to its reader a few batches ahead on a thread
//! of its own, then cut back to what can be trusted); `codec` holds the bytes of a journal
//! (format, CRC-32, records, the torn-tail rule, the record-by-record reader); `flat` decodes a
//! record's event in one pass; `ended` the end note of an ended run; `lock` the files of a run
//! directory (`O_NOFOLLOW` opens, modes, directory syncs, the run lock); `durable` the last
//! durable offset of a poisoned journal; `writer` the writer thread of an open journal (group
//! commit, the lone flush, poisoning).

mod cancel;
mod codec;
mod create;
mod durable;
mod ended;
mod flat;
mod inbox;
mod lock;
mod open;
mod queues;
mod ready;
mod workers;
mod writer;

use super::{
    validate_run_id, InboxAnswer, InboxItem, JournalStream, OpenRun, Opening, RunLog, Store,
    StoreError,
};
use crate::journal::Event;
use codec::decode;
use durable::{read_durable, trusted_len, DURABLE};
use ended::{read_ends, read_note};
use futures::future::BoxFuture;
use lock::{create_private_dir, lock_run, open_error, run_file_options, sync_dir};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// The journal's file name inside a run directory.
const JOURNAL: &str = "journal.log";
/// A request to cancel the run, left for the writer that holds it.
const CANCEL: &str = "cancel-request";

/// Keeps run journals as files under a runs directory: `<runs_dir>/<run-id>/journal.log`, plus a
/// `lock` file held by the run's one writer. Cloning shares the sync counter.
///
/// A journal is the 12-byte header `b"MINDERJ1"` + format version `1u32` (little-endian),
/// followed by records `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload: the
/// event as JSON]`. A torn tail left by a crash is dropped (and cut off by [`Store::open`]);
/// damage followed by intact data is [`StoreError::Corrupt`] naming the file and byte offset.
/// Concurrent [`RunLog::flush`]es share one `fdatasync` (group commit); a lone flush (a
/// sequential step) syncs on the caller's thread, sparing two thread hand-offs. A failed write
/// or sync poisons the log ([`StoreError::Poisoned`]) and the next open cuts the journal back to
/// the end of its last successful sync. Symbolic links inside the runs directory are refused;
/// files are created 0600 and directories 0700. The full rules are in the module documentation
/// of `runtime/src/store/file/mod.rs`.
///
/// ```no_run
/// use minder::prelude::*;
/// use minder::store::FileStore;
///
/// let runner = Runner::new(FileStore::new(FileStore::DEFAULT_DIR));
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    runs_dir: PathBuf,
    syncs: Arc<AtomicU64>,
    /// Set by [`FileStore::fail_next_sync`]: the next journal sync of an open log fails.
    fail_sync: Arc<AtomicBool>,
}

impl FileStore {
    /// The runs directory the command line uses unless told otherwise: `.minder/runs`.
    pub const DEFAULT_DIR: &'static str = ".minder/runs";

    /// A store keeping runs under `runs_dir` (created on the first [`Store::create`]).
    pub fn new(runs_dir: impl Into<PathBuf>) -> Self {
        FileStore {
            runs_dir: runs_dir.into(),
            syncs: Arc::new(AtomicU64::new(0)),
            fail_sync: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The runs directory.
    pub fn runs_dir(&self) -> &Path {
        &self.runs_dir
    }

    /// The path of a run's journal file (whether or not the run exists).
    pub fn journal_path(&self, run_id: &str) -> Result<PathBuf, StoreError> {
        validate_run_id(run_id)?;
        Ok(self.runs_dir.join(run_id).join(JOURNAL))
    }

    /// How many journal file syncs (`fdatasync`/`fsync` of a `journal.log`) this store and its
    /// clones have performed: one per created run, one per opened run, one per group commit.
    /// Directory syncs are not counted.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Fault injection for tests: the next sync of a batch appended to a log of this store (or
    /// a clone) reports `EIO` after its bytes were written, as a failing disk does (the bytes
    /// stay in the page cache). Not for use outside tests.
    #[doc(hidden)]
    pub fn fail_next_sync(&self) {
        self.fail_sync.store(true, Ordering::SeqCst);
    }

    /// Readies run `run_id` for writing after a failed sync: when its last writer was poisoned
    /// and recorded its last durable offset, cuts the journal back to that offset (as
    /// [`Store::open`] would) and returns a notice saying what happened, for the user. `None`
    /// when there was nothing to do. Fails like [`Store::open`] (e.g. [`StoreError::Locked`]
    /// while a writer holds the run).
    pub async fn recover(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let store = self.clone();
        let run_id = run_id.to_string();
        retry_busy(move || store.recover_now(&run_id)).await
    }

    fn recover_now(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let dir = self.existing_run(run_id)?;
        match dir.join(DURABLE).symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
        let opened = self.open_journal(run_id)?;
        Ok(opened.notice)
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir.join(run_id)
    }

    /// The directory of run `run_id`, checked to be a real directory holding a real
    /// `journal.log` (neither a symbolic link): [`StoreError::UnknownRun`] when either is
    /// missing, [`StoreError::Symlink`] when either is a link.
    fn existing_run(&self, run_id: &str) -> Result<PathBuf, StoreError> {
        validate_run_id(run_id)?;
        let dir = self.run_dir(run_id);
        let unknown = || StoreError::UnknownRun(run_id.to_string());
        match dir.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(io_error(format!("cannot look at {}", dir.display()), e)),
            Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Symlink(dir)),
            Ok(m) if !m.is_dir() => return Err(unknown()),
            Ok(_) => {}
        }
        let journal = dir.join(JOURNAL);
        match journal.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(unknown()),
            Err(e) => Err(io_error(format!("cannot look at {}", journal.display()), e)),
            Ok(m) if m.file_type().is_symlink() => Err(StoreError::Symlink(journal)),
            Ok(m) if !m.is_file() => Err(StoreError::Corrupt(format!(
                "{} is not a regular file",
                journal.display()
            ))),
            Ok(_) => Ok(dir),
        }
    }

    /// The directory of run `run_id` if it is a real directory (not a link).
    fn real_run_dir(&self, run_id: &str) -> Option<PathBuf> {
        validate_run_id(run_id).ok()?;
        let dir = self.run_dir(run_id);
        dir.symlink_metadata()
            .is_ok_and(|m| m.is_dir())
            .then_some(dir)
    }

    /// Creates the runs directory if needed, durably (each new directory's parent is synced),
    /// with mode 0700 for each directory it creates.
    fn ensure_runs_dir(&self) -> Result<(), StoreError> {
        if self.runs_dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut dir = self.runs_dir.as_path();
        while !dir.as_os_str().is_empty() && !dir.exists() {
            missing.push(dir.to_path_buf());
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
        for dir in missing.iter().rev() {
            match create_private_dir(dir) {
                Ok(()) => {}
                // Created meanwhile by someone else: theirs, left as it is.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => continue,
                Err(e) => return Err(io_error(format!("cannot create {}", dir.display()), e)),
            }
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl FileStore {
    fn open_now(&self, run_id: &str) -> Result<OpenRun, StoreError> {
        let (log, events) = self.start_log(self.open_journal(run_id)?)?;
        Ok(OpenRun::new(events, log))
    }

    /// The first and end events of run `run_id` from its end note, when the note matches the
    /// journal (see `ended`); `None` when the journal has to be read.
    fn ended_now(&self, run_id: &str) -> Result<Option<(Event, Event)>, StoreError> {
        let dir = self.existing_run(run_id)?;
        let Some(note) = read_note(&dir) else {
            return Ok(None);
        };
        // Held while the two records are read, as an open holds it: a writer holding the run
        // is reported as for an open.
        let lock = lock_run(run_id, &dir)?;
        if dir.join(DURABLE).symlink_metadata().is_ok() {
            return Ok(None);
        }
        let ends = run_file_options()
            .read(true)
            .open(dir.join(JOURNAL))
            .ok()
            .and_then(|journal| read_ends(&journal, note));
        drop(lock);
        Ok(ends)
    }

    fn read_now(&self, run_id: &str) -> Result<Vec<Event>, StoreError> {
        let dir = self.existing_run(run_id)?;
        let path = dir.join(JOURNAL);
        let mut file = match run_file_options().read(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownRun(run_id.to_string()))
            }
            Err(e) => return Err(open_error(&path, "open", e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
        let trusted = trusted_len(&path, read_durable(&dir)?, bytes.len())?;
        Ok(decode(&path, &bytes[..trusted])?.events)
    }

    fn list_now(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.runs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_error(
                    format!("cannot list {}", self.runs_dir.display()),
                    e,
                ))
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|e| io_error(format!("cannot list {}", self.runs_dir.display()), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // A run reached through a link is listed (only looked at, not read), so reading it
            // reports the link.
            if validate_run_id(&name).is_ok() && entry.path().join(JOURNAL).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn delete_now(&self, run_id: &str) -> Result<(), StoreError> {
        let dir = self.existing_run(run_id)?;
        // Held while the run is moved out of sight: nobody is writing it.
        let lock = lock_run(run_id, &dir)?;
        static DOOMED: AtomicU64 = AtomicU64::new(0);
        let doomed = self.runs_dir.join(format!(
            ".delete-{run_id}-{}-{}",
            std::process::id(),
            DOOMED.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(&dir, &doomed)
            .map_err(|e| io_error(format!("cannot delete {}", dir.display()), e))?;
        // Gone for good once the rename is durable; the files go after.
        sync_dir(&self.runs_dir)?;
        drop(lock);
        ready::write_entry(&self.runs_dir, run_id, None)?;
        fs::remove_dir_all(&doomed)
            .map_err(|e| io_error(format!("cannot remove {}", doomed.display()), e))
    }
}

impl Store for FileStore {
    fn create<'a>(
        &'a self,
        run_id: &'a str,
        first: Event,
    ) -> BoxFuture<'a, Result<Arc<dyn RunLog>, StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || store.create_now(&run_id, &first)))
    }

    fn open<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<OpenRun, StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(retry_busy(move || store.open_now(&run_id)))
    }

    fn open_stream<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<JournalStream, StoreError>> {
        Box::pin(async move {
            let mut tries = 0;
            loop {
                match self.open_stream_once(run_id).await {
                    Err(StoreError::Locked(_)) if tries < LOCK_TRIES => {
                        tries += 1;
                        tokio::time::sleep(LOCK_RETRY).await;
                    }
                    done => return done,
                }
            }
        })
    }

    fn open_unless_ended<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Opening, StoreError>> {
        let store = self.clone();
        let id = run_id.to_string();
        Box::pin(async move {
            if let Some((first, end)) = retry_busy(move || store.ended_now(&id)).await? {
                return Ok(Opening::Ended { first, end });
            }
            self.open_stream(run_id).await.map(Opening::Open)
        })
    }

    fn read<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || store.read_now(&run_id)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || store.list_now()))
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(retry_busy(move || store.delete_now(&run_id)))
    }

    fn claim<'a>(
        &'a self,
        request: &'a super::ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<super::Claimed>, StoreError>> {
        let store = self.clone();
        let request = request.clone();
        Box::pin(off_runtime(move || ready::claim(&store, &request)))
    }

    fn left_for_others<'a>(
        &'a self,
        request: &'a super::ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<super::LeftOut>, StoreError>> {
        let store = self.clone();
        let request = request.clone();
        Box::pin(off_runtime(move || {
            ready::left_for_others(&store, &request)
        }))
    }

    fn set_queue<'a>(
        &'a self,
        name: &'a str,
        limits: super::QueueLimits,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let name = name.to_string();
        Box::pin(off_runtime(move || queues::set(&store, &name, limits)))
    }

    fn queues(&self) -> BoxFuture<'_, Result<Vec<(String, super::QueueLimits)>, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || queues::list(&store)))
    }

    fn register_worker<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<super::WorkerGuard, StoreError>> {
        let store = self.clone();
        let id = id.to_string();
        Box::pin(off_runtime(move || workers::register(&store, &id)))
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<super::WorkerInfo>, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || workers::list(&store)))
    }

    fn wait_for_work(&self, timeout: std::time::Duration) -> BoxFuture<'_, ()> {
        // No signal crosses processes here: look again at least every 100 ms.
        Box::pin(tokio::time::sleep(
            timeout.min(std::time::Duration::from_millis(100)),
        ))
    }

    fn last_write<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || {
            let journal = store.existing_run(&run_id)?.join(JOURNAL);
            let modified = journal.symlink_metadata().and_then(|m| m.modified());
            modified
                .map(Some)
                .map_err(|e| io_error(format!("cannot look at {}", journal.display()), e))
        }))
    }

    fn request_cancel<'a>(
        &'a self,
        run_id: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || {
            store.request_cancel_now(&run_id, reason)
        }))
    }

    fn cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || store.cancel_request_now(&run_id)))
    }

    fn clear_cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, ()> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || store.clear_cancel_request_now(&run_id)))
    }

    fn post_to_inbox<'a>(
        &'a self,
        run_id: &'a str,
        item: InboxItem,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || {
            inbox::post(&store.existing_run(&run_id)?, &item)
        }))
    }

    fn inbox<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<InboxItem>, StoreError>> {
        let store = self.clone();
        let run_id = run_id.to_string();
        Box::pin(off_runtime(move || {
            inbox::unanswered(&store.existing_run(&run_id)?)
        }))
    }

    fn answer_inbox<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        answer: InboxAnswer,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let store = self.clone();
        let (run_id, id) = (run_id.to_string(), id.to_string());
        Box::pin(off_runtime(move || {
            inbox::answer(&store.existing_run(&run_id)?, &id, &answer)
        }))
    }

    fn take_inbox_answer<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        withdraw: bool,
    ) -> BoxFuture<'a, Result<Option<InboxAnswer>, StoreError>> {
        let store = self.clone();
        let (run_id, id) = (run_id.to_string(), id.to_string());
        Box::pin(off_runtime(move || {
            Ok(inbox::take_answer(
                &store.existing_run(&run_id)?,
                &id,
                withdraw,
            ))
        }))
    }
}

/// How often, and how far apart, a busy run lock is asked again before it counts as held.
const LOCK_TRIES: u32 = 10;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Runs `f` (file work: reads, writes, syncs) on tokio's blocking threads when called inside a
/// tokio runtime, so no worker thread waits for the disk; outside one, on the caller's thread.
/// A panic in `f` is the caller's panic.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(f).await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        Err(_) => f(),
    }
}

/// Runs `f` off the runtime (see [`off_runtime`]); while it finds the run's lock busy, asks
/// again a few times, a timer apart (never a thread sleep). A lock just released can still be
/// held for a moment by a child process that another thread is starting (between fork and
/// exec the child shares the lock's file description), or by the writer thread of a log just
/// dropped while it writes what was left.
async fn retry_busy<T: Send + 'static>(
    f: impl Fn() -> Result<T, StoreError> + Send + Sync + 'static,
) -> Result<T, StoreError> {
    let f = Arc::new(f);
    let mut tries = 0;
    loop {
        let attempt = f.clone();
        match off_runtime(move || attempt()).await {
            Err(StoreError::Locked(_)) if tries < LOCK_TRIES => {
                tries += 1;
                tokio::time::sleep(LOCK_RETRY).await;
            }
            done => return done,
        }
    }
}

/// The run id of a journal at `<runs_dir>/<run-id>/journal.log`.
fn run_id_of(journal: &Path) -> String {
    journal
        .parent()
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io_error(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

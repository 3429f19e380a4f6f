//! The embedded file journal: one append-only, checksummed log file per run, written with group
//! commit.
//!
//! # Layout
//!
//! ```text
//! <runs_dir>/                     default `.minder/runs`
//!   <run-id>/
//!     journal.log                 the run's events
//!     lock                        held (flock-style exclusive lock) by the one writer
//! ```
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
//!   version, is `Corrupt` too.
//!
//! # Durability
//!
//! * **Creation** is atomic and durable: the run is assembled in a staging directory
//!   (`<runs_dir>/.create-<run-id>-<pid>-<n>`: lock file, header and first event, file synced,
//!   directory synced), renamed to `<runs_dir>/<run-id>`, and `<runs_dir>` is synced. After a
//!   crash a run either exists with its first event or not at all (a leftover staging directory
//!   is ignored by [`Store::list`]).
//! * **Appends** are encoded on the caller's thread and buffered. Each open run has one writer
//!   thread; [`RunLog::flush`] registers a waiter for everything appended so far and wakes it.
//!   The thread takes *all* buffered records, writes them with one `write_all`, calls
//!   `fdatasync` once, then completes every waiter the sync covers: flushes that arrive while a
//!   sync is under way share the next one (group commit). After a failed write or sync the log
//!   is poisoned: that flush and every later `append`/`flush` returns the error.
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

use super::{validate_run_id, RunLog, Store, StoreError};
use crate::journal::Event;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The first 8 bytes of every journal file.
const MAGIC: &[u8; 8] = b"MINDERJ1";
/// The format version written after the magic.
const VERSION: u32 = 1;
/// Magic plus version.
const HEADER_LEN: usize = 12;
/// Payload length plus CRC.
const RECORD_HEADER_LEN: usize = 8;
/// The journal's file name inside a run directory.
const JOURNAL: &str = "journal.log";
/// The lock file's name inside a run directory.
const LOCK: &str = "lock";
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
/// sequential step) syncs on the caller's thread, sparing two thread hand-offs. The full rules
/// are in the module documentation of `runtime/src/store/file.rs`.
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
}

impl FileStore {
    /// The runs directory the command line uses unless told otherwise: `.minder/runs`.
    pub const DEFAULT_DIR: &'static str = ".minder/runs";

    /// A store keeping runs under `runs_dir` (created on the first [`Store::create`]).
    pub fn new(runs_dir: impl Into<PathBuf>) -> Self {
        FileStore {
            runs_dir: runs_dir.into(),
            syncs: Arc::new(AtomicU64::new(0)),
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
    /// clones have performed: one per created run, one per group commit, one per torn tail
    /// truncated on open. Directory syncs are not counted.
    pub fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir.join(run_id)
    }

    /// Creates the runs directory if needed, durably (each new directory's parent is synced).
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
        fs::create_dir_all(&self.runs_dir)
            .map_err(|e| io_error(format!("cannot create {}", self.runs_dir.display()), e))?;
        for dir in missing.iter().rev() {
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            sync_dir(parent)?;
        }
        Ok(())
    }
}

impl Store for FileStore {
    fn create(&self, run_id: &str, first: Event) -> Result<Arc<dyn RunLog>, StoreError> {
        validate_run_id(run_id)?;
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        encode_record(&first, &mut bytes)?;

        self.ensure_runs_dir()?;
        let dir = self.run_dir(run_id);
        if dir.symlink_metadata().is_ok() {
            return Err(StoreError::RunExists(run_id.to_string()));
        }
        static STAGE: AtomicU64 = AtomicU64::new(0);
        let stage = self.runs_dir.join(format!(
            ".create-{run_id}-{}-{}",
            std::process::id(),
            STAGE.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&stage)
            .map_err(|e| io_error(format!("cannot create {}", stage.display()), e))?;
        let staged = (|| {
            let lock = lock_run(run_id, &stage)?;
            let path = stage.join(JOURNAL);
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_error(format!("cannot create {}", path.display()), e))?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            sync_dir(&stage)?;
            if let Err(e) = fs::rename(&stage, &dir) {
                if dir.symlink_metadata().is_ok() {
                    return Err(StoreError::RunExists(run_id.to_string()));
                }
                return Err(io_error(format!("cannot create {}", dir.display()), e));
            }
            Ok((lock, file))
        })();
        let (lock, file) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                let _ = fs::remove_dir_all(&stage);
                return Err(e);
            }
        };
        sync_dir(&self.runs_dir)?;
        let log = FileLog::start(dir.join(JOURNAL), file, lock, self.syncs.clone())?;
        Ok(Arc::new(log))
    }

    fn open(&self, run_id: &str) -> Result<(Vec<Event>, Arc<dyn RunLog>), StoreError> {
        validate_run_id(run_id)?;
        let dir = self.run_dir(run_id);
        let path = dir.join(JOURNAL);
        if !path.is_file() {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        }
        let lock = lock_run(run_id, &dir)?;
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownRun(run_id.to_string()))
            }
            Err(e) => return Err(io_error(format!("cannot open {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
        let Decoded { events, good_len } = decode(&path, &bytes)?;
        if good_len < bytes.len() {
            tracing::warn!(
                journal = %path.display(),
                offset = good_len,
                bytes = bytes.len() - good_len,
                "dropping the torn tail of a journal (an append interrupted by a crash)"
            );
            file.set_len(good_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(format!("cannot truncate {}", path.display()), e))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        file.seek(SeekFrom::Start(good_len as u64))
            .map_err(|e| io_error(format!("cannot seek in {}", path.display()), e))?;
        let log = FileLog::start(path, file, lock, self.syncs.clone())?;
        Ok((events, Arc::new(log)))
    }

    fn read(&self, run_id: &str) -> Result<Vec<Event>, StoreError> {
        validate_run_id(run_id)?;
        let path = self.run_dir(run_id).join(JOURNAL);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownRun(run_id.to_string()))
            }
            Err(e) => return Err(io_error(format!("cannot read {}", path.display()), e)),
        };
        Ok(decode(&path, &bytes)?.events)
    }

    fn list(&self) -> Result<Vec<String>, StoreError> {
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
            if validate_run_id(&name).is_ok() && entry.path().join(JOURNAL).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn request_cancel(&self, run_id: &str, reason: Option<String>) -> Result<(), StoreError> {
        validate_run_id(run_id)?;
        let dir = self.run_dir(run_id);
        if !dir.join(JOURNAL).is_file() {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        }
        // Written whole, then renamed into place: the writer never reads half a request.
        let staged = dir.join(format!("{CANCEL}.{}", std::process::id()));
        let text = serde_json::json!({ "reason": reason }).to_string();
        fs::write(&staged, text)
            .and_then(|()| fs::rename(&staged, dir.join(CANCEL)))
            .map_err(|e| io_error(format!("cannot ask run `{run_id}` to cancel"), e))
    }

    fn cancel_request(&self, run_id: &str) -> Option<Option<String>> {
        let text = fs::read(self.run_dir(run_id).join(CANCEL)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        Some(value["reason"].as_str().map(str::to_string))
    }

    fn clear_cancel_request(&self, run_id: &str) {
        let _ = fs::remove_file(self.run_dir(run_id).join(CANCEL));
    }
}

/// Takes the run's exclusive lock, or fails with [`StoreError::Locked`].
fn lock_run(run_id: &str, dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(format!("cannot open {}", path.display()), e))?;
    // A lock just released can still be held for a moment by a child process that another
    // thread is starting (between fork and exec the child shares the lock's file description),
    // so a busy lock is asked again for a short while before the run is reported as locked.
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if tries < LOCK_TRIES => {
                tries += 1;
                std::thread::sleep(LOCK_RETRY);
            }
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked(run_id.to_string())),
            Err(TryLockError::Error(e)) => {
                return Err(io_error(format!("cannot lock {}", path.display()), e))
            }
        }
    }
}

/// How often, and how far apart, a busy run lock is asked again before it counts as held.
const LOCK_TRIES: u32 = 10;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Makes a directory's entries durable (a no-op where directories cannot be synced).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(format!("cannot sync directory {}", dir.display()), e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn io_error(context: String, source: io::Error) -> StoreError {
    StoreError::Io { context, source }
}

// ---------------------------------------------------------------------------------------------
// Encoding and decoding

/// The CRC-32 lookup tables for slicing-by-8 (reflected polynomial 0xEDB88320): `CRC_TABLES[0]`
/// is the classic byte-at-a-time table; `CRC_TABLES[k][b]` is the CRC of byte `b` followed by
/// `k` zero bytes, so eight bytes are folded in per step (about 4× faster than one at a time,
/// which matters when a long journal is read back).
const CRC_TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 8 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            k += 1;
        }
        i += 1;
    }
    tables
};

/// CRC-32/ISO-HDLC of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut c = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let lo = le_u32(chunk) ^ c;
        let hi = le_u32(&chunk[4..]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Appends one record (`length | crc | json`) for `event` to `out`. The event is serialized in
/// place after a placeholder header, which is then filled in: one buffer, no copy.
fn encode_record(event: &Event, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    if let Err(e) = serde_json::to_writer(&mut *out, event) {
        out.truncate(start);
        return Err(io_error(
            "cannot encode a journal event".to_string(),
            e.into(),
        ));
    }
    let payload = &out[start + RECORD_HEADER_LEN..];
    let Ok(len) = u32::try_from(payload.len()) else {
        let size = payload.len();
        out.truncate(start);
        return Err(io_error(
            "cannot journal an event".to_string(),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the event is {size} bytes, over the 4 GiB limit"),
            ),
        ));
    };
    let crc = crc32(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A decoded journal: its events and the length of the intact prefix of the file.
#[derive(Debug)]
struct Decoded {
    events: Vec<Event>,
    good_len: usize,
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Decodes a whole journal file; see the module docs for what is a torn tail and what is damage.
fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded, StoreError> {
    let corrupt = |offset: usize, what: &str| {
        StoreError::Corrupt(format!(
            "corrupt journal {} at byte offset {offset}: {what} (the file was not modified)",
            path.display()
        ))
    };
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a minder journal (bad header)"));
    }
    let version = le_u32(&bytes[MAGIC.len()..]);
    if version != VERSION {
        return Err(corrupt(
            MAGIC.len(),
            &format!("format version {version}, this build reads version {VERSION}"),
        ));
    }
    let mut events = Vec::with_capacity(count_records(bytes));
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        // Why the record at `offset` is bad, if it may be a torn tail.
        let torn: &str = if rest.len() < RECORD_HEADER_LEN {
            "the record header is cut short"
        } else {
            let len = le_u32(rest) as usize;
            let crc = le_u32(&rest[4..]);
            let end = RECORD_HEADER_LEN.saturating_add(len);
            if len == 0 {
                if rest.iter().any(|&b| b != 0) {
                    return Err(corrupt(
                        offset,
                        "a zero-length record followed by more data",
                    ));
                }
                "the rest of the file is zero bytes"
            } else if end > rest.len() {
                "the record is cut short"
            } else {
                let payload = &rest[RECORD_HEADER_LEN..end];
                if crc32(payload) != crc {
                    if end < rest.len() {
                        return Err(corrupt(
                            offset,
                            "the record's checksum does not match and more data follows",
                        ));
                    }
                    "the last record's checksum does not match"
                } else {
                    match serde_json::from_slice::<Event>(payload) {
                        Ok(event) => {
                            events.push(event);
                            offset += end;
                            continue;
                        }
                        Err(e) => {
                            return Err(corrupt(
                                offset,
                                &format!(
                                    "the record's checksum matches but it is not a known \
                                     event ({e}; written by a newer minder?)"
                                ),
                            ))
                        }
                    }
                }
            }
        };
        if let Some(next) = intact_record_after(bytes, offset + 1) {
            return Err(corrupt(
                offset,
                &format!("{torn}, yet an intact record follows at byte offset {next}"),
            ));
        }
        return Ok(Decoded {
            events,
            good_len: offset,
        });
    }
    Ok(Decoded {
        events,
        good_len: offset,
    })
}

/// How many records the length fields of a journal chain through, without checking them: the
/// capacity to decode into, so a long journal is not decoded into a vector that doubles (and
/// briefly holds twice its size) as it grows.
fn count_records(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut offset = HEADER_LEN;
    while let Some(header) = bytes.get(offset..offset + RECORD_HEADER_LEN) {
        let len = le_u32(header) as usize;
        if len == 0 || len > bytes.len() - offset - RECORD_HEADER_LEN {
            break;
        }
        count += 1;
        offset += RECORD_HEADER_LEN + len;
    }
    count
}

/// The offset of the first intact record (length > 0, matching CRC, a decodable event) that
/// starts at or after `from`, if any. Only called on the rare bad record: it tells a torn tail
/// (nothing intact after it) from a damaged length field in the middle of the file.
fn intact_record_after(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_LEN + 1)?;
    (from..=last).find(|&at| {
        let len = le_u32(&bytes[at..]) as usize;
        let body = at + RECORD_HEADER_LEN;
        len > 0
            && len <= bytes.len() - body
            && crc32(&bytes[body..body + len]) == le_u32(&bytes[at + 4..])
            && serde_json::from_slice::<Event>(&bytes[body..body + len]).is_ok()
    })
}

// ---------------------------------------------------------------------------------------------
// The writer: one thread per open run, group commit, and the lone flush done in place

/// How many journals this process holds open for writing. A flush is done in place (on the
/// caller's thread) only while this is one: with several runs open, their syncs stay on their
/// writer threads, where they can overlap.
static OPEN_LOGS: AtomicUsize = AtomicUsize::new(0);

/// An I/O failure that poisoned a log, kept so every later call can report it.
#[derive(Debug, Clone)]
struct Failure {
    context: String,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> StoreError {
        io_error(
            self.context.clone(),
            io::Error::new(self.kind, self.message.clone()),
        )
    }
}

type Waiter = oneshot::Sender<Result<(), StoreError>>;

#[derive(Debug, Default)]
struct State {
    /// Encoded records appended but not yet taken by a write.
    pending: Vec<u8>,
    /// An empty buffer to swap in for `pending` when a write takes it (keeps its capacity).
    spare: Vec<u8>,
    /// How many events have been appended (the sequence number of the last one).
    appended: u64,
    /// Every event up to this sequence number is durable.
    synced: u64,
    /// Flushes waiting for a sync, in increasing sequence order.
    waiters: VecDeque<(u64, Waiter)>,
    /// A write and sync is under way (on the writer thread, or in place in a flush); nobody
    /// else touches the file until it ends.
    busy: bool,
    /// Steps started (`StepStarted` appended) and not yet completed or cancelled.
    open_steps: u64,
    /// Set after a failed write or sync; the log accepts nothing more.
    failure: Option<Failure>,
    /// The log was dropped: write what is pending and stop.
    closing: bool,
}

impl State {
    /// Takes everything pending for one write, marking the file busy; returns the batch and
    /// the sequence number it makes durable.
    fn take_batch(&mut self) -> (Vec<u8>, u64) {
        debug_assert!(!self.busy);
        self.busy = true;
        let batch = std::mem::replace(&mut self.pending, std::mem::take(&mut self.spare));
        (batch, self.appended)
    }

    /// Ends the write of `batch` (which made everything up to `target` durable if `result` is
    /// `Ok`): releases the file, and returns the waiters to complete and the failure, if any.
    fn finish_batch(
        &mut self,
        path: &Path,
        mut batch: Vec<u8>,
        target: u64,
        result: io::Result<()>,
    ) -> (Vec<(u64, Waiter)>, Option<Failure>) {
        self.busy = false;
        batch.clear();
        if batch.capacity() > self.spare.capacity() {
            self.spare = batch;
        }
        let mut done = Vec::new();
        match result {
            Ok(()) => {
                self.synced = target;
                while self.waiters.front().is_some_and(|(seq, _)| *seq <= target) {
                    done.extend(self.waiters.pop_front());
                }
                (done, None)
            }
            Err(e) => {
                tracing::error!(journal = %path.display(), error = %e, "journal write failed");
                let failure = Failure {
                    context: format!(
                        "cannot write journal {} (events since the last successful flush may be \
                         lost; resume the run to continue)",
                        path.display()
                    ),
                    kind: e.kind(),
                    message: e.to_string(),
                };
                self.failure = Some(failure.clone());
                done.extend(self.waiters.drain(..));
                (done, Some(failure))
            }
        }
    }
}

/// Sends each waiter the outcome of the write that covered it.
fn complete(done: Vec<(u64, Waiter)>, failure: Option<&Failure>) {
    for (_, waiter) in done {
        let _ = waiter.send(match failure {
            None => Ok(()),
            Some(f) => Err(f.to_error()),
        });
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread: a flush queued a waiter, a write ended, or the log closes.
    wake: Condvar,
    /// The journal, positioned at its end. Locked only by the holder of `State::busy`.
    file: Mutex<File>,
    path: PathBuf,
    syncs: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `batch` at the end of the journal and syncs it. Only the holder of `busy` calls
    /// this, without holding the state lock, so appends go on meanwhile.
    fn write_and_sync(&self, batch: &[u8]) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(batch)?;
        let synced = file.sync_data();
        self.syncs.fetch_add(1, Ordering::Relaxed);
        synced
    }
}

/// An open run journal: appends go to a writer thread; holds the run's lock while it lives.
struct FileLog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The locked `lock` file; released when the log is dropped (after the thread stopped).
    _lock: File,
}

impl fmt::Debug for FileLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLog")
            .field("path", &self.shared.path)
            .finish()
    }
}

impl FileLog {
    /// Starts the writer thread for `file`, positioned at its end.
    fn start(
        path: PathBuf,
        file: File,
        lock: File,
        syncs: Arc<AtomicU64>,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            file: Mutex::new(file),
            path,
            syncs,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("minder-journal".to_string())
                .spawn(move || write_loop(&shared))
                .map_err(|e| io_error("cannot start the journal writer".to_string(), e))?
        };
        OPEN_LOGS.fetch_add(1, Ordering::SeqCst);
        Ok(FileLog {
            shared,
            thread: Some(thread),
            _lock: lock,
        })
    }

    /// The lone flush: writes and syncs everything pending on the caller's thread. Called with
    /// the state locked, the file idle and no one else waiting.
    fn flush_in_place(&self, mut state: MutexGuard<'_, State>) -> Result<(), StoreError> {
        let (batch, target) = state.take_batch();
        drop(state);
        let result = self.shared.write_and_sync(&batch);
        let mut state = self.shared.lock();
        let (done, failure) = state.finish_batch(&self.shared.path, batch, target, result);
        let more = !state.waiters.is_empty() || failure.is_some();
        drop(state);
        if more {
            // Flushes that came in meanwhile are the writer thread's (or it has to stop).
            self.shared.wake.notify_one();
        }
        complete(done, failure.as_ref());
        match failure {
            None => Ok(()),
            Some(f) => Err(f.to_error()),
        }
    }
}

impl RunLog for FileLog {
    fn append(&self, event: Event) -> Result<(), StoreError> {
        let mut record = Vec::with_capacity(256);
        encode_record(&event, &mut record)?;
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failure {
            return Err(failure.to_error());
        }
        state.pending.extend_from_slice(&record);
        state.appended += 1;
        match event {
            Event::StepStarted { .. } => state.open_steps += 1,
            Event::StepCompleted { .. } | Event::StepCancelled { .. } => {
                state.open_steps = state.open_steps.saturating_sub(1);
            }
            _ => {}
        }
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failure {
            return Box::pin(std::future::ready(Err(failure.to_error())));
        }
        let target = state.appended;
        if target <= state.synced {
            return Box::pin(std::future::ready(Ok(())));
        }
        // Alone: no other step of the run in flight, nobody waiting, the file idle, no other
        // run open. Nothing could share this sync, and handing it to the writer thread and
        // back costs two thread wake-ups (100-130 µs a step on the benchmark machine, where
        // the sync itself takes 200-300 µs), so the caller syncs in place.
        if !state.busy
            && state.waiters.is_empty()
            && state.open_steps == 0
            && OPEN_LOGS.load(Ordering::SeqCst) == 1
        {
            return Box::pin(std::future::ready(self.flush_in_place(state)));
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back((target, tx));
        drop(state);
        self.shared.wake.notify_one();
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(io_error(
                    "the journal writer stopped".to_string(),
                    io::Error::other("writer thread exited before syncing"),
                ))
            })
        })
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        OPEN_LOGS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fails whatever is still waiting when the writer thread ends (normally or by a panic).
struct StopGuard<'a>(&'a Shared);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        let (waiters, failure): (Vec<_>, _) = {
            let mut state = self.0.lock();
            let failure = state
                .failure
                .get_or_insert_with(|| Failure {
                    context: "the journal writer stopped".to_string(),
                    kind: io::ErrorKind::Other,
                    message: "the log was closed".to_string(),
                })
                .clone();
            (state.waiters.drain(..).collect(), failure)
        };
        complete(waiters, Some(&failure));
    }
}

/// The writer thread: waits for a flush (or the close), writes everything pending with one
/// `write_all`, syncs once, completes the waiters that sync covers. Flushes that arrive while
/// a sync is under way wait for the next one, which covers them all: group commit.
fn write_loop(shared: &Shared) {
    let _guard = StopGuard(shared);
    loop {
        let (batch, target) = {
            let mut state = shared.lock();
            loop {
                if state.failure.is_some() {
                    return;
                }
                if !state.busy {
                    if !state.waiters.is_empty() || (state.closing && !state.pending.is_empty()) {
                        break;
                    }
                    if state.closing {
                        return;
                    }
                }
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.take_batch()
        };
        let result = shared.write_and_sync(&batch);
        let (done, failure) = shared
            .lock()
            .finish_batch(&shared.path, batch, target, result);
        complete(done, failure.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// The bit-at-a-time definition the tables are derived from.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn slicing_by_8_matches_the_bitwise_crc_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(151) >> 3) as u8)
            .collect();
        for start in 0..8 {
            for end in start..data.len() {
                assert_eq!(
                    crc32(&data[start..end]),
                    crc32_bitwise(&data[start..end]),
                    "{start}..{end}"
                );
            }
        }
    }

    #[test]
    fn records_are_counted_up_to_the_first_bad_length() {
        let event = |i: u32| Event::Log {
            key: format!("log#{i}"),
            message: "m".repeat(i as usize),
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        assert_eq!(count_records(&bytes), 0);
        for i in 0..5 {
            encode_record(&event(i), &mut bytes).unwrap();
        }
        assert_eq!(count_records(&bytes), 5);
        let decoded = decode(Path::new("j"), &bytes).unwrap();
        assert_eq!(decoded.events.len(), 5);
        assert_eq!(decoded.events.capacity(), 5);
        assert_eq!(decoded.events[3], event(3));
        // A torn tail: the header of a sixth record, its payload missing.
        bytes.extend_from_slice(&40u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(count_records(&bytes), 5);
    }

    // The only test of this crate's unit tests that opens a journal for writing: the in-place
    // path needs this to be the one open log of the process.
    #[tokio::test]
    async fn a_lone_flush_syncs_in_place_and_an_open_step_leaves_it_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let created = Event::Log {
            key: "log#0".to_string(),
            message: "created".to_string(),
        };
        let log = store.create("lone", created).unwrap();
        let started = |key: &str| Event::StepStarted {
            key: key.to_string(),
            task: "t".to_string(),
            location: "l:1".to_string(),
            args: serde_json::Value::Null,
        };
        let completed = |key: &str| Event::StepCompleted {
            key: key.to_string(),
            outcome: crate::journal::Outcome::Ok(serde_json::Value::Null),
        };

        let before = store.sync_count();
        log.append(started("a")).unwrap();
        log.append(completed("a")).unwrap();
        let flush = log.flush();
        assert_eq!(store.sync_count(), before + 1, "synced before being polled");
        flush.await.unwrap();

        // `c` is still running: `b`'s flush goes to the writer thread, which syncs it.
        log.append(started("b")).unwrap();
        log.append(started("c")).unwrap();
        log.append(completed("b")).unwrap();
        log.flush().await.unwrap();
        assert_eq!(store.sync_count(), before + 2);
        // `c` cancelled: alone again.
        log.append(Event::StepCancelled {
            key: "c".to_string(),
        })
        .unwrap();
        let flush = log.flush();
        assert_eq!(store.sync_count(), before + 3, "synced before being polled");
        flush.await.unwrap();
        drop(log);
        assert_eq!(store.read("lone").unwrap().len(), 7);
    }
}

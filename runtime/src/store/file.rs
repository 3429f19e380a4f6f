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
//!   sync is under way share the next one (group commit).
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

use super::{validate_run_id, RunLog, Store, StoreError};
use crate::journal::Event;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
/// The last durable offset of a poisoned journal, left for the next open.
const DURABLE: &str = "durable-offset";
/// `DURABLE` while it is being written.
const DURABLE_TMP: &str = "durable-offset.tmp";
/// What `DURABLE` holds before the offset (and a newline after it).
const DURABLE_PREFIX: &str = "minder durable offset ";
/// The mode of every file the store creates.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// The mode of every directory the store creates.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

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
/// of `runtime/src/store/file.rs`.
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
    pub fn recover(&self, run_id: &str) -> Result<Option<String>, StoreError> {
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

    /// Opens run `run_id`'s journal for writing: takes the lock, reads and decodes the journal,
    /// cuts it back to its last durable offset (a poisoned writer's record) or drops a torn
    /// tail, and syncs it.
    fn open_journal(&self, run_id: &str) -> Result<Opened, StoreError> {
        let dir = self.existing_run(run_id)?;
        let path = dir.join(JOURNAL);
        let lock = lock_run(run_id, &dir)?;
        let mut file = match run_file_options().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownRun(run_id.to_string()))
            }
            Err(e) => return Err(open_error(&path, "open", e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
        let durable = read_durable(&dir)?;
        let trusted = trusted_len(&path, durable, bytes.len())?;
        let Decoded { events, good_len } = decode(&path, &bytes[..trusted])?;
        let mut notice = None;
        if let Some(offset) = durable {
            let dropped = bytes.len() - good_len;
            let message = format!(
                "a write or sync of journal {} failed earlier, so its writer stopped; the bytes \
                 past offset {offset} (the end of its last successful sync) were never confirmed \
                 durable and cannot be trusted, so {} — nothing acknowledged was lost, and the \
                 steps after that point run again",
                path.display(),
                if dropped == 0 {
                    "nothing past it needed cutting".to_string()
                } else {
                    format!("the journal was cut back to it ({dropped} bytes dropped)")
                }
            );
            tracing::warn!(journal = %path.display(), offset, dropped, "{message}");
            notice = Some(message);
        } else if good_len < bytes.len() {
            tracing::warn!(
                journal = %path.display(),
                offset = good_len,
                bytes = bytes.len() - good_len,
                "dropping the torn tail of a journal (an append interrupted by a crash)"
            );
        }
        let synced = if good_len < bytes.len() {
            file.set_len(good_len as u64).and_then(|()| file.sync_all())
        } else {
            file.sync_data()
        };
        synced.map_err(|e| io_error(format!("cannot sync {}", path.display()), e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if durable.is_some() {
            // The record goes only once the cut is durable, and the run is written to only
            // once its removal is.
            for name in [DURABLE, DURABLE_TMP] {
                match fs::remove_file(dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_error(
                            format!("cannot remove {}", dir.join(name).display()),
                            e,
                        ))
                    }
                    _ => {}
                }
            }
            sync_dir(&dir)?;
        }
        file.seek(SeekFrom::Start(good_len as u64))
            .map_err(|e| io_error(format!("cannot seek in {}", path.display()), e))?;
        Ok(Opened {
            events,
            path,
            file,
            lock,
            len: good_len as u64,
            notice,
        })
    }
}

/// A journal opened for writing by [`FileStore::open_journal`].
struct Opened {
    events: Vec<Event>,
    path: PathBuf,
    /// The journal, synced and positioned at its end.
    file: File,
    /// The held run lock.
    lock: File,
    /// The journal's length: all of it durable.
    len: u64,
    /// What was cut back after a poisoned writer, for the user.
    notice: Option<String>,
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
        create_private_dir(&stage)
            .map_err(|e| io_error(format!("cannot create {}", stage.display()), e))?;
        let staged = (|| {
            let lock = lock_run(run_id, &stage)?;
            let path = stage.join(JOURNAL);
            let mut file = run_file_options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| open_error(&path, "create", e))?;
            set_file_mode(&file, &path)?;
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
        let log = FileLog::start(
            dir.join(JOURNAL),
            file,
            lock,
            bytes.len() as u64,
            self.syncs.clone(),
            self.fail_sync.clone(),
        )?;
        Ok(Arc::new(log))
    }

    fn open(&self, run_id: &str) -> Result<(Vec<Event>, Arc<dyn RunLog>), StoreError> {
        let Opened {
            events,
            path,
            file,
            lock,
            len,
            notice: _,
        } = self.open_journal(run_id)?;
        let log = FileLog::start(
            path,
            file,
            lock,
            len,
            self.syncs.clone(),
            self.fail_sync.clone(),
        )?;
        Ok((events, Arc::new(log)))
    }

    fn read(&self, run_id: &str) -> Result<Vec<Event>, StoreError> {
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
            // A run reached through a link is listed (only looked at, not read), so reading it
            // reports the link.
            if validate_run_id(&name).is_ok() && entry.path().join(JOURNAL).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn request_cancel(&self, run_id: &str, reason: Option<String>) -> Result<(), StoreError> {
        let dir = self.existing_run(run_id)?;
        // Written whole, then renamed into place: the writer never reads half a request.
        let staged = dir.join(format!("{CANCEL}.{}", std::process::id()));
        let text = serde_json::json!({ "reason": reason }).to_string();
        let context = || format!("cannot ask run `{run_id}` to cancel");
        let mut file = run_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged)
            .map_err(|e| match open_error(&staged, "create", e) {
                StoreError::Io { source, .. } => io_error(context(), source),
                other => other,
            })?;
        set_file_mode(&file, &staged)?;
        file.write_all(text.as_bytes())
            .and_then(|()| fs::rename(&staged, dir.join(CANCEL)))
            .map_err(|e| io_error(context(), e))
    }

    fn cancel_request(&self, run_id: &str) -> Option<Option<String>> {
        let dir = self.real_run_dir(run_id)?;
        let mut file = run_file_options().read(true).open(dir.join(CANCEL)).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        Some(value["reason"].as_str().map(str::to_string))
    }

    fn clear_cancel_request(&self, run_id: &str) {
        if let Some(dir) = self.real_run_dir(run_id) {
            let _ = fs::remove_file(dir.join(CANCEL));
        }
    }
}

/// Options to open a file inside a run directory: never through a symbolic link
/// (`O_NOFOLLOW`), created mode 0600.
fn run_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW).mode(FILE_MODE);
    options
}

/// The error of opening `path` inside a run directory: [`StoreError::Symlink`] when it is a
/// link (which `O_NOFOLLOW` refuses), else an I/O error saying what was being done.
fn open_error(path: &Path, doing: &str, e: io::Error) -> StoreError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP)
        && path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    {
        return StoreError::Symlink(path.to_path_buf());
    }
    io_error(format!("cannot {doing} {}", path.display()), e)
}

/// Gives a file the store created mode 0600, whatever the umask took away or left.
fn set_file_mode(file: &File, path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| io_error(format!("cannot set the mode of {}", path.display()), e))?;
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Creates the directory `path` (its parent must exist) with mode 0700, whatever the umask.
fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)?;
    #[cfg(unix)]
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)?
        .set_permissions(fs::Permissions::from_mode(DIR_MODE))?;
    Ok(())
}

/// Takes the run's exclusive lock, or fails with [`StoreError::Locked`]. The lock file is
/// created (0600) if missing, and never opened through a link.
fn lock_run(run_id: &str, dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK);
    let file = match run_file_options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => {
            set_file_mode(&file, &path)?;
            file
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => run_file_options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| open_error(&path, "open", e))?,
        Err(e) => return Err(open_error(&path, "create", e)),
    };
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

/// The last durable offset a poisoned writer recorded in run directory `dir`, if any. A record
/// that does not read back whole is [`StoreError::Corrupt`]: a human has to look.
fn read_durable(dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join(DURABLE);
    let mut file = match run_file_options().read(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(&path, "open", e)),
    };
    let mut text = Vec::new();
    Read::by_ref(&mut file)
        .take(64)
        .read_to_end(&mut text)
        .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_prefix(DURABLE_PREFIX))
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{} does not hold a durable offset (`{DURABLE_PREFIX}<n>`): a write or sync of \
                 the run's journal failed and the offset it recorded was lost; check the \
                 journal, then remove the file",
                path.display()
            ))
        })
}

/// How many bytes of a journal of `len` bytes can be trusted given its recorded last durable
/// offset: all of them without a record, the recorded prefix with one.
fn trusted_len(path: &Path, durable: Option<u64>, len: usize) -> Result<usize, StoreError> {
    match durable {
        None => Ok(len),
        Some(offset) if offset <= len as u64 => Ok(offset as usize),
        Some(offset) => Err(StoreError::Corrupt(format!(
            "journal {} is {len} bytes, shorter than its recorded last durable offset {offset}: \
             bytes that were synced are missing (the file was not modified)",
            path.display()
        ))),
    }
}

/// Records `offset`, the end of the last successful sync of the journal in run directory `dir`,
/// for the next open: written to a temporary file, synced, renamed into place, the directory
/// synced. Fails only if the record could not be put in place; a failed sync of it is logged
/// (the record is visible in this boot, which is when the page cache can lie).
fn record_durable(dir: &Path, offset: u64) -> io::Result<()> {
    let tmp = dir.join(DURABLE_TMP);
    let mut file = run_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(format!("{DURABLE_PREFIX}{offset}\n").as_bytes())?;
    let synced = file.sync_all();
    drop(file);
    fs::rename(&tmp, dir.join(DURABLE))?;
    let synced = synced.and_then(|()| File::open(dir).and_then(|d| d.sync_all()));
    if let Err(e) = synced {
        tracing::error!(
            dir = %dir.display(),
            error = %e,
            "the last durable offset of a poisoned journal is recorded but could not be synced"
        );
    }
    Ok(())
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
        break;
    }
    if events.is_empty() {
        // A run is created with its first event synced: without it the file was cut short.
        return Err(corrupt(
            HEADER_LEN,
            "the journal has no complete first record (a run's journal is created with its \
             first event, so the file was cut short or damaged)",
        ));
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

/// Why a log accepts nothing more, kept so every later call can report it.
#[derive(Debug, Clone)]
enum Failure {
    /// A write or sync of the journal failed: the log is poisoned.
    Poisoned {
        path: PathBuf,
        op: &'static str,
        durable: u64,
        recovery: String,
        kind: io::ErrorKind,
        message: String,
    },
    /// The writer thread stopped (the log was closed, or the thread panicked).
    Stopped,
}

impl Failure {
    fn to_error(&self) -> StoreError {
        match self {
            Failure::Poisoned {
                path,
                op,
                durable,
                recovery,
                kind,
                message,
            } => StoreError::Poisoned {
                path: path.clone(),
                op,
                durable: *durable,
                recovery: recovery.clone(),
                source: io::Error::new(*kind, message.clone()),
            },
            Failure::Stopped => io_error(
                "the journal writer stopped".to_string(),
                io::Error::other("the log was closed"),
            ),
        }
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
    /// The journal's length up to the end of its last successful sync (at first, its length
    /// when opened or created, which was synced then).
    durable: u64,
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
}

/// Ends the write of `batch` (which made everything up to `target` durable if `result` is
/// `Ok`): releases the file, and returns the waiters to complete and the failure, if any.
/// After a failed write or sync the log is poisoned, and its last durable offset is recorded
/// for the next open (before anyone can see the failure).
fn finish_batch(
    shared: &Shared,
    state: &mut State,
    mut batch: Vec<u8>,
    target: u64,
    result: Result<(), (&'static str, io::Error)>,
) -> (Vec<(u64, Waiter)>, Option<Failure>) {
    state.busy = false;
    let written = batch.len() as u64;
    batch.clear();
    if batch.capacity() > state.spare.capacity() {
        state.spare = batch;
    }
    let mut done = Vec::new();
    match result {
        Ok(()) => {
            state.synced = target;
            state.durable += written;
            while state.waiters.front().is_some_and(|(seq, _)| *seq <= target) {
                done.extend(state.waiters.pop_front());
            }
            (done, None)
        }
        Err((op, e)) => {
            let path = &shared.path;
            let durable = state.durable;
            tracing::error!(
                journal = %path.display(),
                op,
                durable,
                error = %e,
                "journal {op} failed: the log is poisoned"
            );
            let failure = Failure::Poisoned {
                path: path.clone(),
                op,
                durable,
                recovery: shared.record_durable(durable),
                kind: e.kind(),
                message: e.to_string(),
            };
            state.failure = Some(failure.clone());
            done.extend(state.waiters.drain(..));
            (done, Some(failure))
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
    /// Fault injection: the next sync fails (see [`FileStore::fail_next_sync`]).
    fail_sync: Arc<AtomicBool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `batch` at the end of the journal and syncs it; a failure says which of the two
    /// failed. Only the holder of `busy` calls this, without holding the state lock, so
    /// appends go on meanwhile.
    fn write_and_sync(&self, batch: &[u8]) -> Result<(), (&'static str, io::Error)> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(batch).map_err(|e| ("write", e))?;
        let synced = if self.fail_sync.swap(false, Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else {
            file.sync_data()
        };
        self.syncs.fetch_add(1, Ordering::Relaxed);
        synced.map_err(|e| ("sync", e))
    }

    /// After a failed write or sync: records `durable`, the end of the last successful sync,
    /// for the next open; if that fails, cuts the journal back to it here. Returns what the
    /// user is told about it.
    fn record_durable(&self, durable: u64) -> String {
        let Some(dir) = self.path.parent() else {
            return format!("check the journal and cut it to {durable} bytes before resuming");
        };
        let record = dir.join(DURABLE);
        let Err(e) = record_durable(dir, durable) else {
            return format!(
                "its last durable offset, byte {durable} (the end of its last successful \
                 sync), is recorded in {}, and the next open cuts the journal back to it: \
                 nothing acknowledged was lost, the steps after it run again",
                record.display()
            );
        };
        tracing::error!(record = %record.display(), error = %e, "cannot record the durable offset");
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        match file.set_len(durable).and_then(|()| file.sync_all()) {
            Ok(()) => format!(
                "its last durable offset, byte {durable}, could not be recorded in {} ({e}), \
                 so the journal was cut back to it: nothing acknowledged was lost, the steps \
                 after it run again",
                record.display()
            ),
            Err(cut) => format!(
                "its last durable offset, byte {durable}, could not be recorded in {} ({e}) \
                 nor the journal cut back to it ({cut}): check the disk, and cut the journal \
                 to {durable} bytes before resuming the run",
                record.display()
            ),
        }
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
    /// Starts the writer thread for `file`, positioned at its end, `len` bytes long (all of
    /// them durable).
    fn start(
        path: PathBuf,
        file: File,
        lock: File,
        len: u64,
        syncs: Arc<AtomicU64>,
        fail_sync: Arc<AtomicBool>,
    ) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                durable: len,
                ..State::default()
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            path,
            syncs,
            fail_sync,
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
        let (done, failure) = finish_batch(&self.shared, &mut state, batch, target, result);
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
            let failure = state.failure.get_or_insert(Failure::Stopped).clone();
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
        let (done, failure) = finish_batch(shared, &mut shared.lock(), batch, target, result);
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
            seq: None,
            location: None,
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
            seq: None,
            location: None,
        };
        let log = store.create("lone", created).unwrap();
        let started = |key: &str| Event::StepStarted {
            key: key.to_string(),
            task: "t".to_string(),
            location: "l:1".to_string(),
            args: serde_json::Value::Null,
            seq: None,
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

//! Where journals live. The [`Store`] trait is what a backend implements; [`MemoryStore`] keeps
//! runs in memory (tests, benchmarks, embedding).

use crate::journal::Event;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

mod claim;
mod file;
mod inbox;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub use claim::{ClaimRequest, Claimed, LeftOut, QueueLimits, Rate, Readiness, DEFAULT_QUEUE};
pub use file::FileStore;
pub use inbox::{InboxAnswer, InboxItem, InboxRefusal};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;

/// A failure of the journal store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No run with this id exists.
    #[error("no run `{0}`")]
    UnknownRun(String),
    /// A run with this id already exists.
    #[error("run `{0}` already exists")]
    RunExists(String),
    /// Another writer holds the run.
    #[error("run `{0}` is already open by another writer")]
    Locked(String),
    /// The run id is not a valid name. Shown escaped (`\n`, `\u{1b}`…), so an id with a
    /// newline or control characters cannot break the one-line message.
    #[error("invalid run id `{}`: use letters, digits, `-` and `_`", .0.escape_debug())]
    InvalidRunId(String),
    /// The journal is damaged.
    #[error("{0}")]
    Corrupt(String),
    /// A path inside the runs directory (a run directory, journal, lock or cancel request) is
    /// a symbolic link, which the file store does not follow.
    #[error(
        "{} is a symbolic link, and minder does not follow links inside the runs directory",
        .0.display()
    )]
    Symlink(std::path::PathBuf),
    /// A write or sync of the run's journal failed, so its log is poisoned: this and every later
    /// append or flush of that log fails, and nothing more is written to the journal (after a
    /// failed sync the page cache may hold bytes that never reach the disk). The next open of
    /// the run trusts the journal only up to `durable`.
    #[error(
        "the {op} of journal {} failed ({source}), so its log is poisoned and nothing more is \
         written to it; {recovery}",
        path.display()
    )]
    Poisoned {
        /// The journal file.
        path: std::path::PathBuf,
        /// What failed: `"write"` or `"sync"`.
        op: &'static str,
        /// The journal's length up to the end of its last successful sync.
        durable: u64,
        /// How the next open learns `durable`, and what the user has to do, if anything.
        recovery: String,
        /// The error of the failed call.
        source: std::io::Error,
    },
    /// Another writer took the run over (its lease was given to another worker, with a newer
    /// epoch), so this writer's events are refused: it must stop driving the run and write
    /// nothing more. Stores whose writers hold leases return it from [`RunLog::flush`]; the
    /// file store, whose lock cannot be taken from a live holder, never does.
    #[error("run `{0}` was taken over by another writer; this writer's events are refused")]
    Fenced(String),
    /// The database could not be used: it cannot be reached, refused the credentials, holds
    /// the schema of a newer minder, or a statement failed. `url` has its password masked.
    #[error("PostgreSQL at {url}: {message}")]
    Database {
        /// The database URL, its password masked.
        url: String,
        /// What failed, and the database's or the connection's message.
        message: String,
    },
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An open, exclusively held journal of one run.
///
/// `append` only buffers (it never blocks on I/O); `flush` makes what was appended durable.
pub trait RunLog: Send + Sync + fmt::Debug {
    /// Appends an event. It is durable once a later [`RunLog::flush`] resolves.
    fn append(&self, event: Event) -> Result<(), StoreError>;
    /// Resolves once every event appended so far is durable. Concurrent flushes may share one
    /// sync (group commit). A store whose writers hold leases fails it with
    /// [`StoreError::Fenced`] once another writer took the run over: nothing of this writer's
    /// lands after that.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>>;
    /// Makes everything appended durable and lets the run go now, for the next writer (a
    /// worker, another command): a store whose writers hold leases releases the lease here
    /// rather than when the log is dropped. Nothing may be appended after it. The default
    /// flushes (the run is let go when the log is dropped).
    fn close(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.flush()
    }
    /// Whether this writer knows it lost the run (its lease lapsed and another writer took
    /// it): the runner then stops driving it at once rather than at its next flush. The
    /// default: never.
    fn is_lost(&self) -> bool {
        false
    }
}

/// A run opened for writing by [`Store::open`]: its journal so far and the log to append to.
#[derive(Debug)]
#[non_exhaustive]
pub struct OpenRun {
    /// The run's events so far, in journal order.
    pub events: Vec<Event>,
    /// The run's log, held exclusively until it is dropped.
    pub log: Arc<dyn RunLog>,
}

impl OpenRun {
    /// An opened run (for [`Store`] implementations).
    pub fn new(events: Vec<Event>, log: Arc<dyn RunLog>) -> Self {
        OpenRun { events, log }
    }
}

/// A run opened for writing whose journal is read while it is used ([`Store::open_stream`]):
/// its events in batches, in journal order, then its log. A long journal never has to be held
/// in memory whole: the [`FileStore`] decodes it on a thread of its own, a few batches ahead
/// of the reader.
pub struct JournalStream {
    batches: BoxStream<'static, Result<Vec<Event>, StoreError>>,
    log: BoxFuture<'static, Result<Arc<dyn RunLog>, StoreError>>,
}

impl fmt::Debug for JournalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalStream").finish_non_exhaustive()
    }
}

impl JournalStream {
    /// A journal read as `batches` (events in journal order; an error ends it), and the log
    /// `log` resolves to once they were all read (for [`Store`] implementations).
    pub fn new(
        batches: BoxStream<'static, Result<Vec<Event>, StoreError>>,
        log: BoxFuture<'static, Result<Arc<dyn RunLog>, StoreError>>,
    ) -> Self {
        JournalStream { batches, log }
    }

    /// A run already read whole: its events in one batch.
    pub fn from_open(run: OpenRun) -> Self {
        let OpenRun { events, log } = run;
        JournalStream {
            batches: futures::stream::once(std::future::ready(Ok(events))).boxed(),
            log: Box::pin(std::future::ready(Ok(log))),
        }
    }

    /// The next batch of events; `None` once every event was read.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<Event>, StoreError>> {
        self.batches.next().await
    }

    /// The run's log, once every batch was read ([`JournalStream::next_batch`] returned
    /// `None`); dropping the stream earlier closes the run.
    pub async fn finish(self) -> Result<Arc<dyn RunLog>, StoreError> {
        drop(self.batches);
        self.log.await
    }

    /// Reads every event: the run as [`Store::open`] returns it.
    pub async fn collect(mut self) -> Result<OpenRun, StoreError> {
        let mut events = Vec::new();
        while let Some(batch) = self.next_batch().await {
            events.extend(batch?);
        }
        let log = self.finish().await?;
        Ok(OpenRun::new(events, log))
    }
}

/// What [`Store::open_unless_ended`] found: a run open for writing, or the two events of a
/// run that has ended.
#[derive(Debug)]
#[non_exhaustive]
// Made once per resume and taken apart at once: the two events stay unboxed.
#[allow(clippy::large_enum_variant)]
pub enum Opening {
    /// The run has not ended: it is open for writing, as [`Store::open_stream`] opens it.
    Open(JournalStream),
    /// The journal's last event ends the run; the run was not opened for writing.
    Ended {
        /// The journal's first event (`run_created`).
        first: Event,
        /// Its last event: `run_completed`, `run_failed` or `run_cancelled`.
        end: Event,
    },
}

/// A place that keeps run journals.
///
/// Every call returns a future, so a store reached over the network fits without blocking
/// tokio's worker threads; the [`FileStore`] does its file work on tokio's blocking threads.
/// Holding a run is exclusive: [`Store::create`] and [`Store::open`] hand out the run's one
/// [`RunLog`], and a second open while it lives fails with [`StoreError::Locked`]. (A store
/// whose writers are workers on several machines makes that hold a lease with an epoch that
/// fences every flush; see [`StoreError::Fenced`].)
///
/// Methods take `&self` and return a boxed future borrowing it, so a store is used as
/// `Arc<dyn Store>`:
///
/// ```
/// use minder::store::{MemoryStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = MemoryStore::new();
/// assert!(store.list().await.unwrap().is_empty());
/// # }
/// ```
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Creates a new run whose journal starts with `first` (durable when this resolves), and
    /// opens it for writing.
    fn create<'a>(
        &'a self,
        run_id: &'a str,
        first: Event,
    ) -> BoxFuture<'a, Result<Arc<dyn RunLog>, StoreError>>;
    /// Opens an existing run for writing; returns its journal so far.
    fn open<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<OpenRun, StoreError>>;
    /// Opens an existing run for writing, as [`Store::open`] does, and reads its journal as
    /// it is used (see [`JournalStream`]). Fails as [`Store::open`] does; damage found while
    /// the journal is read ends the stream with the error. The default is [`Store::open`],
    /// read whole.
    fn open_stream<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<JournalStream, StoreError>> {
        Box::pin(async move { self.open(run_id).await.map(JournalStream::from_open) })
    }
    /// Opens an existing run for writing, as [`Store::open_stream`] does, unless its journal ends
    /// with the run's end and the store can find that end without reading the rest: then
    /// returns that event and the first one ([`Opening::Ended`]). The [`FileStore`] can (it
    /// keeps a note of where a run's end record is), which makes resuming an ended run cost
    /// what its two events do, however long its journal; the journal between them is not
    /// checked then. It may return [`Opening::Open`] for an ended run too (the
    /// caller then reads the end from the events, checking the whole journal). Fails as
    /// [`Store::open`] does (e.g. [`StoreError::Locked`] while another writer holds the run).
    /// The default is [`Store::open_stream`].
    fn open_unless_ended<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Opening, StoreError>> {
        Box::pin(async move { self.open_stream(run_id).await.map(Opening::Open) })
    }
    /// Reads a run's journal without opening it for writing.
    fn read<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<Event>, StoreError>>;
    /// The ids of all runs, sorted.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Deletes a run and everything kept for it. A run held open for writing is not deleted
    /// ([`StoreError::Locked`]); an unknown run is [`StoreError::UnknownRun`].
    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// When the run's journal was last written: its last event (for a finished run, about
    /// when it ended). What `prune --older-than` and `list --since` measure a run's age by.
    /// `None` when the store cannot tell (the default), and such runs are never pruned by age.
    fn last_write<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Claims up to `request.max` runs that a worker can drive now ([`Readiness`]: ready, or
    /// due), of the processes and structures it has, from its queues, lowest priority value
    /// first, then oldest; each is opened for writing as by [`Store::open`] and held until
    /// dropped (a store with leases holds it for `request.lease` past the last flush or
    /// heartbeat). Runs another writer holds are skipped.
    ///
    /// The default reads every run's journal, which suits small stores (the [`MemoryStore`]);
    /// the [`FileStore`] keeps an index of the runs that are not ended or parked, so a claim
    /// reads only those.
    fn claim<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<Claimed>, StoreError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut candidates = Vec::new();
            for id in self.list().await? {
                let Ok(events) = self.read(&id).await else {
                    continue;
                };
                let Some((process, fingerprint, queue, priority)) =
                    events.first().and_then(claim::created_facts)
                else {
                    continue;
                };
                if request.wants(process, fingerprint, queue)
                    && Readiness::of(&events).claimable_at(now)
                {
                    candidates.push((priority, id, process.to_string()));
                }
            }
            candidates.sort();
            let mut claimed = Vec::new();
            for (_, id, process) in candidates {
                if claimed.len() >= request.max {
                    break;
                }
                match self.open(&id).await {
                    // Looked at again once held: another writer may have moved it meanwhile.
                    Ok(open) if Readiness::of(&open.events).claimable_at(now) => {
                        claimed.push(Claimed::new(id, process, open))
                    }
                    Ok(_) | Err(StoreError::Locked(_) | StoreError::UnknownRun(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(claimed)
        })
    }

    /// The ready runs that `request` leaves out because the worker lacks their process or has
    /// another structure of it, by process and structure, so the worker can say so
    /// (they are left for workers with that build). The default knows none.
    fn left_for_others<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<LeftOut>, StoreError>> {
        let _ = request;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Sets the limits of queue `name`, for every worker of this store (the default store
    /// has no queue limits: an error says so).
    fn set_queue<'a>(
        &'a self,
        name: &'a str,
        limits: QueueLimits,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (name, limits);
        Box::pin(std::future::ready(Err(StoreError::Io {
            context: "cannot set queue limits".to_string(),
            source: std::io::Error::other("this store has no queue limits"),
        })))
    }

    /// The queues that have limits.
    fn queues(&self) -> BoxFuture<'_, Result<Vec<(String, QueueLimits)>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Records that worker `id` is alive for as long as the returned guard lives (its
    /// process dies with it), for [`Store::workers`]. The default records nothing.
    fn register_worker<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<WorkerGuard, StoreError>> {
        let _ = id;
        Box::pin(std::future::ready(Ok(WorkerGuard::none())))
    }

    /// Records that worker `id` stopped (before its guard is dropped). The default does
    /// nothing.
    fn unregister_worker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let _ = id;
        Box::pin(std::future::ready(()))
    }

    /// The live workers, and the runs each holds. The default knows none.
    fn workers(&self) -> BoxFuture<'_, Result<Vec<WorkerInfo>, StoreError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Waits until there may be new work for workers (a run created, resolved or due), or
    /// until `timeout` passes. The default waits out the timeout: workers then poll.
    fn wait_for_work(&self, timeout: std::time::Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(timeout))
    }

    /// Leaves a request to cancel `run_id` for the writer that holds it open (see
    /// [`Runner::cancel`](crate::Runner::cancel)), which checks for one while it drives the
    /// run. A store that cannot pass requests keeps the default: the run is reported locked.
    fn request_cancel<'a>(
        &'a self,
        run_id: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = reason;
        Box::pin(std::future::ready(Err(StoreError::Locked(
            run_id.to_string(),
        ))))
    }

    /// The pending cancel request of `run_id`, with its reason: `Some(reason)` when there is
    /// one. The default: never.
    fn cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        let _ = run_id;
        Box::pin(std::future::ready(None))
    }

    /// Forgets the cancel request of `run_id` once it was acted on.
    fn clear_cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, ()> {
        let _ = run_id;
        Box::pin(std::future::ready(()))
    }

    /// Leaves `item` (a result or decision for a waiting effect) in the inbox of `run_id`,
    /// durably, for the writer that holds the run (see [`InboxItem`]). A store that cannot
    /// pass items keeps the default: the run is reported locked.
    fn post_to_inbox<'a>(
        &'a self,
        run_id: &'a str,
        item: InboxItem,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = item;
        Box::pin(std::future::ready(Err(StoreError::Locked(
            run_id.to_string(),
        ))))
    }

    /// The items in the inbox of `run_id` that no writer has answered yet, oldest first. The
    /// default: none.
    fn inbox<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<InboxItem>, StoreError>> {
        let _ = run_id;
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Leaves the holder's verdict on the inbox item `id` of `run_id` for its poster.
    fn answer_inbox<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        answer: InboxAnswer,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (run_id, id, answer);
        Box::pin(std::future::ready(Ok(())))
    }

    /// The holder's verdict on the inbox item `id` of `run_id`, taking the item out of the
    /// inbox once answered; with `withdraw`, the item is taken out even when it was not
    /// answered (`None`).
    fn take_inbox_answer<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        withdraw: bool,
    ) -> BoxFuture<'a, Result<Option<InboxAnswer>, StoreError>> {
        let _ = (run_id, id, withdraw);
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// A new id: a ULID (48 bits of milliseconds since the epoch and 80 random bits, in
/// Crockford's base 32), so ids sort by creation time and two made in the same millisecond
/// still do not collide.
pub(crate) fn new_id() -> String {
    let random =
        (u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..))) & ((1u128 << 80) - 1);
    ulid::Ulid::from_parts(now_ms(), random).to_string()
}

/// The wall clock in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A live worker, as [`Store::workers`] lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it started, in milliseconds since the epoch.
    pub started_ms: u64,
    /// When it last renewed its leases, for stores with leases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// The runs it holds now.
    pub holds: Vec<String>,
}

impl WorkerInfo {
    /// A worker's record (for [`Store`] implementations).
    pub fn new(id: String, host: String, pid: u32, started_ms: u64) -> Self {
        WorkerInfo {
            id,
            host,
            pid,
            started_ms,
            heartbeat_ms: None,
            holds: Vec::new(),
        }
    }

    /// Sets the runs it holds.
    pub fn holding(mut self, runs: Vec<String>) -> Self {
        self.holds = runs;
        self
    }

    /// Sets its last heartbeat.
    pub fn heartbeat(mut self, at_ms: u64) -> Self {
        self.heartbeat_ms = Some(at_ms);
        self
    }
}

/// Keeps a worker registered ([`Store::register_worker`]) while it lives.
pub struct WorkerGuard(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl WorkerGuard {
    /// A registration that keeps nothing.
    pub fn none() -> Self {
        WorkerGuard(None)
    }

    /// A registration that lasts as long as `keep` (dropped with the guard).
    pub fn keeping(keep: impl Send + Sync + 'static) -> Self {
        WorkerGuard(Some(Box::new(keep)))
    }
}

impl fmt::Debug for WorkerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerGuard")
    }
}

/// This machine's host name, or `host` when it cannot be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// Checks that a run id is a plain name (no path separators, no `..`).
pub fn validate_run_id(run_id: &str) -> Result<(), StoreError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 128
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidRunId(run_id.to_string()))
    }
}

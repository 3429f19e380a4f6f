//! The writer of an open journal: one thread per open run, group commit, the lone flush done
//! in place, and the poisoning of a log after a failed write or sync.

use crate::journal::Event;
use crate::store::{RunLog, StoreError};
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use super::codec::encode_record;
use super::durable::{record_durable, DURABLE};
use super::ended::{note_end, EndNote};
use super::io_error;

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
    /// The journal's length once everything appended is written.
    len: u64,
    /// Where the run's end record is, once it was appended: noted (see `ended`) once a sync
    /// covered it.
    end: Option<EndNote>,
    /// The end note to write now (its sync just succeeded), by whoever did the sync.
    note_ready: Option<EndNote>,
    /// The log was dropped: write what is pending and stop.
    closing: bool,
    /// The writer thread has ended (its [`StopGuard`] ran).
    stopped: bool,
    /// The writer thread waits on `wake` (so a flush has to wake it; while it writes or syncs,
    /// it looks for waiters before it waits again, and needs no wake-up).
    idle: bool,
    /// How long the writer thread's last write and sync took.
    last_sync: Duration,
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
            if state
                .end
                .is_some_and(|end| end.journal_len == state.durable)
            {
                state.note_ready = state.end.take();
            }
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
    /// Signalled when the writer thread ends, for a drop that waits for it.
    stopped: Condvar,
    /// The journal, positioned at its end. Locked only by the holder of `State::busy`.
    file: Mutex<File>,
    path: PathBuf,
    syncs: Arc<AtomicU64>,
    /// Fault injection: the next sync fails (see [`FileStore::fail_next_sync`](super::FileStore::fail_next_sync)).
    fail_sync: Arc<AtomicBool>,
    /// The locked `lock` file: released when the log is dropped with nothing left to write,
    /// else by the writer thread once it wrote and synced what was left.
    run_lock: Mutex<Option<File>>,
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

    /// Writes the end note of the run, if its end record was just synced.
    fn note_end(&self, note: Option<EndNote>) {
        if let (Some(note), Some(dir)) = (note, self.path.parent()) {
            note_end(dir, note);
        }
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

/// An open run journal: appends go to a writer thread; holds the run's lock while it lives
/// (and, when it is dropped with records still to write, until its thread wrote them).
pub(super) struct FileLog {
    shared: Arc<Shared>,
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
    pub(super) fn start(
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
                len,
                ..State::default()
            }),
            wake: Condvar::new(),
            stopped: Condvar::new(),
            file: Mutex::new(file),
            path,
            syncs,
            fail_sync,
            run_lock: Mutex::new(Some(lock)),
        });
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("minder-journal".to_string())
                .spawn(move || write_loop(&shared))
                .map_err(|e| io_error("cannot start the journal writer".to_string(), e))?;
        }
        OPEN_LOGS.fetch_add(1, Ordering::SeqCst);
        Ok(FileLog { shared })
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
        let note = state.note_ready.take();
        drop(state);
        self.shared.note_end(note);
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
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failure {
            return Err(failure.to_error());
        }
        // Encoded straight into the pending buffer (no buffer of its own to allocate and copy
        // from): the lock is held for the encoding, a microsecond, which only other appends
        // and the writer's taking of a batch wait for.
        let before = state.pending.len();
        encode_record(&event, &mut state.pending)?;
        let size = (state.pending.len() - before) as u64;
        state.appended += 1;
        let start = state.len;
        state.len += size;
        if event.run_end().is_some() {
            state.end = Some(EndNote {
                journal_len: state.len,
                end_offset: start,
            });
        }
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
        //
        // Never on a tokio worker thread, though, where the sync would hold up every other
        // task of that thread: on a multi-thread runtime the worker first hands its other tasks
        // to another thread (`block_in_place`, which costs no wait here); on a current-thread
        // runtime the sync goes to the writer thread as below. Off any runtime it is done here.
        if !state.busy
            && state.waiters.is_empty()
            && state.open_steps == 0
            && OPEN_LOGS.load(Ordering::SeqCst) == 1
        {
            use tokio::runtime::{Handle, RuntimeFlavor};
            match Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(RuntimeFlavor::MultiThread) => {
                    let done = tokio::task::block_in_place(|| self.flush_in_place(state));
                    return Box::pin(std::future::ready(done));
                }
                Err(_) => return Box::pin(std::future::ready(self.flush_in_place(state))),
                Ok(_) => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back((target, tx));
        let idle = state.idle;
        drop(state);
        if idle {
            self.shared.wake.notify_one();
        }
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
    /// Closes the log. With nothing left to write the run's lock is released here; else the
    /// writer thread writes and syncs what is left, then releases it. Off any runtime the drop
    /// waits for that (and on a multi-thread runtime, after handing the worker's other tasks
    /// to another thread with `block_in_place`), so what was appended is on disk when the drop
    /// returns. On a current-thread runtime it does not wait (its one thread runs every task):
    /// the run stays locked a moment longer, and [`Store::open`](crate::store::Store::open)
    /// waits a moment for a busy lock.
    fn drop(&mut self) {
        let idle = {
            let mut state = self.shared.lock();
            state.closing = true;
            !state.busy && state.pending.is_empty()
        };
        if !idle {
            use tokio::runtime::{Handle, RuntimeFlavor};
            let wait = || {
                self.shared.wake.notify_one();
                let mut state = self.shared.lock();
                while !state.stopped {
                    state = self
                        .shared
                        .stopped
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            match Handle::try_current().map(|h| h.runtime_flavor()) {
                Err(_) => wait(),
                Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
                Ok(_) => {}
            }
        }
        if idle {
            drop(
                self.shared
                    .run_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
        self.shared.wake.notify_one();
        OPEN_LOGS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Fails whatever is still waiting when the writer thread ends (normally or by a panic).
struct StopGuard<'a>(&'a Shared);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        // The log was dropped and what was left is written: the run is free. (A thread that
        // stops on a failure leaves the lock to the log, which releases it when dropped.)
        if self.0.lock().closing {
            drop(
                self.0
                    .run_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(),
            );
        }
        let (waiters, failure): (Vec<_>, _) = {
            let mut state = self.0.lock();
            let failure = state.failure.get_or_insert(Failure::Stopped).clone();
            state.stopped = true;
            (state.waiters.drain(..).collect(), failure)
        };
        self.0.stopped.notify_all();
        complete(waiters, Some(&failure));
    }
}

/// A sync covers at least this many flushes when the steps in flight can give them.
const GROUP: usize = 128;
/// The longest a sync waits for more flushes: half the last sync, at most this.
const GATHER_MAX: Duration = Duration::from_millis(1);

/// Before a sync: while fewer than [`GROUP`] flushes wait and steps of the run are still in
/// flight (each will complete and flush soon), waits for their flushes, at most half as long
/// as the last sync took (and never past [`GATHER_MAX`]). A fan-out's syncs then cover more
/// steps each; a flush with nothing else in flight (a sequential step) never waits.
fn gather<'a>(shared: &'a Shared, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    if state.waiters.len() >= GROUP || state.open_steps == 0 || state.closing {
        return state;
    }
    let deadline = Instant::now() + (state.last_sync / 2).min(GATHER_MAX);
    while state.waiters.len() < GROUP
        && state.open_steps > 0
        && !state.closing
        && state.failure.is_none()
    {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        state.idle = true;
        let (next, _) = shared
            .wake
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        state.idle = false;
    }
    state
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
                state.idle = true;
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.idle = false;
            }
            state = gather(shared, state);
            state.take_batch()
        };
        let started = Instant::now();
        let result = shared.write_and_sync(&batch);
        let took = started.elapsed();
        let mut state = shared.lock();
        state.last_sync = took;
        let (done, failure) = finish_batch(shared, &mut state, batch, target, result);
        let note = state.note_ready.take();
        drop(state);
        shared.note_end(note);
        complete(done, failure.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use crate::journal::Event;
    use crate::store::{FileStore, Store};

    // The only test of this crate's unit tests that opens a journal for writing: the in-place
    // path needs this to be the one open log of the process. On a multi-thread runtime the
    // lone flush syncs in place (the worker's other tasks handed away first); on a
    // current-thread runtime it goes to the writer thread, which is checked at the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_flush_syncs_in_place_and_an_open_step_leaves_it_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let created = Event::Log {
            key: "log#0".to_string(),
            message: "created".to_string(),
            seq: None,
            location: None,
            node: None,
        };
        let log = store.create("lone", created.clone()).await.unwrap();
        let started = |key: &str| Event::StepStarted {
            key: key.to_string(),
            task: "t".to_string(),
            location: "l:1".to_string(),
            args: serde_json::Value::Null,
            seq: None,
            node: None,
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
        assert_eq!(store.read("lone").await.unwrap().len(), 7);

        // On a current-thread runtime (its one thread runs every task) a lone flush never
        // syncs on the caller's thread: the writer thread does it once the flush is awaited.
        let store = store.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let log = store.open("lone").await.unwrap().log;
                let before = store.sync_count();
                log.append(created).unwrap();
                let flush = log.flush();
                assert_eq!(
                    store.sync_count(),
                    before,
                    "not synced on the runtime's thread"
                );
                flush.await.unwrap();
                assert_eq!(store.sync_count(), before + 1);
            });
        })
        .join()
        .unwrap();
    }
}

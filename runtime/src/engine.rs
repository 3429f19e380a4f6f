//! The state of one run while its process body executes: the journal it appends to, the
//! replay map it takes entries from, what it waits for, and how it stops. It knows events and
//! keys, not tasks: the steps (`task`, `effects`, `parallel`, `select`) build on it, and the
//! runner drives it.

use crate::error::{RunError, Waiting};
use crate::journal::{Event, Outcome};
use crate::replay::{ReplayMap, Replayed};
use crate::store::{InboxAnswer, InboxItem, RunLog, StoreError};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A step's key, its position in its scope, and what the journal has at the key (taken out
/// of the replay map when the key was taken: one lookup per step).
#[derive(Debug)]
pub(crate) struct StepKey {
    /// `scope/name#n`.
    pub(crate) key: String,
    /// How many keys the scope handed out before this one (program order).
    pub(crate) seq: u32,
    /// The journal's entry for the key; see [`RunState::replayed`].
    pub(crate) journal: Option<Replayed>,
}

/// What a runner does instead of the real thing, for tests: the clock, mocked tasks, automatic
/// answers to effects. The engine defines the seam; the `testing` module implements it.
pub(crate) trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// The time.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Whether time is virtual (sleeps then never suspend a run, nobody checks for cancels).
    fn virtual_time(&self) -> bool {
        false
    }

    /// The journaled outcome of a mocked task's call, or why the mock failed; `None` runs the
    /// task.
    fn mock(&self, task: &str, args: &serde_json::Value) -> Option<Result<Outcome, RunError>> {
        let _ = (task, args);
        None
    }

    /// An automatic result for an effect; `None` leaves it waiting.
    fn answer(
        &self,
        kind: crate::inspect::WaitKind,
        name: &str,
        input: &serde_json::Value,
    ) -> Option<Outcome> {
        let _ = (kind, name, input);
        None
    }

    /// For the implementation to find itself again.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    fn as_any(&self) -> &dyn Any;

    /// For the implementation to change itself (while its runner holds it alone).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The real thing: the system clock, no mocks, no automatic answers.
#[derive(Debug, Default)]
pub(crate) struct NoHooks;

impl Hooks for NoHooks {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// What a run reports while it goes (not journaled; for progress displays).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notice {
    /// A `ctx.log` line (not repeated on replay).
    Log {
        /// The step key.
        key: String,
        /// The message.
        message: String,
    },
    /// A map finished one more item.
    Progress {
        /// The map's label.
        label: String,
        /// Items finished.
        done: usize,
        /// Items in all.
        total: usize,
    },
}

pub(crate) type Observer = Arc<dyn Fn(&str, &Notice) + Send + Sync>;

/// A result being posted: the run replays until the effect, which checks the value's type.
#[derive(Debug)]
pub(crate) struct Posting {
    /// Replaying a saved journal to check the code (no effect is posted).
    pub(crate) check: bool,
    pub(crate) key: String,
    pub(crate) outcome: Outcome,
    pub(crate) result: Mutex<Option<Result<(), RunError>>>,
}

/// The state of one run while its process body executes.
pub(crate) struct RunState {
    pub(crate) run_id: String,
    pub(crate) log: Arc<dyn RunLog>,
    pub(crate) replay: Mutex<ReplayMap>,
    pub(crate) fatal: Mutex<Option<RunError>>,
    /// Set by the first fatal error: nothing more is written or started.
    pub(crate) failed: std::sync::atomic::AtomicBool,
    pub(crate) waker: futures::task::AtomicWaker,
    pub(crate) observer: Option<Observer>,
    /// Steps that can progress by themselves (running tasks, sleeps).
    pub(crate) active: AtomicUsize,
    /// Effects nothing in the program can resolve.
    pub(crate) waiting: Mutex<BTreeMap<String, Waiting>>,
    /// Set while validating a posted result: replay only, nothing runs or is written.
    pub(crate) posting: Option<Arc<Posting>>,
    /// Where task steps keep large outputs.
    pub(crate) artifacts: Option<std::path::PathBuf>,
    /// Sleeps with more left than this count as waiting, not as progressing.
    pub(crate) suspend_sleeps_over: Duration,
    /// Mocks, automatic decisions and the clock (the `testing` module's, or none).
    pub(crate) hooks: Arc<dyn Hooks>,
    /// The runner's task state (`#[state]` parameters), by type.
    pub(crate) states: crate::state::StateMap,
    /// The process's static graph: each step journals the node it came from.
    pub(crate) graph: &'static crate::graph::Graph,
    /// What drives the run (the runner's, for child processes: `ctx.child`), type-erased:
    /// the engine does not know runners.
    pub(crate) driver: Option<Arc<dyn Any + Send + Sync>>,
    /// Set while the runner polls the process body: a step future dropped then was dropped by
    /// the body itself (a `select` loser, a fail-fast sibling), not because the run stopped.
    pub(crate) polling: std::sync::atomic::AtomicBool,
    /// The store the run lives in (for its inbox).
    pub(crate) store: Arc<dyn crate::store::Store>,
    /// Answers from the run's inbox for the effects it waits for.
    pub(crate) inbox: Mutex<InboxDesk>,
}

/// Answers from the run's inbox ([`crate::store::InboxItem`]) on their way to the effects that
/// wait for them.
#[derive(Debug, Default)]
pub(crate) struct InboxDesk {
    /// Items not yet taken, by the key they answer, oldest first.
    items: std::collections::HashMap<String, std::collections::VecDeque<InboxItem>>,
    /// Ids already delivered (the store lists an item until it is answered).
    seen: std::collections::HashSet<String>,
    /// The effects waiting for an item, by key.
    wakers: std::collections::HashMap<String, std::task::Waker>,
}

/// Keeps an entry on the run's waiting list while it lives ([`RunState::wait_for`]).
#[must_use]
pub(crate) struct StillWaiting<'a> {
    run: &'a RunState,
    key: String,
}

impl Drop for StillWaiting<'_> {
    fn drop(&mut self) {
        self.run.waiting.lock().unwrap().remove(&self.key);
    }
}

/// Counts a step as able to progress while it lives.
pub(crate) struct Active<'a>(&'a RunState);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunState")
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl RunState {
    /// What the journal says about `key`. Each key is reached once per run, so the entry is
    /// taken out rather than cloned.
    /// The journal's entry for `key`, which the code takes now at position `seq` of its scope,
    /// taken out of the replay map after checking that it comes in the journal's order (see
    /// [`ReplayMap::take`]); a divergence stops the run.
    pub(crate) fn take_journaled(
        &self,
        key: &str,
        seq: u32,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> Option<Replayed> {
        if self.stopped() {
            return None;
        }
        let taken = self.replay.lock().unwrap().take(key, seq, task);
        taken.unwrap_or_else(|e| {
            self.fail(e);
            None
        })
    }

    /// What the journal says about `step`; [`Stopped`] when the run has stopped with a fatal
    /// error (a divergence found here or before), in which case the caller must neither write
    /// nor start anything.
    pub(crate) fn replayed(&self, step: &mut StepKey) -> Result<Option<Replayed>, Stopped> {
        if self.stopped() {
            return Err(Stopped);
        }
        Ok(step.journal.take())
    }

    /// Stops the run with a non-determinism error at `step`: the journal has `journal`, the
    /// code `code` (what it does and where).
    pub(crate) fn diverged(&self, step: &StepKey, journal: &Replayed, code: impl fmt::Display) {
        self.fail(RunError::NonDeterminism {
            key: step.key.clone(),
            detail: format!("the journal has {journal}; the code now {code}"),
        });
    }

    /// Whether a fatal error stopped the run.
    pub(crate) fn stopped(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Appends an event; a failure to write stops the run. Nothing is written while a posted
    /// result is being validated.
    pub(crate) fn append(&self, event: Event) {
        if self.posting.is_some() || self.stopped() {
            return;
        }
        if let Err(e) = self.log.append(event) {
            self.fail(RunError::Store(e));
        }
    }

    pub(crate) fn active(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        Active(self)
    }

    /// Lists `waiting` among what the run waits for, until the returned guard goes (the
    /// effect resolved, the long sleep ended, or its future was dropped: a `select` loser, a
    /// fail-fast sibling's failure).
    pub(crate) fn wait_for(&self, waiting: Waiting) -> StillWaiting<'_> {
        let key = waiting.key.clone();
        self.waiting.lock().unwrap().insert(key.clone(), waiting);
        StillWaiting { run: self, key }
    }

    /// Whether an effect waits for an answer (so the inbox is worth a look).
    pub(crate) fn waits_for_answers(&self) -> bool {
        !self.waiting.lock().unwrap().is_empty()
    }

    /// Hands items from the run's inbox to the effects they answer (each item once).
    pub(crate) fn deliver(&self, items: Vec<InboxItem>) {
        let mut desk = self.inbox.lock().unwrap();
        for item in items {
            if !desk.seen.insert(item.id.clone()) {
                continue;
            }
            let key = item.key.clone();
            desk.items.entry(key.clone()).or_default().push_back(item);
            if let Some(waker) = desk.wakers.remove(&key) {
                waker.wake();
            }
        }
    }

    /// The next inbox item for the effect `key`, when one arrives.
    pub(crate) fn poll_inbox(
        &self,
        key: &str,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<InboxItem> {
        let mut desk = self.inbox.lock().unwrap();
        if let Some(item) = desk.items.get_mut(key).and_then(|q| q.pop_front()) {
            return std::task::Poll::Ready(item);
        }
        desk.wakers.insert(key.to_string(), cx.waker().clone());
        std::task::Poll::Pending
    }

    /// The other items for `key`, once one of them answered it.
    pub(crate) fn take_inbox_rest(&self, key: &str) -> Vec<InboxItem> {
        let mut desk = self.inbox.lock().unwrap();
        desk.wakers.remove(key);
        desk.items.remove(key).map(Vec::from).unwrap_or_default()
    }

    /// Every delivered item no effect took (the run stops: they are answered as abandoned).
    pub(crate) fn take_inbox_left(&self) -> Vec<InboxItem> {
        let mut desk = self.inbox.lock().unwrap();
        desk.items.drain().flat_map(|(_, q)| q).collect()
    }

    /// Leaves the verdict on an inbox item for its poster (a failure to is only logged: the
    /// journal has what happened, and the poster looks there too).
    pub(crate) async fn answer_inbox(&self, item: &InboxItem, answer: InboxAnswer) {
        if let Err(e) = self
            .store
            .answer_inbox(&self.run_id, &item.id, answer)
            .await
        {
            tracing::warn!(run_id = %self.run_id, key = %item.key, error = %e,
                "cannot leave the verdict on an inbox item");
        }
    }

    pub(crate) fn log(&self) -> &Arc<dyn RunLog> {
        &self.log
    }

    /// Waits until everything appended is durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.log.flush().await
    }

    /// Stops the run with an error that user code must not see or handle.
    pub(crate) fn fail(&self, error: RunError) {
        self.failed.store(true, Ordering::SeqCst);
        let mut fatal = self.fatal.lock().unwrap();
        if fatal.is_none() {
            *fatal = Some(error);
            self.waker.wake();
        }
    }

    pub(crate) fn take_fatal(&self) -> Option<RunError> {
        self.fatal.lock().unwrap().take()
    }

    pub(crate) fn notify(&self, notice: Notice) {
        if let Some(observer) = &self.observer {
            observer(&self.run_id, &notice);
        }
    }
}

/// Returned instead of a journal entry once the run has stopped with a fatal error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped;

pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random number (fastrand's generator: fast, not for secrets).
pub(crate) fn random_u64() -> u64 {
    fastrand::u64(..)
}

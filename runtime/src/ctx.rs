//! The process handle and the step-key scopes.
//!
//! A step key is `scope/name#n`: `name` is the task (or `log`, `now`, `sleep`, ...), `n` counts
//! the earlier steps of that name in the same scope, and the scope is the chain of parallel
//! branches and map items that lead to the step. Within a scope code runs sequentially, so the
//! counters are independent of scheduling; a step's key depends only on earlier steps *of the
//! same name*, so adding a call to another task does not shift it.

use crate::journal::Event;
use crate::parallel::Map;
use crate::run::{Notice, Replayed, RunState, Waiting};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

tokio::task_local! {
    static CURRENT: Option<Arc<Scope>>;
}

/// A sequential region of a run: the root of the process body, a parallel branch or a map item.
pub(crate) struct Scope {
    pub(crate) run: Arc<RunState>,
    path: String,
    counters: Mutex<HashMap<String, u32>>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("path", &self.path).finish()
    }
}

impl Scope {
    pub(crate) fn root(run: Arc<RunState>) -> Arc<Scope> {
        Arc::new(Scope {
            run,
            path: String::new(),
            counters: Mutex::new(HashMap::new()),
        })
    }

    /// The key of the next step called `name` in this scope.
    pub(crate) fn next_key(&self, name: &str) -> String {
        let segment = self.next_segment(name);
        self.join(&segment)
    }

    /// `name#n`, counting the steps called `name` in this scope.
    fn next_segment(&self, name: &str) -> String {
        let mut counters = self.counters.lock().unwrap();
        let n = match counters.get_mut(name) {
            Some(slot) => {
                *slot += 1;
                *slot - 1
            }
            None => {
                counters.insert(name.to_string(), 1);
                0
            }
        };
        format!("{name}#{n}")
    }

    fn join(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_string()
        } else {
            format!("{}/{segment}", self.path)
        }
    }

    /// A nested scope for the next block called `name` (a parallel block or a map).
    pub(crate) fn enter(&self, name: &str) -> Arc<Scope> {
        let segment = self.next_segment(name);
        self.child(&segment)
    }

    /// A nested scope under `segment`.
    pub(crate) fn child(&self, segment: &str) -> Arc<Scope> {
        Arc::new(Scope {
            run: self.run.clone(),
            path: self.join(segment),
            counters: Mutex::new(HashMap::new()),
        })
    }
}

thread_local! {
    /// Set while a `parallel!` branch expression is evaluated (synchronously, no `.await`), so
    /// the task calls in it take their keys in the branch's scope.
    static EVALUATING: std::cell::RefCell<Option<Option<Arc<Scope>>>> =
        const { std::cell::RefCell::new(None) };
}

/// The scope of the code running now, if it runs inside a process.
pub(crate) fn current_scope() -> Option<Arc<Scope>> {
    if let Some(scope) = EVALUATING.with(|e| e.borrow().clone()) {
        return scope;
    }
    CURRENT.try_with(|s| s.clone()).ok().flatten()
}

/// While it lives, task calls made on this thread take their keys in `scope`.
#[must_use]
pub(crate) struct Evaluating {
    previous: Option<Option<Arc<Scope>>>,
}

impl Evaluating {
    pub(crate) fn enter(scope: Option<Arc<Scope>>) -> Self {
        let previous = EVALUATING.with(|e| e.borrow_mut().replace(scope));
        Evaluating { previous }
    }
}

impl Drop for Evaluating {
    fn drop(&mut self) {
        let previous = self.previous.take();
        EVALUATING.with(|e| *e.borrow_mut() = previous);
    }
}

impl fmt::Debug for Evaluating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Evaluating")
    }
}

/// Takes a long sleep off the run's waiting list when it ends or is dropped.
struct StopWaiting<'a> {
    run: &'a RunState,
    key: String,
}

impl Drop for StopWaiting<'_> {
    fn drop(&mut self) {
        self.run.stop_waiting(&self.key);
    }
}

/// Runs `f` with `scope` as the current scope.
pub(crate) fn with_scope<R>(scope: Option<Arc<Scope>>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(scope, f)
}

/// Polls `fut` with `scope` as the current scope.
pub(crate) fn in_scope<F: Future>(
    scope: Option<Arc<Scope>>,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<Option<Arc<Scope>>, F> {
    CURRENT.scope(scope, fut)
}

/// The handle a `#[process]` receives: logs, deterministic time and randomness, durable
/// sleep, and maps over collections. Task calls need no handle: they find the run themselves.
pub struct Ctx {
    root: Arc<Scope>,
}

impl fmt::Debug for Ctx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("run_id", &self.run_id())
            .finish()
    }
}

impl Ctx {
    pub(crate) fn new(root: Arc<Scope>) -> Self {
        Ctx { root }
    }

    /// The scope of the caller: a parallel branch or map item when called inside one.
    pub(crate) fn scope(&self) -> Arc<Scope> {
        match current_scope() {
            Some(s) if Arc::ptr_eq(&s.run, &self.root.run) => s,
            _ => self.root.clone(),
        }
    }

    /// The id of the run.
    pub fn run_id(&self) -> &str {
        &self.root.run.run_id
    }

    /// Journals a log line. On replay the line is not logged again.
    pub fn log(&self, message: impl Into<String>) {
        let scope = self.scope();
        let key = scope.next_key("log");
        let run = &scope.run;
        if matches!(run.take_replayed(&key), Some(Replayed::Logged)) {
            return;
        }
        let message = message.into();
        tracing::info!(run = %run.run_id, "{message}");
        run.notify(Notice::Log {
            key: key.clone(),
            message: message.clone(),
        });
        run.append(Event::Log { key, message });
    }

    /// Records a value the first time and returns the recorded one on replay.
    fn recorded<T>(&self, name: &str, make: impl FnOnce() -> T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        self.recorded_at(name, make).1
    }

    /// [`Ctx::recorded`], with the step key the value was recorded under.
    fn recorded_at<T>(&self, name: &str, make: impl FnOnce() -> T) -> (String, T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let scope = self.scope();
        let key = scope.next_key(name);
        let run = &scope.run;
        if let Some(Replayed::Recorded(v)) = run.take_replayed(&key) {
            if let Ok(t) = serde_json::from_value(v) {
                return (key, t);
            }
        }
        let t = make();
        let value = serde_json::to_value(&t).expect("recorded values are plain numbers");
        run.append(Event::Recorded {
            key: key.clone(),
            value,
        });
        (key, t)
    }

    /// The current time, recorded: a replay sees the same instant.
    pub fn now(&self) -> SystemTime {
        let millis: u64 = self.recorded("now", || unix_millis(self.root.run.hooks.now()));
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// A random number, recorded: a replay sees the same number.
    pub fn random(&self) -> u64 {
        self.recorded("random", random_u64)
    }

    /// A new unique id (16 hex digits), recorded: a replay sees the same id.
    pub fn new_id(&self) -> String {
        format!("{:016x}", self.recorded("id", random_u64))
    }

    /// Waits `duration`, durably: the deadline is journaled, so a resumed run waits only for
    /// what is left of it.
    ///
    /// A long sleep (over a minute unless
    /// [`Runner::suspend_sleeps_longer_than`](crate::Runner::suspend_sleeps_longer_than) says
    /// otherwise) counts as waiting: when nothing else in the run can progress, the run is saved
    /// as waiting for it and the program need not stay up; resuming after the due time
    /// continues.
    pub async fn sleep(&self, duration: Duration) {
        let (key, deadline) = self.recorded_at("sleep", || {
            unix_millis(self.root.run.hooks.now()).saturating_add(duration.as_millis() as u64)
        });
        self.wait_until(key, deadline).await;
    }

    async fn wait_until(&self, key: String, deadline: u64) {
        let run = &self.root.run;
        let now = unix_millis(run.hooks.now());
        if run.posting.is_some() && deadline > now {
            return std::future::pending().await;
        }
        if deadline <= now {
            return;
        }
        {
            // The deadline is on disk before the wait starts: a run resumed after a crash
            // waits only for what is left, not for the whole sleep again.
            let _active = run.active();
            if let Err(e) = run.flush().await {
                run.fail(crate::error::RunError::Store(e));
                return std::future::pending().await;
            }
        }
        let now = unix_millis(run.hooks.now());
        if deadline <= now {
            return;
        }
        let left = Duration::from_millis(deadline - now);
        if left > run.suspend_sleeps_over && !run.hooks.virtual_time() {
            // Waiting, not progressing: if nothing else can progress, the run is suspended
            // (the driver drops this future); if something can, the sleep ends here.
            run.wait_for(Waiting {
                key: key.clone(),
                kind: "sleep".to_string(),
                name: "sleep".to_string(),
                input: serde_json::json!({ "until_ms": deadline }),
                due_ms: Some(deadline),
            });
            let _waiting = StopWaiting { run, key };
            tokio::time::sleep(left).await;
            return;
        }
        let _active = run.active();
        tokio::time::sleep(left).await;
    }

    /// A deadline `after` from now, journaled (milliseconds since the epoch).
    pub(crate) fn deadline_after(&self, after: Duration) -> u64 {
        self.recorded("deadline", || {
            unix_millis(self.root.run.hooks.now()) + after.as_millis() as u64
        })
    }

    /// Waits until `when`, durably (a long wait suspends the run like [`Ctx::sleep`]).
    pub async fn sleep_until(&self, when: SystemTime) {
        let (key, deadline) = self.recorded_at("sleep", || unix_millis(when));
        self.wait_until(key, deadline).await;
    }

    /// Runs `f` on every item, at most [`Map::limit`] at once (32 unless set), and returns the
    /// results in input order. Each item is its own scope, so its steps have stable keys.
    ///
    /// Await it for fail-fast (the first error cancels the rest) or call [`Map::settle`] for
    /// one `Result` per item. `label` names the map in keys, progress and the graph.
    pub fn map<I, F, Fut, R, E>(&self, label: &'static str, items: I, f: F) -> Map<'_, I::Item, F>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<R, E>>,
    {
        Map::new(self, label, items.into_iter().collect(), f)
    }

    pub(crate) fn run(&self) -> &Arc<RunState> {
        &self.root.run
    }
}

pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random number from the standard library's randomly seeded hasher.
pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

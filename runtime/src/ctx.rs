//! The process handle and the step-key scopes.
//!
//! A step key is `scope/name#n`: `name` is the task (or `log`, `now`, `sleep`, ...), `n` counts
//! the earlier steps of that name in the same scope, and the scope is the chain of parallel
//! branches and map items that lead to the step. Within a scope code runs sequentially, so the
//! counters are independent of scheduling; a step's key depends only on earlier steps *of the
//! same name*, so adding a call to another task does not shift it.

use crate::engine::{random_u64, unix_millis, Notice, RunState, StepKey, Stopped};
use crate::error::Waiting;
use crate::graph::Caller;
use crate::journal::Event;
use crate::replay::HashMap;
use crate::replay::Replayed;
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
    counters: Mutex<Counters>,
}

/// How many steps of each name a scope has taken, and of all names (the next step's position).
#[derive(Default)]
struct Counters {
    by_name: HashMap<String, u32>,
    seq: u32,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("path", &self.path).finish()
    }
}

/// A name as it appears in a key segment: `/` (which separates scopes), `#` (which separates
/// the counter), `%` (the escape) and control characters are written `%XX`, so two different
/// names never give the same segment and a key never has more segments than its scopes.
pub(crate) fn escape_name(name: &str) -> std::borrow::Cow<'_, str> {
    let special = |c: char| matches!(c, '/' | '#' | '%') || c.is_control();
    if !name.contains(special) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if special(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

impl Scope {
    pub(crate) fn root(run: Arc<RunState>) -> Arc<Scope> {
        Arc::new(Scope {
            run,
            path: String::new(),
            counters: Mutex::new(Counters::default()),
        })
    }

    /// Whether this is the process's top-level sequence (no parallel branch, map item or
    /// select around it).
    pub(crate) fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The key of the next step called `name` in this scope (`name` is escaped).
    pub(crate) fn next_key(&self, name: &str) -> StepKey {
        self.next_key_checked(name, None)
    }

    /// [`Scope::next_key`] for a task step: `task` is the task's bare name and a description
    /// of the call, for a divergence message.
    pub(crate) fn next_key_checked(
        &self,
        name: &str,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> StepKey {
        let (segment, seq) = self.next_segment(name);
        let key = self.join(&segment);
        let journal = self.run.take_journaled(&key, seq, task);
        StepKey { key, seq, journal }
    }

    /// `name#n`, counting the steps called `name` in this scope, and the segment's position.
    fn next_segment(&self, name: &str) -> (String, u32) {
        let name = escape_name(name);
        let mut counters = self.counters.lock().unwrap();
        let seq = counters.seq;
        counters.seq += 1;
        let n = match counters.by_name.get_mut(name.as_ref()) {
            Some(slot) => {
                *slot += 1;
                *slot - 1
            }
            None => {
                counters.by_name.insert(name.to_string(), 1);
                0
            }
        };
        (format!("{name}#{n}"), seq)
    }

    fn join(&self, segment: &str) -> String {
        if self.path.is_empty() {
            segment.to_string()
        } else {
            format!("{}/{segment}", self.path)
        }
    }

    /// A nested scope for the next block called `name` (a parallel block, a map, a select).
    pub(crate) fn enter(&self, name: &str) -> Arc<Scope> {
        let (segment, _) = self.next_segment(name);
        self.child(&segment)
    }

    /// A nested scope under `segment` (already a valid segment: `b0`, `17`).
    pub(crate) fn child(&self, segment: &str) -> Arc<Scope> {
        Arc::new(Scope {
            run: self.run.clone(),
            path: self.join(segment),
            counters: Mutex::new(Counters::default()),
        })
    }
}

thread_local! {
    /// Set while a `parallel!` branch expression is evaluated, so the task calls in it take
    /// their keys in the branch's scope. The expression cannot `.await` (the macro rejects
    /// it), so the guard never outlives the poll that set it.
    static EVALUATING: std::cell::RefCell<Option<Option<Arc<Scope>>>> =
        const { std::cell::RefCell::new(None) };
}

/// The scope of the code running now, if it runs inside a process.
///
/// A branch scope set by [`Evaluating`] counts only for the run whose body is being polled on
/// this task: a call made by another run (or outside any run) never takes a key in it.
pub(crate) fn current_scope() -> Option<Arc<Scope>> {
    let polled = CURRENT.try_with(|s| s.clone()).ok().flatten();
    if let Some(Some(branch)) = EVALUATING.with(|e| e.borrow().clone()) {
        if polled
            .as_ref()
            .is_some_and(|driving| Arc::ptr_eq(&branch.run, &driving.run))
        {
            return Some(branch);
        }
    }
    polled
}

/// While it lives, task calls made on this thread by the run that set it take their keys in
/// `scope`.
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

    /// Journals a log line. On replay the line is not logged again; a replay that reaches
    /// another message at this step is a non-determinism error.
    #[track_caller]
    pub fn log(&self, message: impl Into<String>) {
        let (location, node) = self.site();
        let scope = self.scope();
        let mut step = scope.next_key("log");
        let run = &scope.run;
        let message = message.into();
        match run.replayed(&mut step) {
            Err(Stopped) => return,
            Ok(Some(Replayed::Logged {
                message: journaled,
                location: was,
            })) => {
                if journaled != message {
                    let journal = Replayed::Logged {
                        message: journaled,
                        location: was,
                    };
                    run.diverged(&step, &journal, format!("logs {message:?} at {location}"));
                }
                return;
            }
            Ok(Some(other)) => {
                run.diverged(&step, &other, format!("logs {message:?} at {location}"));
                return;
            }
            Ok(None) => {}
        }
        tracing::info!(run = %run.run_id, "{message}");
        run.notify(Notice::Log {
            key: step.key.clone(),
            message: message.clone(),
        });
        run.append(Event::Log {
            key: step.key,
            message,
            seq: Some(step.seq),
            location: Some(location),
            node,
        });
    }

    /// Records a value the first time and returns the recorded one on replay.
    #[track_caller]
    fn recorded<T>(&self, name: &str, make: impl FnOnce() -> T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let (location, node) = self.site();
        self.recorded_at(name, location, node, make).1
    }

    /// [`Ctx::recorded`], with the step key the value was recorded under. A journaled value
    /// that no longer fits `T`, or another kind of step at its key, stops the run with a
    /// non-determinism error (the value made now is returned, but nothing more is written
    /// and nothing more runs). `node` is the graph node of the call (see [`Ctx::site`]).
    pub(crate) fn recorded_at<T>(
        &self,
        name: &str,
        location: String,
        node: Option<u32>,
        make: impl FnOnce() -> T,
    ) -> (String, T)
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let scope = self.scope();
        let mut step = scope.next_key(name);
        let run = &scope.run;
        let what = || format!("records a `{}` at {location}", std::any::type_name::<T>());
        match run.replayed(&mut step) {
            Err(Stopped) => return (step.key, make()),
            Ok(Some(Replayed::Recorded {
                value,
                location: was,
            })) => match serde_json::from_value::<T>(value.clone()) {
                Ok(t) => return (step.key, t),
                Err(e) => {
                    let journal = Replayed::Recorded {
                        value,
                        location: was,
                    };
                    run.diverged(
                        &step,
                        &journal,
                        format!("{} (it does not fit: {e})", what()),
                    );
                    return (step.key, make());
                }
            },
            Ok(Some(other)) => {
                run.diverged(&step, &other, what());
                return (step.key, make());
            }
            Ok(None) => {}
        }
        let t = make();
        let value = serde_json::to_value(&t).expect("recorded values are plain data");
        run.append(Event::Recorded {
            key: step.key.clone(),
            value,
            seq: Some(step.seq),
            location: Some(location),
            node,
        });
        (step.key, t)
    }

    /// The current time, recorded: a replay sees the same instant.
    #[track_caller]
    pub fn now(&self) -> SystemTime {
        let millis: u64 = self.recorded("now", || unix_millis(self.root.run.hooks.now()));
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// A random number, recorded: a replay sees the same number (fast, not for secrets).
    #[track_caller]
    pub fn random(&self) -> u64 {
        self.recorded("random", random_u64)
    }

    /// A new unique id (16 hex digits), recorded: a replay sees the same id.
    #[track_caller]
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
    ///
    /// ```
    /// use minder::inspect::WaitKind;
    /// use minder::prelude::*;
    /// use minder::RunError;
    /// use std::time::Duration;
    ///
    /// #[task]
    /// async fn send(text: String) -> Result<(), TaskError> {
    ///     println!("{text}");
    ///     Ok(())
    /// }
    ///
    /// #[process]
    /// async fn remind(ctx: &Ctx, text: String) -> Result<(), ProcessError> {
    ///     ctx.sleep(Duration::from_secs(24 * 3600)).await;
    ///     Ok(send(text).await?)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // A day is over the minute after which a sleep suspends the run: it is saved as waiting
    /// // with its due time, and a resume after that time sends the reminder.
    /// let runner = Runner::in_memory();
    /// let Err(RunError::Suspended { waiting, .. }) = runner.run::<remind>("stand up".into()).await
    /// else {
    ///     panic!("the run did not wait")
    /// };
    /// assert_eq!(waiting[0].kind, WaitKind::Sleep);
    /// assert!(waiting[0].due_ms.is_some());
    /// # }
    /// ```
    #[track_caller]
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send + '_ {
        let (location, node) = self.site();
        async move {
            let (key, deadline) = self.recorded_at("sleep", location, node, || {
                unix_millis(self.root.run.hooks.now()).saturating_add(duration.as_millis() as u64)
            });
            self.wait_until(key, deadline).await;
        }
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
            let _waiting = run.wait_for(Waiting {
                key,
                kind: crate::inspect::WaitKind::Sleep,
                name: "sleep".to_string(),
                input: serde_json::json!({ "until_ms": deadline }),
                due_ms: Some(deadline),
            });
            tokio::time::sleep(left).await;
            return;
        }
        let _active = run.active();
        tokio::time::sleep(left).await;
    }

    /// A deadline `after` from now, journaled (milliseconds since the epoch). On no graph
    /// node: the breakpoint it is the timeout of is there.
    pub(crate) fn deadline_after(&self, after: Duration, location: String) -> u64 {
        self.recorded_at("deadline", location, None, || {
            unix_millis(self.root.run.hooks.now()) + after.as_millis() as u64
        })
        .1
    }

    /// Waits until `when`, durably (a long wait suspends the run like [`Ctx::sleep`]).
    #[track_caller]
    pub fn sleep_until(&self, when: SystemTime) -> impl Future<Output = ()> + Send + '_ {
        let (location, node) = self.site();
        async move {
            let (key, deadline) = self.recorded_at("sleep", location, node, || unix_millis(when));
            self.wait_until(key, deadline).await;
        }
    }
}

impl Ctx {
    /// Where the caller of a `#[track_caller]` operation is (`file:line:column`), and the
    /// node of the process graph it is (the `ctx` operation the body makes there).
    #[track_caller]
    pub(crate) fn site(&self) -> (String, Option<u32>) {
        let at = std::panic::Location::caller();
        let node = self.root.run.graph.node_of(at, Caller::Ctx);
        (format!("{}:{}:{}", at.file(), at.line(), at.column()), node)
    }
}

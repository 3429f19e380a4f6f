//! What a `#[task]` becomes: its definition, the call, and running it as a journaled step.

use crate::ctx::{current_scope, Scope};
use crate::engine::StepKey;
use crate::engine::Stopped;
use crate::error::{DecodeProblem, RunError, TaskError, TaskErrorKind};
use crate::graph::CallSite;
use crate::journal::{Event, Outcome};
use crate::replay::Replayed;
use crate::state::{MissingState, StateMap};
use crate::Journaled;
use futures::future::BoxFuture;
use io::{Body, NotStarted, StepIo, Typed};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

mod io;

/// What a running task body can ask about its step.
#[derive(Debug, Clone)]
struct StepInfo {
    key: String,
    artifacts: Option<PathBuf>,
    /// The step key, and the run, for a body that journals on the step's behalf (a command
    /// task journals its process group).
    step: String,
    /// Weak: an aborted body that has not been dropped yet must not keep the run (and its
    /// journal lock) alive after the step was.
    run: std::sync::Weak<crate::engine::RunState>,
}

tokio::task_local! {
    static STEP: StepInfo;
}

/// The idempotency key of the task step running now: `<run-id>/<step-key>`. The same on every
/// attempt and after a crash, so a task can hand it to an external system to make a retried
/// effect happen once. `None` outside a journaled step.
pub fn idempotency_key() -> Option<String> {
    STEP.try_with(|s| s.key.clone()).ok()
}

/// The directory where the task step running now may keep large outputs: the run's
/// `artifacts/` directory when the runner has one (the command line sets it). `None` otherwise.
pub fn artifact_dir() -> Option<PathBuf> {
    STEP.try_with(|s| s.artifacts.clone()).ok().flatten()
}

/// The journaled step running now, for a task body that journals on its behalf.
pub(crate) struct CurrentStep {
    /// The step key.
    pub(crate) key: String,
    /// Its run: [`RunState::append`](crate::engine::RunState::append) and
    /// [`RunState::flush`](crate::engine::RunState::flush) journal for the step.
    pub(crate) run: Arc<crate::engine::RunState>,
}

/// The journaled step running now; `None` outside one (or once its run is gone).
pub(crate) fn current_step() -> Option<CurrentStep> {
    STEP.try_with(|s| {
        Some(CurrentStep {
            key: s.step.clone(),
            run: s.run.upgrade()?,
        })
    })
    .ok()
    .flatten()
}

/// Which resources a task declares it reads and writes (`#[task(reads = [..], writes = [..])]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessDef {
    /// Resources read.
    pub reads: &'static [&'static str],
    /// Resources written.
    pub writes: &'static [&'static str],
}

impl AccessDef {
    /// No declared access.
    pub const NONE: AccessDef = AccessDef {
        reads: &[],
        writes: &[],
    };
}

/// The static description of a task: what `#[task]` hands to [`TaskCall::new`] on every call.
#[derive(Debug, Clone, Copy)]
pub struct TaskDef {
    /// The task's name (the function name unless `name = ".."` is given).
    pub name: &'static str,
    /// The module that defines it.
    pub module: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// The delay before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// The longest one attempt may take.
    pub timeout: Option<Duration>,
}

impl TaskDef {
    /// A description as `#[task]` writes it: durations in milliseconds, `timeout_ms` 0 for
    /// none.
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        name: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
        retries: u32,
        backoff_ms: u64,
        timeout_ms: u64,
    ) -> TaskDef {
        TaskDef {
            name,
            module,
            file,
            line,
            retries,
            backoff: Duration::from_millis(backoff_ms),
            timeout: if timeout_ms == 0 {
                None
            } else {
                Some(Duration::from_millis(timeout_ms))
            },
        }
    }

    fn path(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }

    /// The name a step of this task has in its key: the path inside its crate
    /// (`deploy::build#0`; a task at the crate root is just `build#0`). Same-named tasks of two
    /// modules never share a counter; two crates with a task at the same path would (their
    /// keys stay distinct, and replay tells the tasks apart by their full path).
    fn key_name(&self) -> std::borrow::Cow<'static, str> {
        match self.module.split_once("::") {
            Some((_, inner)) => std::borrow::Cow::Owned(format!("{inner}::{}", self.name)),
            None => std::borrow::Cow::Borrowed(self.name),
        }
    }

    fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// What a task returns: `Result<T, E>` with journaled `T` and `E`, and `E: From<TaskError>` so a
/// timeout or a panic can be reported in the task's own error type.
#[diagnostic::on_unimplemented(
    message = "a `#[task]` must return `Result<T, E>` with serde types, found `{Self}`",
    label = "not a journaled `Result`",
    note = "`T` and `E` need `Serialize + Deserialize`, and `E: From<minder::TaskError>` (use `TaskError` if in doubt)"
)]
pub trait TaskReturn: Send + Sized + 'static {
    /// The success type.
    type Ok: Journaled;
    /// The error type.
    type Err: Journaled + From<TaskError>;
    /// Splits into a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// The `Result`, borrowed.
    fn as_result(&self) -> Result<&Self::Ok, &Self::Err>;
    /// Builds from a `Result`.
    fn from_result(r: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T: Journaled, E: Journaled + From<TaskError>> TaskReturn for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Self {
        self
    }
    fn as_result(&self) -> Result<&T, &E> {
        self.as_ref()
    }
    fn from_result(r: Self) -> Self {
        r
    }
}

/// Implemented by the hidden type `#[task]` generates for each task.
pub trait TaskMeta: Send + 'static {
    /// The arguments as a tuple.
    type Args: Journaled;
    /// The declared return type.
    type Return: TaskReturn;
    /// The resources the task declares it reads and writes; none unless `#[task]` was given
    /// `reads`/`writes`. `parallel!` checks its branches' declarations against each other at
    /// compile time.
    const ACCESS: &'static AccessDef = &AccessDef::NONE;
}

/// A task's body: the user's function, taking its arguments as a tuple and its run's task
/// state (its `#[state]` parameters, looked up before it starts). Called once per attempt.
pub(crate) type TaskBody<M> =
    fn(
        <M as TaskMeta>::Args,
        &StateMap,
    ) -> Result<BoxFuture<'static, <M as TaskMeta>::Return>, MissingState>;

/// A call of a task: a future that runs it (inside a process: as a journaled step with
/// retries and timeout; outside: just the body).
///
/// Everything that runs a step is compiled once, in this crate: the step is driven through
/// `StepIo`, the one part that knows the task's types, instantiated per argument and return
/// type (not per task). What a task adds to its crate's build is its body and a few lines of
/// glue, as a hand-written `async fn` would.
#[must_use = "a task does nothing unless it is awaited: add `.await`, or pass it to `parallel!`"]
pub struct TaskCall<M: TaskMeta> {
    fut: Running<M::Return>,
    name: &'static str,
    _meta: PhantomData<fn() -> M>,
}

/// A task call's future: the body alone (outside a process), or the journaled step, whose
/// output is the task's return value boxed.
enum Running<R> {
    Body(BoxFuture<'static, R>),
    Step(BoxFuture<'static, Output>),
}

/// An attempt's or a step's output, the task's return value, boxed: what the step engine
/// handles without knowing its type.
type Output = Box<dyn std::any::Any + Send>;

impl<M: TaskMeta> fmt::Debug for TaskCall<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCall")
            .field("task", &self.name)
            .finish()
    }
}

impl<M: TaskMeta> TaskCall<M> {
    /// Calls the task described by `def` with its arguments. Inside a process the step key is
    /// taken now, in program order, so it does not depend on when the future is first polled.
    #[track_caller] // `#[task]`'s call is too: the call site places the step on the graph.
    pub fn new(args: M::Args, def: TaskDef, body: TaskBody<M>) -> Self {
        TaskCall {
            fut: call(args, def, body, CallSite::task(std::any::type_name::<M>())),
            name: def.name,
            _meta: PhantomData,
        }
    }
}

/// [`TaskCall::new`], per argument and return type.
fn call<A: Journaled, R: TaskReturn>(
    args: A,
    def: TaskDef,
    body: Body<A, R>,
    at: CallSite,
) -> Running<R> {
    match current_scope() {
        // Outside a process (a test, or another task's body): the state of the step running
        // now, if any.
        None => {
            let states = STEP
                .try_with(|s| s.run.upgrade().map(|run| run.states.clone()))
                .ok()
                .flatten()
                .unwrap_or_default();
            Running::Body(body(args, &states).unwrap_or_else(|missing| {
                let message = format!(
                    "task `{}` takes state of type `{}`, and there is none here: state comes \
                     from the runner of the run that calls the task",
                    def.path(),
                    missing.type_name
                );
                Box::pin(std::future::ready(R::from_result(Err(TaskError::new(
                    message,
                )
                .into()))))
            }))
        }
        Some(scope) => Running::Step(start_step(
            scope,
            def,
            Box::new(Typed {
                args: Some(args),
                body,
            }),
            at,
        )),
    }
}

/// Takes the step's key in `scope` and returns the step's future.
fn start_step(
    scope: Arc<Scope>,
    def: TaskDef,
    io: Box<dyn StepIo>,
    at: CallSite,
) -> BoxFuture<'static, Output> {
    // Counted per task path: same-named tasks of two modules never share a counter, and the
    // path in the key keeps their keys apart.
    let code = || format!("`{}` ({})", def.path(), def.location());
    let step = scope.next_key_checked(&def.key_name(), Some((def.name, &code)));
    // A child of the run's span (the process body polls the step inside it).
    let span = tracing::info_span!(
        "step",
        key = %step.key,
        task = %def.path(),
        attempt = tracing::field::Empty,
        replayed = tracing::field::Empty,
    );
    Box::pin(tracing::Instrument::instrument(
        run_step(scope, step, def, io, at),
        span,
    ))
}

impl<M: TaskMeta> Future for TaskCall<M> {
    type Output = M::Return;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<M::Return> {
        poll_running(&mut self.fut, cx)
    }
}

fn poll_running<R: 'static>(fut: &mut Running<R>, cx: &mut Context<'_>) -> Poll<R> {
    match fut {
        Running::Body(body) => body.as_mut().poll(cx),
        Running::Step(step) => step.as_mut().poll(cx).map(|out| {
            *out.downcast::<R>()
                .expect("a step's output is its task's return type")
        }),
    }
}

/// Whether a journaled step is the same task called with the same arguments; if not, what
/// differs (both tasks with their source locations, or both argument lists).
fn same_step(
    def: &TaskDef,
    task: &str,
    location: &str,
    recorded: &serde_json::Value,
    args: &serde_json::Value,
) -> Result<(), String> {
    let same_task = task
        .strip_prefix(def.module)
        .and_then(|rest| rest.strip_prefix("::"))
        == Some(def.name);
    if !same_task {
        return Err(format!(
            "the journal has task `{task}` ({location}) here; the code now calls `{}` ({})",
            def.path(),
            def.location()
        ));
    }
    if recorded != args {
        return Err(format!(
            "the journal has task `{task}` ({location}) with arguments {recorded}; the code \
             now calls it with {args}"
        ));
    }
    Ok(())
}

/// Reports a fatal error to the run and never resolves: the runner drops the process body.
async fn fatal<T>(scope: &Scope, error: RunError) -> T {
    scope.run.fail(error);
    stopped().await
}

/// Never resolves: the run has stopped and the runner drops the process body.
async fn stopped<T>() -> T {
    std::future::pending().await
}

async fn run_step(
    scope: Arc<Scope>,
    mut step: StepKey,
    def: TaskDef,
    mut io: Box<dyn StepIo>,
    at: CallSite,
) -> Output {
    let def = &def;
    let key = step.key.clone();
    let args_value = match io.args() {
        Ok(v) => v,
        Err(e) => {
            let error = RunError::Decode {
                problem: DecodeProblem::TaskArguments { key },
                message: e.to_string(),
            };
            return fatal(&scope, error).await;
        }
    };
    let run = scope.run.clone();
    // Attempts that failed before a crash count: the retry budget is the journal's.
    let mut attempt = 0u32;
    match run.replayed(&mut step) {
        Err(Stopped) => return stopped().await,
        Ok(Some(Replayed::Completed {
            task,
            location,
            args: recorded,
            outcome,
        })) => {
            if let Err(detail) = same_step(def, &task, &location, &recorded, &args_value) {
                return fatal(&scope, RunError::NonDeterminism { key, detail }).await;
            }
            let span = tracing::Span::current();
            span.record("replayed", true);
            match &outcome {
                Outcome::Ok(_) => tracing::debug!("step replayed"),
                Outcome::Err(error) => tracing::debug!(%error, "step replayed (it had failed)"),
            }
            return match io.decode(&outcome) {
                Ok(r) => r,
                Err(e) => {
                    let detail = format!(
                        "the journal has the result {} of task `{task}` ({location}); it does \
                         not fit the types of `{}` ({}) now: {e}",
                        match &outcome {
                            Outcome::Ok(v) | Outcome::Err(v) => v,
                        },
                        def.path(),
                        def.location()
                    );
                    fatal(&scope, RunError::NonDeterminism { key, detail }).await
                }
            };
        }
        Ok(Some(Replayed::Started {
            task,
            location,
            args: recorded,
            failed_attempts,
        })) => {
            if let Err(detail) = same_step(def, &task, &location, &recorded, &args_value) {
                return fatal(&scope, RunError::NonDeterminism { key, detail }).await;
            }
            // Started but never completed: it was in flight at a crash, so it runs again.
            attempt = failed_attempts;
            tracing::debug!(
                failed_attempts,
                "step interrupted before it completed: runs again"
            );
        }
        Ok(Some(other)) => {
            run.diverged(
                &step,
                &other,
                format!("calls task `{}` ({})", def.path(), def.location()),
            );
            return stopped().await;
        }
        Ok(None) => {}
    }
    if run.posting.is_some() {
        // Validating a posted result: replay only, nothing new runs.
        return std::future::pending().await;
    }
    let _active = run.active();
    let span = tracing::Span::current();
    span.record("replayed", false);
    run.append(Event::StepStarted {
        key: key.clone(),
        task: def.path(),
        location: def.location(),
        args: args_value.clone(),
        seq: Some(step.seq),
        node: run.graph.node_of_task(at),
    });
    let idempotency = format!("{}/{key}", run.run_id);
    let mut cancelled = CancelGuard {
        run: &run,
        key: Some(key.clone()),
    };
    let mut mocked = run.hooks.mock(def.name, &args_value);
    let result = loop {
        if run.stopped() {
            return stopped().await;
        }
        span.record("attempt", attempt);
        tracing::debug!(attempt, "step started");
        // A mock's answer ends the loop either way.
        match mocked.take() {
            Some(Err(error)) => return fatal(&scope, error).await,
            Some(Ok(outcome)) => match io.decode(&outcome) {
                Ok(r) => break r,
                Err(e) => {
                    let error = RunError::Decode {
                        problem: DecodeProblem::MockOutput {
                            task: def.name.to_string(),
                        },
                        message: e.to_string(),
                    };
                    return fatal(&scope, error).await;
                }
            },
            None => {}
        }
        let body = match io.start(&args_value, &run.states) {
            Ok(body) => body,
            Err(NotStarted::Args(e)) => {
                let error = RunError::Decode {
                    problem: DecodeProblem::RecordedArguments { key },
                    message: e.to_string(),
                };
                return fatal(&scope, error).await;
            }
            Err(NotStarted::State(missing)) => {
                let error = RunError::MissingState {
                    task: def.path(),
                    type_name: missing.type_name.to_string(),
                };
                return fatal(&scope, error).await;
            }
        };
        let info = StepInfo {
            key: idempotency.clone(),
            artifacts: run.artifacts.clone(),
            step: key.clone(),
            run: Arc::downgrade(&run),
        };
        let result = match attempt_once(def, body, info, scope.is_root()).await {
            Ok(out) => out,
            Err(e) => io.error(e),
        };
        if attempt < def.retries && io.failed(&result) {
            let delay = def.backoff.saturating_mul(1 << attempt.min(16));
            let error = match io.outcome(&result) {
                Ok(Outcome::Err(v)) => v,
                _ => serde_json::Value::Null,
            };
            tracing::warn!(attempt, %error, retry_in = ?delay, "step attempt failed, retrying");
            run.append(Event::AttemptFailed {
                key: key.clone(),
                attempt,
                error,
            });
            tokio::time::sleep(delay).await;
            attempt += 1;
        } else {
            break result;
        }
    };
    cancelled.key = None;
    match io.outcome(&result) {
        Ok(outcome) => {
            match &outcome {
                Outcome::Ok(_) => tracing::debug!(attempt, "step completed"),
                Outcome::Err(error) => tracing::warn!(attempt, %error, "step failed"),
            }
            run.append(Event::StepCompleted {
                key: key.clone(),
                outcome,
            })
        }
        Err(e) => {
            let error = RunError::Decode {
                problem: DecodeProblem::TaskResult { key },
                message: e.to_string(),
            };
            return fatal(&scope, error).await;
        }
    }
    if let Err(e) = run.flush().await {
        return fatal(&scope, RunError::Store(e)).await;
    }
    result
}

/// Journals a step as cancelled when its future is dropped before it completed.
struct CancelGuard<'a> {
    run: &'a crate::engine::RunState,
    key: Option<String>,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            tracing::debug!("step cancelled");
            self.run.append(Event::StepCancelled { key });
        }
    }
}

/// Aborts a spawned task body when the step is dropped (a fail-fast sibling failed).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One attempt: the body's output, or minder's error (a timeout, a panic). `inline` polls the
/// body in the run's own task (a step of the process's top-level sequence: nothing runs beside
/// it, and a spawn would only hand it to another thread and back); otherwise it is spawned, so
/// the branches of a `parallel!` or a map use every thread.
async fn attempt_once(
    def: &TaskDef,
    body: BoxFuture<'static, Output>,
    info: StepInfo,
    inline: bool,
) -> Result<Output, TaskError> {
    // The body's own events and spans sit under the step's span.
    let body = tracing::Instrument::in_current_span(STEP.scope(info, body));
    if inline {
        let body = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body));
        let finished = match def.timeout {
            None => body.await,
            // On time-out the body is dropped here: it has stopped before a retry starts. A
            // body that blocked its thread past the limit finishes late, and timed out all
            // the same (as a spawned one would).
            Some(limit) => {
                let started = tokio::time::Instant::now();
                match tokio::time::timeout(limit, body).await {
                    Ok(_) if started.elapsed() >= limit => return Err(timed_out(def, limit)),
                    Ok(finished) => finished,
                    Err(_) => return Err(timed_out(def, limit)),
                }
            }
        };
        return finished.map_err(|payload| panicked(def, payload));
    }
    let mut handle = AbortOnDrop(tokio::spawn(body));
    let joined = match def.timeout {
        None => (&mut handle.0).await,
        Some(limit) => match tokio::time::timeout(limit, &mut handle.0).await {
            Ok(joined) => joined,
            Err(_) => {
                // Cancelled, and waited for: the retry never runs beside this attempt. A body
                // that blocks its thread without reaching an `.await` cannot be interrupted;
                // the retry then starts when it returns.
                handle.0.abort();
                let _ = (&mut handle.0).await;
                return Err(timed_out(def, limit));
            }
        },
    };
    match joined {
        Ok(r) => Ok(r),
        Err(e) => match e.try_into_panic() {
            Ok(payload) => Err(panicked(def, payload)),
            Err(e) => {
                let message = format!("task `{}` panicked: {e}", def.name);
                Err(TaskError::with_kind(TaskErrorKind::Panicked, message))
            }
        },
    }
}

fn timed_out(def: &TaskDef, limit: std::time::Duration) -> TaskError {
    let message = format!("task `{}` timed out after {limit:?}", def.name);
    TaskError::with_kind(TaskErrorKind::Timeout, message)
}

fn panicked(def: &TaskDef, payload: Box<dyn std::any::Any + Send>) -> TaskError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_string());
    let message = format!("task `{}` panicked: {message}", def.name);
    TaskError::with_kind(TaskErrorKind::Panicked, message)
}

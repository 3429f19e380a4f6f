//! Starting, replaying and resuming runs over a [`Store`].

mod answer;
mod child;
mod drive;

pub(crate) use answer::pending_effect;
use child::Mode;

use crate::ctx::{in_scope, Ctx, Scope};
use crate::engine::{unix_millis, Notice, Observer, Posting, RunState};
use crate::error::{
    CancelProblem, DecodeProblem, EffectProblem, RunError, VersionMismatch, Waiting,
};
use crate::graph::Graph;
use crate::inspect::{RunState as End, WaitKind};
use crate::journal::{Event, Outcome};
use crate::replay::ReplayMap;
use crate::store::{MemoryStore, OpenRun, Opening, RunLog, Store, StoreError};
use crate::Journaled;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

/// A process: what `#[process]` generates for an `async fn(&Ctx, Input) -> Result<Output, E>`.
///
/// The generated type has the function's name and lives in the type namespace, so
/// `Runner::run::<my_process>(input)` names it while `my_process(..)` still calls the function.
pub trait Process: Send + Sync + 'static {
    /// The process name used on the command line and in the journal.
    const NAME: &'static str;
    /// The input.
    type Input: Journaled;
    /// The output.
    type Output: Journaled;
    /// The error the process body returns.
    type Error: fmt::Display + Send + 'static;
    /// The queue workers take its runs from unless [`Submit::queue`] names another
    /// (`#[process(queue = "..")]`; [`DEFAULT_QUEUE`](crate::store::DEFAULT_QUEUE) if not set).
    const QUEUE: &'static str = crate::store::DEFAULT_QUEUE;
    /// The static graph of the process body.
    fn graph() -> &'static Graph;
    /// Runs the process body.
    fn run(ctx: &Ctx, input: Self::Input) -> BoxFuture<'_, Result<Self::Output, Self::Error>>;
}

/// Where a submitted run goes: its queue and priority (see [`Runner::submit_with`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Submit {
    /// The queue (default: the process's, [`Process::QUEUE`]).
    pub queue: Option<String>,
    /// Lower runs first among the ready runs of a queue (default 0).
    pub priority: Option<i32>,
}

impl Submit {
    /// Puts the run on `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Sets the run's priority: lower runs first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// A finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished<O> {
    /// The run id.
    pub run_id: String,
    /// The process output.
    pub output: O,
}

/// Runs processes on a [`Store`].
///
/// ```
/// use minder::prelude::*;
///
/// #[task]
/// async fn double(x: u32) -> Result<u32, TaskError> {
///     Ok(x * 2)
/// }
///
/// #[process]
/// async fn doubler(ctx: &Ctx, input: u32) -> Result<u32, ProcessError> {
///     let (a, b) = parallel!(double(input), double(input + 1))?;
///     ctx.log(format!("{a} and {b}"));
///     Ok(a + b)
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let runner = Runner::in_memory();
/// let done = runner.run::<doubler>(10).await.unwrap();
/// assert_eq!(done.output, 42);
/// # }
/// ```
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn Store>,
    observer: Option<Observer>,
    allow_version_change: bool,
    artifacts: Option<std::path::PathBuf>,
    suspend_sleeps_over: Duration,
    pub(crate) hooks: Arc<dyn crate::engine::Hooks>,
    states: crate::state::StateMap,
    /// For a worker's runner: the processes (name, fingerprint) the worker has, which the
    /// child processes of its runs are checked against (see `run::child`).
    registry: Option<Arc<Vec<(String, String)>>>,
}

/// How often a writer driving a run looks for a cancel request ([`Runner::cancel`]).
pub const CANCEL_CHECK: Duration = Duration::from_millis(200);

/// How long [`Runner::cancel`] waits for another writer to stop a run it was asked to cancel.
pub const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Sleeps longer than this suspend the run unless the runner says otherwise
/// ([`Runner::suspend_sleeps_longer_than`]).
pub const DEFAULT_SUSPEND_SLEEPS_OVER: Duration = Duration::from_secs(60);

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("store", &self.store)
            .finish()
    }
}

impl Runner {
    /// A runner over `store`.
    pub fn new(store: impl Store) -> Self {
        Self::from_store(Arc::new(store))
    }

    /// A runner over a store already shared (chosen at run time, for instance).
    pub fn from_store(store: Arc<dyn Store>) -> Self {
        Runner {
            store,
            observer: None,
            allow_version_change: false,
            artifacts: None,
            suspend_sleeps_over: DEFAULT_SUSPEND_SLEEPS_OVER,
            hooks: Arc::new(crate::engine::NoHooks),
            states: Default::default(),
            registry: None,
        }
    }

    /// A runner over a fresh [`MemoryStore`].
    pub fn in_memory() -> Self {
        Self::new(MemoryStore::new())
    }

    /// Calls `f` with each [`Notice`] (logs, map progress) of every run.
    pub fn on_notice(mut self, f: impl Fn(&str, &Notice) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Lets [`Runner::resume`] continue a run whose recorded process structure differs from the
    /// current code's (off by default: such a resume is a [`RunError::Version`]).
    pub fn allow_version_change(mut self, allow: bool) -> Self {
        self.allow_version_change = allow;
        self
    }

    /// How long a durable sleep ([`Ctx::sleep`], [`Ctx::sleep_until`]) may have left before it
    /// counts as waiting rather than progressing (60 s unless set). A run with nothing else to
    /// do while such a sleep is pending is saved as waiting, as for a breakpoint:
    /// [`Runner::run`] / [`Runner::resume`] return [`RunError::Suspended`] listing the sleep with
    /// its due time, a later resume continues once it is due, and `resume --wait` wakes up for
    /// it. Shorter sleeps, and long ones while other steps of the run still progress, are
    /// waited out in the program. `Duration::MAX` waits every sleep out; with a virtual clock
    /// (`Runner::virtual_clock`, feature `testing`) sleeps never suspend.
    pub fn suspend_sleeps_longer_than(mut self, limit: Duration) -> Self {
        self.suspend_sleeps_over = limit;
        self
    }

    /// Lets task steps keep large outputs in `<root>/<run-id>/artifacts/` (see
    /// [`artifact_dir`](crate::artifact_dir)); with a [`FileStore`](crate::FileStore), pass its
    /// runs directory.
    pub fn artifacts_in(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        self.artifacts = Some(root.into());
        self
    }

    /// Registers `value` as task state: every task of this runner's runs that takes a
    /// `#[state]` parameter of type `&T` gets it (one value per type; a later call replaces
    /// it). State is not journaled and is not part of a step's arguments: a resumed run gets
    /// whatever the runner that resumes it has. A test registers a fake the same way.
    ///
    /// ```
    /// use minder::prelude::*;
    ///
    /// struct Greeting(String);
    ///
    /// #[task]
    /// async fn greet(#[state] greeting: &Greeting, name: String) -> Result<String, TaskError> {
    ///     Ok(format!("{}, {name}", greeting.0))
    /// }
    ///
    /// #[process]
    /// async fn hello(_ctx: &Ctx, name: String) -> Result<String, ProcessError> {
    ///     Ok(greet(name).await?)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = Runner::in_memory().state(Greeting("Hello".into()));
    /// let done = runner.run::<hello>("Ada".into()).await.unwrap();
    /// assert_eq!(done.output, "Hello, Ada");
    /// # }
    /// ```
    pub fn state<T: crate::state::TaskState>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// The runner of a worker that has `processes` (name, fingerprint): it drives the child
    /// processes of its runs on workers too, rather than inline.
    pub(crate) fn for_worker(mut self, processes: Vec<(String, String)>) -> Self {
        self.registry = Some(Arc::new(processes));
        self
    }

    /// Adds every value of `states` (the command line's registry's).
    #[cfg(feature = "cli")]
    pub(crate) fn with_states(mut self, states: &crate::state::StateMap) -> Self {
        self.states.extend(states);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates a run without starting it; [`Runner::resume`] starts it, or a
    /// worker (`minder::worker`) on the same store picks it up.
    ///
    /// The input is journaled when this is called; the future only writes it.
    pub fn create<P: Process>(
        &self,
        input: &P::Input,
    ) -> impl Future<Output = Result<String, RunError>> + Send + '_ {
        self.submit_with::<P>(input, Submit::default())
    }

    /// Submits a run for workers (`minder::worker`): creates it, ready to be driven,
    /// and returns its id. (The same as [`Runner::create`]: a created run is ready; a worker
    /// on the same store takes it.)
    pub fn submit<P: Process>(
        &self,
        input: &P::Input,
    ) -> impl Future<Output = Result<String, RunError>> + Send + '_ {
        self.submit_with::<P>(input, Submit::default())
    }

    /// [`Runner::submit`] with a queue or priority of its own.
    pub fn submit_with<P: Process>(
        &self,
        input: &P::Input,
        options: Submit,
    ) -> impl Future<Output = Result<String, RunError>> + Send + '_ {
        let run_id = new_run_id();
        let first = created::<P>(&run_id, input, &options, None);
        async move {
            let log = self.store.create(&run_id, first?).await?;
            log.close().await?;
            Ok(run_id)
        }
    }

    /// Runs a process to its end.
    pub async fn run<P: Process>(&self, input: P::Input) -> Result<Finished<P::Output>, RunError> {
        let run_id = new_run_id();
        let first = created::<P>(&run_id, &input, &Submit::default(), None)?;
        let log = self.store.create(&run_id, first).await?;
        log.flush().await?;
        let (replay, mode) = (ReplayMap::empty(), Mode::INLINE);
        let drive = self.drive::<P>(
            run_id.clone(),
            log.clone(),
            replay,
            input,
            None,
            (mode, None),
        );
        let result = traced(&run_id, P::NAME, Driving::New, drive).await;
        // Let the run go now (a store with leases would otherwise hold it until they lapse).
        let _ = log.close().await;
        self.settle_children(&run_id, child::waited_children(&result))
            .await;
        result
    }

    /// Resumes a run: journaled steps return their recorded results without running, the rest
    /// runs. A completed or failed run returns its recorded end again.
    pub async fn resume<P: Process>(&self, run_id: &str) -> Result<Finished<P::Output>, RunError> {
        self.resume_with::<P>(run_id, None).await
    }

    pub(crate) async fn resume_with<P: Process>(
        &self,
        run_id: &str,
        posting: Option<Arc<Posting>>,
    ) -> Result<Finished<P::Output>, RunError> {
        self.resume_in::<P>(run_id, posting, Mode::INLINE).await
    }

    /// [`Runner::resume_with`], driving the run's child processes as `mode` says.
    async fn resume_in<P: Process>(
        &self,
        run_id: &str,
        posting: Option<Arc<Posting>>,
        mode: Mode,
    ) -> Result<Finished<P::Output>, RunError> {
        // A run that ended returns its end again: the store finds it without reading the
        // whole journal where it can (not when a posted result or a saved journal is checked,
        // which replays it).
        let opening = match posting {
            None => self.store.open_unless_ended(run_id).await?,
            Some(_) => Opening::Open(self.store.open_stream(run_id).await?),
        };
        let stream = match opening {
            Opening::Open(stream) => stream,
            Opening::Ended { first, end } => {
                let Event::RunCreated {
                    process,
                    fingerprint,
                    parent,
                    ..
                } = first
                else {
                    return Err(RunError::Store(StoreError::Corrupt(format!(
                        "run `{run_id}` has no creation event"
                    ))));
                };
                self.check_version::<P>(run_id, &process, &fingerprint)?;
                if mode.tell_parent {
                    self.remind_parent(parent.as_ref(), &process, run_id, &end)
                        .await;
                }
                return ended::<P>(run_id, end);
            }
        };
        self.resume_stream::<P>(run_id, stream, posting, mode).await
    }

    /// Drives a run a worker claimed (see [`Store::claim`]).
    pub(crate) async fn resume_claimed<P: Process>(
        &self,
        claimed: crate::store::Claimed,
    ) -> Result<Finished<P::Output>, RunError> {
        let stream = crate::store::JournalStream::from_open(claimed.open);
        self.resume_stream::<P>(&claimed.run_id, stream, None, Mode::WORKER)
            .await
    }

    /// Replays a run's journal as it streams in, then drives the run.
    async fn resume_stream<P: Process>(
        &self,
        run_id: &str,
        stream: crate::store::JournalStream,
        posting: Option<Arc<Posting>>,
        mode: Mode,
    ) -> Result<Finished<P::Output>, RunError> {
        // The journal is read as it streams in, into the replay map; what the orphan check
        // needs is kept aside. A journal that is not consistent is reported after the orphans
        // were dealt with, as when it was read whole.
        let read = crate::replay::read_stream(run_id, stream).await?;
        let log = read.log;
        let result = async {
            if posting.is_none() {
                // Programs a crashed runner left running go before anything runs again.
                crate::command::kill_orphans(&read.orphans).await;
            }
            let journal = read.journal?;
            let checking = posting.as_ref().is_some_and(|p| p.check);
            // Created (`Runner::create`, the command line's `run`) and not started yet.
            let fresh = read.events == 1;
            let Some((process, input, fingerprint)) = journal.created else {
                return Err(RunError::Store(StoreError::Corrupt(format!(
                    "run `{run_id}` has no creation event"
                ))));
            };
            self.check_version::<P>(run_id, &process, &fingerprint)?;
            // A run that ended returns its end again (unless a saved journal is being checked);
            // a child tells its parent again.
            let parent = journal
                .parent
                .filter(|_| mode.tell_parent && posting.is_none());
            match journal.end {
                Some(end @ Event::RunCancelled { .. }) => {
                    self.remind_parent(parent.as_ref(), &process, run_id, &end)
                        .await;
                    return ended::<P>(run_id, end);
                }
                Some(_) if checking => {}
                Some(end) => {
                    self.remind_parent(parent.as_ref(), &process, run_id, &end)
                        .await;
                    return ended::<P>(run_id, end);
                }
                None => {}
            }
            let replay = journal.map;
            let input: P::Input = serde_json::from_value(input).map_err(|e| RunError::Decode {
                problem: DecodeProblem::RecordedInput,
                message: e.to_string(),
            })?;
            let how = match (&posting, fresh) {
                (Some(_), _) => Driving::Posting,
                (None, true) => Driving::New,
                (None, false) => Driving::Resumed,
            };
            let id = run_id.to_string();
            let drive = self.drive::<P>(id, log.clone(), replay, input, posting, (mode, parent));
            traced(run_id, P::NAME, how, drive).await
        }
        .await;
        // Let the run go now (a store with leases would otherwise hold it until they lapse).
        let _ = log.close().await;
        self.settle_children(run_id, child::waited_children(&result))
            .await;
        result
    }

    /// Checks that run `run_id`, recorded as a run of `process` with structure `fingerprint`,
    /// can be resumed by `P`.
    fn check_version<P: Process>(
        &self,
        run_id: &str,
        process: &str,
        fingerprint: &str,
    ) -> Result<(), RunError> {
        let mismatch = |mismatch| RunError::Version {
            run_id: run_id.to_string(),
            mismatch,
        };
        if process != P::NAME {
            return Err(mismatch(VersionMismatch::OtherProcess {
                recorded: process.to_string(),
                expected: P::NAME.to_string(),
            }));
        }
        let current = P::graph().fingerprint();
        if fingerprint != current && !self.allow_version_change {
            return Err(mismatch(VersionMismatch::Structure {
                process: process.to_string(),
                recorded: fingerprint.to_string(),
                current,
            }));
        }
        Ok(())
    }
}

/// What resuming a run that ended with `end` returns: its recorded output or failure again.
fn ended<P: Process>(run_id: &str, end: Event) -> Result<Finished<P::Output>, RunError> {
    match end {
        Event::RunCompleted { output } => {
            let output = serde_json::from_value(output).map_err(|e| RunError::Decode {
                problem: DecodeProblem::RecordedOutput,
                message: e.to_string(),
            })?;
            Ok(Finished {
                run_id: run_id.to_string(),
                output,
            })
        }
        Event::RunFailed { error } => Err(RunError::Failed {
            process: P::NAME.to_string(),
            message: error,
        }),
        Event::RunCancelled { reason } => Err(RunError::Cancelled {
            run_id: run_id.to_string(),
            reason,
        }),
        _ => Err(RunError::Cancelled {
            run_id: run_id.to_string(),
            reason: None,
        }),
    }
}

/// Why a run is driven: what [`traced`] says when it starts.
#[derive(Clone, Copy, PartialEq)]
enum Driving {
    New,
    Resumed,
    /// Replayed to check a posted result: nothing runs, and how it stops says nothing of the run.
    Posting,
}

/// Drives a run inside its `tracing` span, `run` (fields `run_id`, `process`; a task step's
/// span, `step`, is a child of it), with events for how it started and how it stopped: `run
/// started` or `run resumed`, then `run completed`, `run suspended` (field `waiting`, the
/// effect ids), `run failed` (field `error`), `run cancelled`, or `run stopped` (field `error`)
/// when the runner itself failed.
async fn traced<T>(
    run_id: &str,
    process: &'static str,
    how: Driving,
    drive: impl Future<Output = Result<Finished<T>, RunError>>,
) -> Result<Finished<T>, RunError> {
    use tracing::Instrument;
    let span = tracing::info_span!("run", run_id, process);
    async move {
        match how {
            Driving::New => tracing::info!("run started"),
            Driving::Resumed => tracing::info!("run resumed"),
            Driving::Posting => tracing::debug!("run replayed to check a posted result"),
        }
        let result = drive.await;
        match &result {
            _ if how == Driving::Posting => {}
            Ok(_) => tracing::info!("run completed"),
            Err(RunError::Suspended { waiting, .. }) => {
                let waiting: Vec<&str> = waiting.iter().map(|w| w.key.as_str()).collect();
                tracing::info!(?waiting, "run suspended");
            }
            Err(e @ RunError::Failed { .. }) => tracing::warn!(error = %e, "run failed"),
            Err(RunError::Cancelled { .. }) => tracing::info!("run cancelled"),
            Err(e) => tracing::error!(error = %e, "run stopped"),
        }
        result
    }
    .instrument(span)
    .await
}

/// The first event of a new run of `P`.
fn created<P: Process>(
    run_id: &str,
    input: &P::Input,
    options: &Submit,
    parent: Option<crate::journal::ParentLink>,
) -> Result<Event, RunError> {
    let input = serde_json::to_value(input).map_err(|e| RunError::Decode {
        problem: DecodeProblem::RunInput,
        message: e.to_string(),
    })?;
    let queue = options
        .queue
        .clone()
        .or_else(|| (P::QUEUE != crate::store::DEFAULT_QUEUE).then(|| P::QUEUE.to_string()));
    Ok(Event::RunCreated {
        run_id: run_id.to_string(),
        process: P::NAME.to_string(),
        input,
        fingerprint: P::graph().fingerprint(),
        queue,
        priority: options.priority.filter(|p| *p != 0),
        parent,
    })
}

/// A new run id: a ULID (see `store::new_id`), so ids sort by creation time.
pub(crate) fn new_run_id() -> String {
    crate::store::new_id()
}

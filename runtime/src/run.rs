//! Starting, replaying and resuming runs over a [`Store`].

use crate::ctx::{in_scope, random_u64, unix_millis, Ctx, Scope};
use crate::error::RunError;
use crate::graph::Graph;
use crate::journal::{Event, Outcome};
use crate::store::{MemoryStore, RunLog, Store, StoreError};
use crate::Journaled;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
    /// The static graph of the process body.
    fn graph() -> &'static Graph;
    /// Runs the process body.
    fn run(ctx: &Ctx, input: Self::Input) -> BoxFuture<'_, Result<Self::Output, Self::Error>>;
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

type Observer = Arc<dyn Fn(&str, &Notice) + Send + Sync>;

/// What the journal says about a step key.
#[derive(Debug, Clone)]
pub(crate) enum Replayed {
    Started {
        task: String,
        location: String,
        args: Value,
    },
    Completed {
        task: String,
        location: String,
        args: Value,
        outcome: Outcome,
    },
    Recorded(Value),
    Logged,
}

/// The state of one run while its process body executes.
pub(crate) struct RunState {
    pub(crate) run_id: String,
    log: Arc<dyn RunLog>,
    replay: Mutex<HashMap<String, Replayed>>,
    fatal: Mutex<Option<RunError>>,
    fatal_notify: tokio::sync::Notify,
    observer: Option<Observer>,
}

impl fmt::Debug for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunState")
            .field("run_id", &self.run_id)
            .finish()
    }
}

impl RunState {
    pub(crate) fn replayed(&self, key: &str) -> Option<Replayed> {
        self.replay.lock().unwrap().get(key).cloned()
    }

    /// Appends an event; a failure to write stops the run.
    pub(crate) fn append(&self, event: Event) {
        if let Err(e) = self.log.append(event) {
            self.fail(RunError::Store(e));
        }
    }

    /// Waits until everything appended is durable.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.log.flush().await
    }

    /// Stops the run with an error that user code must not see or handle.
    pub(crate) fn fail(&self, error: RunError) {
        let mut fatal = self.fatal.lock().unwrap();
        if fatal.is_none() {
            *fatal = Some(error);
            self.fatal_notify.notify_one();
        }
    }

    async fn wait_fatal(&self) -> RunError {
        loop {
            self.fatal_notify.notified().await;
            if let Some(e) = self.fatal.lock().unwrap().take() {
                return e;
            }
        }
    }

    pub(crate) fn notify(&self, notice: Notice) {
        if let Some(observer) = &self.observer {
            observer(&self.run_id, &notice);
        }
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
}

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
        Runner {
            store: Arc::new(store),
            observer: None,
            allow_version_change: false,
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

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates a run without starting it; [`Runner::resume`] starts it.
    pub fn create<P: Process>(&self, input: &P::Input) -> Result<String, RunError> {
        let run_id = new_run_id();
        let log = self.create_log::<P>(&run_id, input)?;
        drop(log);
        Ok(run_id)
    }

    fn create_log<P: Process>(
        &self,
        run_id: &str,
        input: &P::Input,
    ) -> Result<Arc<dyn RunLog>, RunError> {
        let input = serde_json::to_value(input)
            .map_err(|e| RunError::Decode(format!("cannot journal the input: {e}")))?;
        let first = Event::RunCreated {
            run_id: run_id.to_string(),
            process: P::NAME.to_string(),
            input,
            fingerprint: P::graph().fingerprint(),
        };
        Ok(self.store.create(run_id, first)?)
    }

    /// Runs a process to its end.
    pub async fn run<P: Process>(&self, input: P::Input) -> Result<Finished<P::Output>, RunError> {
        let run_id = new_run_id();
        let log = self.create_log::<P>(&run_id, &input)?;
        log.flush().await?;
        self.drive::<P>(run_id, log, HashMap::new(), input).await
    }

    /// Resumes a run: journaled steps return their recorded results without running, the rest
    /// runs. A completed or failed run returns its recorded end again.
    pub async fn resume<P: Process>(&self, run_id: &str) -> Result<Finished<P::Output>, RunError> {
        let (events, log) = self.store.open(run_id)?;
        let mut replay = HashMap::new();
        let mut input = None;
        for event in events {
            match event {
                Event::RunCreated {
                    process,
                    input: i,
                    fingerprint,
                    ..
                } => {
                    if process != P::NAME {
                        return Err(RunError::Version(format!(
                            "run `{run_id}` belongs to process `{process}`, not `{}`",
                            P::NAME
                        )));
                    }
                    let now = P::graph().fingerprint();
                    if fingerprint != now && !self.allow_version_change {
                        return Err(RunError::Version(format!(
                            "run `{run_id}` was recorded with structure {fingerprint} of process \
                             `{process}`, the code now has {now}: finish it with the old build, \
                             or allow the version change if the edit is safe"
                        )));
                    }
                    input = Some(i);
                }
                Event::StepStarted {
                    key,
                    task,
                    location,
                    args,
                } => {
                    replay.insert(
                        key,
                        Replayed::Started {
                            task,
                            location,
                            args,
                        },
                    );
                }
                Event::StepCompleted { key, outcome } => match replay.remove(&key) {
                    Some(Replayed::Started {
                        task,
                        location,
                        args,
                    }) => {
                        replay.insert(
                            key,
                            Replayed::Completed {
                                task,
                                location,
                                args,
                                outcome,
                            },
                        );
                    }
                    _ => {
                        return Err(RunError::Store(StoreError::Corrupt(format!(
                            "run `{run_id}`: step `{key}` completed without having started"
                        ))))
                    }
                },
                Event::Recorded { key, value } => {
                    replay.insert(key, Replayed::Recorded(value));
                }
                Event::Log { key, .. } => {
                    replay.insert(key, Replayed::Logged);
                }
                Event::RunCompleted { output } => {
                    let output = serde_json::from_value(output).map_err(|e| {
                        RunError::Decode(format!("the recorded output does not fit: {e}"))
                    })?;
                    return Ok(Finished {
                        run_id: run_id.to_string(),
                        output,
                    });
                }
                Event::RunFailed { error } => {
                    return Err(RunError::Failed {
                        process: P::NAME.to_string(),
                        message: error,
                    });
                }
            }
        }
        let input = input.ok_or_else(|| {
            RunError::Store(StoreError::Corrupt(format!(
                "run `{run_id}` has no creation event"
            )))
        })?;
        let input: P::Input = serde_json::from_value(input)
            .map_err(|e| RunError::Decode(format!("the recorded input does not fit: {e}")))?;
        self.drive::<P>(run_id.to_string(), log, replay, input)
            .await
    }

    async fn drive<P: Process>(
        &self,
        run_id: String,
        log: Arc<dyn RunLog>,
        replay: HashMap<String, Replayed>,
        input: P::Input,
    ) -> Result<Finished<P::Output>, RunError> {
        let state = Arc::new(RunState {
            run_id: run_id.clone(),
            log,
            replay: Mutex::new(replay),
            fatal: Mutex::new(None),
            fatal_notify: tokio::sync::Notify::new(),
            observer: self.observer.clone(),
        });
        let root = Scope::root(state.clone());
        let ctx = Ctx::new(root.clone());
        let result = {
            let body = in_scope(Some(root), P::run(&ctx, input));
            tokio::select! {
                biased;
                fatal = state.wait_fatal() => Err(fatal),
                result = body => Ok(result),
            }
        };
        let fatal = state.fatal.lock().unwrap().take();
        if let Some(fatal) = fatal {
            // What was journaled before the error stays: make it durable.
            let _ = state.flush().await;
            return Err(fatal);
        }
        let result = match result {
            Err(fatal) => {
                let _ = state.flush().await;
                return Err(fatal);
            }
            Ok(r) => r,
        };
        match result {
            Ok(output) => {
                let value = serde_json::to_value(&output)
                    .map_err(|e| RunError::Decode(format!("cannot journal the output: {e}")))?;
                state.append(Event::RunCompleted { output: value });
                state.flush().await?;
                Ok(Finished { run_id, output })
            }
            Err(e) => {
                let message = e.to_string();
                state.append(Event::RunFailed {
                    error: message.clone(),
                });
                state.flush().await?;
                Err(RunError::Failed {
                    process: P::NAME.to_string(),
                    message,
                })
            }
        }
    }
}

/// A new run id: `YYYYMMDD-HHMMSS-` and six random hex digits.
pub(crate) fn new_run_id() -> String {
    let secs = unix_millis(SystemTime::now()) / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}-{:06x}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        random_u64() & 0xff_ffff
    )
}

//! Testing support: run a process in a plain `#[tokio::test]` with mocked tasks, breakpoints
//! and external tasks answered by the test, and a virtual clock; and replay a saved journal
//! against the current code to catch incompatible changes in CI.
//!
//! A task's state ([`Runner::state`]) needs nothing from here: a test registers a fake the
//! same way (for a resource behind a trait, register it as an `Arc<dyn Trait>`). A mocked task
//! needs no state.
//!
//! Behind the `testing` feature, so a service's build does not compile it: enable it where
//! the tests are, `minder = { version = "..", features = ["testing"] }` under
//! `[dev-dependencies]`.
//!
//! ```
//! use minder::prelude::*;
//! use minder::testing::replay_journal;
//!
//! #[task]
//! async fn fetch(url: String) -> Result<String, TaskError> {
//!     unreachable!("mocked in the test: {url}")
//! }
//!
//! #[process]
//! async fn page_size(ctx: &Ctx, url: String) -> Result<usize, ProcessError> {
//!     let page = fetch(url).await?;
//!     let ok = ctx.breakpoint("publish", page.len()).await;
//!     ctx.sleep(std::time::Duration::from_secs(3600)).await; // virtual: no real wait
//!     Ok(if ok.is_approved() { page.len() } else { 0 })
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let store = minder::MemoryStore::new();
//! let runner = Runner::new(store.clone())
//!     .mock("fetch", |(url,): (String,)| Ok::<_, TaskError>(format!("<html>{url}</html>")))
//!     .decide_breakpoints(|_name, _input| Decision::Approved { feedback: None })
//!     .virtual_clock(std::time::SystemTime::UNIX_EPOCH);
//! let done = runner.run::<page_size>("example.org".into()).await.unwrap();
//! assert_eq!(done.output, 24);
//!
//! // In CI: the saved journal still replays against the current code.
//! let journal = store.events(&done.run_id).unwrap();
//! assert!(replay_journal::<page_size>(journal).await.is_ok());
//! # }
//! ```

use crate::effects::Decision;
use crate::engine::{Hooks, Posting};
use crate::error::DecodeProblem;
use crate::inspect::WaitKind;
use crate::journal::{Event, Outcome};
use crate::run::{Process, Runner};
use crate::store::MemoryStore;
use crate::RunError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type MockFn = Arc<dyn Fn(Value) -> Result<Outcome, RunError> + Send + Sync>;
type DecideFn = Arc<dyn Fn(&str, &Value) -> Decision + Send + Sync>;
type AnswerFn = Arc<dyn Fn(&str, &Value) -> Option<Result<Value, Value>> + Send + Sync>;
type ChildFn = Arc<dyn Fn(&Value) -> Outcome + Send + Sync>;

/// What a runner does instead of the real thing, for tests.
#[derive(Clone, Default)]
struct TestHooks {
    mocks: HashMap<String, MockFn>,
    breakpoints: Option<DecideFn>,
    external: Option<AnswerFn>,
    /// Mocked child processes, by process name.
    children: HashMap<String, ChildFn>,
    clock: Option<(SystemTime, tokio::time::Instant)>,
}

impl fmt::Debug for TestHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHooks")
            .field("mocks", &self.mocks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Hooks for TestHooks {
    /// Whether time is the virtual clock's (sleeps then never suspend a run).
    fn virtual_time(&self) -> bool {
        self.clock.is_some()
    }

    /// The time: the system clock, or the virtual one that moves with tokio's (paused) time.
    fn now(&self) -> SystemTime {
        match self.clock {
            Some((base, start)) => base + (tokio::time::Instant::now() - start),
            None => SystemTime::now(),
        }
    }

    fn mock(&self, task: &str, args: &Value) -> Option<Result<Outcome, RunError>> {
        self.mocks.get(task).map(|m| m(args.clone()))
    }

    /// An automatic answer to an effect, when the test gave one.
    fn answer(&self, kind: WaitKind, name: &str, input: &Value) -> Option<Outcome> {
        match kind {
            WaitKind::Breakpoint => self.breakpoints.as_ref().map(|f| {
                Outcome::Ok(serde_json::to_value(f(name, input)).expect("a decision is plain data"))
            }),
            WaitKind::Child => self.children.get(name).map(|f| f(input)),
            _ => self
                .external
                .as_ref()
                .and_then(|f| f(name, input))
                .map(|r| match r {
                    Ok(v) => Outcome::Ok(v),
                    Err(e) => Outcome::Err(e),
                }),
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Runner {
    /// This runner's test hooks, to change: a copy of the ones it has (the runners it was
    /// cloned from keep theirs), which it uses from now on.
    fn test_hooks(&mut self) -> &mut TestHooks {
        let mine = self
            .hooks
            .as_any()
            .downcast_ref::<TestHooks>()
            .cloned()
            .unwrap_or_default();
        self.hooks = Arc::new(mine);
        let hooks = Arc::get_mut(&mut self.hooks).expect("just made, not shared");
        hooks
            .as_any_mut()
            .downcast_mut::<TestHooks>()
            .expect("just set to a `TestHooks`")
    }
}

impl Runner {
    /// Replaces the body of the task named `task` (its function name, or its `name = ".."`)
    /// in runs of this runner: `f` receives the arguments as a tuple and returns the result.
    /// The step is journaled as usual.
    pub fn mock<A, R, E, F>(mut self, task: &str, f: F) -> Self
    where
        A: DeserializeOwned,
        R: Serialize,
        E: Serialize,
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
    {
        let task_name = task.to_string();
        let mock: MockFn = Arc::new(move |args: Value| {
            let args: A = serde_json::from_value(args).map_err(|e| RunError::Decode {
                problem: DecodeProblem::MockArguments {
                    task: task_name.clone(),
                },
                message: e.to_string(),
            })?;
            let encoded = match f(args) {
                Ok(r) => serde_json::to_value(r).map(Outcome::Ok),
                Err(e) => serde_json::to_value(e).map(Outcome::Err),
            };
            encoded.map_err(|e| RunError::Decode {
                problem: DecodeProblem::MockResult {
                    task: task_name.clone(),
                },
                message: e.to_string(),
            })
        });
        self.test_hooks().mocks.insert(task.to_string(), mock);
        self
    }

    /// Replaces child process `P` ([`Ctx::child`](crate::Ctx::child)) in runs of this runner:
    /// `f` receives the child's input and returns its output (or the error the parent's step
    /// gets); no run of `P` is made. The parent's step is journaled as usual.
    ///
    /// ```
    /// use minder::prelude::*;
    ///
    /// #[process]
    /// async fn charge(_ctx: &Ctx, cents: u64) -> Result<String, ProcessError> {
    ///     unreachable!("mocked in the test: {cents}")
    /// }
    ///
    /// #[process]
    /// async fn checkout(ctx: &Ctx, cents: u64) -> Result<String, ProcessError> {
    ///     Ok(ctx.child::<charge>(cents).await?)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = Runner::in_memory().mock_child::<charge>(|cents| Ok(format!("paid {cents}")));
    /// assert_eq!(runner.run::<checkout>(250).await.unwrap().output, "paid 250");
    /// assert_eq!(runner.store().list().await.unwrap().len(), 1);
    /// # }
    /// ```
    pub fn mock_child<P: Process>(
        mut self,
        f: impl Fn(P::Input) -> Result<P::Output, crate::TaskError> + Send + Sync + 'static,
    ) -> Self {
        let child: ChildFn = Arc::new(move |input: &Value| {
            let encoded = match serde_json::from_value::<P::Input>(input.clone()) {
                Ok(input) => match f(input) {
                    Ok(output) => serde_json::to_value(output).map(Outcome::Ok),
                    Err(e) => serde_json::to_value(e).map(Outcome::Err),
                },
                Err(e) => serde_json::to_value(crate::TaskError::new(format!(
                    "the input of mocked child process `{}` does not fit: {e}",
                    P::NAME
                )))
                .map(Outcome::Err),
            };
            encoded.unwrap_or_else(|e| {
                let e = crate::TaskError::new(format!(
                    "the output of mocked child process `{}` cannot be journaled: {e}",
                    P::NAME
                ));
                Outcome::Err(serde_json::to_value(e).expect("an error is plain data"))
            })
        });
        self.test_hooks()
            .children
            .insert(P::NAME.to_string(), child);
        self
    }

    /// Answers every breakpoint at once with `f(name, input)` instead of suspending.
    pub fn decide_breakpoints(
        mut self,
        f: impl Fn(&str, &Value) -> Decision + Send + Sync + 'static,
    ) -> Self {
        self.test_hooks().breakpoints = Some(Arc::new(f));
        self
    }

    /// Answers external tasks with `f(name, input)` (`None` leaves one pending).
    pub fn answer_external(
        mut self,
        f: impl Fn(&str, &Value) -> Option<Result<Value, Value>> + Send + Sync + 'static,
    ) -> Self {
        self.test_hooks().external = Some(Arc::new(f));
        self
    }

    /// A clock that starts at `start` and moves with tokio's time: with
    /// `#[tokio::test(start_paused = true)]`, `ctx.sleep` of an hour returns at once and
    /// `ctx.now()` is an hour later.
    pub fn virtual_clock(mut self, start: SystemTime) -> Self {
        self.test_hooks().clock = Some((start, tokio::time::Instant::now()));
        self
    }
}

/// How a saved journal replayed against the current code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Replay {
    /// The code reached the same end as the journal (same output or error).
    Completed,
    /// The journal stops before the end (the run was in progress or waiting); everything it
    /// holds replayed.
    Incomplete,
}

/// Replays a saved journal (for example `events <run> --json` saved in the repository)
/// against the current code: nothing runs, nothing is written. An error says what the
/// current code does differently: another task or other arguments at a step, a different
/// output, or steps the finished journal does not have.
pub async fn replay_journal<P: Process>(events: Vec<Event>) -> Result<Replay, RunError> {
    let run_id = events
        .iter()
        .find_map(|e| match e {
            Event::RunCreated { run_id, .. } => Some(run_id.clone()),
            _ => None,
        })
        .ok_or_else(|| RunError::Decode {
            problem: DecodeProblem::NoCreationEvent,
            message: String::new(),
        })?;
    let recorded_end = events.iter().rev().find_map(|e| match e {
        Event::RunCompleted { output } => Some(Ok(output.clone())),
        Event::RunFailed { error } => Some(Err(error.clone())),
        _ => None,
    });
    let store = MemoryStore::new();
    store.set_events(&run_id, events);
    let runner = Runner::new(store).allow_version_change(true);
    let check = Arc::new(Posting {
        check: true,
        key: String::new(),
        outcome: Outcome::Ok(Value::Null),
        result: Mutex::new(None),
    });
    let differs = |detail: String| RunError::NonDeterminism {
        key: "(end of run)".into(),
        detail,
    };
    match (
        runner.resume_with::<P>(&run_id, Some(check)).await,
        recorded_end,
    ) {
        (Ok(done), Some(Ok(recorded))) => {
            let now = serde_json::to_value(&done.output).unwrap_or(Value::Null);
            if now == recorded {
                Ok(Replay::Completed)
            } else {
                Err(differs(format!(
                    "the journal ends with output {recorded}, the code now returns {now}"
                )))
            }
        }
        (Err(RunError::Failed { message, .. }), Some(Err(recorded))) if message == recorded => {
            Ok(Replay::Completed)
        }
        (Err(RunError::Failed { message, .. }), Some(_)) => Err(differs(format!(
            "the code now fails with `{message}` where the journal did not"
        ))),
        (Ok(_), Some(Err(recorded))) => Err(differs(format!(
            "the journal ends with the error `{recorded}`, the code now completes"
        ))),
        (Ok(_), None) => Ok(Replay::Completed),
        (Err(RunError::Effect { .. }), None) => Ok(Replay::Incomplete),
        (Err(RunError::Effect { .. }), Some(_)) => Err(differs(
            "the journal is complete, but the code now needs steps it does not have".into(),
        )),
        (Err(e), _) => Err(e),
    }
}

/// Reads a journal saved as JSON (`events <run-id> --json > journal.json`).
pub fn load_journal(path: impl AsRef<std::path::Path>) -> Result<Vec<Event>, RunError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| RunError::Decode {
        problem: DecodeProblem::UnreadableJournal {
            path: path.to_path_buf(),
        },
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| RunError::Decode {
        problem: DecodeProblem::NotAJournal {
            path: path.to_path_buf(),
        },
        message: e.to_string(),
    })
}

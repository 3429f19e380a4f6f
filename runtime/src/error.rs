//! Error types: what a task returns, what a process returns, what a run returns.

use crate::inspect::{utc_time, RunState, WaitKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskErrorKind {
    /// The task's own body returned an error.
    Failed,
    /// The task ran longer than its `timeout`.
    Timeout,
    /// The task's body panicked.
    Panicked,
    /// The task was cancelled (a fail-fast sibling failed, or the run was cancelled).
    Cancelled,
}

/// The error type most tasks return. It is journaled like any other value.
///
/// ```
/// use minder::TaskError;
/// let e = TaskError::new("disk full");
/// assert_eq!(e.to_string(), "disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// Why the task failed.
    pub kind: TaskErrorKind,
    /// A human-readable message.
    pub message: String,
}

impl TaskError {
    /// A failure of the task's own work.
    pub fn new(message: impl Into<String>) -> Self {
        TaskError {
            kind: TaskErrorKind::Failed,
            message: message.into(),
        }
    }

    /// A failure of a given kind.
    pub fn with_kind(kind: TaskErrorKind, message: impl Into<String>) -> Self {
        TaskError {
            kind,
            message: message.into(),
        }
    }

    /// Whether this error is a timeout.
    pub fn is_timeout(&self) -> bool {
        self.kind == TaskErrorKind::Timeout
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> Self {
        TaskError::new(e.to_string())
    }
}

impl From<serde_json::Error> for TaskError {
    fn from(e: serde_json::Error) -> Self {
        TaskError::new(e.to_string())
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError::new(message)
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        TaskError::new(message)
    }
}

/// The error type most processes return: a failed task, or a reason of the process's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// A task failed and the process did not handle it.
    #[error("task failed: {0}")]
    Task(#[from] TaskError),
    /// The process decided to fail.
    #[error("{0}")]
    Failed(String),
}

impl ProcessError {
    /// A process failure with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        ProcessError::Failed(message.into())
    }
}

/// Why a run did not produce its output.
///
/// Each variant carries what a caller needs to act on it as fields; the message (`Display`)
/// is for people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The process returned an error (journaled: resuming returns it again).
    #[error("process `{process}` failed: {message}")]
    Failed {
        /// The process name.
        process: String,
        /// The process error, as displayed.
        message: String,
    },
    /// Replay met a journaled step that the current code does not reproduce.
    #[error("non-determinism at step `{key}`: {detail}")]
    NonDeterminism {
        /// The step key where replay diverged.
        key: String,
        /// What differs (tasks with their source locations, or arguments).
        detail: String,
    },
    /// The run was recorded for another process, or with a different structure.
    #[error("run `{run_id}` {mismatch}")]
    Version {
        /// The run id.
        run_id: String,
        /// What the journal has, and what the code has.
        mismatch: VersionMismatch,
    },
    /// The journal could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A value could not be journaled, or a journaled value does not fit the current types.
    #[error("{}", problem.describe(message))]
    Decode {
        /// Which value, and whether it was being journaled or read back.
        problem: DecodeProblem,
        /// What serde (or the file system) said; empty when there is nothing more to say.
        message: String,
    },
    /// The run is waiting for breakpoints or external tasks (journaled); post their results
    /// and resume it.
    #[error("run `{run_id}` is waiting for {}", describe_waiting(.waiting))]
    Suspended {
        /// The run id.
        run_id: String,
        /// What it waits for.
        waiting: Vec<Waiting>,
    },
    /// The run was cancelled.
    #[error("run `{run_id}` was cancelled")]
    Cancelled {
        /// The run id.
        run_id: String,
        /// The reason given with the cancellation, when it is known.
        reason: Option<String>,
    },
    /// A result was posted (or a decision made) for an effect that cannot take it; nothing
    /// was written.
    #[error("{}", problem.describe(run_id, key))]
    Effect {
        /// The run id.
        run_id: String,
        /// The effect id (its step key) that was given.
        key: String,
        /// Why the effect cannot take it.
        problem: EffectProblem,
    },
    /// A task takes state (a `#[state]` parameter) of a type the runner has no value for.
    /// The step did not run; register a value and resume the run.
    #[error(
        "task `{task}` takes state of type `{type_name}`, which this runner does not have: \
         register a value with `Runner::state` (`Registry::state` on the command line), then \
         resume the run"
    )]
    MissingState {
        /// The task (its path).
        task: String,
        /// The state's type.
        type_name: String,
    },
    /// [`Runner::cancel`](crate::Runner::cancel) could not cancel the run.
    #[error("{}", problem.describe(run_id))]
    NotCancelled {
        /// The run id.
        run_id: String,
        /// Why.
        problem: CancelProblem,
    },
    /// A child process ([`Ctx::child`](crate::Ctx::child)) could not be driven: its run
    /// stopped on an error of the runner's (not its process's, which the parent gets as a
    /// [`TaskError`]): a divergence, a version mismatch, its journal. Nothing was journaled
    /// for it in the parent; resuming the parent tries the child again.
    #[error("child run `{run_id}` (step `{key}`): {error}")]
    Child {
        /// The child's run id.
        run_id: String,
        /// The parent's step that starts it.
        key: String,
        /// What stopped the child.
        error: Box<RunError>,
    },
}

/// What a journal recorded that the current code does not have ([`RunError::Version`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionMismatch {
    /// The run belongs to another process.
    #[error("belongs to process `{recorded}`, not `{expected}`")]
    OtherProcess {
        /// The process the journal names.
        recorded: String,
        /// The process it was resumed as.
        expected: String,
    },
    /// The process's structure (its static graph) changed since the run was recorded.
    #[error(
        "was recorded with structure {recorded} of process `{process}`, the code now has \
         {current}: finish it with the old build, or allow the version change if the edit is \
         safe"
    )]
    Structure {
        /// The process.
        process: String,
        /// The structural fingerprint the journal recorded.
        recorded: String,
        /// The structural fingerprint of the current code.
        current: String,
    },
}

/// Which value could not be journaled or read back ([`RunError::Decode`]).
///
/// (No variant here or in the other error enums is named like a common type — `Result`,
/// `Process`: rustc would then print that type with its full path, `std::result::Result<..>`,
/// in every diagnostic of a crate that uses minder; the ui-tests catch it.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The run's input cannot be journaled.
    RunInput,
    /// The run's output cannot be journaled.
    RunOutput,
    /// The journaled input does not fit the process's input type now.
    RecordedInput,
    /// The journaled output does not fit the process's output type now.
    RecordedOutput,
    /// A task's arguments cannot be journaled.
    TaskArguments {
        /// The step key.
        key: String,
    },
    /// A task's journaled arguments cannot be read back into its parameter types.
    RecordedArguments {
        /// The step key.
        key: String,
    },
    /// A task's result cannot be journaled.
    TaskResult {
        /// The step key.
        key: String,
    },
    /// A breakpoint's or external task's input cannot be journaled.
    EffectInput {
        /// The step key.
        key: String,
    },
    /// A journaled effect result does not fit the type the process expects.
    EffectResult {
        /// The step key.
        key: String,
    },
    /// A test's automatic answer to an effect does not fit the type the process expects.
    TestAnswer {
        /// The step key.
        key: String,
    },
    /// A test's mock does not take the task's arguments.
    MockArguments {
        /// The task.
        task: String,
    },
    /// A test's mock returned a value that cannot be journaled.
    MockResult {
        /// The task.
        task: String,
    },
    /// A test's mock returned a value of another type than the task's.
    MockOutput {
        /// The task.
        task: String,
    },
    /// A saved journal file cannot be read.
    UnreadableJournal {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A saved journal file is not a journal.
    NotAJournal {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A saved journal has no creation event.
    NoCreationEvent,
}

impl DecodeProblem {
    fn describe(&self, message: &str) -> String {
        use DecodeProblem::*;
        match self {
            RunInput => format!("cannot journal the input: {message}"),
            RunOutput => format!("cannot journal the output: {message}"),
            RecordedInput => format!("the recorded input does not fit: {message}"),
            RecordedOutput => format!("the recorded output does not fit: {message}"),
            TaskArguments { key } => format!("cannot journal the arguments of `{key}`: {message}"),
            RecordedArguments { key } => {
                format!("cannot re-read the arguments of `{key}`: {message}")
            }
            TaskResult { key } => format!("cannot journal the result of `{key}`: {message}"),
            EffectInput { key } => format!("cannot journal the input of `{key}`: {message}"),
            EffectResult { key } => {
                format!("the journaled result of `{key}` does not fit {message}")
            }
            TestAnswer { key } => format!("the test's answer of `{key}` does not fit {message}"),
            MockArguments { task } => {
                format!("the mock of `{task}` does not take these arguments: {message}")
            }
            MockResult { task } => {
                format!("the mock of `{task}` returned a value that cannot be journaled: {message}")
            }
            MockOutput { task } => {
                format!("the mock of `{task}` returned a value of another type: {message}")
            }
            UnreadableJournal { path } => format!("cannot read `{}`: {message}", path.display()),
            NotAJournal { path } => {
                format!("`{}` is not a saved journal: {message}", path.display())
            }
            NoCreationEvent => "the journal has no creation event".to_string(),
        }
    }
}

/// Why an effect cannot take a posted result or a decision ([`RunError::Effect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EffectProblem {
    /// The run has no effect with this key.
    Unknown {
        /// The effects the run waits for.
        pending: Vec<String>,
    },
    /// The key is a task step's, not an effect's.
    NotAnEffect {
        /// The effects the run waits for.
        pending: Vec<String>,
    },
    /// The effect already has its result (or decision).
    AlreadyResolved,
    /// The run has ended.
    RunEnded,
    /// The effect is of another kind: a breakpoint takes a decision, an external task a
    /// result, and a child process's step only its child's end.
    WrongKind {
        /// The effect's kind.
        actual: WaitKind,
    },
    /// The run no longer waits for the effect (another branch went on without it).
    Abandoned {
        /// The effects the run waits for.
        pending: Vec<String>,
    },
    /// The breakpoint's deadline passed: the run goes on as timed out.
    TimedOut {
        /// The deadline, in milliseconds since the epoch.
        due_ms: u64,
    },
    /// The posted value does not fit the external task's output type.
    InvalidValue {
        /// The type, the field and serde's message.
        detail: String,
    },
    /// Replaying the run does not reach the effect (it may wait behind another effect).
    NotReached,
    /// Another writer holds the run and has not taken the answer from the run's inbox in
    /// `waited`; it stays there, and the writer that drives the run next checks and journals it.
    InInbox {
        /// How long the poster waited for the holder's verdict.
        waited: std::time::Duration,
    },
}

impl EffectProblem {
    fn describe(&self, run_id: &str, key: &str) -> String {
        let listed = |pending: &[String]| {
            if pending.is_empty() {
                "it has no pending effects".to_string()
            } else {
                format!("pending: {}", pending.join(", "))
            }
        };
        match self {
            EffectProblem::Unknown { pending } => {
                format!("run `{run_id}` has no effect `{key}`; {}", listed(pending))
            }
            EffectProblem::NotAnEffect { pending } => format!(
                "`{key}` is a task step of run `{run_id}`, not an effect; {}",
                listed(pending)
            ),
            EffectProblem::AlreadyResolved => {
                format!("effect `{key}` of run `{run_id}` is already resolved")
            }
            EffectProblem::RunEnded => format!("run `{run_id}` has already ended"),
            EffectProblem::WrongKind {
                actual: WaitKind::Breakpoint,
            } => format!("`{key}` is a breakpoint: approve or reject it"),
            EffectProblem::WrongKind {
                actual: WaitKind::Child,
            } => format!(
                "`{key}` waits for a child process, which resolves it when it ends: resolve \
                 what the child waits for (`status` names its run)"
            ),
            EffectProblem::WrongKind { .. } => {
                format!("`{key}` is an external task: post its result")
            }
            EffectProblem::Abandoned { pending } => format!(
                "the run no longer waits for effect `{key}` (another branch went on without \
                 it); {}",
                listed(pending)
            ),
            EffectProblem::TimedOut { due_ms } => format!(
                "breakpoint `{key}` of run `{run_id}` timed out at {}; a decision after its \
                 deadline is refused (resume the run: it goes on as timed out)",
                utc_time(*due_ms)
            ),
            EffectProblem::InvalidValue { detail } => {
                format!("the value posted for `{key}` does not fit {detail}; nothing was written")
            }
            EffectProblem::NotReached => format!(
                "effect `{key}` of run `{run_id}` is not reached when the run is replayed: it \
                 may wait behind another effect; resolve that first"
            ),
            EffectProblem::InInbox { waited } => format!(
                "run `{run_id}` is held by another writer, which has not taken the answer to \
                 `{key}` in {} s; it stays in the run's inbox, and the writer that drives the \
                 run next checks and journals it (see `workers`)",
                waited.as_secs_f64()
            ),
        }
    }
}

/// Why a run could not be cancelled ([`RunError::NotCancelled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelProblem {
    /// The run had already ended.
    AlreadyEnded {
        /// How.
        end: RunState,
    },
    /// The writer driving the run was asked to cancel it, but the run ended otherwise first.
    EndedFirst {
        /// How.
        end: RunState,
    },
    /// The writer driving the run was asked to cancel it and has not stopped yet (it stops
    /// when it next checks, unless it is blocked).
    NotStopped {
        /// How long this call waited.
        waited: std::time::Duration,
    },
}

impl CancelProblem {
    fn describe(&self, run_id: &str) -> String {
        match self {
            CancelProblem::AlreadyEnded { end } => {
                format!("run `{run_id}` has already ended ({end}); nothing to cancel")
            }
            CancelProblem::EndedFirst { end } => {
                format!("run `{run_id}` {end} before it could be cancelled")
            }
            CancelProblem::NotStopped { waited } => format!(
                "asked the writer of run `{run_id}` to cancel it, but it has not stopped within \
                 {} s; it stops when it next checks, unless it is blocked",
                waited.as_secs()
            ),
        }
    }
}

/// Something a suspended run waits for: a breakpoint's decision, an external task's result, or
/// a long sleep's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The effect id: its step key.
    pub key: String,
    /// A breakpoint, an external task or a sleep.
    pub kind: WaitKind,
    /// The breakpoint's or external task's name (`sleep` for a sleep).
    pub name: String,
    /// What the person or system is given (for a sleep, `{"until_ms": ..}`).
    pub input: serde_json::Value,
    /// When it resolves by itself (a breakpoint's timeout, a sleep's end), in milliseconds
    /// since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
}

pub(crate) fn describe_waiting(waiting: &[Waiting]) -> String {
    waiting
        .iter()
        .map(|w| format!("{} `{}` ({})", w.kind, w.name, w.key))
        .collect::<Vec<_>>()
        .join(", ")
}

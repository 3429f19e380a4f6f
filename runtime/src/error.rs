//! Error types: what a task returns, what a process returns, what a run returns.

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
    #[error("{0}")]
    Version(String),
    /// The journal could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The run's input or a journaled value does not fit the current types.
    #[error("{0}")]
    Decode(String),
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
    #[error("run `{0}` was cancelled")]
    Cancelled(String),
    /// A result was posted for an effect that cannot take it.
    #[error("{0}")]
    Effect(String),
}

/// Something a suspended run waits for: a breakpoint's decision, an external task's result, or
/// a long sleep's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The effect id: its step key.
    pub key: String,
    /// `breakpoint`, `external` or `sleep`.
    pub kind: String,
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

//! Journal events: what a run records, in order. Knows values and keys, not tasks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The result of a step as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step succeeded with this value.
    Ok(Value),
    /// The step failed with this error value.
    Err(Value),
}

/// The run, and the step of it, that started a child process ([`Ctx::child`](crate::Ctx::child)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent run's id.
    pub run_id: String,
    /// The parent's step key that waits for the child (an effect of kind `child`).
    pub key: String,
}

/// One entry of a run's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run was created.
    RunCreated {
        /// The run id.
        run_id: String,
        /// The process name.
        process: String,
        /// The process input.
        input: Value,
        /// The structural fingerprint of the process graph.
        fingerprint: String,
        /// The queue workers take the run from (absent: the process's default queue,
        /// `default` unless `#[process(queue = "..")]` names one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        /// The run's priority among the ready runs of its queue: lower runs first (absent: 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i32>,
        /// For a child process ([`Ctx::child`](crate::Ctx::child)): the run that started it,
        /// and the step of that run that waits for it (absent for a run started on its own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentLink>,
    },
    /// A step began (its first attempt, or an attempt after a crash).
    StepStarted {
        /// The step key.
        key: String,
        /// The task's path (`module::name`).
        task: String,
        /// The task's source location (`file:line`).
        location: String,
        /// The task's arguments.
        args: Value,
        /// The step's position among the steps of its scope (program order), checked on
        /// replay; absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u32>,
        /// The id of the graph node the step came from (see [`Graph::walk`](crate::Graph::walk)):
        /// the call or `ctx` operation of the process body; absent in journals written before
        /// it was recorded, and for a step of a helper function the process calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
    },
    /// A step finished.
    StepCompleted {
        /// The step key.
        key: String,
        /// Its result.
        outcome: Outcome,
    },
    /// An attempt of a step failed and the step will be retried.
    AttemptFailed {
        /// The step key.
        key: String,
        /// The attempt that failed (0 is the first).
        attempt: u32,
        /// The error.
        error: Value,
    },
    /// A step was cancelled before it completed (a fail-fast sibling failed); it runs again
    /// if the process reaches it again.
    StepCancelled {
        /// The step key.
        key: String,
    },
    /// A command task started a program in a process group of its own (the program leads
    /// it). Journaled durably before the step waits for the program, so that after a crash of
    /// the runner, [`Runner::resume`](crate::Runner::resume) and
    /// [`Runner::cancel`](crate::Runner::cancel) kill what is left of the group before anything
    /// runs again (see the `command` module).
    ChildStarted {
        /// The step key.
        key: String,
        /// The process group: the program's pid.
        pgid: u32,
        /// The program.
        program: String,
        /// When the program started, in clock ticks since boot (`/proc/<pid>/stat`, field 22):
        /// with `boot_id` and `pid_ns`, what tells this group from a later one that got the
        /// same number. Absent outside Linux (then nothing is killed on resume).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started: Option<u64>,
        /// The boot the program ran in (`/proc/sys/kernel/random/boot_id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        boot_id: Option<String>,
        /// The pid namespace the runner ran in (the inode of `/proc/self/ns/pid`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid_ns: Option<u64>,
    },
    /// A value recorded once and replayed (`ctx.now()`, `ctx.random()`, sleep deadlines).
    Recorded {
        /// The step key.
        key: String,
        /// The value.
        value: Value,
        /// The step's position among the steps of its scope (program order), checked on
        /// replay; absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u32>,
        /// Where the process body made the call (`file:line:column`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        /// The id of the graph node the step came from (see [`Graph::walk`](crate::Graph::walk)):
        /// the call or `ctx` operation of the process body; absent in journals written before
        /// it was recorded, and for a step of a helper function the process calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
    },
    /// A log line from the process.
    Log {
        /// The step key.
        key: String,
        /// The message.
        message: String,
        /// The step's position among the steps of its scope (program order), checked on
        /// replay; absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u32>,
        /// Where the process body made the call (`file:line:column`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        /// The id of the graph node the step came from (see [`Graph::walk`](crate::Graph::walk)):
        /// the call or `ctx` operation of the process body; absent in journals written before
        /// it was recorded, and for a step of a helper function the process calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
    },
    /// The run asked for something done outside the program: a breakpoint's decision or an
    /// external task's result.
    EffectRequested {
        /// The step key (the effect id `post` / `approve` use).
        key: String,
        /// `breakpoint` or `external`.
        kind: String,
        /// The breakpoint's or external task's name.
        name: String,
        /// What the person or system is given.
        input: Value,
        /// When a breakpoint with a timeout stops taking decisions, in milliseconds since the
        /// epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_ms: Option<u64>,
        /// The step's position among the steps of its scope (program order), checked on
        /// replay; absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u32>,
        /// Where the process body made the call (`file:line:column`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        /// The id of the graph node the step came from (see [`Graph::walk`](crate::Graph::walk)):
        /// the call or `ctx` operation of the process body; absent in journals written before
        /// it was recorded, and for a step of a helper function the process calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<u32>,
    },
    /// An effect's result arrived (posted, approved or rejected).
    EffectResolved {
        /// The step key.
        key: String,
        /// The result.
        outcome: Outcome,
    },
    /// Nothing could progress but external effects: the run stopped, waiting for these keys.
    Suspended {
        /// The keys of the pending effects.
        waiting: Vec<String>,
        /// The earliest time one of them resolves by itself (a breakpoint's timeout), in
        /// milliseconds since the epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_ms: Option<u64>,
    },
    /// The process returned its output.
    RunCompleted {
        /// The output.
        output: Value,
    },
    /// The run was cancelled: it never runs again.
    RunCancelled {
        /// Why, if given.
        reason: Option<String>,
    },
    /// The process returned an error.
    RunFailed {
        /// The error, as displayed.
        error: String,
    },
}

impl Event {
    /// For an event that ends a run: how it ended (`completed`, `failed` or `cancelled`).
    pub fn run_end(&self) -> Option<&'static str> {
        match self {
            Event::RunCompleted { .. } => Some("completed"),
            Event::RunFailed { .. } => Some("failed"),
            Event::RunCancelled { .. } => Some("cancelled"),
            _ => None,
        }
    }
}

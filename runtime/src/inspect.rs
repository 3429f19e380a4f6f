//! Reading a journal back as a summary: what `status` and `list` show.

use crate::journal::{Event, Outcome, ParentLink};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// The process returned its output.
    Completed,
    /// The process returned an error.
    Failed,
    /// Cancelled: it never runs again.
    Cancelled,
    /// Stopped to wait for breakpoints or external tasks: resolve them, then `resume`.
    Waiting,
    /// Not finished: running now, or stopped (a crash, a kill); `resume` continues it.
    Incomplete,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Waiting => "waiting",
            RunState::Incomplete => "incomplete",
        })
    }
}

/// What a suspended run waits for ([`Waiting::kind`](crate::Waiting::kind)), and what an effect
/// is ([`EffectSummary::kind`]). Serialized (and displayed) as `breakpoint`, `external`,
/// `sleep` or `child`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WaitKind {
    /// A breakpoint: a person's decision ([`Ctx::breakpoint`](crate::Ctx::breakpoint)).
    Breakpoint,
    /// An external task's result ([`Ctx::external`](crate::Ctx::external)).
    External,
    /// A long sleep's end ([`Ctx::sleep`](crate::Ctx::sleep)).
    Sleep,
    /// A child process's end ([`Ctx::child`](crate::Ctx::child)): its run is named in the
    /// effect's input (`run_id`).
    Child,
}

impl WaitKind {
    /// The word the journal and the command line use: `breakpoint`, `external`, `sleep` or
    /// `child`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Breakpoint => "breakpoint",
            WaitKind::External => "external",
            WaitKind::Sleep => "sleep",
            WaitKind::Child => "child",
        }
    }

    /// The kind a journal's `effect_requested` event names (`breakpoint`, `external` or
    /// `child`).
    pub(crate) fn of_effect(kind: &str) -> WaitKind {
        match kind {
            "breakpoint" => WaitKind::Breakpoint,
            "sleep" => WaitKind::Sleep,
            "child" => WaitKind::Child,
            _ => WaitKind::External,
        }
    }
}

impl std::fmt::Display for WaitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Completed with a value.
    Done,
    /// Completed with an error.
    Failed,
    /// Started, not completed (in flight, or interrupted).
    Running,
    /// Cancelled before it completed (a fail-fast sibling failed).
    Cancelled,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepSummary {
    /// The step key.
    pub key: String,
    /// The task path.
    pub task: String,
    /// Where it stands.
    pub state: StepState,
    /// Failed attempts that were retried.
    pub attempts: u32,
}

/// A breakpoint, external task or child process of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectSummary {
    /// The effect id (its step key): what `post`, `approve` and `reject` take.
    pub key: String,
    /// A breakpoint or an external task.
    pub kind: WaitKind,
    /// The breakpoint's or external task's name.
    pub name: String,
    /// What the person or system is given.
    pub input: Value,
    /// Whether a result was posted (or a decision made, or the child process ended).
    pub resolved: bool,
}

impl EffectSummary {
    /// For a child process ([`WaitKind::Child`]): the child's run id.
    pub fn child_run(&self) -> Option<&str> {
        match self.kind {
            WaitKind::Child => self.input.get("run_id").and_then(Value::as_str),
            _ => None,
        }
    }
}

/// A run as its journal tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// The process name.
    pub process: String,
    /// For a child process: the run that started it, and its step that waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// Where the run stands.
    pub state: RunState,
    /// The steps, in the order they started.
    pub steps: Vec<StepSummary>,
    /// The output, when completed.
    pub output: Option<Value>,
    /// The error, when failed.
    pub error: Option<String>,
    /// The number of log lines.
    pub logs: usize,
    /// Breakpoints, external tasks and child processes, in the order they were requested.
    pub effects: Vec<EffectSummary>,
    /// For a waiting run: when the first thing it waits for ends by itself (a long sleep's
    /// due time, a breakpoint's timeout), in milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wakes_at_ms: Option<u64>,
}

impl RunSummary {
    /// Steps in a given state.
    pub fn count(&self, state: StepState) -> usize {
        self.steps.iter().filter(|s| s.state == state).count()
    }
}

/// Summarizes a journal.
pub fn summarize(events: &[Event]) -> RunSummary {
    let mut summary = RunSummary {
        run_id: String::new(),
        process: String::new(),
        parent: None,
        state: RunState::Incomplete,
        steps: Vec::new(),
        output: None,
        error: None,
        logs: 0,
        effects: Vec::new(),
        wakes_at_ms: None,
    };
    let mut suspended = false;
    let mut index = std::collections::HashMap::new();
    for event in events {
        match event {
            Event::RunCreated {
                run_id,
                process,
                parent,
                ..
            } => {
                summary.run_id = run_id.clone();
                summary.process = process.clone();
                summary.parent = parent.clone();
            }
            Event::StepStarted { key, task, .. } => {
                if let Some(&i) = index.get(key) {
                    let step: &mut StepSummary = &mut summary.steps[i];
                    step.state = StepState::Running;
                } else {
                    index.insert(key.clone(), summary.steps.len());
                    summary.steps.push(StepSummary {
                        key: key.clone(),
                        task: task.clone(),
                        state: StepState::Running,
                        attempts: 0,
                    });
                }
            }
            Event::StepCompleted { key, outcome } => {
                if let Some(&i) = index.get(key) {
                    summary.steps[i].state = match outcome {
                        Outcome::Ok(_) => StepState::Done,
                        Outcome::Err(_) => StepState::Failed,
                    };
                }
            }
            Event::Log { .. } => summary.logs += 1,
            Event::RunCompleted { output } => {
                summary.state = RunState::Completed;
                summary.output = Some(output.clone());
            }
            Event::RunCancelled { reason } => {
                summary.state = RunState::Cancelled;
                summary.error = reason.clone();
            }
            Event::RunFailed { error } => {
                summary.state = RunState::Failed;
                summary.error = Some(error.clone());
            }
            Event::EffectRequested {
                key,
                kind,
                name,
                input,
                ..
            } => summary.effects.push(EffectSummary {
                key: key.clone(),
                kind: WaitKind::of_effect(kind),
                name: name.clone(),
                input: input.clone(),
                resolved: false,
            }),
            Event::EffectResolved { key, .. } => {
                if let Some(e) = summary.effects.iter_mut().find(|e| &e.key == key) {
                    e.resolved = true;
                }
            }
            Event::Suspended { due_ms, waiting } => {
                // An effect the run no longer waits for (a `select` loser) is not pending.
                for e in summary.effects.iter_mut() {
                    if !e.resolved && !waiting.contains(&e.key) {
                        e.resolved = true;
                    }
                }
                suspended = true;
                summary.wakes_at_ms = *due_ms;
            }
            Event::AttemptFailed { key, .. } => {
                if let Some(&i) = index.get(key) {
                    summary.steps[i].attempts += 1;
                }
            }
            Event::StepCancelled { key } => {
                if let Some(&i) = index.get(key) {
                    summary.steps[i].state = StepState::Cancelled;
                }
            }
            Event::Recorded { .. } | Event::ChildStarted { .. } => {}
        }
    }
    if summary.state == RunState::Incomplete && suspended {
        summary.state = RunState::Waiting;
    } else {
        summary.wakes_at_ms = None;
    }
    summary
}

impl RunSummary {
    /// The effects still waiting for a result.
    pub fn pending(&self) -> impl Iterator<Item = &EffectSummary> {
        self.effects.iter().filter(|e| !e.resolved)
    }
}

/// `ms` milliseconds after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_795_392_245_999), "2026-11-23 00:04:05 UTC");
        assert_eq!(utc_time(4_107_542_399_000), "2100-02-28 23:59:59 UTC");
    }
}

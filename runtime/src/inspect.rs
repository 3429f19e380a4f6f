//! Reading a journal back as a summary: what `status` and `list` show.

use crate::journal::{Event, Outcome};
use serde::Serialize;
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
        f.write_str(match self {
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Waiting => "waiting",
            RunState::Incomplete => "incomplete",
        })
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

/// A breakpoint or external task of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectSummary {
    /// The effect id (its step key): what `post`, `approve` and `reject` take.
    pub key: String,
    /// `breakpoint` or `external`.
    pub kind: String,
    /// The breakpoint's or external task's name.
    pub name: String,
    /// What the person or system is given.
    pub input: Value,
    /// Whether a result was posted (or a decision made).
    pub resolved: bool,
}

/// A run as its journal tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// The process name.
    pub process: String,
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
    /// Breakpoints and external tasks, in the order they were requested.
    pub effects: Vec<EffectSummary>,
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
        state: RunState::Incomplete,
        steps: Vec::new(),
        output: None,
        error: None,
        logs: 0,
        effects: Vec::new(),
    };
    let mut suspended = false;
    let mut index = std::collections::HashMap::new();
    for event in events {
        match event {
            Event::RunCreated {
                run_id, process, ..
            } => {
                summary.run_id = run_id.clone();
                summary.process = process.clone();
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
            } => summary.effects.push(EffectSummary {
                key: key.clone(),
                kind: kind.clone(),
                name: name.clone(),
                input: input.clone(),
                resolved: false,
            }),
            Event::EffectResolved { key, .. } => {
                if let Some(e) = summary.effects.iter_mut().find(|e| &e.key == key) {
                    e.resolved = true;
                }
            }
            Event::Suspended { .. } => suspended = true,
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
            Event::Recorded { .. } => {}
        }
    }
    if summary.state == RunState::Incomplete && suspended {
        summary.state = RunState::Waiting;
    }
    summary
}

impl RunSummary {
    /// The effects still waiting for a result.
    pub fn pending(&self) -> impl Iterator<Item = &EffectSummary> {
        self.effects.iter().filter(|e| !e.resolved)
    }
}

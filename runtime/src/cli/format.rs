//! What the command line prints: JSON, tables of runs and steps, events one per line, and
//! the logs and progress bars of a running run.

use crate::engine::Notice;
use crate::graph::{Graph, Node};
use crate::inspect::{RunSummary, StepState};
use crate::journal::Event;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(super) struct Progress {
    multi: Option<indicatif::MultiProgress>,
    bars: HashMap<String, indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn new(terminal: bool) -> Self {
        Progress {
            multi: terminal.then(indicatif::MultiProgress::new),
            bars: HashMap::new(),
        }
    }

    pub(super) fn show(&mut self, notice: &Notice) {
        match notice {
            Notice::Log { message, .. } => match &self.multi {
                Some(m) => {
                    let _ = m.println(format!("  log: {message}"));
                }
                None => note!("  log: {message}"),
            },
            Notice::Progress { label, done, total } => {
                let Some(multi) = &self.multi else {
                    return;
                };
                let bar = self.bars.entry(label.clone()).or_insert_with(|| {
                    let bar = multi.add(indicatif::ProgressBar::new(*total as u64));
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "  {prefix} [{bar:30}] {pos}/{len} {elapsed}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_prefix(label.clone());
                    bar
                });
                bar.set_position(*done as u64);
                if done == total {
                    bar.finish();
                    self.bars.remove(label);
                }
            }
        }
    }
}

pub(super) fn print_json<T: serde::Serialize>(value: &T) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""))
    );
}

pub(super) fn print_list(runs: &[RunSummary]) {
    if runs.is_empty() {
        out!("no runs");
        return;
    }
    let width = runs
        .iter()
        .map(|r| r.process.len())
        .max()
        .unwrap_or(7)
        .max(7);
    out!(
        "{:<24}  {:<width$}  {:<10}  {:>5}  {:>6}",
        "RUN",
        "PROCESS",
        "STATE",
        "DONE",
        "FAILED"
    );
    for r in runs {
        out!(
            "{:<24}  {:<width$}  {:<10}  {:>5}  {:>6}",
            r.run_id,
            r.process,
            r.state.to_string(),
            r.count(StepState::Done),
            r.count(StepState::Failed),
        );
    }
}

pub(super) fn print_status(s: &RunSummary) {
    out!("run      {}", s.run_id);
    out!("process  {}", s.process);
    out!("state    {}", s.state);
    out!(
        "steps    {} done, {} failed, {} running or interrupted",
        s.count(StepState::Done),
        s.count(StepState::Failed),
        s.count(StepState::Running)
    );
    if let Some(e) = &s.error {
        out!("error    {e}");
    }
    for e in &s.effects {
        let state = if e.resolved { "resolved" } else { "waiting" };
        out!("{:<8} {} `{}` ({})", state, e.kind, e.name, e.key);
    }
    if let Some(ms) = s.wakes_at_ms {
        out!(
            "wakes    {} (resume it then, or keep it going with `resume --wait`)",
            crate::inspect::utc_time(ms)
        );
    }
    let width = s
        .steps
        .iter()
        .map(|st| st.key.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if !s.steps.is_empty() {
        out!("");
        out!("{:<8}  {:<width$}  TASK", "STATE", "STEP");
        for st in &s.steps {
            let state = match st.state {
                StepState::Done => "done",
                StepState::Failed => "failed",
                StepState::Running => "running",
                StepState::Cancelled => "cancelled",
            };
            out!("{state:<8}  {:<width$}  {}", st.key, st.task);
        }
    }
}

/// A process graph as JSON: `{"process", "fingerprint", "nodes"}`, each node an object with
/// its `kind` (`call`, `ctx`, `parallel`, `map`, `loop`, `branch`) and its fields.
pub(super) fn graph_json(graph: &Graph) -> Value {
    fn nodes(list: &[Node]) -> Value {
        Value::Array(list.iter().map(node).collect())
    }
    fn node(n: &Node) -> Value {
        match n {
            Node::Call { name } => json!({ "kind": "call", "name": name }),
            Node::Ctx { op } => json!({ "kind": "ctx", "op": op }),
            Node::Parallel {
                label,
                settle,
                branches,
            } => json!({
                "kind": "parallel",
                "label": label,
                "settle": settle,
                "branches": branches.iter().map(|b| nodes(b)).collect::<Vec<_>>(),
            }),
            Node::Map { label, body } => {
                json!({ "kind": "map", "label": label, "body": nodes(body) })
            }
            Node::Loop { kind, body } => {
                json!({ "kind": "loop", "loop": kind, "body": nodes(body) })
            }
            Node::Branch { kind, arms } => json!({
                "kind": "branch",
                "branch": kind,
                "arms": arms.iter().map(|a| nodes(a)).collect::<Vec<_>>(),
            }),
        }
    }
    json!({
        "process": graph.process,
        "fingerprint": graph.fingerprint(),
        "nodes": nodes(graph.nodes),
    })
}

pub(super) fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

pub(super) fn describe(e: &Event) -> String {
    use crate::journal::Outcome;
    match e {
        Event::RunCreated {
            process,
            input,
            fingerprint,
            ..
        } => {
            format!(
                "created     {process} input={} structure={fingerprint}",
                short(input)
            )
        }
        Event::StepStarted {
            key, task, args, ..
        } => {
            format!("started     {key}  {task}{}", short(args))
        }
        Event::StepCompleted {
            key,
            outcome: Outcome::Ok(v),
        } => {
            format!("completed   {key}  ok {}", short(v))
        }
        Event::StepCompleted {
            key,
            outcome: Outcome::Err(v),
        } => {
            format!("completed   {key}  error {}", short(v))
        }
        Event::Recorded { key, value, .. } => format!("recorded    {key}  {}", short(value)),
        Event::Log { key, message, .. } => format!("log         {key}  {message}"),
        Event::EffectRequested {
            key,
            kind,
            name,
            input,
            ..
        } => {
            format!("waits for   {key}  {kind} `{name}` {}", short(input))
        }
        Event::EffectResolved {
            key,
            outcome: Outcome::Ok(v),
        } => {
            format!("resolved    {key}  ok {}", short(v))
        }
        Event::EffectResolved {
            key,
            outcome: Outcome::Err(v),
        } => {
            format!("resolved    {key}  error {}", short(v))
        }
        Event::AttemptFailed {
            key,
            attempt,
            error,
        } => {
            format!(
                "retrying    {key}  attempt {attempt} failed: {}",
                short(error)
            )
        }
        Event::StepCancelled { key } => format!("cancelled   {key}"),
        Event::ChildStarted {
            key, pgid, program, ..
        } => format!("process     {key}  `{program}` in process group {pgid}"),
        Event::Suspended { waiting, .. } => {
            format!("suspended   waiting for {}", waiting.join(", "))
        }
        Event::RunCompleted { output } => format!("run done    output={}", short(output)),
        Event::RunFailed { error } => format!("run failed  {error}"),
        Event::RunCancelled { reason } => {
            format!(
                "cancelled   {}",
                reason.as_deref().unwrap_or("(no reason given)")
            )
        }
    }
}

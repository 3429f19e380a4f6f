//! What the command line prints: JSON, tables of runs and steps, events one per line, and
//! the logs and progress bars of a running run.

use crate::engine::Notice;
use crate::graph::{Graph, Node, RunStates};
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
    // Run ids are 26 characters; a child process's are longer.
    let id_width = runs
        .iter()
        .map(|r| r.run_id.len())
        .max()
        .unwrap_or(24)
        .max(24);
    out!(
        "{:<id_width$}  {:<width$}  {:<10}  {:>5}  {:>6}",
        "RUN",
        "PROCESS",
        "STATE",
        "DONE",
        "FAILED"
    );
    for r in runs {
        out!(
            "{:<id_width$}  {:<width$}  {:<10}  {:>5}  {:>6}",
            r.run_id,
            r.process,
            r.state.to_string(),
            r.count(StepState::Done),
            r.count(StepState::Failed),
        );
    }
}

/// A run's status; with its process's graph and the run's states on it, the nodes where it
/// stands (`at       waiting  node 6: ctx.breakpoint at src/deploy.rs:341 (in if)`).
pub(super) fn print_status(s: &RunSummary, graph: Option<(&Graph, &RunStates)>) {
    out!("run      {}", s.run_id);
    out!("process  {}", s.process);
    if let Some(p) = &s.parent {
        out!(
            "parent   {} (its step {} waits for this run)",
            p.run_id,
            p.key
        );
    }
    out!("state    {}", s.state);
    if let Some((graph, states)) = graph {
        for (id, state) in states.current(graph) {
            out!("at       {state:<8} {}", graph.describe(id));
        }
    }
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
        match e.child_run() {
            Some(child) => out!(
                "{:<8} {} `{}` ({}): run {child}",
                state,
                e.kind,
                e.name,
                e.key
            ),
            None => out!("{:<8} {} `{}` ({})", state, e.kind, e.name, e.key),
        }
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

/// Where a run stands on its graph, for `status --json`: the nodes with a step running or
/// waiting, `[{"node", "state", "description"}]`.
pub(super) fn at_json(graph: &Graph, states: &RunStates) -> Value {
    states
        .current(graph)
        .into_iter()
        .map(|(id, state)| json!({ "node": id, "state": state, "description": graph.describe(id) }))
        .collect()
}

/// A process graph as JSON: `{"process", "fingerprint", "nodes"}`, each node an object with
/// its `kind` (`call`, `ctx`, `parallel`, `map`, `loop`, `branch`) and its fields. With a
/// run's states: a `run` object (`id`, `stands`, `end`, `same_structure`, `unplaced` steps),
/// each node's `id` (what journaled steps record), and on each node the run reached its
/// `state` and `counts` (per state; a block counts the steps inside it).
pub(super) fn graph_json(graph: &Graph, states: Option<&RunStates>) -> Value {
    let mut next = 0u32;
    let mut out = json!({
        "process": graph.process,
        "fingerprint": graph.fingerprint(),
        "nodes": nodes(graph.nodes, &mut next, states),
    });
    if let Some(s) = states {
        out["run"] = json!({
            "id": s.run_id,
            "stands": s.stands(),
            "end": s.end,
            "same_structure": s.same_structure,
            "unplaced": s.unplaced,
        });
    }
    out
}

fn nodes(list: &[Node], next: &mut u32, states: Option<&RunStates>) -> Value {
    Value::Array(list.iter().map(|n| node(n, next, states)).collect())
}

fn node(n: &Node, next: &mut u32, states: Option<&RunStates>) -> Value {
    let id = *next;
    *next += 1;
    let mut parts =
        |list: &[&[Node]]| -> Vec<Value> { list.iter().map(|l| nodes(l, next, states)).collect() };
    let mut value = match n {
        Node::Call { name, .. } => json!({ "kind": "call", "name": name }),
        Node::Ctx { op, .. } => json!({ "kind": "ctx", "op": op }),
        Node::Parallel {
            label,
            settle,
            branches,
        } => json!({
            "kind": "parallel",
            "label": label,
            "settle": settle,
            "branches": parts(branches),
        }),
        Node::Map { label, body } => {
            json!({ "kind": "map", "label": label, "body": parts(&[body]).remove(0) })
        }
        Node::Loop { kind, body } => {
            json!({ "kind": "loop", "loop": kind, "body": parts(&[body]).remove(0) })
        }
        Node::Branch { kind, arms } => json!({
            "kind": "branch",
            "branch": kind,
            "arms": parts(arms),
        }),
    };
    if let Some(states) = states {
        value["id"] = json!(id);
        let counts = states.node(id);
        if counts.total() > 0 {
            value["state"] = json!(counts.state());
            value["counts"] = json!(counts);
        }
    }
    value
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
            parent,
            ..
        } => {
            let parent = parent
                .as_ref()
                .map(|p| format!(" parent={} step={}", p.run_id, p.key))
                .unwrap_or_default();
            format!(
                "created     {process} input={} structure={fingerprint}{parent}",
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

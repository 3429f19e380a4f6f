//! A run on its process's graph: where each journaled step stands, counted per node.

use super::{preorder, Graph};
use crate::journal::{Event, Outcome};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a run stands at a node of its graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NodeState {
    /// Every visit finished (a task completed, a value recorded, a log written, a sleep
    /// over, an effect resolved).
    Done,
    /// A task in flight (or interrupted by a crash: `resume` runs it again).
    Running,
    /// A breakpoint or an external task waiting for its result, or a sleep not over.
    Waiting,
    /// A task that failed (after its retries), or an effect resolved with an error (a
    /// rejected breakpoint is a decision, not a failure: it is done).
    Failed,
    /// Cancelled before it finished (a fail-fast sibling failed, a `select` lost, the run
    /// ended).
    Cancelled,
}

impl NodeState {
    /// Every state, in the order a drawing defines them.
    pub const ALL: [NodeState; 5] = [
        NodeState::Done,
        NodeState::Running,
        NodeState::Waiting,
        NodeState::Failed,
        NodeState::Cancelled,
    ];

    /// The word drawings use: `done`, `running`, `waiting`, `failed`, `cancelled` (the
    /// Mermaid class names).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Done => "done",
            NodeState::Running => "running",
            NodeState::Waiting => "waiting",
            NodeState::Failed => "failed",
            NodeState::Cancelled => "cancelled",
        }
    }

    /// The fill and stroke colours drawings give it: green, blue, amber, red, grey.
    pub fn colors(self) -> (&'static str, &'static str) {
        match self {
            NodeState::Done => ("#d3f9d8", "#2b8a3e"),
            NodeState::Running => ("#d0ebff", "#1c7ed6"),
            NodeState::Waiting => ("#fff3bf", "#f08c00"),
            NodeState::Failed => ("#ffe3e3", "#e03131"),
            NodeState::Cancelled => ("#e9ecef", "#868e96"),
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How many of a node's visits stand where (a node in a loop or a map is visited many
/// times); for a parallel block, a map, a loop or a conditional, the steps inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounts {
    /// Finished.
    pub done: u32,
    /// In flight.
    pub running: u32,
    /// Waiting for a result or a time.
    pub waiting: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
}

impl NodeCounts {
    /// All visits.
    pub fn total(&self) -> u32 {
        self.done + self.running + self.waiting + self.failed + self.cancelled
    }

    /// The count of one state.
    pub fn get(&self, state: NodeState) -> u32 {
        match state {
            NodeState::Done => self.done,
            NodeState::Running => self.running,
            NodeState::Waiting => self.waiting,
            NodeState::Failed => self.failed,
            NodeState::Cancelled => self.cancelled,
        }
    }

    fn add(&mut self, state: NodeState, n: u32) {
        let slot = match state {
            NodeState::Done => &mut self.done,
            NodeState::Running => &mut self.running,
            NodeState::Waiting => &mut self.waiting,
            NodeState::Failed => &mut self.failed,
            NodeState::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// The state a drawing gives the node: where the run is now first (running, then
    /// waiting), then failed, done, cancelled; `None` if the run never reached it.
    pub fn state(&self) -> Option<NodeState> {
        [
            NodeState::Running,
            NodeState::Waiting,
            NodeState::Failed,
            NodeState::Done,
            NodeState::Cancelled,
        ]
        .into_iter()
        .find(|s| self.get(*s) > 0)
    }
}

impl fmt::Display for NodeCounts {
    /// `3 done, 1 running` (the states with a count, in [`NodeState::ALL`] order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = NodeState::ALL
            .into_iter()
            .filter(|s| self.get(*s) > 0)
            .map(|s| format!("{} {s}", self.get(s)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// A run drawn on its process's graph: per node, where the run's steps there stand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStates {
    /// The run id.
    pub run_id: String,
    /// The process the run is of.
    pub process: String,
    /// How the run ended (`completed`, `failed`, `cancelled`), `None` while it has not.
    pub end: Option<&'static str>,
    /// Whether the graph has the structure the run started with (its fingerprint): if
    /// not, the process changed since, and steps may sit on other nodes than they came from.
    pub same_structure: bool,
    /// Per node id (see [`Graph::walk`]): the visits of a call or a `ctx` operation; for a
    /// block (parallel, map, loop, conditional), the steps inside it.
    pub nodes: Vec<NodeCounts>,
    /// Steps on no node: journaled before steps recorded their node, or by a helper
    /// function the process calls.
    pub unplaced: u32,
}

impl RunStates {
    /// The counts of node `id` (zero for an id out of range).
    pub fn node(&self, id: u32) -> NodeCounts {
        self.nodes.get(id as usize).copied().unwrap_or_default()
    }

    /// Where the run stands, in one word: how it ended (`completed`, `failed`,
    /// `cancelled`), else `running` (a step in flight, or interrupted), `waiting` (only for
    /// results or times), or `incomplete` (between steps, or stopped there).
    pub fn stands(&self) -> &'static str {
        let any = |state| self.nodes.iter().any(|c| c.get(state) > 0);
        match self.end {
            Some(end) => end,
            None if any(NodeState::Running) => "running",
            None if any(NodeState::Waiting) => "waiting",
            None => "incomplete",
        }
    }

    /// The nodes where the run stands now: the calls and `ctx` operations with a step
    /// running or waiting, in graph order.
    pub fn current(&self, graph: &Graph) -> Vec<(u32, NodeState)> {
        graph
            .walk()
            .into_iter()
            .filter(|(_, _, node)| node.parts().is_empty())
            .filter_map(|(id, _, _)| {
                let counts = self.node(id);
                [NodeState::Running, NodeState::Waiting]
                    .into_iter()
                    .find(|s| counts.get(*s) > 0)
                    .map(|s| (id, s))
            })
            .collect()
    }
}

/// One journaled step while the journal is read.
#[derive(Clone, Copy)]
enum Step {
    Task(NodeState),
    Effect(NodeState),
    /// A sleep until this time (milliseconds since the epoch).
    Sleep(u64),
    Done,
}

impl Graph {
    /// Where the run of `events` stands at each node of this graph, as its steps journaled
    /// their nodes; `now` tells a sleep that is over from one that is not.
    pub fn run_states(&self, events: &[Event], now: SystemTime) -> RunStates {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut states = RunStates {
            run_id: String::new(),
            process: String::new(),
            end: None,
            same_structure: true,
            nodes: vec![NodeCounts::default(); self.len()],
            unplaced: 0,
        };
        let mut steps: Vec<(Option<u32>, Step)> = Vec::new();
        let mut by_key: HashMap<&str, usize> = HashMap::new();
        let add = |node: Option<u32>, step: Step, steps: &mut Vec<(Option<u32>, Step)>| {
            steps.push((node, step));
            steps.len() - 1
        };
        for event in events {
            match event {
                Event::RunCreated {
                    run_id,
                    process,
                    fingerprint,
                    ..
                } => {
                    states.run_id = run_id.clone();
                    states.process = process.clone();
                    states.same_structure = *fingerprint == self.fingerprint();
                }
                Event::StepStarted { key, node, .. } => match by_key.get(key.as_str()) {
                    Some(&i) => steps[i].1 = Step::Task(NodeState::Running),
                    None => {
                        let i = add(*node, Step::Task(NodeState::Running), &mut steps);
                        by_key.insert(key, i);
                    }
                },
                Event::StepCompleted { key, outcome } => {
                    if let Some(&i) = by_key.get(key.as_str()) {
                        steps[i].1 = Step::Task(match outcome {
                            Outcome::Ok(_) => NodeState::Done,
                            Outcome::Err(_) => NodeState::Failed,
                        });
                    }
                }
                Event::StepCancelled { key } => {
                    if let Some(&i) = by_key.get(key.as_str()) {
                        steps[i].1 = Step::Task(NodeState::Cancelled);
                    }
                }
                Event::Recorded {
                    key, node, value, ..
                } => {
                    let last = key.rsplit('/').next().unwrap_or(key);
                    let step = match value.as_u64() {
                        Some(until) if last.starts_with("sleep#") => Step::Sleep(until),
                        _ => Step::Done,
                    };
                    let i = add(*node, step, &mut steps);
                    by_key.insert(key, i);
                }
                Event::Log { key, node, .. } => {
                    let i = add(*node, Step::Done, &mut steps);
                    by_key.insert(key, i);
                }
                Event::EffectRequested { key, node, .. } => {
                    let i = add(*node, Step::Effect(NodeState::Waiting), &mut steps);
                    by_key.insert(key, i);
                }
                Event::EffectResolved { key, outcome } => {
                    if let Some(&i) = by_key.get(key.as_str()) {
                        steps[i].1 = Step::Effect(match outcome {
                            Outcome::Ok(_) => NodeState::Done,
                            Outcome::Err(_) => NodeState::Failed,
                        });
                    }
                }
                Event::Suspended { waiting, .. } => {
                    // An effect the run no longer waits for (a `select` loser) is over.
                    for (key, &i) in &by_key {
                        if matches!(steps[i].1, Step::Effect(NodeState::Waiting))
                            && !waiting.iter().any(|w| w == key)
                        {
                            steps[i].1 = Step::Effect(NodeState::Cancelled);
                        }
                    }
                }
                e @ (Event::RunCompleted { .. }
                | Event::RunFailed { .. }
                | Event::RunCancelled { .. }) => states.end = e.run_end(),
                Event::AttemptFailed { .. } | Event::ChildStarted { .. } => {}
            }
        }
        let ended = states.end.is_some();
        let mut leaves = vec![NodeCounts::default(); states.nodes.len()];
        for (node, step) in steps {
            let state = match step {
                Step::Task(NodeState::Running) | Step::Effect(NodeState::Waiting) if ended => {
                    NodeState::Cancelled
                }
                Step::Task(s) | Step::Effect(s) => s,
                Step::Sleep(until) if !ended && until > now_ms => NodeState::Waiting,
                Step::Sleep(_) | Step::Done => NodeState::Done,
            };
            match node.and_then(|n| leaves.get_mut(n as usize)) {
                Some(counts) => counts.add(state, 1),
                None => states.unplaced += 1,
            }
        }
        // A block counts the steps inside it: each node adds its own to its ancestors'.
        let mut parents = vec![None; leaves.len()];
        preorder(self.nodes, None, &mut 0, &mut |id, parent, _| {
            parents[id as usize] = parent;
        });
        for (id, counts) in leaves.iter().enumerate() {
            let mut at = Some(id as u32);
            while let Some(n) = at {
                for state in NodeState::ALL {
                    states.nodes[n as usize].add(state, counts.get(state));
                }
                at = parents[n as usize];
            }
        }
        states
    }
}

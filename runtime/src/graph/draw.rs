//! Drawing a graph as a Mermaid flowchart or in Graphviz DOT, with a run's states on it or
//! without.

use super::{Graph, Node, NodeState, RunStates};
use std::collections::BTreeMap;
use std::fmt::Write;

impl Graph {
    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        self.draw(Style::Mermaid, None)
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        self.draw(Style::Dot, None)
    }

    /// The graph as a Mermaid flowchart with a run on it: each node the run reached has the
    /// class of its state (`done`, `running`, `waiting`, `failed`, `cancelled`; see
    /// [`NodeState`]), defined at the end of the chart, and a node reached more than once
    /// says how often (`build (2 done, 1 running)`).
    pub fn to_mermaid_with(&self, states: &RunStates) -> String {
        self.draw(Style::Mermaid, Some(states))
    }

    /// The graph in Graphviz DOT with a run on it: each node the run reached is filled with
    /// the colour of its state (see [`NodeState::colors`]).
    pub fn to_dot_with(&self, states: &RunStates) -> String {
        self.draw(Style::Dot, Some(states))
    }

    fn draw(&self, style: Style, states: Option<&RunStates>) -> String {
        let mut out = Drawing {
            text: String::new(),
            next: 0,
            id: 0,
            style,
            states,
            classes: BTreeMap::new(),
        };
        let process = escape(self.process);
        let start = states.map(|_| NodeState::Done);
        match style {
            Style::Mermaid => {
                out.text.push_str("flowchart TD\n");
                if let Some(s) = states {
                    let _ = writeln!(out.text, "  %% run {} ({})", escape(&s.run_id), s.stands());
                }
                let _ = writeln!(out.text, "  n0([\"{process}\"])");
            }
            Style::Dot => {
                let _ = writeln!(out.text, "digraph \"{process}\" {{");
                out.text.push_str("  node [shape=box];\n");
                if let Some(s) = states {
                    let _ = writeln!(
                        out.text,
                        "  label=\"{process}: run {} ({})\";\n  labelloc=t;",
                        escape(&s.run_id),
                        s.stands()
                    );
                }
                let _ = writeln!(
                    out.text,
                    "  n0 [label=\"{process}\", shape=oval{}];",
                    fill(start)
                );
            }
        }
        if let Some(state) = start {
            out.classes.entry(state).or_default().push(0);
        }
        let end = out.chain(self.nodes, vec![0]);
        let finished = states.and_then(|s| match s.end? {
            "completed" => Some(NodeState::Done),
            "failed" => Some(NodeState::Failed),
            _ => Some(NodeState::Cancelled),
        });
        let last = out.node("end", Shape::Terminal, finished);
        out.edges(&end, last);
        match style {
            Style::Mermaid => {
                if states.is_some() {
                    for state in NodeState::ALL {
                        let (fill, stroke) = state.colors();
                        let _ = writeln!(
                            out.text,
                            "  classDef {state} fill:{fill},stroke:{stroke},stroke-width:2px"
                        );
                    }
                }
                for (state, ids) in &out.classes {
                    let ids: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
                    let _ = writeln!(out.text, "  class {} {state}", ids.join(","));
                }
            }
            Style::Dot => out.text.push_str("}\n"),
        }
        out.text
    }
}

fn escape(s: &str) -> String {
    s.replace('"', "'")
}

/// The state of a block's join: done when everything in the block is (a block still under
/// way, or with a failure in it, has not joined yet as far as a drawing can tell).
fn finished(block: Option<NodeState>) -> Option<NodeState> {
    block.filter(|s| *s == NodeState::Done)
}

/// DOT attributes that fill a node with a state's colours.
fn fill(state: Option<NodeState>) -> String {
    match state {
        Some(state) => {
            let (fill, stroke) = state.colors();
            format!(", style=filled, fillcolor=\"{fill}\", color=\"{stroke}\", penwidth=2")
        }
        None => String::new(),
    }
}

#[derive(Clone, Copy)]
enum Style {
    Mermaid,
    Dot,
}

#[derive(Clone, Copy)]
enum Shape {
    Step,
    Fork,
    Terminal,
}

struct Drawing<'a> {
    text: String,
    /// The last drawing id handed out (`n0` is the start).
    next: usize,
    /// The graph id of the next node (see [`Graph::walk`]).
    id: u32,
    style: Style,
    states: Option<&'a RunStates>,
    /// Mermaid: the drawing ids of each state's nodes.
    classes: BTreeMap<NodeState, Vec<usize>>,
}

impl Drawing<'_> {
    fn node(&mut self, label: &str, shape: Shape, state: Option<NodeState>) -> usize {
        self.next += 1;
        let id = self.next;
        let label = escape(label);
        let _ = match (self.style, shape) {
            (Style::Mermaid, Shape::Step) => writeln!(self.text, "  n{id}[\"{label}\"]"),
            (Style::Mermaid, Shape::Fork) => writeln!(self.text, "  n{id}{{\"{label}\"}}"),
            (Style::Mermaid, Shape::Terminal) => writeln!(self.text, "  n{id}([\"{label}\"])"),
            (Style::Dot, Shape::Step) => {
                writeln!(self.text, "  n{id} [label=\"{label}\"{}];", fill(state))
            }
            (Style::Dot, Shape::Fork) => writeln!(
                self.text,
                "  n{id} [label=\"{label}\", shape=diamond{}];",
                fill(state)
            ),
            (Style::Dot, Shape::Terminal) => writeln!(
                self.text,
                "  n{id} [label=\"{label}\", shape=oval{}];",
                fill(state)
            ),
        };
        if let (Some(state), Style::Mermaid) = (state, self.style) {
            self.classes.entry(state).or_default().push(id);
        }
        id
    }

    /// A graph node: its label (with how often the run reached it, when more than once)
    /// and its state. Returns its drawing id and its state.
    fn graph_node(&mut self, label: &str, shape: Shape, step: bool) -> (usize, Option<NodeState>) {
        let id = self.id;
        self.id += 1;
        let counts = self.states.map(|s| s.node(id)).unwrap_or_default();
        let label = if step && counts.total() > 1 {
            format!("{label} ({counts})")
        } else {
            label.to_string()
        };
        (self.node(&label, shape, counts.state()), counts.state())
    }

    fn edges(&mut self, from: &[usize], to: usize) {
        for f in from {
            let _ = match self.style {
                Style::Mermaid => writeln!(self.text, "  n{f} --> n{to}"),
                Style::Dot => writeln!(self.text, "  n{f} -> n{to};"),
            };
        }
    }

    /// Draws `nodes` in sequence after `from`; returns the ids the sequence ends at.
    fn chain(&mut self, nodes: &[Node], mut from: Vec<usize>) -> Vec<usize> {
        for node in nodes {
            from = self.one(node, from);
        }
        from
    }

    fn one(&mut self, node: &Node, from: Vec<usize>) -> Vec<usize> {
        match node {
            Node::Call { name, .. } => {
                let (id, _) = self.graph_node(name, Shape::Step, true);
                self.edges(&from, id);
                vec![id]
            }
            Node::Ctx { op, .. } => {
                let (id, _) = self.graph_node(&format!("ctx.{op}"), Shape::Step, true);
                self.edges(&from, id);
                vec![id]
            }
            Node::Parallel {
                label, branches, ..
            } => {
                let (fork, state) =
                    self.graph_node(&format!("parallel {label}"), Shape::Fork, false);
                self.edges(&from, fork);
                let join = self.node("join", Shape::Fork, finished(state));
                for branch in branches.iter() {
                    let ends = self.chain(branch, vec![fork]);
                    self.edges(&ends, join);
                }
                vec![join]
            }
            Node::Map { label, body } => {
                let (fork, state) =
                    self.graph_node(&format!("map {label} (each item)"), Shape::Fork, false);
                self.edges(&from, fork);
                let ends = self.chain(body, vec![fork]);
                let join = self.node(&format!("all {label}"), Shape::Fork, finished(state));
                self.edges(&ends, join);
                vec![join]
            }
            Node::Loop { kind, body } => {
                let (head, _) = self.graph_node(&format!("{kind} loop"), Shape::Fork, false);
                self.edges(&from, head);
                let ends = self.chain(body, vec![head]);
                self.edges(&ends, head);
                vec![head]
            }
            Node::Branch { kind, arms } => {
                let (fork, _) = self.graph_node(kind, Shape::Fork, false);
                self.edges(&from, fork);
                let mut ends = Vec::new();
                for arm in arms.iter() {
                    ends.extend(self.chain(arm, vec![fork]));
                }
                ends
            }
        }
    }
}

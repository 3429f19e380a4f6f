//! The static graph of a process, as `#[process]` reads it from the body: task calls, parallel
//! blocks and their branches, maps, loops and conditionals. Printable as a tree, Mermaid or DOT,
//! and hashed into the structural fingerprint that a run records.

use std::fmt::{self, Write};

/// One node of a process graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Node {
    /// An awaited call: a task (or an async helper) by function name.
    Call {
        /// The function name.
        name: &'static str,
    },
    /// A `ctx` operation: `log`, `now`, `random`, `new_id`, `sleep`, `sleep_until`,
    /// `breakpoint`, `external`, `select`, `race`.
    Ctx {
        /// The method name.
        op: &'static str,
    },
    /// A `parallel!` block.
    Parallel {
        /// The label (the branches' task names).
        label: &'static str,
        /// Whether it is `settle:` (every branch to its end) rather than fail-fast.
        settle: bool,
        /// The branches, in order.
        branches: &'static [&'static [Node]],
    },
    /// A `ctx.map` over a collection.
    Map {
        /// The map's label.
        label: &'static str,
        /// What runs for each item.
        body: &'static [Node],
    },
    /// A `for`, `while` or `loop`.
    Loop {
        /// `for`, `while` or `loop`.
        kind: &'static str,
        /// The loop body.
        body: &'static [Node],
    },
    /// An `if` or `match` whose arms contain steps.
    Branch {
        /// `if` or `match`.
        kind: &'static str,
        /// The arms, in order (an `if` without `else` has an empty second arm).
        arms: &'static [&'static [Node]],
    },
}

/// The static graph of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graph {
    /// The process name.
    pub process: &'static str,
    /// The body, in order.
    pub nodes: &'static [Node],
}

impl Graph {
    /// A hash of the structure (not of formatting, comments or spans): 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        write_tree(&mut text, self.nodes, 0).expect("writing to a String");
        // FNV-1a, 64 bits: stable across builds and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut out = Drawing::default();
        out.text.push_str("flowchart TD\n");
        out.text
            .push_str(&format!("  n0([\"{}\"])\n", escape(self.process)));
        let end = out.chain(self.nodes, vec![0], Style::Mermaid);
        let last = out.node("end", Shape::Terminal, Style::Mermaid);
        out.edges(&end, last, Style::Mermaid);
        out.text
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = Drawing::default();
        out.text
            .push_str(&format!("digraph \"{}\" {{\n", escape(self.process)));
        out.text.push_str("  node [shape=box];\n");
        out.text.push_str(&format!(
            "  n0 [label=\"{}\", shape=oval];\n",
            escape(self.process)
        ));
        let end = out.chain(self.nodes, vec![0], Style::Dot);
        let last = out.node("end", Shape::Terminal, Style::Dot);
        out.edges(&end, last, Style::Dot);
        out.text.push_str("}\n");
        out.text
    }
}

impl fmt::Display for Graph {
    /// An indented tree, one step per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "process {}", self.process)?;
        let mut text = String::new();
        write_tree(&mut text, self.nodes, 1)?;
        f.write_str(&text)
    }
}

fn write_tree(out: &mut String, nodes: &[Node], depth: usize) -> fmt::Result {
    for node in nodes {
        let pad = "  ".repeat(depth);
        match node {
            Node::Call { name } => writeln!(out, "{pad}task {name}")?,
            Node::Ctx { op } => writeln!(out, "{pad}ctx.{op}")?,
            Node::Parallel {
                label,
                settle,
                branches,
            } => {
                let mode = if *settle { "settle" } else { "fail-fast" };
                writeln!(out, "{pad}parallel {label} ({mode})")?;
                for (i, branch) in branches.iter().enumerate() {
                    writeln!(out, "{pad}  branch {i}")?;
                    write_tree(out, branch, depth + 2)?;
                }
            }
            Node::Map { label, body } => {
                writeln!(out, "{pad}map {label}")?;
                write_tree(out, body, depth + 1)?;
            }
            Node::Loop { kind, body } => {
                writeln!(out, "{pad}{kind} loop")?;
                write_tree(out, body, depth + 1)?;
            }
            Node::Branch { kind, arms } => {
                writeln!(out, "{pad}{kind}")?;
                for (i, arm) in arms.iter().enumerate() {
                    writeln!(out, "{pad}  arm {i}")?;
                    write_tree(out, arm, depth + 2)?;
                }
            }
        }
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('"', "'")
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

#[derive(Default)]
struct Drawing {
    text: String,
    next: usize,
}

impl Drawing {
    fn node(&mut self, label: &str, shape: Shape, style: Style) -> usize {
        self.next += 1;
        let id = self.next;
        let label = escape(label);
        let _ = match (style, shape) {
            (Style::Mermaid, Shape::Step) => writeln!(self.text, "  n{id}[\"{label}\"]"),
            (Style::Mermaid, Shape::Fork) => writeln!(self.text, "  n{id}{{\"{label}\"}}"),
            (Style::Mermaid, Shape::Terminal) => writeln!(self.text, "  n{id}([\"{label}\"])"),
            (Style::Dot, Shape::Step) => writeln!(self.text, "  n{id} [label=\"{label}\"];"),
            (Style::Dot, Shape::Fork) => {
                writeln!(self.text, "  n{id} [label=\"{label}\", shape=diamond];")
            }
            (Style::Dot, Shape::Terminal) => {
                writeln!(self.text, "  n{id} [label=\"{label}\", shape=oval];")
            }
        };
        id
    }

    fn edges(&mut self, from: &[usize], to: usize, style: Style) {
        for f in from {
            let _ = match style {
                Style::Mermaid => writeln!(self.text, "  n{f} --> n{to}"),
                Style::Dot => writeln!(self.text, "  n{f} -> n{to};"),
            };
        }
    }

    /// Draws `nodes` in sequence after `from`; returns the ids the sequence ends at.
    fn chain(&mut self, nodes: &[Node], mut from: Vec<usize>, style: Style) -> Vec<usize> {
        for node in nodes {
            from = self.one(node, from, style);
        }
        from
    }

    fn one(&mut self, node: &Node, from: Vec<usize>, style: Style) -> Vec<usize> {
        match node {
            Node::Call { name } => {
                let id = self.node(name, Shape::Step, style);
                self.edges(&from, id, style);
                vec![id]
            }
            Node::Ctx { op } => {
                let id = self.node(&format!("ctx.{op}"), Shape::Step, style);
                self.edges(&from, id, style);
                vec![id]
            }
            Node::Parallel {
                label, branches, ..
            } => {
                let fork = self.node(&format!("parallel {label}"), Shape::Fork, style);
                self.edges(&from, fork, style);
                let join = self.node("join", Shape::Fork, style);
                for branch in branches.iter() {
                    let ends = self.chain(branch, vec![fork], style);
                    self.edges(&ends, join, style);
                }
                vec![join]
            }
            Node::Map { label, body } => {
                let fork = self.node(&format!("map {label} (each item)"), Shape::Fork, style);
                self.edges(&from, fork, style);
                let ends = self.chain(body, vec![fork], style);
                let join = self.node(&format!("all {label}"), Shape::Fork, style);
                self.edges(&ends, join, style);
                vec![join]
            }
            Node::Loop { kind, body } => {
                let head = self.node(&format!("{kind} loop"), Shape::Fork, style);
                self.edges(&from, head, style);
                let ends = self.chain(body, vec![head], style);
                self.edges(&ends, head, style);
                vec![head]
            }
            Node::Branch { kind, arms } => {
                let fork = self.node(kind, Shape::Fork, style);
                self.edges(&from, fork, style);
                let mut ends = Vec::new();
                for arm in arms.iter() {
                    ends.extend(self.chain(arm, vec![fork], style));
                }
                ends
            }
        }
    }
}

//! The static graph of a process, as `#[process]` reads it from the body: task calls, parallel
//! blocks and their branches, maps, loops and conditionals. Printable as a tree, Mermaid or DOT,
//! and hashed into the structural fingerprint that a run records.
//!
//! `#[process]` compiles the body into this state machine; every journaled step records the
//! node it came from (its id: see [`Graph::node`]), so a run can be drawn on the graph
//! ([`Graph::run_states`], [`Graph::to_mermaid_with`]).

mod draw;
mod run;

pub use run::{NodeCounts, NodeState, RunStates};

use std::fmt::{self, Write};
use std::panic::Location;

/// One node of a process graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Node {
    /// An awaited call: a task (or an async helper) by function name.
    Call {
        /// The function name.
        name: &'static str,
        /// Where the process body calls it: the line of the call's first token (0 when the
        /// function is called indirectly, as the function a `ctx.map` is given).
        line: u32,
        /// The column of the call's first token, from 1 (0 when called indirectly).
        column: u32,
    },
    /// A `ctx` operation: `log`, `now`, `random`, `new_id`, `sleep`, `sleep_until`,
    /// `breakpoint`, `external`, `child`, `select`, `race`.
    Ctx {
        /// The method name.
        op: &'static str,
        /// The line of the method name in the process body.
        line: u32,
        /// The column of the method name, from 1.
        column: u32,
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

impl Node {
    /// The node sequences it contains: a parallel block's branches, a map's or a loop's body,
    /// a conditional's arms; none for a call or a `ctx` operation.
    pub fn parts(&self) -> &[&'static [Node]] {
        match self {
            Node::Call { .. } | Node::Ctx { .. } => &[],
            Node::Parallel { branches, .. } => branches,
            Node::Map { body, .. } | Node::Loop { body, .. } => std::slice::from_ref(body),
            Node::Branch { arms, .. } => arms,
        }
    }

    /// A short label: `task build`, `ctx.sleep`, `parallel a+b`, `map files`, `for loop`,
    /// `if`, `match`.
    pub fn label(&self) -> String {
        match self {
            Node::Call { name, .. } => format!("task {name}"),
            Node::Ctx { op, .. } => format!("ctx.{op}"),
            Node::Parallel { label, .. } => format!("parallel {label}"),
            Node::Map { label, .. } => format!("map {label}"),
            Node::Loop { kind, .. } => format!("{kind} loop"),
            Node::Branch { kind, .. } => kind.to_string(),
        }
    }

    /// Where the process body makes the call (line, column), for a call or a `ctx`
    /// operation whose place is known.
    fn site(&self) -> Option<(u32, u32)> {
        match *self {
            Node::Call { line, column, .. } | Node::Ctx { line, column, .. } if line > 0 => {
                Some((line, column))
            }
            _ => None,
        }
    }
}

/// The static graph of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Graph {
    /// The process name.
    pub process: &'static str,
    /// The source file of the process body (as `file!()` names it): where its nodes' lines
    /// are.
    pub file: &'static str,
    /// The body, in order.
    pub nodes: &'static [Node],
}

/// Calls `f` with every node of `nodes`, its id and its parent's, in preorder (a node, then
/// what it contains), numbering from `*next`.
fn preorder<'g>(
    nodes: &'g [Node],
    parent: Option<u32>,
    next: &mut u32,
    f: &mut impl FnMut(u32, Option<u32>, &'g Node),
) {
    for node in nodes {
        let id = *next;
        *next += 1;
        f(id, parent, node);
        for part in node.parts() {
            preorder(part, Some(id), next, f);
        }
    }
}

/// What a journaled step was called as: a task (by name) or a `ctx` operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller<'a> {
    /// A task call.
    Task(&'a str),
    /// A `ctx` operation.
    Ctx,
}

/// Where the process called a task, and the name of the task's function (a renamed task's
/// node has its function's name): what places the task's step on the graph.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSite {
    at: &'static Location<'static>,
    function: &'static str,
}

impl CallSite {
    /// The caller's site, for the task whose type is `type_path` (`#[task]` names the type
    /// `__minder_task_` and the function's name).
    #[track_caller]
    pub(crate) fn task(type_path: &'static str) -> CallSite {
        let last = type_path.rsplit("::").next().unwrap_or(type_path);
        CallSite {
            at: Location::caller(),
            function: last.strip_prefix("__minder_task_").unwrap_or(last),
        }
    }
}

impl Graph {
    /// A hash of the structure (not of formatting, comments or spans): 16 hex digits.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        write_tree(&mut text, self.nodes, 0, &mut 0, None).expect("writing to a String");
        // FNV-1a, 64 bits: stable across builds and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Every node with its id and its parent's id, in preorder: a node, then what it
    /// contains (a parallel block's branches, a map's body, ...). A node's id is its position
    /// in this order, from 0; journaled steps record it.
    pub fn walk(&self) -> Vec<(u32, Option<u32>, &'static Node)> {
        let mut all = Vec::new();
        preorder(self.nodes, None, &mut 0, &mut |id, parent, node| {
            all.push((id, parent, node))
        });
        all
    }

    /// The node with this id (see [`Graph::walk`]).
    pub fn node(&self, id: u32) -> Option<&'static Node> {
        let mut found = None;
        preorder(self.nodes, None, &mut 0, &mut |i, _, node| {
            if i == id {
                found = Some(node);
            }
        });
        found
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        let mut n = 0;
        preorder(self.nodes, None, &mut 0, &mut |_, _, _| n += 1);
        n
    }

    /// Whether the body has no steps.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `id` for a person: `node 6: ctx.breakpoint at src/deploy.rs:341 (in if)`.
    pub fn describe(&self, id: u32) -> String {
        let all = self.walk();
        let Some(&(_, mut parent, node)) = all.iter().find(|(i, ..)| *i == id) else {
            return format!("node {id}");
        };
        let mut text = format!("node {id}: {}", node.label());
        if let Some((line, _)) = node.site() {
            let _ = write!(text, " at {}:{line}", self.file);
        }
        let mut within = Vec::new();
        while let Some(p) = parent {
            let &(_, up, n) = &all[p as usize];
            within.push(n.label());
            parent = up;
        }
        if !within.is_empty() {
            within.reverse();
            let _ = write!(text, " (in {})", within.join(" > "));
        }
        text
    }

    /// The node a step called at `line:column` of `file` came from: the call or `ctx`
    /// operation the body makes there. A task the body names without calling it (the
    /// function given to `ctx.map`) is found by name; a step of a helper function the body
    /// calls is on no node.
    pub(crate) fn node_at(
        &self,
        file: &str,
        line: u32,
        column: u32,
        caller: Caller<'_>,
    ) -> Option<u32> {
        let (mut exact, mut named, mut on_line, mut indirect) = (None, None, None, None);
        let in_body = file == self.file;
        preorder(self.nodes, None, &mut 0, &mut |id, _, node| {
            let same_name = match (caller, node) {
                (Caller::Task(task), Node::Call { name, .. }) => task == *name,
                (Caller::Ctx, Node::Ctx { .. }) => false,
                _ => return,
            };
            match node.site() {
                Some((l, c)) if in_body && l == line => {
                    if c == column {
                        exact.get_or_insert(id);
                    }
                    // Columns differ where the line has tabs or wide characters before the
                    // call (`Location` counts them wider than `column!()` does).
                    if same_name {
                        named.get_or_insert(id);
                    }
                    on_line.get_or_insert(id);
                }
                None if same_name => {
                    indirect.get_or_insert(id);
                }
                _ => {}
            }
        });
        exact.or(named).or(on_line).or(indirect)
    }

    /// The node of a task's call (see [`Graph::node_at`]).
    pub(crate) fn node_of_task(&self, site: CallSite) -> Option<u32> {
        self.node_of(site.at, Caller::Task(site.function))
    }

    /// [`Graph::node_at`] for a caller's location.
    pub(crate) fn node_of(&self, at: &Location<'_>, caller: Caller<'_>) -> Option<u32> {
        self.node_at(at.file(), at.line(), at.column(), caller)
    }
}

impl fmt::Display for Graph {
    /// An indented tree, one step per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "process {}", self.process)?;
        let mut text = String::new();
        write_tree(&mut text, self.nodes, 1, &mut 0, None)?;
        f.write_str(&text)
    }
}

/// The tree of `nodes` at `depth`, numbering from `*next`; with `states`, each node's
/// states at the end of its line (`  [3 done, 1 running]`).
fn write_tree(
    out: &mut String,
    nodes: &[Node],
    depth: usize,
    next: &mut u32,
    states: Option<&RunStates>,
) -> fmt::Result {
    for node in nodes {
        let id = *next;
        *next += 1;
        let pad = "  ".repeat(depth);
        let mark = match states.map(|s| s.node(id)) {
            Some(counts) if counts.total() > 0 => format!("  [{counts}]"),
            _ => String::new(),
        };
        match node {
            Node::Call { name, .. } => writeln!(out, "{pad}task {name}{mark}")?,
            Node::Ctx { op, .. } => writeln!(out, "{pad}ctx.{op}{mark}")?,
            Node::Parallel {
                label,
                settle,
                branches,
            } => {
                let mode = if *settle { "settle" } else { "fail-fast" };
                writeln!(out, "{pad}parallel {label} ({mode}){mark}")?;
                for (i, branch) in branches.iter().enumerate() {
                    writeln!(out, "{pad}  branch {i}")?;
                    write_tree(out, branch, depth + 2, next, states)?;
                }
            }
            Node::Map { label, body } => {
                writeln!(out, "{pad}map {label}{mark}")?;
                write_tree(out, body, depth + 1, next, states)?;
            }
            Node::Loop { kind, body } => {
                writeln!(out, "{pad}{kind} loop{mark}")?;
                write_tree(out, body, depth + 1, next, states)?;
            }
            Node::Branch { kind, arms } => {
                writeln!(out, "{pad}{kind}{mark}")?;
                for (i, arm) in arms.iter().enumerate() {
                    writeln!(out, "{pad}  arm {i}")?;
                    write_tree(out, arm, depth + 2, next, states)?;
                }
            }
        }
    }
    Ok(())
}

impl Graph {
    /// The tree of [`Display`](fmt::Display) with a run's states at the end of each line it
    /// reached (`task build  [3 done, 1 running]`).
    pub fn to_tree_with(&self, states: &RunStates) -> String {
        let mut text = format!(
            "process {}  [run {}: {}]\n",
            self.process,
            states.run_id,
            states.stands()
        );
        write_tree(&mut text, self.nodes, 1, &mut 0, Some(states)).expect("writing to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: Graph = Graph {
        process: "p",
        file: "src/p.rs",
        nodes: &[
            Node::Call {
                name: "fetch",
                line: 10,
                column: 5,
            },
            Node::Map {
                label: "items",
                body: &[Node::Call {
                    name: "work",
                    line: 0,
                    column: 0,
                }],
            },
            Node::Branch {
                kind: "if",
                arms: &[
                    &[Node::Ctx {
                        op: "breakpoint",
                        line: 12,
                        column: 9,
                    }],
                    &[
                        Node::Call {
                            name: "fetch",
                            line: 14,
                            column: 9,
                        },
                        Node::Call {
                            name: "store",
                            line: 14,
                            column: 30,
                        },
                    ],
                ],
            },
        ],
    };

    #[test]
    fn ids_are_preorder() {
        let ids: Vec<(u32, Option<u32>, String)> = GRAPH
            .walk()
            .into_iter()
            .map(|(i, p, n)| (i, p, n.label()))
            .collect();
        assert_eq!(
            ids,
            vec![
                (0, None, "task fetch".into()),
                (1, None, "map items".into()),
                (2, Some(1), "task work".into()),
                (3, None, "if".into()),
                (4, Some(3), "ctx.breakpoint".into()),
                (5, Some(3), "task fetch".into()),
                (6, Some(3), "task store".into()),
            ]
        );
        assert_eq!(GRAPH.len(), 7);
        assert_eq!(
            GRAPH.node(4).map(Node::label).as_deref(),
            Some("ctx.breakpoint")
        );
        assert_eq!(
            GRAPH.describe(4),
            "node 4: ctx.breakpoint at src/p.rs:12 (in if)"
        );
        assert_eq!(GRAPH.describe(2), "node 2: task work (in map items)");
    }

    #[test]
    fn steps_are_placed_by_their_call_site() {
        let task = |line, column, name| GRAPH.node_at("src/p.rs", line, column, Caller::Task(name));
        assert_eq!(task(10, 5, "fetch"), Some(0));
        assert_eq!(task(14, 9, "fetch"), Some(5));
        assert_eq!(task(14, 30, "store"), Some(6));
        // Tabs before the call: the column is off, the name decides.
        assert_eq!(task(14, 40, "store"), Some(6));
        assert_eq!(task(14, 40, "renamed"), Some(5));
        // The function a map is given is found by name, wherever it was called from.
        assert_eq!(task(99, 1, "work"), Some(2));
        assert_eq!(
            GRAPH.node_at("/rustc/x/core/ops/function.rs", 1, 1, Caller::Task("work")),
            Some(2)
        );
        // A helper's step: no node.
        assert_eq!(task(99, 1, "fetch"), None);
        assert_eq!(
            GRAPH.node_at("src/other.rs", 10, 5, Caller::Task("fetch")),
            None
        );
        assert_eq!(GRAPH.node_at("src/p.rs", 12, 9, Caller::Ctx), Some(4));
        assert_eq!(GRAPH.node_at("src/p.rs", 12, 1, Caller::Ctx), Some(4));
        assert_eq!(GRAPH.node_at("src/p.rs", 10, 5, Caller::Ctx), None);
    }
}

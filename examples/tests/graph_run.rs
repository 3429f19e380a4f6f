//! A run drawn on its process's graph from the command line (issue 12 item 6): a real
//! `deploy-services` run waits at its production breakpoint, `status` names that node,
//! `graph --run` marks it waiting and the builds done (Mermaid classes, DOT colours, tree
//! marks, JSON states); approved and resumed, the whole path is done. A run with a broken
//! service draws its failed builds.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_minder-examples");

fn cli(runs: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--runs-dir", runs.to_str().unwrap()])
        .output()
        .expect("the examples binary runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("JSON on stdout")
}

/// Starts a deployment of `services` to `env`; returns the command's output and the run id.
fn deploy(dir: &Path, env: &str, services: &[&str]) -> (Output, String) {
    let input = dir.join(format!("{env}.json"));
    let body = serde_json::json!({
        "src_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/data/services"),
        "out_dir": dir.join("out"),
        "env": env,
        "services": services,
    });
    std::fs::write(&input, body.to_string()).unwrap();
    let runs = dir.join("runs");
    let out = cli(
        &runs,
        &[
            "run",
            "deploy-services",
            "--input",
            input.to_str().unwrap(),
            "--json",
        ],
    );
    let value: Value = serde_json::from_slice(&out.stdout).expect("run --json prints JSON");
    let id = value["run_id"].as_str().expect("a run id").to_string();
    (out, id)
}

/// The Mermaid node id drawn with a label starting `label`.
fn drawn(mermaid: &str, label: &str) -> String {
    mermaid
        .lines()
        .find_map(|l| {
            let (id, rest) = l.trim().split_once(['[', '{', '('])?;
            let rest = rest.trim_start_matches(['[', '{', '(']);
            rest.starts_with(&format!("\"{label}"))
                .then(|| id.to_string())
        })
        .unwrap_or_else(|| panic!("no node `{label}` drawn in\n{mermaid}"))
}

/// The Mermaid node ids in class `state`.
fn class(mermaid: &str, state: &str) -> Vec<String> {
    mermaid
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("class ")?
                .strip_suffix(&format!(" {state}"))
        })
        .map(|ids| ids.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether the Mermaid node `id` is in any class.
fn classed(mermaid: &str, id: &str) -> bool {
    mermaid
        .lines()
        .filter_map(|l| l.trim().strip_prefix("class "))
        .any(|l| l.split([' ', ',']).any(|w| w == id))
}

/// The JSON node of the graph with this `kind` and name (`name` of a call, `op` of a ctx
/// operation), the `nth` such.
fn json_node<'a>(graph: &'a Value, field: &str, name: &str, nth: usize) -> &'a Value {
    fn all<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| all(i, out)),
            Value::Object(map) => {
                if map.contains_key("kind") {
                    out.push(v);
                }
                for key in ["body", "branches", "arms"] {
                    if let Some(inner) = map.get(key) {
                        all(inner, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut nodes = Vec::new();
    all(&graph["nodes"], &mut nodes);
    nodes
        .into_iter()
        .filter(|n| n[field] == name)
        .nth(nth)
        .unwrap_or_else(|| panic!("no node with {field} `{name}` in {graph:#}"))
}

#[test]
fn a_waiting_run_is_drawn_on_its_graph_and_status_names_its_node() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let (out, id) = deploy(tmp.path(), "prod", &["api", "web", "worker"]);
    assert_eq!(out.status.code(), Some(5), "the run waits: {out:?}");

    // `status` names the node the run waits at.
    let status = stdout(&cli(&runs, &["status", &id]));
    let at = status
        .lines()
        .find(|l| l.starts_with("at "))
        .unwrap_or_else(|| panic!("no `at` line in\n{status}"));
    assert!(
        at.contains("waiting")
            && at.contains(": ctx.breakpoint at examples/src/deploy.rs:")
            && at.ends_with("(in if)"),
        "{status}"
    );
    let status = json(&cli(&runs, &["status", &id, "--json"]));
    let at = &status["at"];
    assert_eq!(at.as_array().map(Vec::len), Some(1), "{status:#}");
    assert_eq!(at[0]["state"], "waiting");
    let node = at[0]["node"].as_u64().unwrap();

    // Mermaid: the builds done, the breakpoint (and the `if` around it) waiting.
    let mermaid = stdout(&cli(&runs, &["graph", "deploy-services", "--run", &id]));
    assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
    for state in ["done", "running", "waiting", "failed", "cancelled"] {
        assert!(
            mermaid.contains(&format!("  classDef {state} fill:#")),
            "{mermaid}"
        );
    }
    let done = class(&mermaid, "done");
    let waiting = class(&mermaid, "waiting");
    assert!(done.contains(&drawn(&mermaid, "build_service (3 done)")));
    assert!(done.contains(&drawn(&mermaid, "map build")));
    assert!(done.contains(&drawn(&mermaid, "all build")));
    assert!(waiting.contains(&drawn(&mermaid, "ctx.breakpoint")));
    assert_eq!(waiting.len(), 2, "the breakpoint and its `if`: {mermaid}");
    assert!(
        !classed(&mermaid, &drawn(&mermaid, "deploy_service")),
        "not reached yet, not classed: {mermaid}"
    );

    // DOT: the same, in colours.
    let dot = stdout(&cli(
        &runs,
        &["graph", "deploy-services", "--run", &id, "--format", "dot"],
    ));
    assert!(
        dot.contains("[label=\"ctx.breakpoint\", style=filled, fillcolor=\"#fff3bf\""),
        "{dot}"
    );
    assert!(
        dot.contains("[label=\"build_service (3 done)\", style=filled, fillcolor=\"#d3f9d8\""),
        "{dot}"
    );
    assert!(dot.contains("[label=\"deploy_service\"];"), "{dot}");

    // The tree, marked.
    let tree = stdout(&cli(
        &runs,
        &["graph", "deploy-services", "--run", &id, "--format", "tree"],
    ));
    assert!(
        tree.starts_with(&format!("process deploy-services  [run {id}: waiting]\n")),
        "{tree}"
    );
    assert!(
        tree.contains("  map build  [3 done]\n    task build_service  [3 done]\n"),
        "{tree}"
    );
    assert!(tree.contains("ctx.breakpoint  [1 waiting]"), "{tree}");
    assert!(tree.contains("    task deploy_service\n"), "{tree}");

    // JSON: per node, its id, state and counts.
    let graph = json(&cli(
        &runs,
        &["graph", "deploy-services", "--run", &id, "--json"],
    ));
    let breakpoint = json_node(&graph, "op", "breakpoint", 0);
    assert_eq!(breakpoint["state"], "waiting");
    assert_eq!(breakpoint["counts"]["waiting"], 1);
    assert_eq!(
        breakpoint["id"].as_u64(),
        Some(node),
        "status names the same node"
    );
    let build = json_node(&graph, "name", "build_service", 0);
    assert_eq!(
        (&build["state"], &build["counts"]["done"]),
        (&"done".into(), &3.into())
    );
    assert!(json_node(&graph, "name", "deploy_service", 0)
        .get("state")
        .is_none());
    assert_eq!(graph["run"]["id"], id.as_str());
    assert_eq!(graph["run"]["end"], Value::Null);
    assert_eq!(graph["run"]["stands"], "waiting");
    assert_eq!(graph["run"]["same_structure"], true);
    assert_eq!(graph["run"]["unplaced"], 0);

    // Approved and resumed: the deployment's path is done, up to the end.
    stdout(&cli(
        &runs,
        &["approve", &id, "approve-production#0", "--feedback", "go"],
    ));
    stdout(&cli(&runs, &["resume", &id]));
    let mermaid = stdout(&cli(&runs, &["graph", "deploy-services", "--run", &id]));
    let done = class(&mermaid, "done");
    for label in [
        "ctx.breakpoint",
        "deploy_service (3 done)",
        "health_check (3 done)",
        "end",
    ] {
        assert!(done.contains(&drawn(&mermaid, label)), "{label}: {mermaid}");
    }
    assert!(class(&mermaid, "waiting").is_empty(), "{mermaid}");
    assert!(
        mermaid.contains(&format!("  %% run {id} (completed)\n")),
        "{mermaid}"
    );
    let status = stdout(&cli(&runs, &["status", &id]));
    assert!(
        !status.contains("\nat "),
        "a finished run stands nowhere: {status}"
    );
    let graph = json(&cli(
        &runs,
        &["graph", "deploy-services", "--run", &id, "--json"],
    ));
    assert_eq!(graph["run"]["end"], "completed");
    assert_eq!(json_node(&graph, "label", "deploy", 0)["counts"]["done"], 6);

    // A run of another process is refused, with the command that draws it.
    let wrong = cli(&runs, &["graph", "batch-files", "--run", &id]);
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains(&format!("graph deploy-services --run {id}")),
        "{err}"
    );
}

#[test]
fn failed_steps_are_drawn_failed_with_their_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // `missing` has no sources: its build fails; the others deploy (the maps settle).
    let (out, id) = deploy(tmp.path(), "staging", &["api", "missing", "web"]);
    assert!(out.status.success(), "{out:?}");
    let mermaid = stdout(&cli(&runs, &["graph", "deploy-services", "--run", &id]));
    let failed = class(&mermaid, "failed");
    assert!(
        failed.contains(&drawn(&mermaid, "build_service (2 done, 1 failed)")),
        "{mermaid}"
    );
    assert!(failed.contains(&drawn(&mermaid, "map build")), "{mermaid}");
    assert!(
        class(&mermaid, "done").contains(&drawn(&mermaid, "deploy_service (2 done)")),
        "{mermaid}"
    );
    // The production `if` was not taken: its breakpoint is not classed.
    assert!(
        !classed(&mermaid, &drawn(&mermaid, "ctx.breakpoint")),
        "{mermaid}"
    );
    let dot = stdout(&cli(
        &runs,
        &["graph", "deploy-services", "--run", &id, "--format", "dot"],
    ));
    assert!(
        dot.contains(
            "[label=\"build_service (2 done, 1 failed)\", style=filled, fillcolor=\"#ffe3e3\""
        ),
        "{dot}"
    );
}

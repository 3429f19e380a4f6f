//! A run on its process's graph: every journaled step records the graph node it came from
//! (task calls in sequence, in `parallel!` branches, in a loop, the function a `ctx.map` is
//! given, a renamed task, `ctx` operations), a helper's steps are on no node, and the states
//! per node follow the run from waiting to completed.

use minder::journal::Event;
use minder::prelude::*;
use minder::{Graph, MemoryStore, NodeCounts, NodeState, Process, RunError, RunStates, Store};
use std::time::{Duration, SystemTime};

#[task]
async fn add(a: u32, b: u32) -> Result<u32, TaskError> {
    Ok(a + b)
}

#[task]
async fn double(x: u32) -> Result<u32, TaskError> {
    Ok(x * 2)
}

#[task(name = "triple")]
async fn times_three(x: u32) -> Result<u32, TaskError> {
    Ok(x * 3)
}

#[task]
async fn boom(x: u32) -> Result<u32, TaskError> {
    Err(TaskError::new(format!("boom {x}")))
}

/// Not a task: its step is on no node of the process's graph.
async fn helper(x: u32) -> Result<u32, TaskError> {
    add(x, 100).await
}

#[process]
async fn shapes(ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let first = add(1, 2).await?;
    let (a, b) = parallel!(double(first), async {
        let x = add(first, 1).await?;
        double(x).await
    })?;
    let mapped = ctx.map("items", vec![1u32, 2, 3], double).await?;
    let mut total = a + b + mapped.iter().sum::<u32>();
    for i in 0..n {
        total = add(total, i).await?;
    }
    total = times_three(total).await?;
    if boom(total).await.is_err() {
        ctx.log("boom failed, as it does");
    }
    total = helper(total).await?;
    let _ = ctx.now();
    let decision = ctx.breakpoint("go", total).await;
    if decision.is_approved() {
        total += 1;
    }
    Ok(total)
}

#[process]
async fn sleeper(ctx: &Ctx, _input: ()) -> Result<(), ProcessError> {
    ctx.log("going to sleep");
    ctx.sleep(Duration::from_secs(2 * 3600)).await;
    Ok(())
}

/// The id of the `nth` (from 0) node whose label is `label`.
fn id_of(graph: &Graph, label: &str, nth: usize) -> u32 {
    graph
        .walk()
        .into_iter()
        .filter(|(_, _, node)| node.label() == label)
        .nth(nth)
        .unwrap_or_else(|| panic!("no node `{label}` #{nth} in\n{graph}"))
        .0
}

fn counts(states: &RunStates, graph: &Graph, label: &str, nth: usize) -> NodeCounts {
    states.node(id_of(graph, label, nth))
}

fn done(n: u32) -> NodeCounts {
    NodeCounts {
        done: n,
        ..NodeCounts::default()
    }
}

#[tokio::test]
async fn each_step_is_placed_on_its_node_and_the_states_follow_the_run() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let graph = <shapes as Process>::graph();
    let run_id = match runner.run::<shapes>(3).await {
        Err(RunError::Suspended { run_id, .. }) => run_id,
        other => panic!("the run did not wait at its breakpoint: {other:?}"),
    };
    let events = store.read(&run_id).await.unwrap();

    // Every step journaled its node, except the helper's.
    let mut placed = 0;
    for e in &events {
        if let Event::StepStarted { task, node, .. } = e {
            match node {
                Some(id) => {
                    placed += 1;
                    let label = graph.node(*id).unwrap().label();
                    let function = task.rsplit("::").next().unwrap();
                    let function = if function == "triple" {
                        "times_three"
                    } else {
                        function
                    };
                    assert_eq!(label, format!("task {function}"), "{e:?}");
                }
                None => assert!(task.ends_with("::add"), "only the helper's step: {e:?}"),
            }
        }
    }
    // add, 2 in the parallel block, 3 map items, 3 loop turns, triple, boom (the helper's add
    // is not placed).
    assert_eq!(placed, 1 + 3 + 3 + 3 + 1 + 1);

    let states = graph.run_states(&events, SystemTime::now());
    assert_eq!(states.run_id, run_id);
    assert_eq!(states.process, "shapes");
    assert_eq!(states.end, None);
    assert_eq!(states.stands(), "waiting");
    assert!(states.same_structure);
    assert_eq!(states.unplaced, 1, "the helper's step");
    assert_eq!(counts(&states, graph, "task add", 0), done(1));
    // The parallel block: `double` in branch 0, `add` then `double` in branch 1.
    assert_eq!(counts(&states, graph, "task double", 0), done(1));
    assert_eq!(counts(&states, graph, "task add", 1), done(1));
    assert_eq!(counts(&states, graph, "task double", 1), done(1));
    assert_eq!(counts(&states, graph, "parallel double+seq", 0), done(3));
    // The function the map is given, once per item.
    assert_eq!(counts(&states, graph, "task double", 2), done(3));
    assert_eq!(counts(&states, graph, "map items", 0), done(3));
    // A node visited on each turn of the loop.
    assert_eq!(counts(&states, graph, "task add", 2), done(3));
    assert_eq!(counts(&states, graph, "for loop", 0), done(3));
    // A renamed task, on the node of its function's name.
    assert_eq!(counts(&states, graph, "task times_three", 0), done(1));
    let boom = counts(&states, graph, "task boom", 0);
    assert_eq!(boom.failed, 1);
    assert_eq!(boom.state(), Some(NodeState::Failed));
    assert_eq!(counts(&states, graph, "ctx.log", 0), done(1));
    assert_eq!(counts(&states, graph, "task helper", 0).total(), 0);
    assert_eq!(counts(&states, graph, "ctx.now", 0), done(1));
    let go = id_of(graph, "ctx.breakpoint", 0);
    assert_eq!(states.node(go).waiting, 1);
    assert_eq!(states.current(graph), vec![(go, NodeState::Waiting)]);
    assert!(
        graph
            .describe(go)
            .starts_with(&format!("node {go}: ctx.breakpoint at {}:", file!())),
        "{}",
        graph.describe(go)
    );

    // Drawn: the waiting breakpoint and the failed task have their classes.
    let mermaid = graph.to_mermaid_with(&states);
    assert!(
        mermaid.contains("classDef waiting fill:#fff3bf"),
        "{mermaid}"
    );
    let class_of = |state: &str| -> Vec<String> {
        mermaid
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("class ")?
                    .strip_suffix(&format!(" {state}"))
            })
            .map(|ids| ids.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    };
    let drawn = |label: &str| -> String {
        mermaid
            .lines()
            .find_map(|l| {
                let (id, rest) = l.trim().split_once('[')?;
                rest.contains(&format!("\"{label}")).then(|| id.to_string())
            })
            .unwrap_or_else(|| panic!("`{label}` not drawn in\n{mermaid}"))
    };
    assert!(
        class_of("waiting").contains(&drawn("ctx.breakpoint")),
        "{mermaid}"
    );
    assert!(class_of("failed").contains(&drawn("boom")), "{mermaid}");
    assert!(mermaid.contains("[\"double (3 done)\"]"), "{mermaid}");
    let tree = graph.to_tree_with(&states);
    assert!(
        tree.contains("  for loop  [3 done]\n    task add  [3 done]\n"),
        "{tree}"
    );
    assert!(tree.contains("ctx.breakpoint  [1 waiting]"), "{tree}");
    let dot = graph.to_dot_with(&states);
    assert!(
        dot.contains("[label=\"ctx.breakpoint\", style=filled, fillcolor=\"#fff3bf\""),
        "{dot}"
    );

    // Approved and resumed: the breakpoint is done, and so is the run.
    runner
        .decide(
            &run_id,
            "go#0",
            minder::Decision::Approved { feedback: None },
        )
        .await
        .unwrap();
    runner.resume::<shapes>(&run_id).await.unwrap();
    let events = store.read(&run_id).await.unwrap();
    let states = graph.run_states(&events, SystemTime::now());
    assert_eq!(states.end, Some("completed"));
    assert_eq!(states.stands(), "completed");
    assert_eq!(states.node(go), done(1));
    assert!(states.current(graph).is_empty());
    let mermaid = graph.to_mermaid_with(&states);
    assert!(mermaid.contains("  %% run ") && mermaid.contains("(completed)"));

    // A journal written before steps recorded their nodes: nothing placed, nothing lost.
    let old: Vec<Event> = events
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap();
            v.as_object_mut().unwrap().remove("node");
            serde_json::from_value(v).unwrap()
        })
        .collect();
    let states = graph.run_states(&old, SystemTime::now());
    assert!(states.nodes.iter().all(|c| c.total() == 0));
    // 13 task steps (the helper's too), the log, the recorded time and the breakpoint.
    assert_eq!(states.unplaced, 13 + 3);
}

#[tokio::test]
async fn a_long_sleep_is_where_a_waiting_run_stands() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let graph = <sleeper as Process>::graph();
    let run_id = match runner.run::<sleeper>(()).await {
        Err(RunError::Suspended { run_id, .. }) => run_id,
        other => panic!("the run did not wait for its sleep: {other:?}"),
    };
    let events = store.read(&run_id).await.unwrap();
    let states = graph.run_states(&events, SystemTime::now());
    let sleep = id_of(graph, "ctx.sleep", 0);
    assert_eq!(states.current(graph), vec![(sleep, NodeState::Waiting)]);
    assert_eq!(counts(&states, graph, "ctx.log", 0), done(1));
    // Once its time has come, the sleep is over.
    let later = SystemTime::now() + Duration::from_secs(3 * 3600);
    let states = graph.run_states(&events, later);
    assert_eq!(states.node(sleep), done(1));
}

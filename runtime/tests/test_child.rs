//! Child processes (`ctx.child::<P>(input)`): a run of their own, typed input and output, a
//! journaled step of the parent that a replay never starts again, a parent that waits while
//! its child waits, and cancellation that reaches the children.

mod common;

use common::*;
use minder::inspect::{summarize, RunState, WaitKind};
use minder::journal::{Event, Outcome, ParentLink};
use minder::prelude::*;
use minder::{MemoryStore, RunError, Store, TaskErrorKind};
use serde_json::json;

#[data]
struct Order {
    tag: String,
    items: Vec<String>,
}

#[data]
struct Packed {
    boxes: usize,
    label: String,
}

/// The child: a step per item, then a label.
#[process]
async fn pack(_ctx: &Ctx, order: Order) -> Result<Packed, ProcessError> {
    for item in &order.items {
        step(order.tag.clone(), format!("pack {item}"), 0).await?;
    }
    Ok(Packed {
        boxes: order.items.len(),
        label: format!("{} x{}", order.tag, order.items.len()),
    })
}

/// The parent: two children (one per half of the items), then a step of its own.
#[process]
async fn fulfil(ctx: &Ctx, order: Order) -> Result<String, ProcessError> {
    let half = order.items.len() / 2;
    let first = ctx
        .child::<pack>(Order {
            tag: order.tag.clone(),
            items: order.items[..half].to_vec(),
        })
        .await?;
    let second = ctx
        .child::<pack>(Order {
            tag: order.tag.clone(),
            items: order.items[half..].to_vec(),
        })
        .await?;
    step(order.tag.clone(), "ship".into(), 0).await?;
    Ok(format!("{} + {}", first.label, second.label))
}

fn order(tag: &str, items: &[&str]) -> Order {
    Order {
        tag: tag.to_string(),
        items: items.iter().map(|s| s.to_string()).collect(),
    }
}

/// The children a parent's journal started: (step key, child run id).
fn children(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::EffectRequested {
                key, kind, input, ..
            } if kind == "child" => Some((key.clone(), input["run_id"].as_str()?.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_parent_gets_its_children_s_typed_output_and_each_has_a_run_of_its_own() {
    let tag = "child-output";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let done = runner
        .run::<fulfil>(order(tag, &["a", "b", "c"]))
        .await
        .unwrap();
    assert_eq!(done.output, format!("{tag} x1 + {tag} x2"));
    for what in ["pack a", "pack b", "pack c", "ship"] {
        assert_eq!(count(tag, what), 1, "{what}");
    }
    let journal = store.events(&done.run_id).unwrap();
    let kids = children(&journal);
    assert_eq!(
        kids.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["pack#0", "pack#1"]
    );
    for (key, child) in &kids {
        // The child's id comes from the parent's and the step's.
        assert!(child.starts_with(&format!("{}-", done.run_id)), "{child}");
        let events = store.events(child).unwrap();
        let Event::RunCreated {
            process, parent, ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        assert_eq!(process, "pack");
        let link = ParentLink {
            run_id: done.run_id.clone(),
            key: key.clone(),
        };
        assert_eq!(parent.as_ref(), Some(&link));
        let summary = summarize(&events);
        assert_eq!(summary.state, RunState::Completed);
        assert_eq!(summary.parent, Some(link));
        // The parent journaled the child's end: its output.
        let resolved = journal.iter().find_map(|e| match e {
            Event::EffectResolved { key: k, outcome } if k == key => Some(outcome.clone()),
            _ => None,
        });
        let Some(Event::RunCompleted { output }) = events.last() else {
            panic!("{events:?}")
        };
        assert_eq!(resolved, Some(Outcome::Ok(output.clone())));
    }
    // The parent's summary lists its children as resolved effects of kind `child`.
    let summary = summarize(&journal);
    let effects: Vec<_> = summary
        .effects
        .iter()
        .map(|e| (e.kind, e.resolved, e.child_run().map(str::to_string)))
        .collect();
    assert_eq!(
        effects,
        kids.iter()
            .map(|(_, id)| (WaitKind::Child, true, Some(id.clone())))
            .collect::<Vec<_>>()
    );
    // Resuming the ended parent returns its output again and starts nothing.
    let again = runner.resume::<fulfil>(&done.run_id).await.unwrap();
    assert_eq!(again.output, done.output);
    assert_eq!(store.list().await.unwrap().len(), 3);
    assert_eq!(count(tag, "pack a"), 1);
}

#[process]
async fn broken(_ctx: &Ctx, tag: String) -> Result<u32, ProcessError> {
    failing(tag, "break".into(), 0).await?;
    Ok(1)
}

#[process]
async fn tolerant(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    match ctx.child::<broken>(tag).await {
        Ok(n) => Ok(format!("got {n}")),
        Err(e) => Ok(format!("handled {:?}: {}", e.kind, e.message)),
    }
}

#[tokio::test]
async fn a_failed_child_is_a_task_error_its_parent_handles() {
    let runner = Runner::in_memory();
    let done = runner.run::<tolerant>("child-fails".into()).await.unwrap();
    assert!(
        done.output
            .starts_with("handled Failed: child process `broken` (run "),
        "{}",
        done.output
    );
    assert!(
        done.output.ends_with("failed: task failed: break-failed"),
        "{}",
        done.output
    );
}

#[process]
async fn approval(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    step(tag.clone(), "prepare".into(), 0).await?;
    let decision = ctx.breakpoint("go", &tag).await;
    if !decision.is_approved() {
        return Err(ProcessError::msg("rejected"));
    }
    step(tag.clone(), "approved".into(), 0).await?;
    Ok(format!("{tag} approved"))
}

#[process]
async fn release(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    step(tag.clone(), "build".into(), 0).await?;
    let approved = ctx.child::<approval>(tag.clone()).await?;
    step(tag.clone(), "publish".into(), 0).await?;
    Ok(format!("published ({approved})"))
}

/// The child the parent's suspension waits for.
fn waited_child(err: &RunError) -> (String, String) {
    match err {
        RunError::Suspended { waiting, .. } => {
            assert_eq!(waiting.len(), 1, "{waiting:?}");
            assert_eq!(waiting[0].kind, WaitKind::Child);
            assert_eq!(waiting[0].name, "approval");
            let child = waiting[0].input["run_id"].as_str().unwrap().to_string();
            (waiting[0].key.clone(), child)
        }
        other => panic!("expected a waiting run, got {other}"),
    }
}

#[tokio::test]
async fn a_child_waiting_for_a_person_suspends_its_parent_and_resuming_the_parent_resumes_it() {
    let tag = "child-waits";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<release>(&tag.to_string()).await.unwrap();
    let err = runner.resume::<release>(&id).await.unwrap_err();
    let (key, child) = waited_child(&err);
    assert_eq!(key, "approval#0");
    assert!(
        err.to_string().contains("child `approval` (approval#0)"),
        "{err}"
    );
    // Both wait: the parent for its child, the child for its breakpoint.
    let parent = summarize(&store.events(&id).unwrap());
    assert_eq!(parent.state, RunState::Waiting);
    let pending: Vec<_> = parent.pending().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(pending, [(WaitKind::Child, "approval#0")]);
    let kid = summarize(&store.events(&child).unwrap());
    assert_eq!(kid.state, RunState::Waiting);
    assert_eq!(
        kid.parent.as_ref().map(|p| p.run_id.as_str()),
        Some(id.as_str())
    );
    let pending: Vec<_> = kid.pending().map(|e| (e.kind, e.key.as_str())).collect();
    assert_eq!(pending, [(WaitKind::Breakpoint, "go#0")]);
    // Resuming the parent before the decision resumes the child, which still waits.
    let err = runner.resume::<release>(&id).await.unwrap_err();
    assert_eq!(waited_child(&err).1, child);
    // A result cannot be posted to a child step: only the child's end resolves it.
    let posted = runner
        .post::<release>(&id, "approval#0", Ok(json!("approved")))
        .await
        .unwrap_err();
    assert!(posted.to_string().contains("child"), "{posted}");
    // The person approves the child's breakpoint; resuming the parent finishes both.
    let yes = Decision::Approved { feedback: None };
    runner.decide(&child, "go#0", yes).await.unwrap();
    let done = runner.resume::<release>(&id).await.unwrap();
    assert_eq!(done.output, format!("published ({tag} approved)"));
    for what in ["build", "prepare", "approved", "publish"] {
        assert_eq!(count(tag, what), 1, "{what}");
    }
    let kid = summarize(&store.events(&child).unwrap());
    assert_eq!(kid.state, RunState::Completed);
}

#[tokio::test]
async fn a_child_resumed_on_its_own_tells_its_parent() {
    let tag = "child-resumed-alone";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let err = runner.run::<release>(tag.to_string()).await.unwrap_err();
    let RunError::Suspended { run_id: id, .. } = &err else {
        panic!("{err}")
    };
    let (key, child) = waited_child(&err);
    let yes = Decision::Approved { feedback: None };
    runner.decide(&child, "go#0", yes).await.unwrap();
    // The child is finished on its own (as a worker would): it journals its end into the
    // parent's step, so the parent's resume reads it from its own journal.
    runner.resume::<approval>(&child).await.unwrap();
    let parent = store.events(id).unwrap();
    assert!(
        matches!(parent.last(), Some(Event::EffectResolved { key: k, outcome: Outcome::Ok(_) }) if *k == key),
        "{:?}",
        parent.last()
    );
    let done = runner.resume::<release>(id).await.unwrap();
    assert_eq!(done.output, format!("published ({tag} approved)"));
    assert_eq!(count(tag, "approved"), 1);
}

#[tokio::test]
async fn a_child_resumed_after_it_ended_tells_its_parent_again() {
    let tag = "child-reminds";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let err = runner.run::<release>(tag.to_string()).await.unwrap_err();
    let RunError::Suspended { run_id: id, .. } = &err else {
        panic!("{err}")
    };
    let (key, child) = waited_child(&err);
    let parked = store.events(id).unwrap();
    runner
        .decide(&child, "go#0", Decision::Approved { feedback: None })
        .await
        .unwrap();
    runner.resume::<approval>(&child).await.unwrap();
    // As if the child's runner had died before it told the parent: the parent's journal as
    // it was while parked.
    store.set_events(id, parked.clone());
    runner.resume::<approval>(&child).await.unwrap();
    let told = store.events(id).unwrap();
    assert_eq!(told.len(), parked.len() + 1);
    assert!(
        matches!(told.last(), Some(Event::EffectResolved { key: k, .. }) if *k == key),
        "{:?}",
        told.last()
    );
    // Once is enough: resuming it again writes nothing more.
    runner.resume::<approval>(&child).await.unwrap();
    assert_eq!(store.events(id).unwrap().len(), told.len());
    let done = runner.resume::<release>(id).await.unwrap();
    assert_eq!(done.output, format!("published ({tag} approved)"));
}

#[process]
async fn nested(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    Ok(ctx.child::<release>(tag).await?)
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_children_and_theirs() {
    let tag = "child-cancel";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let err = runner.run::<nested>(tag.to_string()).await.unwrap_err();
    let RunError::Suspended { run_id: top, .. } = &err else {
        panic!("{err}")
    };
    // nested -> release -> approval (waiting for its breakpoint).
    let middle = children(&store.events(top).unwrap())[0].1.clone();
    let bottom = children(&store.events(&middle).unwrap())[0].1.clone();
    assert_eq!(
        summarize(&store.events(&bottom).unwrap()).state,
        RunState::Waiting
    );
    runner.cancel(top, Some("not today".into())).await.unwrap();
    for id in [top, &middle, &bottom] {
        let summary = summarize(&store.events(id).unwrap());
        assert_eq!(summary.state, RunState::Cancelled, "{id}");
        assert_eq!(summary.error.as_deref(), Some("not today"), "{id}");
    }
    // Nothing of theirs runs again.
    let err = runner.resume::<nested>(top).await.unwrap_err();
    assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
    assert_eq!(count(tag, "approved"), 0);
}

#[process]
async fn holds(_ctx: &Ctx, tag: String) -> Result<u32, ProcessError> {
    step(tag.clone(), "before".into(), 0).await?;
    Ok(gate(tag).await?)
}

#[process]
async fn waits_on_holds(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    match ctx.child::<holds>(tag).await {
        Ok(n) => Ok(format!("got {n}")),
        Err(e) => Ok(format!("{:?}: {}", e.kind, e.message)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_driving_its_child_cancels_both() {
    let tag = "child-cancel-driven";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner
        .create::<waits_on_holds>(&tag.to_string())
        .await
        .unwrap();
    let driving = tokio::spawn({
        let (runner, id) = (runner.clone(), id.clone());
        async move { runner.resume::<waits_on_holds>(&id).await }
    });
    // The parent drives its child, which is inside `gate`.
    wait_for(tag, "gate", 1).await;
    let child = children(&store.events(&id).unwrap())[0].1.clone();
    runner.cancel(&id, None).await.unwrap();
    let err = driving.await.unwrap().unwrap_err();
    assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
    assert_eq!(
        summarize(&store.events(&child).unwrap()).state,
        RunState::Cancelled
    );
    open_gate(tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_cancelled_on_its_own_is_an_error_its_parent_handles() {
    let tag = "child-cancelled-alone";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner
        .create::<waits_on_holds>(&tag.to_string())
        .await
        .unwrap();
    let driving = tokio::spawn({
        let (runner, id) = (runner.clone(), id.clone());
        async move { runner.resume::<waits_on_holds>(&id).await }
    });
    wait_for(tag, "gate", 1).await;
    let child = children(&store.events(&id).unwrap())[0].1.clone();
    runner.cancel(&child, Some("no".into())).await.unwrap();
    let done = driving.await.unwrap().unwrap();
    assert_eq!(
        done.output,
        format!(
            "{:?}: child process `holds` (run {child}) was cancelled: no",
            TaskErrorKind::Cancelled
        )
    );
    open_gate(tag);
}

#[process]
async fn fails_beside_a_child(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let (_, n) = parallel!(
        failing(tag.clone(), "boom".into(), 20),
        ctx.child::<holds>(tag.clone())
    )?;
    Ok(format!("{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_abandoned_by_a_fail_fast_block_is_cancelled() {
    let tag = "child-abandoned";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let err = runner
        .run::<fails_beside_a_child>(tag.to_string())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("boom-failed"), "{err}");
    let RunError::Failed { .. } = err else {
        panic!("{err}")
    };
    let parent = store.list().await.unwrap()[0].clone();
    let child = children(&store.events(&parent).unwrap())[0].1.clone();
    // The sibling's failure dropped the child's step: the child is cancelled, not left behind.
    wait_until("the abandoned child to be cancelled", || {
        summarize(&store.events(&child).unwrap()).state == RunState::Cancelled
    })
    .await;
    let summary = summarize(&store.events(&child).unwrap());
    let reason = summary.error.unwrap();
    assert!(
        reason.starts_with("abandoned by its parent run"),
        "{reason}"
    );
    assert_eq!(count(tag, "gate"), 1);
    open_gate(tag);
}

#[tokio::test]
async fn a_replay_that_starts_a_child_with_other_input_is_a_divergence() {
    let tag = "child-diverges";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone()).allow_version_change(true);
    let err = runner.run::<release>(tag.to_string()).await.unwrap_err();
    let RunError::Suspended { run_id, .. } = err else {
        panic!("{err}")
    };
    // Same step key (`approval#0`), another input: the journal has the child's input.
    let events = store.events(&run_id).unwrap();
    let mut edited = events.clone();
    for e in edited.iter_mut() {
        if let Event::EffectRequested { input, .. } = e {
            input["input"] = json!("another tag");
        }
    }
    store.set_events(&run_id, edited);
    let err = runner.resume::<release>(&run_id).await.unwrap_err();
    assert!(matches!(err, RunError::NonDeterminism { .. }), "{err}");
    assert!(
        err.to_string().contains("starts child process `approval`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_mocked_child_makes_no_run_and_the_saved_journal_replays() {
    let tag = "child-mocked";
    let store = MemoryStore::new();
    let runner =
        Runner::new(store.clone()).mock_child::<approval>(|tag| Ok(format!("{tag} mocked")));
    let done = runner.run::<release>(tag.to_string()).await.unwrap();
    assert_eq!(done.output, format!("published ({tag} mocked)"));
    assert_eq!(
        store.list().await.unwrap(),
        std::slice::from_ref(&done.run_id)
    );
    assert_eq!(count(tag, "prepare"), 0);
    // The journal of a parent replays against the code without starting any child.
    let journal = store.events(&done.run_id).unwrap();
    let replayed = minder::testing::replay_journal::<release>(journal)
        .await
        .unwrap();
    assert_eq!(replayed, minder::testing::Replay::Completed);
}

/// `resume --wait` on a parent whose child waits for a person: it wakes when the child's
/// breakpoint is decided (the parent's journal does not change), resumes the parent, which
/// resumes the child, and both complete.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_wait_on_a_parent_wakes_when_what_its_child_waits_for_is_decided() {
    let tag = "child-resume-wait";
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = dir.path().join("runs");
    let registry = std::sync::Arc::new(
        minder::cli::Registry::new()
            .process::<release>()
            .process::<approval>(),
    );
    let runs_s = runs.display().to_string();
    let cli = move |args: Vec<String>| {
        let registry = registry.clone();
        let runs_s = runs_s.clone();
        async move {
            let mut all = vec!["minder".to_string()];
            all.extend(args);
            all.extend(["--runs-dir".into(), runs_s, "--json".into()]);
            minder::cli::run(&registry, all).await
        }
    };
    let input = dir.path().join("input.json");
    std::fs::write(&input, format!("{tag:?}")).unwrap();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let code = cli(args(&[
        "run",
        "release",
        "--input",
        input.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(code, std::process::ExitCode::from(5));
    let store = minder::FileStore::new(&runs);
    let ids = store.list().await.unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let (parent, child) = (ids[0].clone(), ids[1].clone());
    assert!(child.starts_with(&parent), "{ids:?}");
    let waiting = tokio::spawn(cli(args(&["resume", &parent, "--wait"])));
    // Waiting for news: nothing ran since.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    let yes = Decision::Approved { feedback: None };
    Runner::new(store.clone())
        .decide(&child, "go#0", yes)
        .await
        .unwrap();
    let code = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    for id in [&parent, &child] {
        let s = summarize(&store.read(id).await.unwrap());
        assert_eq!(s.state, RunState::Completed, "{id}");
    }
    assert_eq!(count(tag, "approved"), 1);
}

/// Set in the OS process `status_links_a_waiting_parent_and_its_child` starts: the command
/// line's arguments, one a line, which it runs (so its standard output can be read).
#[cfg(feature = "cli")]
const CLI_ARGS: &str = "MINDER_TEST_CHILD_CLI";

#[cfg(feature = "cli")]
fn registry() -> minder::cli::Registry {
    minder::cli::Registry::new()
        .process::<release>()
        .process::<approval>()
}

/// `status`, `tasks --pending` and `events` on the command line link a waiting parent and
/// its waiting child both ways.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_links_a_waiting_parent_and_its_child() {
    if let Ok(args) = std::env::var(CLI_ARGS) {
        let all = std::iter::once("minder").chain(args.lines());
        minder::cli::run(&registry(), all).await;
        return;
    }
    let tag = "child-status";
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = dir.path().join("runs");
    let runs_s = runs.display().to_string();
    let input = dir.path().join("input.json");
    std::fs::write(&input, format!("{tag:?}")).unwrap();
    let run = [
        "run",
        "release",
        "--input",
        input.to_str().unwrap(),
        "--runs-dir",
        &runs_s,
    ];
    let code = minder::cli::run(&registry(), std::iter::once("minder").chain(run)).await;
    assert_eq!(code, std::process::ExitCode::from(5));
    let ids = minder::FileStore::new(&runs).list().await.unwrap();
    let (parent, child) = (ids[0].as_str(), ids[1].as_str());
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "status_links_a_waiting_parent_and_its_child",
                "--nocapture",
            ])
            .env(
                CLI_ARGS,
                [args, &["--runs-dir", &runs_s]].concat().join("\n"),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = cli(&["status", parent]);
    for line in [
        "state    waiting".to_string(),
        format!("waiting  child `approval` (approval#0): run {child}"),
        format!("child    {child} is waiting, for breakpoint `go` (go#0)"),
    ] {
        assert!(status.contains(&line), "{line}\n{status}");
    }
    let status = cli(&["status", child]);
    let line = format!("parent   {parent} (its step approval#0 waits for this run)");
    assert!(status.contains(&line), "{line}\n{status}");
    let pending = cli(&["tasks", parent, "--pending"]);
    assert!(
        pending.contains("pending   child       approval#0"),
        "{pending}"
    );
    assert!(pending.contains(child), "{pending}");
    let events = cli(&["events", child]);
    let line = format!("parent={parent} step=approval#0");
    assert!(events.contains(&line), "{line}\n{events}");
}

// ---- On the runs directory: a crash (SIGKILL) and workers ----

mod on_disk {
    use super::children;
    use super::common::{self, PATIENCE};
    use minder::inspect::{summarize, RunState};
    use minder::journal::Event;
    use minder::prelude::*;
    use minder::store::{FileStore, Store};
    use minder::worker::{Processes, Worker, WorkerReport};
    use std::io::Write;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[data]
    #[derive(Clone)]
    pub struct Job {
        /// A file each task appends `<tag> <what>` to: what really ran, across processes.
        log: String,
        tag: String,
        /// `hold` waits until the file `<gates>-<name>` exists.
        gates: String,
    }

    fn append(log: &str, line: String) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        file.write_all(format!("{line}\n").as_bytes()).unwrap();
        file.sync_data().unwrap();
    }

    #[task]
    async fn mark(log: String, tag: String, what: String) -> Result<String, TaskError> {
        append(&log, format!("{tag} {what}"));
        Ok(what)
    }

    #[task]
    async fn hold(log: String, tag: String, gates: String, name: String) -> Result<u32, TaskError> {
        append(&log, format!("{tag} hold {name}"));
        while !Path::new(&format!("{gates}-{name}")).exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(10)
    }

    /// The child: a step, then a step that waits for gate `child`.
    #[process]
    async fn crate_child(_ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
        mark(job.log.clone(), job.tag.clone(), "child 1".into()).await?;
        let n = hold(job.log, job.tag, job.gates, "child".into()).await?;
        Ok(n + 1)
    }

    /// The parent: the child, then a step that waits for gate `parent`, then a last step.
    #[process]
    async fn crate_parent(ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
        let n = ctx.child::<crate_child>(job.clone()).await?;
        hold(
            job.log.clone(),
            job.tag.clone(),
            job.gates.clone(),
            "parent".into(),
        )
        .await?;
        mark(job.log, job.tag, format!("parent got {n}")).await?;
        Ok(format!("child said {n}"))
    }

    /// Asks for a decision, then marks.
    #[process]
    async fn asks(ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
        if !ctx.breakpoint("go", &job.tag).await.is_approved() {
            return Err(ProcessError::msg("rejected"));
        }
        mark(job.log, job.tag, "asked".into())
            .await
            .map_err(ProcessError::from)
    }

    /// Two children at once, then one that waits for a person.
    #[process]
    async fn fan_out(ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
        let mut left = job.clone();
        left.tag = format!("{}-left", job.tag);
        let mut right = job.clone();
        right.tag = format!("{}-right", job.tag);
        let (a, b) = parallel!(ctx.child::<leaf>(left), ctx.child::<leaf>(right))?;
        let asked = ctx.child::<asks>(job.clone()).await?;
        mark(job.log, job.tag, "joined".into()).await?;
        Ok(format!("{a} {b} {asked}"))
    }

    #[process]
    async fn leaf(_ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
        Ok(mark(job.log, job.tag.clone(), "leaf".into()).await? + " " + &job.tag)
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("child-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
    }

    fn job(dir: &Path, tag: &str) -> Job {
        Job {
            log: dir.join("log").display().to_string(),
            tag: tag.to_string(),
            gates: dir.join("gate").display().to_string(),
        }
    }

    fn open(job: &Job, gate: &str) {
        std::fs::write(format!("{}-{gate}", job.gates), "").unwrap();
    }

    fn lines(log: &Path) -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn runner(runs: &Path) -> Runner {
        Runner::new(FileStore::new(runs))
    }

    /// Waits until the journal of `id` satisfies `done`.
    async fn wait_journal(
        store: &FileStore,
        id: &str,
        what: &str,
        done: impl Fn(&[Event]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if store.read(id).await.is_ok_and(|e| done(&e)) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn ended(events: &[Event]) -> bool {
        events.last().is_some_and(|e| e.run_end().is_some())
    }

    /// Set in the OS process `a_child_is_not_run_again_when_its_crashed_parent_resumes` starts:
    /// `<runs dir>\n<run id>` of the parent run it resumes.
    const RESUME: &str = "MINDER_TEST_CHILD_RESUME";

    /// Starts this test's binary as a runner that resumes the parent run.
    fn resumer(runs: &Path, id: &str) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "on_disk::a_child_is_not_run_again_when_its_crashed_parent_resumes",
                "--nocapture",
            ])
            .env(RESUME, format!("{}\n{id}", runs.display()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_child_is_not_run_again_when_its_crashed_parent_resumes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        if let Ok(what) = std::env::var(RESUME) {
            let (runs, id) = what.split_once('\n').unwrap();
            rt.block_on(async {
                let _ = runner(Path::new(runs)).resume::<crate_parent>(id).await;
            });
            return;
        }
        rt.block_on(async {
            let dir = scratch();
            let (runs, log) = (dir.path().join("runs"), dir.path().join("log"));
            let job = job(dir.path(), "k");
            let id = runner(&runs).create::<crate_parent>(&job).await.unwrap();
            let store = FileStore::new(&runs);

            // 1. Killed while the child (driven inline) is inside its second step.
            let mut os = resumer(&runs, &id);
            common::wait_until("the child to reach its hold", || {
                lines(&log).contains(&"k hold child".to_string())
            })
            .await;
            os.kill().unwrap(); // SIGKILL
            os.wait().unwrap();
            assert_eq!(lines(&log), ["k child 1", "k hold child"]);
            let child = children(&store.read(&id).await.unwrap())[0].1.clone();

            // 2. Resumed, the child finishes (its first step is not run again), the parent
            // journals its end and goes on to its own hold, where it is killed again.
            open(&job, "child");
            let mut os = resumer(&runs, &id);
            common::wait_until("the parent to reach its hold", || {
                lines(&log).contains(&"k hold parent".to_string())
            })
            .await;
            os.kill().unwrap(); // SIGKILL
            os.wait().unwrap();
            assert_eq!(
                lines(&log),
                ["k child 1", "k hold child", "k hold child", "k hold parent"]
            );
            assert_eq!(
                summarize(&store.read(&child).await.unwrap()).state,
                RunState::Completed
            );

            // 3. Resumed once more: the child is done and is not run again; the parent's
            // hold, in flight at the kill, runs again, and the parent completes.
            open(&job, "parent");
            let done = runner(&runs).resume::<crate_parent>(&id).await.unwrap();
            assert_eq!(done.output, "child said 11");
            assert_eq!(
                lines(&log),
                [
                    "k child 1",
                    "k hold child",
                    "k hold child",
                    "k hold parent",
                    "k hold parent",
                    "k parent got 11"
                ]
            );
            // One child run, created once, ended once.
            let events = store.read(&child).await.unwrap();
            let created = events
                .iter()
                .filter(|e| matches!(e, Event::RunCreated { .. }))
                .count();
            let ends = events.iter().filter(|e| e.run_end().is_some()).count();
            assert_eq!((created, ends), (1, 1));
            assert_eq!(store.list().await.unwrap().len(), 2);
        });
    }

    /// Starts a worker on `runs` with `processes`; returns its stop switch and its report.
    fn start_worker(
        runs: &Path,
        processes: Processes,
        notices: Arc<Mutex<Vec<String>>>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<WorkerReport>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(runner(runs), processes)
            .concurrency(4)
            .poll(Duration::from_millis(20))
            .on_notice(move |n| notices.lock().unwrap().push(n.to_string()));
        let handle = tokio::spawn(async move {
            worker
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        });
        (stop, handle)
    }

    fn all() -> Processes {
        Processes::new()
            .process::<fan_out>()
            .process::<leaf>()
            .process::<asks>()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_drive_a_parent_and_its_children_and_wake_the_parent_when_a_child_ends() {
        let dir = scratch();
        let (runs, log) = (dir.path().join("runs"), dir.path().join("log"));
        let job = job(dir.path(), "w");
        let id = runner(&runs).submit::<fan_out>(&job).await.unwrap();
        let store = FileStore::new(&runs);
        let notices = Arc::new(Mutex::new(Vec::new()));
        let (stop, worker) = start_worker(&runs, all(), notices.clone());
        // The two leaves run on the worker; the third child waits for a person, and so does
        // the parent, for it: both parked, not held.
        wait_journal(&store, &id, "the parent to wait for `asks`", |events| {
            matches!(events.last(), Some(Event::Suspended { waiting, .. }) if waiting == &["asks#0".to_string()])
        })
        .await;
        let kids = children(&store.read(&id).await.unwrap());
        // Each child in its branch's scope.
        let keys: Vec<&str> = kids.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "par(child+child)#0/b0/leaf#0",
                "par(child+child)#0/b1/leaf#0",
                "asks#0"
            ]
        );
        let asks_id = kids[2].1.clone();
        wait_journal(
            &store,
            &asks_id,
            "the child to wait for its breakpoint",
            |events| matches!(events.last(), Some(Event::Suspended { .. })),
        )
        .await;
        let mut ran = lines(&log);
        ran.sort();
        assert_eq!(ran, ["w-left leaf", "w-right leaf"]);
        // A decision for the child: a worker finishes it, it wakes the parent, a worker
        // finishes the parent.
        let yes = Decision::Approved { feedback: None };
        runner(&runs).decide(&asks_id, "go#0", yes).await.unwrap();
        wait_journal(&store, &id, "the parent to end", ended).await;
        stop.send(()).unwrap();
        let report = worker.await.unwrap();
        let done = summarize(&store.read(&id).await.unwrap());
        assert_eq!(done.state, RunState::Completed, "{done:?}");
        assert_eq!(
            done.output,
            Some(serde_json::json!("leaf w-left leaf w-right asked"))
        );
        for (key, kid) in &kids {
            let s = summarize(&store.read(kid).await.unwrap());
            assert_eq!(s.state, RunState::Completed, "{kid}");
            assert_eq!(
                s.parent
                    .as_ref()
                    .map(|p| (p.run_id.as_str(), p.key.as_str())),
                Some((id.as_str(), key.as_str()))
            );
        }
        let mut ran = lines(&log);
        ran.sort();
        assert_eq!(ran, ["w asked", "w joined", "w-left leaf", "w-right leaf"]);
        assert_eq!(
            (report.completed, report.errors, report.lost),
            (4, 0, 0),
            "{report:?}"
        );
        assert!(notices.lock().unwrap().is_empty(), "{notices:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_of_a_process_a_worker_lacks_waits_for_a_worker_that_has_it() {
        let dir = scratch();
        let (runs, log) = (dir.path().join("runs"), dir.path().join("log"));
        let job = job(dir.path(), "u");
        let id = runner(&runs).submit::<crate_parent>(&job).await.unwrap();
        let store = FileStore::new(&runs);
        // A worker without the child's process: the parent parks waiting for its child, which
        // the worker leaves for another and says so.
        let notices = Arc::new(Mutex::new(Vec::new()));
        let (stop, worker) = start_worker(
            &runs,
            Processes::new().process::<crate_parent>(),
            notices.clone(),
        );
        wait_journal(&store, &id, "the parent to wait for its child", |events| {
            matches!(events.last(), Some(Event::Suspended { .. }))
        })
        .await;
        common::wait_until("the worker to say it leaves the child", || {
            !notices.lock().unwrap().is_empty()
        })
        .await;
        let notice = notices.lock().unwrap()[0].clone();
        assert!(
            notice.contains("of process `crate-child`, which this worker does not have"),
            "{notice}"
        );
        stop.send(()).unwrap();
        worker.await.unwrap();
        assert!(lines(&log).is_empty());
        // A worker that has it finishes the child, and then the parent.
        open(&job, "child");
        open(&job, "parent");
        let both = Processes::new()
            .process::<crate_parent>()
            .process::<crate_child>();
        let (stop, worker) = start_worker(&runs, both, notices.clone());
        wait_journal(&store, &id, "the parent to end", ended).await;
        stop.send(()).unwrap();
        worker.await.unwrap();
        assert_eq!(
            summarize(&store.read(&id).await.unwrap()).output,
            Some(serde_json::json!("child said 11"))
        );
        assert_eq!(
            lines(&log),
            [
                "u child 1",
                "u hold child",
                "u hold parent",
                "u parent got 11"
            ]
        );
    }
}

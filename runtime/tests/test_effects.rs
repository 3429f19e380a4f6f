//! Breakpoints and external tasks: a run stops as waiting, the result is posted or decided,
//! and the next resume continues without redoing finished steps (BRIEF §2, §4 "Suspension").

mod common;

use common::*;
use minder::inspect::WaitKind;
use minder::journal::Event;
use minder::prelude::*;
use minder::{CancelProblem, EffectProblem, MemoryStore, RunError, Store};
use serde_json::json;

#[process]
async fn deploy(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let build = step(tag.clone(), "build".into(), 0).await?;
    let decision = ctx
        .breakpoint(
            "approve-production",
            format!("deploy {build} to production?"),
        )
        .await;
    let feedback = decision.feedback().unwrap_or("none").to_string();
    if decision.is_approved() {
        let done = step(tag.clone(), "deploy".into(), 0).await?;
        Ok(format!("{done} ({feedback})"))
    } else {
        Ok(format!("not deployed ({feedback})"))
    }
}

fn waiting_keys(err: &RunError) -> Vec<String> {
    match err {
        RunError::Suspended { waiting, .. } => waiting.iter().map(|w| w.key.clone()).collect(),
        other => panic!("expected a waiting run, got {other}"),
    }
}

#[tokio::test]
async fn breakpoint_suspends_and_an_approval_resumes() {
    let tag = "bp-approve";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<deploy>(&tag.to_string()).await.unwrap();
    let err = runner.resume::<deploy>(&id).await.unwrap_err();
    assert_eq!(waiting_keys(&err), ["approve-production#0"]);
    assert!(
        err.to_string().contains("breakpoint `approve-production`"),
        "{err}"
    );
    // Resuming before a decision keeps waiting and runs nothing again.
    let err = runner.resume::<deploy>(&id).await.unwrap_err();
    assert_eq!(waiting_keys(&err), ["approve-production#0"]);
    assert_eq!(count(tag, "build"), 1);

    let approve = Decision::Approved {
        feedback: Some("ship it".into()),
    };
    runner
        .decide(&id, "approve-production#0", approve.clone())
        .await
        .unwrap();
    let done = runner.resume::<deploy>(&id).await.unwrap();
    assert_eq!(done.output, "deploy-result (ship it)");
    assert_eq!((count(tag, "build"), count(tag, "deploy")), (1, 1));

    // Deciding again: already resolved, nothing written.
    let len = store.events(&id).unwrap().len();
    let err = runner
        .decide(&id, "approve-production#0", approve)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already resolved"), "{err}");
    assert!(
        matches!(&err, RunError::Effect { run_id, key, problem: EffectProblem::AlreadyResolved }
            if *run_id == id && key == "approve-production#0"),
        "{err:?}"
    );
    assert_eq!(store.events(&id).unwrap().len(), len);
}

#[tokio::test]
async fn a_rejection_takes_the_other_branch() {
    let tag = "bp-reject";
    let runner = Runner::in_memory();
    let id = runner.create::<deploy>(&tag.to_string()).await.unwrap();
    runner.resume::<deploy>(&id).await.unwrap_err();
    let reject = Decision::Rejected {
        feedback: Some("tests are flaky".into()),
    };
    runner
        .decide(&id, "approve-production#0", reject)
        .await
        .unwrap();
    let done = runner.resume::<deploy>(&id).await.unwrap();
    assert_eq!(done.output, "not deployed (tests are flaky)");
    assert_eq!(count(tag, "deploy"), 0);
}

#[data]
#[derive(Debug, PartialEq)]
struct Review {
    score: u32,
    comments: Vec<String>,
}

#[process]
async fn reviewed(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    // A slow task and an external review at once: the run stops only when the task is done.
    let (draft, review) = parallel!(
        step(tag.clone(), "draft".into(), 60),
        ctx.external::<Review>("review", json!({ "document": "README.md" })),
    )?;
    Ok(format!(
        "{draft}: {} ({})",
        review.score,
        review.comments.join("; ")
    ))
}

#[tokio::test]
async fn external_task_result_is_type_checked_then_resumed() {
    let tag = "external";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<reviewed>(&tag.to_string()).await.unwrap();
    let err = runner.resume::<reviewed>(&id).await.unwrap_err();
    let key = "par(step+external)#0/b1/review#0";
    assert_eq!(waiting_keys(&err), [key]);
    let events = store.events(&id).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepCompleted { .. })),
        "the run stopped before the running task finished"
    );
    let len = events.len();

    // A value of the wrong shape: an error naming the type and the field; nothing written.
    let bad = json!({ "score": "high", "comments": [] });
    let err = runner
        .post::<reviewed>(&id, key, Ok(bad))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("does not fit `test_effects::Review`"), "{msg}");
    assert!(msg.contains("at `score`"), "{msg}");
    assert!(msg.contains("nothing was written"), "{msg}");
    assert!(
        matches!(&err, RunError::Effect { problem: EffectProblem::InvalidValue { detail }, .. }
            if detail.contains("at `score`")),
        "{err:?}"
    );
    assert_eq!(store.events(&id).unwrap().len(), len);

    // Unknown effect, a task step, the wrong kind: errors, nothing written.
    let err = runner
        .post::<reviewed>(&id, "nope#0", Ok(json!(1)))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has no effect `nope#0`; pending: par(step+external)#0/b1/review#0"),
        "{err}"
    );
    assert!(
        matches!(&err, RunError::Effect { problem: EffectProblem::Unknown { pending }, .. }
            if pending == &["par(step+external)#0/b1/review#0"]),
        "{err:?}"
    );
    let err = runner
        .post::<reviewed>(&id, "par(step+external)#0/b0/common::step#0", Ok(json!(1)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a task step"), "{err}");
    assert!(
        matches!(
            &err,
            RunError::Effect {
                problem: EffectProblem::NotAnEffect { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = runner
        .decide(&id, key, Decision::Approved { feedback: None })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is an external task: post its result"),
        "{err}"
    );
    assert!(
        matches!(
            &err,
            RunError::Effect {
                problem: EffectProblem::WrongKind {
                    actual: WaitKind::External
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.events(&id).unwrap().len(), len);

    let good = json!({ "score": 91, "comments": ["clear", "short"] });
    runner
        .post::<reviewed>(&id, key, Ok(good.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.events(&id).unwrap().len(),
        len + 1,
        "one event: the result"
    );
    let err = runner
        .post::<reviewed>(&id, key, Ok(good))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already resolved"), "{err}");

    let done = runner.resume::<reviewed>(&id).await.unwrap();
    assert_eq!(done.output, "draft-result: 91 (clear; short)");
    assert_eq!(count(tag, "draft"), 1);
}

#[tokio::test]
async fn a_posted_error_reaches_the_process() {
    let tag = "external-error";
    let runner = Runner::in_memory();
    let id = runner.create::<reviewed>(&tag.to_string()).await.unwrap();
    runner.resume::<reviewed>(&id).await.unwrap_err();
    let key = "par(step+external)#0/b1/review#0";
    let error = json!({ "kind": "failed", "message": "reviewer unavailable" });
    runner.post::<reviewed>(&id, key, Err(error)).await.unwrap();
    let err = runner.resume::<reviewed>(&id).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "process `reviewed` failed: task failed: reviewer unavailable"
    );
}

#[tokio::test]
async fn a_cancelled_run_never_runs_again() {
    let tag = "cancel";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<deploy>(&tag.to_string()).await.unwrap();
    runner.resume::<deploy>(&id).await.unwrap_err();
    runner
        .cancel(&id, Some("not this week".into()))
        .await
        .unwrap();
    let err = runner.resume::<deploy>(&id).await.unwrap_err();
    assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
    let len = store.events(&id).unwrap().len();
    let err = runner.cancel(&id, None).await.unwrap_err();
    assert!(err.to_string().contains("has already ended"), "{err}");
    assert!(
        matches!(
            &err,
            RunError::NotCancelled {
                problem: CancelProblem::AlreadyEnded {
                    end: minder::inspect::RunState::Cancelled
                },
                ..
            }
        ),
        "{err:?}"
    );
    let err = runner
        .decide(
            &id,
            "approve-production#0",
            Decision::Approved { feedback: None },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has already ended"), "{err}");
    assert_eq!(store.events(&id).unwrap().len(), len);
    assert_eq!(count(tag, "build"), 1);
}

#[process]
async fn held(_ctx: &Ctx, tag: String) -> Result<u32, ProcessError> {
    Ok(gate(tag).await?)
}

#[tokio::test]
async fn a_run_driven_by_another_writer_is_cancelled_on_request() {
    let tag = "cancel-running";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<held>(&tag.to_string()).await.unwrap();
    // One writer drives the run (its task never finishes); another asks to cancel it.
    let (driven, cancelled) = tokio::join!(runner.resume::<held>(&id), async {
        wait_for(tag, "gate", 1).await;
        Runner::new(store.clone())
            .cancel(&id, Some("superseded".into()))
            .await
    });
    cancelled.unwrap();
    assert!(
        matches!(driven, Err(RunError::Cancelled { ref run_id, ref reason })
            if *run_id == id && reason.as_deref() == Some("superseded")),
        "{driven:?}"
    );
    let events = store.events(&id).unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepCancelled { key } if key == "common::gate#0")),
        "the unfinished step is journaled as cancelled: {events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(Event::RunCancelled { reason: Some(r) }) if r == "superseded"
    ));
    // It stays cancelled, and a second cancel says so.
    assert!(matches!(
        runner.resume::<held>(&id).await,
        Err(RunError::Cancelled { .. })
    ));
    let again = runner.cancel(&id, None).await.unwrap_err();
    assert!(
        again.to_string().contains("already ended (cancelled)"),
        "{again}"
    );
}

/// The task of `released`: says it started, then waits until the test releases it.
static STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[task]
async fn held_until_released() -> Result<u32, TaskError> {
    STARTED.notify_one();
    RELEASE.notified().await;
    Ok(7)
}

#[process]
async fn released(_ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    Ok(held_until_released().await?)
}

/// A cancel request that the writer has not seen when the run finishes: the run completes and
/// the cancel says it came too late. Deterministic: on tokio's paused clock the writer's next
/// look for requests (`CANCEL_CHECK`) is never due before the run ends, as nothing between
/// the request and the run's end waits on a timer.
#[tokio::test(start_paused = true)]
async fn cancelling_a_run_that_finishes_first_says_so() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<released>(&()).await.unwrap();
    let (driven, cancelled) = tokio::join!(runner.resume::<released>(&id), async {
        // The run is open in the other writer, its task running.
        STARTED.notified().await;
        let other = Runner::new(store.clone());
        let mut cancel = std::pin::pin!(other.cancel(&id, None));
        assert!(
            futures::poll!(cancel.as_mut()).is_pending(),
            "the cancel did not wait for the writer"
        );
        assert_eq!(
            store.cancel_request(&id).await,
            Some(None),
            "the request is left"
        );
        RELEASE.notify_one();
        cancel.await
    });
    assert_eq!(driven.unwrap().output, 7);
    let err = cancelled.unwrap_err();
    assert!(
        matches!(
            &err,
            RunError::NotCancelled {
                problem: CancelProblem::EndedFirst {
                    end: minder::inspect::RunState::Completed
                },
                ..
            }
        ),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.contains("completed before it could be cancelled"),
        "{err}"
    );
    assert_eq!(
        store.cancel_request(&id).await,
        None,
        "the spent request is cleared"
    );
    let events = store.events(&id).unwrap();
    assert!(
        matches!(events.last(), Some(Event::RunCompleted { .. })),
        "{events:?}"
    );
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::RunCancelled { .. } | Event::StepCancelled { .. })));
}

#[process]
async fn guarded(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let built = step(tag.clone(), "build".into(), 0).await?;
    let decision = ctx
        .breakpoint_with_timeout("approve", &built, std::time::Duration::from_millis(80))
        .await;
    Ok(match decision {
        Decision::Approved { .. } => "approved".into(),
        Decision::Rejected { .. } => "rejected".into(),
        Decision::TimedOut => "timed out: rolled back".into(),
    })
}

/// Where the clock of [`on_tokio_time`] starts, in milliseconds since the epoch.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// A runner whose clock moves with tokio's (paused) clock, so a test moves past a deadline
/// with `tokio::time::advance` instead of waiting for it; and a function reading that clock.
fn on_tokio_time(store: MemoryStore) -> (Runner, impl Fn() -> u64) {
    let start = tokio::time::Instant::now();
    let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_millis(EPOCH_MS);
    let clock = move || EPOCH_MS + start.elapsed().as_millis() as u64;
    (Runner::new(store).virtual_clock(epoch), clock)
}

/// Moves tokio's paused clock (and the runners' on it) forward by `ms`.
async fn advance(ms: u64) {
    tokio::time::advance(std::time::Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn an_undecided_breakpoint_times_out() {
    let tag = "bp-timeout";
    let store = MemoryStore::new();
    let (runner, clock) = on_tokio_time(store.clone());
    let id = runner.create::<guarded>(&tag.to_string()).await.unwrap();
    // Before the deadline: waiting, and the suspension says when it resolves by itself.
    let err = runner.resume::<guarded>(&id).await.unwrap_err();
    let RunError::Suspended { waiting, .. } = &err else {
        panic!("{err}")
    };
    let due = waiting[0].due_ms.expect("the breakpoint has a deadline");
    assert_eq!(due, clock() + 80, "80 ms from when it was asked");
    assert!(store
        .events(&id)
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::Suspended { due_ms: Some(d), .. } if *d == due)));
    // A millisecond before the deadline: still waiting.
    advance(due - 1 - clock()).await;
    let err = runner.resume::<guarded>(&id).await.unwrap_err();
    assert_eq!(waiting_keys(&err), ["approve#0"]);
    advance(1).await;
    // After it: the process gets `TimedOut` and branches on it.
    let done = runner.resume::<guarded>(&id).await.unwrap();
    assert_eq!(done.output, "timed out: rolled back");
    assert_eq!(count(tag, "build"), 1);
    // A decision that comes too late is refused.
    let err = runner
        .decide(&id, "approve#0", Decision::Approved { feedback: None })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_decision_before_the_deadline_wins() {
    let tag = "bp-in-time";
    let (runner, clock) = on_tokio_time(MemoryStore::new());
    let id = runner.create::<guarded>(&tag.to_string()).await.unwrap();
    let err = runner.resume::<guarded>(&id).await.unwrap_err();
    let RunError::Suspended { waiting, .. } = &err else {
        panic!("{err}")
    };
    let due = waiting[0].due_ms.expect("the breakpoint has a deadline");
    // Decided a millisecond before the deadline, resumed well after it: the decision stands.
    advance(due - 1 - clock()).await;
    runner
        .decide(&id, "approve#0", Decision::Rejected { feedback: None })
        .await
        .unwrap();
    advance(100).await;
    assert!(clock() > due);
    let done = runner.resume::<guarded>(&id).await.unwrap();
    assert_eq!(done.output, "rejected");
}

/// Builds, waits (durably), then reports: a nightly job that waits for a window.
#[process]
async fn nightly(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let built = step(tag.clone(), "build".into(), 0).await?;
    ctx.sleep(std::time::Duration::from_millis(400)).await;
    let done = step(tag.clone(), "report".into(), 0).await?;
    Ok(format!("{built} then {done}"))
}

/// [`nightly`] waiting an hour for its window.
#[process]
async fn overnight(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let built = step(tag.clone(), "build".into(), 0).await?;
    ctx.sleep(std::time::Duration::from_secs(3600)).await;
    let done = step(tag.clone(), "report".into(), 0).await?;
    Ok(format!("{built} then {done}"))
}

/// What an hour on the clock does to a waiting run, without the wait: every time journaled
/// in it (the sleep's deadline, the due time of the suspension) moves an hour back. (The
/// runner's clock is the system's here: a virtual clock never suspends a sleep.)
fn an_hour_passes(store: &MemoryStore, run_id: &str) {
    let hour = 3_600_000;
    let mut events = store.events(run_id).unwrap();
    for e in &mut events {
        match e {
            Event::Recorded { key, value, .. } if key.starts_with("sleep#") => {
                *value = json!(value.as_u64().unwrap() - hour)
            }
            Event::Suspended {
                due_ms: Some(due), ..
            } => *due -= hour,
            _ => {}
        }
    }
    store.set_events(run_id, events);
}

/// On tokio's paused clock: a run that waited its sleep out would have it end at once and
/// complete, so stopping with the sleep pending shows it suspended.
#[tokio::test(start_paused = true)]
async fn a_long_sleep_suspends_the_run_until_it_is_due() {
    use minder::inspect::{summarize, RunState};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let tag = "sleep-suspends";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone()).suspend_sleeps_longer_than(Duration::from_secs(60));
    let err = runner.run::<overnight>(tag.to_string()).await.unwrap_err();
    let RunError::Suspended { run_id, waiting } = &err else {
        panic!("expected a waiting run, got {err}")
    };
    assert_eq!((count(tag, "build"), count(tag, "report")), (1, 0));
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(
        (waiting[0].kind.as_str(), waiting[0].key.as_str()),
        ("sleep", "sleep#0")
    );
    // The kind is an enum that reads, displays and serializes as the word it was.
    assert_eq!(waiting[0].kind, WaitKind::Sleep);
    assert_eq!(waiting[0].kind.to_string(), "sleep");
    assert_eq!(format!("[{:<7}]", waiting[0].kind), "[sleep  ]");
    let json = serde_json::to_value(&waiting[0]).unwrap();
    assert_eq!(json["kind"], "sleep");
    assert_eq!(
        serde_json::from_value::<minder::Waiting>(json).unwrap(),
        waiting[0]
    );
    let due = waiting[0].due_ms.expect("a sleep has a due time");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        due > now + 3_500_000,
        "due in an hour, not in {} ms",
        due - now
    );
    assert_eq!(waiting[0].input, json!({ "until_ms": due }));
    let summary = summarize(&store.events(run_id).unwrap());
    assert_eq!(summary.state, RunState::Waiting);
    assert_eq!(summary.wakes_at_ms, Some(due));

    // Resumed before it is due: waiting again, nothing redone, nothing run past the sleep.
    let err = runner.resume::<overnight>(run_id).await.unwrap_err();
    assert_eq!(waiting_keys(&err), ["sleep#0"]);
    assert_eq!((count(tag, "build"), count(tag, "report")), (1, 0));

    // Resumed after it: the rest runs, the build still once.
    an_hour_passes(&store, run_id);
    let done = runner.resume::<overnight>(run_id).await.unwrap();
    assert_eq!(done.output, "build-result then report-result");
    assert_eq!((count(tag, "build"), count(tag, "report")), (1, 1));
    let summary = summarize(&store.events(run_id).unwrap());
    assert_eq!(
        (summary.state, summary.wakes_at_ms),
        (RunState::Completed, None)
    );
}

/// A long sleep in one branch while the other branch works for longer than the sleep.
#[process]
async fn sleep_beside_work(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let ((), work) = parallel!(
        async {
            ctx.sleep(std::time::Duration::from_millis(200)).await;
            Ok::<(), TaskError>(())
        },
        step(tag.clone(), "work".into(), 600)
    )?;
    Ok(work)
}

#[tokio::test]
async fn a_long_sleep_ends_in_the_program_while_other_steps_progress() {
    let tag = "sleep-beside-work";
    let runner =
        Runner::in_memory().suspend_sleeps_longer_than(std::time::Duration::from_millis(50));
    let done = runner
        .run::<sleep_beside_work>(tag.to_string())
        .await
        .unwrap();
    assert_eq!(done.output, "work-result");
    assert_eq!(count(tag, "work"), 1);
}

#[tokio::test]
async fn a_sleep_under_the_limit_is_waited_out() {
    let tag = "sleep-short";
    // The default limit is a minute: 400 ms is waited out in the program.
    let done = Runner::in_memory()
        .run::<nightly>(tag.to_string())
        .await
        .unwrap();
    assert_eq!(done.output, "build-result then report-result");
}

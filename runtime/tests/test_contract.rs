//! The replay contract (issue 9): no step lands in another run's journal, races replay the
//! same winner, keys cannot collide, every divergence is an error, the retry budget is the
//! journal's, a timed-out attempt is stopped before its retry, a late decision is refused.

mod common;

use common::*;
use minder::journal::{Event, Outcome};
use minder::prelude::*;
use minder::{Either, MemoryStore, RunError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

fn all_keys(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { key, .. }
            | Event::Recorded { key, .. }
            | Event::Log { key, .. }
            | Event::EffectRequested { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn non_determinism(err: RunError) -> (String, String) {
    match err {
        RunError::NonDeterminism { key, detail } => (key, detail),
        other => panic!("expected a non-determinism error, got {other}"),
    }
}

// ---- 1. A branch scope never takes another run's calls -------------------------------------

#[data]
struct Holder {
    tag: String,
    hold: bool,
}

/// Holds a branch scope of its `parallel!` across an `.await` by hand (what `parallel!` now
/// rejects at compile time), while another run makes task calls on the same thread.
#[process]
async fn holds_branch_scope(_ctx: &Ctx, input: Holder) -> Result<String, ProcessError> {
    if input.hold {
        let par = minder::__private::Parallel::enter("held", 1);
        let guard = par.branch(0);
        // Waits (on the same thread, current-thread runtime) until the other run is done.
        gate(input.tag.clone()).await?;
        drop(guard);
    }
    Ok(step(input.tag, "mine".into(), 1).await?)
}

#[tokio::test(flavor = "current_thread")]
async fn a_branch_scope_held_across_an_await_does_not_capture_another_runs_steps() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let holding = runner.clone();
    let a = tokio::spawn(async move {
        holding
            .run::<holds_branch_scope>(Holder {
                tag: "scope-a".into(),
                hold: true,
            })
            .await
    });
    wait_for("scope-a", "gate", 1).await;
    // Run B's calls happen on this thread while A's guard is set.
    let b = runner
        .run::<holds_branch_scope>(Holder {
            tag: "scope-b".into(),
            hold: false,
        })
        .await
        .unwrap();
    open_gate("scope-a");
    let a = a.await.unwrap().unwrap();
    let b_keys = all_keys(&store.events(&b.run_id).unwrap());
    assert_eq!(
        b_keys,
        vec!["common::step#0"],
        "run B's own keys, at its root"
    );
    let a_args: Vec<String> = store
        .events(&a.run_id)
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { args, .. } => Some(args.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        a_args.iter().all(|a| !a.contains("scope-b")),
        "no step of run B was journaled in run A: {a_args:?}"
    );
}

// ---- 2. Races are journaled ----------------------------------------------------------------

#[process]
async fn approval_race(ctx: &Ctx, _input: ()) -> Result<String, ProcessError> {
    let outcome = match ctx
        .select(
            "approval",
            ctx.sleep(Duration::from_secs(3600)),
            ctx.breakpoint("approve", "ship it?"),
        )
        .await
    {
        Either::First(()) => "expired",
        Either::Second(d) if d.is_approved() => "approved",
        Either::Second(_) => "rejected",
    };
    let _ack: u32 = ctx.external("after", outcome).await?;
    Ok(outcome.to_string())
}

/// The breakpoint wins while the sleep has an hour left; the run then waits. Resumed two hours
/// later, both branches would be ready at once and the sleep (first) would win: the journal's
/// winner must come back instead.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_select_replays_the_journaled_winner_whatever_the_timing() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone())
        .virtual_clock(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .decide_breakpoints(|_, _| Decision::Approved { feedback: None });
    let err = runner.run::<approval_race>(()).await.unwrap_err();
    let RunError::Suspended { run_id, .. } = err else {
        panic!("expected the run to wait for `after`, got {err}");
    };
    let winner: Vec<_> = store
        .events(&run_id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::Recorded { key, value, .. } if key.ends_with("winner#0") => Some((key, value)),
            _ => None,
        })
        .collect();
    assert_eq!(
        winner,
        vec![(
            "select(approval)#0/winner#0".to_string(),
            serde_json::json!(1)
        )]
    );
    tokio::time::advance(Duration::from_secs(7200)).await;
    let later = runner.answer_external(|_, _| Some(Ok(serde_json::json!(1))));
    let done = later.resume::<approval_race>(&run_id).await.unwrap();
    assert_eq!(done.output, "approved");
}

#[task]
async fn wait_forever(tag: String) -> Result<u32, TaskError> {
    record(format!("{tag}:forever"));
    std::future::pending::<()>().await;
    Ok(0)
}

#[process]
async fn task_race(ctx: &Ctx, tag: String) -> Result<(usize, String), ProcessError> {
    let (winner, out) = ctx
        .race(
            "first",
            [
                Box::pin(async { Ok::<_, TaskError>(wait_forever(tag.clone()).await?.to_string()) })
                    as futures::future::BoxFuture<'_, Result<String, TaskError>>,
                Box::pin(step(tag.clone(), "quick".into(), 1))
                    as futures::future::BoxFuture<'_, Result<String, TaskError>>,
            ],
        )
        .await;
    Ok((winner, out?))
}

#[tokio::test]
async fn a_race_cancels_and_journals_its_losers_and_replays_without_running_them() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let done = runner.run::<task_race>("race-1".into()).await.unwrap();
    assert_eq!(done.output, (1, "quick-result".to_string()));
    let events = store.events(&done.run_id).unwrap();
    let loser = "select(first)#0/b0/wait_forever#0";
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepCancelled { key } if *key == loser)),
        "the loser's step is journaled as cancelled: {events:#?}"
    );
    // Replayed against the code: the winner's branch comes back with the same output.
    let replayed = minder::testing::replay_journal::<task_race>(events).await;
    assert_eq!(replayed.unwrap(), minder::testing::Replay::Completed);
    assert_eq!(count("race-1", "forever"), 1);
}

// ---- 3. Keys cannot collide ----------------------------------------------------------------

#[process]
async fn tricky_names(ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    ctx.map("items", vec![0u32], |_| async {
        ctx.log("in the map");
        Ok::<_, TaskError>(())
    })
    .await?;
    // Without escaping, these keys would be `map(items)#0/0/log#0` and `a/b#0`, the first
    // the same as the log's above.
    let a: u32 = ctx.external("map(items)#0/0/log", 1).await?;
    let b: u32 = ctx.external("a/b", 2).await?;
    Ok(a + b)
}

#[tokio::test]
async fn names_with_separators_are_escaped_so_no_two_steps_share_a_key() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone()).answer_external(|_, input| Some(Ok(input.clone())));
    let done = runner.run::<tricky_names>(()).await.unwrap();
    assert_eq!(done.output, 3);
    let keys = all_keys(&store.events(&done.run_id).unwrap());
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate keys: {keys:?}");
    assert!(
        keys.contains(&"map(items)%230%2F0%2Flog#0".to_string()),
        "{keys:?}"
    );
    assert!(keys.contains(&"a%2Fb#0".to_string()), "{keys:?}");
    // And it replays.
    let again = runner.resume::<tricky_names>(&done.run_id).await.unwrap();
    assert_eq!(again.output, 3);
}

mod billing {
    use minder::prelude::*;
    #[task]
    pub async fn fetch(x: u32) -> Result<u32, TaskError> {
        Ok(x + 100)
    }
}

mod shipping {
    use minder::prelude::*;
    #[task]
    pub async fn fetch(x: u32) -> Result<u32, TaskError> {
        Ok(x + 200)
    }
}

#[process(name = "fetch-one")]
async fn fetch_one(_ctx: &Ctx, x: u32) -> Result<u32, ProcessError> {
    Ok(billing::fetch(x).await?)
}

/// The same process after an edit that adds a same-named task of another module before it.
#[process(name = "fetch-one")]
async fn fetch_one_edited(_ctx: &Ctx, x: u32) -> Result<u32, ProcessError> {
    let first = shipping::fetch(x).await?;
    Ok(billing::fetch(x).await? + first)
}

#[tokio::test]
async fn same_named_tasks_of_two_modules_have_their_own_keys_and_counters() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let one = runner.run::<fetch_one>(1).await.unwrap();
    let edited = runner.run::<fetch_one_edited>(1).await.unwrap();
    assert_eq!(edited.output, 101 + 201);
    let before = keys(&store.events(&one.run_id).unwrap());
    let after = keys(&store.events(&edited.run_id).unwrap());
    assert_eq!(before, vec!["billing::fetch#0"]);
    assert_eq!(
        after,
        vec!["shipping::fetch#0", "billing::fetch#0"],
        "adding `shipping::fetch` does not shift the key of `billing::fetch`"
    );
}

#[process(name = "two-steps")]
async fn two_steps(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let a = step(tag.clone(), "one".into(), 1).await?;
    Ok(a)
}

fn corrupt_message(err: RunError) -> String {
    match err {
        RunError::Store(minder::store::StoreError::Corrupt(m)) => m,
        other => panic!("expected a corruption error, got {other}"),
    }
}

#[tokio::test]
async fn a_step_started_after_it_completed_or_a_second_run_end_is_corruption() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let done = runner.run::<two_steps>("dup".into()).await.unwrap();
    let events = store.events(&done.run_id).unwrap();
    let started = events
        .iter()
        .find(|e| matches!(e, Event::StepStarted { .. }))
        .unwrap()
        .clone();
    // A second `step_started` after the completion, before the run's end.
    let mut twice = events.clone();
    let end = twice.pop().unwrap();
    twice.push(started);
    twice.push(end.clone());
    store.set_events(&done.run_id, twice);
    let msg = corrupt_message(
        runner
            .resume::<two_steps>(&done.run_id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(
        msg.contains("event 4 ") && msg.contains("starts step `common::step#0` again"),
        "{msg}"
    );
    // A duplicate `run_completed` at the end.
    let mut ended_twice = events.clone();
    ended_twice.push(end);
    let n = ended_twice.len();
    store.set_events(&done.run_id, ended_twice);
    let msg = corrupt_message(
        runner
            .resume::<two_steps>(&done.run_id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert!(
        msg.contains(&format!("event {n} ")) && msg.contains("follows the end of the run"),
        "{msg}"
    );
}

// ---- 4. Every divergence is an error -------------------------------------------------------

#[process(name = "talker")]
async fn talker_v1(ctx: &Ctx, tag: String) -> Result<u64, ProcessError> {
    ctx.log("hello");
    let t = ctx.random();
    let _: u32 = ctx.external("review", "draft 1").await?;
    gate(tag).await?;
    Ok(t)
}

#[process(name = "talker")]
async fn talker_log_changed(ctx: &Ctx, tag: String) -> Result<u64, ProcessError> {
    ctx.log("goodbye");
    let t = ctx.random();
    let _: u32 = ctx.external("review", "draft 1").await?;
    gate(tag).await?;
    Ok(t)
}

#[process(name = "talker")]
async fn talker_value_changed(ctx: &Ctx, tag: String) -> Result<u64, ProcessError> {
    ctx.log("hello");
    let t = ctx.new_id(); // recorded under `id`, not `random`: another step at its position
    let _: u32 = ctx.external("review", "draft 1").await?;
    gate(tag).await?;
    Ok(t.len() as u64)
}

#[process(name = "talker")]
async fn talker_input_changed(ctx: &Ctx, tag: String) -> Result<u64, ProcessError> {
    ctx.log("hello");
    let t = ctx.random();
    let _: u32 = ctx.external("review", "draft 2").await?;
    gate(tag).await?;
    Ok(t)
}

#[process(name = "talker")]
async fn talker_reordered(ctx: &Ctx, tag: String) -> Result<u64, ProcessError> {
    let t = ctx.random();
    ctx.log("hello");
    let _: u32 = ctx.external("review", "draft 1").await?;
    gate(tag).await?;
    Ok(t)
}

async fn suspended_talker(store: &MemoryStore) -> String {
    let runner = Runner::new(store.clone()).allow_version_change(true);
    match runner.run::<talker_v1>("talker".into()).await {
        Err(RunError::Suspended { run_id, .. }) => run_id,
        other => panic!(
            "expected the run to wait for its review: {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn a_changed_log_value_input_or_order_is_a_non_determinism_error_naming_both_sides() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone()).allow_version_change(true);

    let id = suspended_talker(&store).await;
    let (key, detail) = non_determinism(
        runner
            .resume::<talker_log_changed>(&id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(key, "log#0");
    assert!(
        detail.contains("\"hello\" at runtime/tests/test_contract.rs:")
            && detail.contains("logs \"goodbye\" at runtime/tests/test_contract.rs:"),
        "{detail}"
    );

    let id = suspended_talker(&store).await;
    let (key, detail) = non_determinism(
        runner
            .resume::<talker_value_changed>(&id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    // `id#0` is a new step (allowed: an added call); passing over `random#0` is not.
    assert_eq!(key, "review#0");
    assert!(
        detail.contains("the journal has `random#0` (the recorded value")
            && detail.contains("without it"),
        "{detail}"
    );

    let id = suspended_talker(&store).await;
    let (key, detail) = non_determinism(
        runner
            .resume::<talker_input_changed>(&id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(key, "review#0");
    assert!(
        detail.contains("external `review` with input \"draft 1\"")
            && detail.contains("with input \"draft 2\""),
        "{detail}"
    );

    let id = suspended_talker(&store).await;
    let before = store.events(&id).unwrap();
    let (key, detail) = non_determinism(
        runner
            .resume::<talker_reordered>(&id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(key, "random#0");
    assert!(
        detail.contains("the journal has `log#0` (the log \"hello\"")
            && detail.contains("before `random#0`"),
        "{detail}"
    );
    assert_eq!(store.events(&id).unwrap(), before, "nothing was written");
}

#[process(name = "recorder")]
async fn records_a_number(ctx: &Ctx, _input: ()) -> Result<u64, ProcessError> {
    let n = ctx.random();
    let _: u32 = ctx.external("go", ()).await?;
    Ok(n)
}

#[tokio::test]
async fn a_recorded_value_that_no_longer_decodes_is_an_error_not_re_recorded() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let Err(RunError::Suspended { run_id, .. }) = runner.run::<records_a_number>(()).await else {
        panic!("expected the run to wait");
    };
    let mut events = store.events(&run_id).unwrap();
    for e in events.iter_mut() {
        if let Event::Recorded { value, .. } = e {
            *value = serde_json::json!("not a number");
        }
    }
    store.set_events(&run_id, events.clone());
    let (key, detail) = non_determinism(
        runner
            .resume::<records_a_number>(&run_id)
            .await
            .map(|_| ())
            .unwrap_err(),
    );
    assert_eq!(key, "random#0");
    assert!(detail.contains("does not fit"), "{detail}");
    assert_eq!(
        store.events(&run_id).unwrap(),
        events,
        "nothing was written"
    );
}

// ---- 5. Retries count from the journal; a timed-out attempt stops before its retry ---------

static FLAKY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[task(retries = 2)]
async fn always_fails(x: u32) -> Result<u32, TaskError> {
    FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    Err(TaskError::new(format!("failed {x}")))
}

#[process]
async fn flaky_once(_ctx: &Ctx, x: u32) -> Result<u32, ProcessError> {
    Ok(always_fails(x).await?)
}

#[tokio::test]
async fn the_retry_budget_is_counted_from_the_journal_across_crashes() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner.create::<flaky_once>(&5).await.unwrap();
    // The journal of a run that crashed after two failed attempts (of three allowed) while its
    // third was in flight.
    let mut events = store.events(&id).unwrap();
    let key = "always_fails#0".to_string();
    events.push(Event::StepStarted {
        key: key.clone(),
        task: "test_contract::always_fails".into(),
        location: "x".into(),
        args: serde_json::json!([5]),
        seq: Some(0),
        node: None,
    });
    for attempt in 0..2 {
        events.push(Event::AttemptFailed {
            key: key.clone(),
            attempt,
            error: serde_json::json!({"kind": "failed", "message": "failed 5"}),
        });
    }
    store.set_events(&id, events);
    let err = runner.resume::<flaky_once>(&id).await.unwrap_err();
    assert!(err.to_string().contains("failed 5"), "{err}");
    assert_eq!(
        FLAKY_CALLS.load(Ordering::SeqCst),
        1,
        "only the last attempt of the budget ran after the crash"
    );
    let completed = store
        .events(&id)
        .unwrap()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::StepCompleted {
                    outcome: Outcome::Err(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(completed, 1);
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// Blocks its thread (no `.await`) for longer than its timeout.
#[task(timeout = "50ms", retries = 1)]
async fn blocks_its_thread(ms: u64) -> Result<u32, TaskError> {
    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MOST.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(ms));
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    Ok(1)
}

#[process]
async fn slow_blocking(_ctx: &Ctx, ms: u64) -> Result<u32, ProcessError> {
    Ok(blocks_its_thread(ms).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_timed_out_attempt_has_stopped_before_its_retry_starts() {
    let err = Runner::in_memory()
        .run::<slow_blocking>(300)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(
        MOST.load(Ordering::SeqCst),
        1,
        "the retry never ran beside the timed-out attempt"
    );
}

// ---- 7. A late decision is refused ---------------------------------------------------------

#[process]
async fn approval_with_deadline(ctx: &Ctx, _input: ()) -> Result<String, ProcessError> {
    let d = ctx
        .breakpoint_with_timeout("approve", "ship?", Duration::from_secs(600))
        .await;
    Ok(format!("{d:?}"))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_decision_after_the_breakpoint_deadline_is_refused() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone())
        .virtual_clock(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let Err(RunError::Suspended { run_id, .. }) = runner.run::<approval_with_deadline>(()).await
    else {
        panic!("expected the run to wait for its approval");
    };
    let before = store.events(&run_id).unwrap();
    tokio::time::advance(Duration::from_secs(601)).await;
    let err = runner
        .decide(&run_id, "approve#0", Decision::Approved { feedback: None })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("timed out at") && msg.contains("refused") && !msg.contains('\n'),
        "{msg}"
    );
    assert_eq!(
        store.events(&run_id).unwrap(),
        before,
        "nothing was written"
    );
    let done = runner
        .resume::<approval_with_deadline>(&run_id)
        .await
        .unwrap();
    assert_eq!(done.output, "TimedOut");
}

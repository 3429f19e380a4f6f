//! Step identity, replay and resume (BRIEF §4): keys independent of scheduling, stable under
//! unrelated edits, distinct per loop iteration; the two replay bugs of the JS SDK; changed
//! tasks and arguments are non-determinism errors; a completed run stays completed.
//!
//! These tests stop a run by dropping its future ([`drop_run_at`]), in this process: that is
//! not a crash (drop handlers run, unfinished steps are journaled as cancelled). Resuming
//! after a real crash (SIGKILL of the process) is tested in `examples/tests/cli.rs`.

mod common;

use common::*;
use minder::prelude::*;
use minder::{journal::Event, MemoryStore, RunError};
use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

/// Drives run `id` until `at` resolves, then drops the run's future: the run stops where it
/// is, its drop handlers run and its unfinished steps are journaled as cancelled. Not a crash.
async fn drop_run_at<P: minder::Process>(runner: &Runner, id: &str, at: impl Future<Output = ()>) {
    tokio::select! {
        r = runner.resume::<P>(id) => panic!("the run ended before the stop point: {:?}", r.map(|_| ())),
        _ = at => {}
    }
}

/// Creates a run of `P`, drives it until `what` ran `n` times under `tag`, then drops it
/// ([`drop_run_at`]); returns its id.
async fn create_and_drop_at<P: minder::Process>(
    runner: &Runner,
    input: P::Input,
    tag: &str,
    what: &str,
    n: usize,
) -> String {
    let id = runner.create::<P>(&input).await.unwrap();
    drop_run_at::<P>(runner, &id, wait_for(tag, what, n)).await;
    id
}

#[data]
struct Tagged {
    tag: String,
    slow_first: bool,
}

#[process]
async fn branch_sequences(_ctx: &Ctx, input: Tagged) -> Result<Vec<String>, ProcessError> {
    let t = input.tag;
    let (fast, slow) = if input.slow_first { (1, 40) } else { (40, 1) };
    let ((a, b), c) = parallel!(
        async {
            let a = step(t.clone(), "a".into(), slow).await?;
            let b = step(t.clone(), format!("b-after-{a}"), 1).await?;
            Ok::<_, TaskError>((a, b))
        },
        step(t.clone(), "c".into(), fast),
    )?;
    gate(t.clone()).await?;
    Ok(vec![a, b, c])
}

/// JS bug 1: a branch that awaits two tasks in sequence must get its own results back on
/// replay, and the sibling's task must not be requested again.
#[tokio::test]
async fn sequence_branch_replays_its_own_results() {
    for slow_first in [true, false] {
        let tag = format!("seq-{slow_first}");
        let runner = Runner::in_memory();
        let input = Tagged {
            tag: tag.clone(),
            slow_first,
        };
        let id = create_and_drop_at::<branch_sequences>(&runner, input, &tag, "gate", 1).await;
        open_gate(&tag);
        let done = runner.resume::<branch_sequences>(&id).await.unwrap();
        assert_eq!(
            done.output,
            ["a-result", "b-after-a-result-result", "c-result"]
        );
        assert_eq!(count(&tag, "a"), 1, "{:?}", calls(&tag));
        assert_eq!(count(&tag, "b-after-a-result"), 1);
        assert_eq!(count(&tag, "c"), 1);
        assert_eq!(count(&tag, "gate"), 2, "the in-flight gate runs again");
    }
}

#[process]
async fn branch_in_flight(_ctx: &Ctx, tag: String) -> Result<Vec<String>, ProcessError> {
    let ((a, g), c) = parallel!(
        async {
            let a = step(tag.clone(), "a".into(), 1).await?;
            let g = gate(tag.clone()).await?;
            Ok::<_, TaskError>((a, g))
        },
        step(tag.clone(), "c".into(), 1),
    )?;
    Ok(vec![a, g.to_string(), c])
}

/// A run stopped while the second task of a branch is in flight: the first task and the
/// sibling are replayed, the in-flight one runs again with the same idempotency key.
#[tokio::test]
async fn in_flight_step_runs_again_with_same_idempotency_key() {
    let tag = "inflight";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = runner
        .create::<branch_in_flight>(&tag.to_string())
        .await
        .unwrap();
    // Stopped once `a` and the sibling `c` are journaled as completed and the gate is running.
    let a_and_c_done = || completed(&store.events(&id).unwrap()).len() == 2;
    drop_run_at::<branch_in_flight>(&runner, &id, async {
        wait_for(tag, "gate", 1).await;
        wait_until("`a` and `c` to be journaled as completed", a_and_c_done).await;
    })
    .await;
    let events = store.events(&id).unwrap();
    let mut done = completed(&events);
    done.sort();
    assert_eq!(
        done,
        [
            "par(seq+step)#0/b0/common::step#0",
            "par(seq+step)#0/b1/common::step#0"
        ]
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Event::StepCancelled { key } if key == "par(seq+step)#0/b0/common::gate#0")),
        "the dropped run journaled its in-flight gate as cancelled: {events:?}"
    );
    open_gate(tag);
    let done = runner.resume::<branch_in_flight>(&id).await.unwrap();
    assert_eq!(done.output, ["a-result", "7", "c-result"]);
    assert_eq!(
        (count(tag, "a"), count(tag, "c"), count(tag, "gate")),
        (1, 1, 2)
    );
    let keys: Vec<String> = calls(tag)
        .into_iter()
        .filter(|c| c.starts_with("key="))
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the idempotency key survives the stop");
    assert!(
        keys[0].contains(&id) && keys[0].contains("b0/common::gate#0"),
        "{}",
        keys[0]
    );
}

#[process]
async fn sleeper(ctx: &Ctx, tag: String) -> Result<Vec<String>, ProcessError> {
    let first = step(tag.clone(), "first".into(), 0).await?;
    ctx.sleep(Duration::from_millis(150)).await;
    let second = step(tag.clone(), "second".into(), 0).await?;
    gate(tag.clone()).await?;
    Ok(vec![first, second])
}

/// JS bug 2: a sleep that has become due must not shift the keys of later steps.
#[tokio::test]
async fn due_sleep_does_not_shift_later_steps() {
    let tag = "sleep-due";
    let runner = Runner::in_memory();
    let id = create_and_drop_at::<sleeper>(&runner, tag.to_string(), tag, "gate", 1).await;
    open_gate(tag);
    let done = runner.resume::<sleeper>(&id).await.unwrap();
    assert_eq!(done.output, ["first-result", "second-result"]);
    assert_eq!((count(tag, "first"), count(tag, "second")), (1, 1));
}

/// A run stopped during a sleep waits only for what is left of it when resumed. On tokio's
/// paused clock, with the runner's clock moving with it, so every wait is exact.
#[tokio::test(start_paused = true)]
async fn a_resumed_sleep_waits_only_for_what_is_left() {
    let tag = "sleep-left";
    let store = MemoryStore::new();
    let start = tokio::time::Instant::now();
    let epoch_ms = 1_700_000_000_000;
    let runner =
        Runner::new(store.clone()).virtual_clock(UNIX_EPOCH + Duration::from_millis(epoch_ms));
    // The runner's clock, in milliseconds since the epoch.
    let now_ms = || epoch_ms + start.elapsed().as_millis() as u64;
    let id = runner.create::<sleeper>(&tag.to_string()).await.unwrap();
    let deadline = || {
        store.events(&id).unwrap().iter().find_map(|e| match e {
            Event::Recorded { key, value, .. } if key == "sleep#0" => value.as_u64(),
            _ => None,
        })
    };
    // Stopped once the sleep has begun (its deadline is journaled), then 60 ms pass.
    let sleeping = wait_until("the sleep's deadline to be journaled", || {
        deadline().is_some()
    });
    drop_run_at::<sleeper>(&runner, &id, sleeping).await;
    let deadline = deadline().unwrap();
    tokio::time::advance(Duration::from_millis(60)).await;
    open_gate(tag);

    let left = deadline - now_ms();
    assert!(
        (1..=90).contains(&left),
        "{left} ms of the 150 ms sleep left"
    );
    let resumed = tokio::time::Instant::now();
    let done = runner.resume::<sleeper>(&id).await.unwrap();
    let waited = resumed.elapsed();
    assert_eq!(done.output, ["first-result", "second-result"]);
    assert!(
        waited >= Duration::from_millis(left) && waited <= Duration::from_millis(left + 2),
        "the resumed run waited {waited:?}, not the {left} ms left of its sleep"
    );
    assert!(now_ms() >= deadline, "the sleep ended before its deadline");
    assert_eq!(count(tag, "first"), 1);
}

#[process]
async fn looping(_ctx: &Ctx, tag: String) -> Result<Vec<String>, ProcessError> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(step(tag.clone(), format!("iter-{i}"), 0).await?);
        if i == 1 {
            gate(tag.clone()).await?;
        }
    }
    Ok(out)
}

/// Each loop iteration gets its own key; finished iterations are not redone.
#[tokio::test]
async fn loop_iterations_have_distinct_keys() {
    let tag = "loop";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = create_and_drop_at::<looping>(&runner, tag.to_string(), tag, "gate", 1).await;
    open_gate(tag);
    let done = runner.resume::<looping>(&id).await.unwrap();
    assert_eq!(
        done.output,
        ["iter-0-result", "iter-1-result", "iter-2-result"]
    );
    assert_eq!(
        (
            count(tag, "iter-0"),
            count(tag, "iter-1"),
            count(tag, "iter-2")
        ),
        (1, 1, 1)
    );
    let keys = keys(&store.events(&id).unwrap());
    for k in ["step#0", "step#1", "step#2", "gate#0"].map(|k| format!("common::{k}")) {
        assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
    }
}

#[data]
struct Fan {
    tag: String,
    /// The delay of each step, in ms: `x`, `x2`, `y`, `z1`, `z2`, then the 12 map items.
    delays: Vec<u64>,
}

#[process]
async fn fan(ctx: &Ctx, input: Fan) -> Result<usize, ProcessError> {
    let t = input.tag.clone();
    let d = |i: usize| input.delays[i];
    // Both branches go on after their first step, so which of their later steps is called
    // first depends on which first step finished first.
    let ((x, x2), (y, z)) = parallel!(
        async {
            let x = step(t.clone(), "x".into(), d(0)).await?;
            let x2 = step(t.clone(), "x2".into(), d(1)).await?;
            Ok::<_, TaskError>((x, x2))
        },
        async {
            let y = step(t.clone(), "y".into(), d(2)).await?;
            let z = parallel!(
                step(t.clone(), "z1".into(), d(3)),
                step(t.clone(), "z2".into(), d(4))
            )?;
            Ok::<_, TaskError>((y, z))
        },
    )?;
    let items: Vec<usize> = (0..12).collect();
    let mapped = ctx
        .map("items", items, |i| {
            step(t.clone(), format!("m{i}"), d(5 + i))
        })
        .limit(4)
        .await?;
    Ok(x.len() + x2.len() + y.len() + z.0.len() + mapped.len())
}

/// Runs with different completion orders journal the same keys for the same calls. On tokio's
/// paused clock, so the delays set the completion order exactly.
#[tokio::test(start_paused = true)]
async fn keys_do_not_depend_on_scheduling() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let map = |delay: fn(u64) -> u64| (0..12).map(delay);
    let plans: [Vec<u64>; 3] = [
        // Branch 0 first; map items finish in input order.
        [1, 1, 5, 1, 2].into_iter().chain(map(|i| 1 + i)).collect(),
        // Branch 1 first; map items finish in reverse order within each wave.
        [5, 5, 1, 2, 1].into_iter().chain(map(|i| 12 - i)).collect(),
        // Interleaved; map items alternately slow and fast.
        [3, 1, 2, 3, 1]
            .into_iter()
            .chain(map(|i| if i % 2 == 0 { 9 } else { 1 }))
            .collect(),
    ];
    let mut journals = Vec::new();
    let mut orders = Vec::new();
    for delays in plans {
        let done = runner
            .run::<fan>(Fan {
                tag: "sched".into(),
                delays,
            })
            .await
            .unwrap();
        let events = store.events(&done.run_id).unwrap();
        orders.push(completed(&events));
        // Key, task and the step's name argument (the delays differ between runs on purpose).
        let mut s: Vec<(String, String, String)> = started(&events)
            .into_iter()
            .map(|(k, t, args)| (k, t, args.split(',').nth(1).unwrap().to_string()))
            .collect();
        s.sort();
        journals.push(s);
    }
    // The runs really were scheduled differently: no two completed their steps in one order.
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        assert_ne!(
            orders[a], orders[b],
            "runs {a} and {b} completed in one order"
        );
    }
    assert_eq!(journals[0].len(), 17);
    assert_eq!(journals[0], journals[1]);
    assert_eq!(journals[0], journals[2]);
    let keys: Vec<&str> = journals[0].iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"par(seq+seq)#0/b0/common::step#1"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"par(seq+seq)#0/b1/par(step+step)#0/b1/common::step#0"),
        "{keys:?}"
    );
    assert!(keys.contains(&"map(items)#0/11/common::step#0"), "{keys:?}");
}

#[process(name = "evolving")]
async fn evolving_v1(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let a = step(tag.clone(), "a".into(), 0).await?;
    let b = step(tag.clone(), "b".into(), 0).await?;
    gate(tag.clone()).await?;
    Ok(format!("{a},{b}"))
}

#[process(name = "evolving")]
async fn evolving_v2(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let a = step(tag.clone(), "a".into(), 0).await?;
    let extra = failing(tag.clone(), "new-step".into(), 0)
        .await
        .unwrap_or_default();
    let b = step(tag.clone(), "b".into(), 0).await?;
    gate(tag.clone()).await?;
    Ok(format!("{a},{extra},{b}"))
}

/// Adding a call to another task does not shift the keys of the existing steps.
#[tokio::test]
async fn keys_are_stable_under_an_unrelated_edit() {
    let tag = "edit";
    let runner = Runner::in_memory();
    let id = create_and_drop_at::<evolving_v1>(&runner, tag.to_string(), tag, "gate", 1).await;
    // The structure changed, so resuming under the new code needs permission.
    let err = runner.resume::<evolving_v2>(&id).await.unwrap_err();
    assert!(matches!(err, RunError::Version { .. }), "{err}");
    assert!(
        matches!(&err, RunError::Version { mismatch: minder::VersionMismatch::Structure { recorded, current, .. }, .. }
            if recorded != current),
        "{err:?}"
    );
    open_gate(tag);
    let runner = runner.allow_version_change(true);
    let done = runner.resume::<evolving_v2>(&id).await.unwrap();
    assert_eq!(done.output, "a-result,,b-result");
    assert_eq!(
        (count(tag, "a"), count(tag, "b"), count(tag, "new-step")),
        (1, 1, 1)
    );
}

/// Two tasks with the same name in different modules take the same key.
mod old_tasks {
    use minder::prelude::*;
    #[task]
    pub async fn lookup(tag: String) -> Result<String, TaskError> {
        super::record(format!("{tag}:old-lookup"));
        Ok("old".into())
    }
}

mod new_tasks {
    use minder::prelude::*;
    #[task]
    pub async fn lookup(tag: String) -> Result<String, TaskError> {
        super::record(format!("{tag}:new-lookup"));
        Ok("new".into())
    }
}

#[process(name = "swapped")]
async fn swapped_v1(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let a = old_tasks::lookup(tag.clone()).await?;
    gate(tag.clone()).await?;
    Ok(a)
}

#[process(name = "swapped")]
async fn swapped_v2(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    // Same key `lookup#0`, another task: it must not receive the old task's journaled value.
    let a = new_tasks::lookup(tag.clone()).await?;
    gate(tag.clone()).await?;
    Ok(a)
}

#[process(name = "swapped")]
async fn swapped_args(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let a = old_tasks::lookup(format!("{tag}-changed")).await?;
    gate(tag.clone()).await?;
    Ok(a)
}

/// A changed task or changed arguments at a journaled key is a non-determinism error.
#[tokio::test]
async fn changed_task_or_arguments_is_non_determinism() {
    let tag = "swap";
    let runner = Runner::in_memory().allow_version_change(true);
    let id = create_and_drop_at::<swapped_v1>(&runner, tag.to_string(), tag, "gate", 1).await;

    let err = runner.resume::<swapped_v2>(&id).await.unwrap_err();
    let RunError::NonDeterminism { key, detail } = &err else {
        panic!("expected non-determinism, got {err}");
    };
    // Keys carry the task path: the new task stands where the journal has the old one.
    assert_eq!(key, "new_tasks::lookup#0");
    assert!(
        detail.contains("test_replay::old_tasks::lookup` (runtime/tests/test_replay.rs:"),
        "{detail}"
    );
    assert!(
        detail.contains("test_replay::new_tasks::lookup` (runtime/tests/test_replay.rs:"),
        "{detail}"
    );
    assert_eq!(count(tag, "new-lookup"), 0, "the other task never ran");
    assert_eq!(count(tag, "old-lookup"), 1);

    let err = runner.resume::<swapped_args>(&id).await.unwrap_err();
    let RunError::NonDeterminism { detail, .. } = &err else {
        panic!("expected non-determinism, got {err}");
    };
    assert!(
        detail.contains("arguments") && detail.contains("swap-changed"),
        "{detail}"
    );
    assert_eq!(count("swap-changed", "old-lookup"), 0);
}

#[process]
async fn handles_errors(ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let first = match failing(tag.clone(), "boom".into(), 0).await {
        Ok(v) => v,
        Err(e) => format!("handled {e}"),
    };
    let when = ctx.now();
    let r = ctx.random();
    ctx.log("between");
    gate(tag.clone()).await?;
    let millis = when
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Ok(format!("{first}|{millis}|{r}"))
}

/// Errors, `ctx.now()` and `ctx.random()` replay identically; logs are not repeated.
#[tokio::test]
async fn errors_time_and_randomness_replay_identically() {
    let tag = "errors";
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let id = create_and_drop_at::<handles_errors>(&runner, tag.to_string(), tag, "gate", 1).await;
    let recorded: Vec<String> = store
        .events(&id)
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Recorded { value, .. } => Some(value.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 2);
    // The clock moves on, so a `now` taken again on replay would differ from the recorded one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    open_gate(tag);
    let done = runner.resume::<handles_errors>(&id).await.unwrap();
    assert_eq!(
        done.output,
        format!("handled boom-failed|{}|{}", recorded[0], recorded[1])
    );
    assert_eq!(
        count(tag, "boom"),
        1,
        "a journaled error is not retried on replay"
    );
    let logs = store
        .events(&id)
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::Log { .. }))
        .count();
    assert_eq!(logs, 1, "the log line is journaled once");
}

/// Resuming a completed run returns its output and runs nothing.
#[tokio::test]
async fn completed_run_stays_completed() {
    let tag = "completed";
    open_gate(tag);
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let done = runner.run::<looping>(tag.to_string()).await.unwrap();
    let before = calls(tag).len();
    let len = store.events(&done.run_id).unwrap().len();
    let again = runner.resume::<looping>(&done.run_id).await.unwrap();
    assert_eq!(again.output, done.output);
    assert_eq!(calls(tag).len(), before);
    assert_eq!(
        store.events(&done.run_id).unwrap().len(),
        len,
        "nothing appended"
    );
}

/// A failed run stays failed with the same message.
#[tokio::test]
async fn failed_run_stays_failed() {
    #[process]
    async fn fails(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
        Ok(failing(tag, "fatal".into(), 0).await?)
    }
    let runner = Runner::in_memory();
    let err = runner.run::<fails>("failed-run".into()).await.unwrap_err();
    let RunError::Failed { message, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(message, "task failed: fatal-failed");
    let id = runner.store().list().await.unwrap()[0].clone();
    let again = runner.resume::<fails>(&id).await.unwrap_err();
    assert_eq!(again.to_string(), err.to_string());
    assert_eq!(count("failed-run", "fatal"), 1);
}

/// A run of another process is refused.
#[tokio::test]
async fn resume_under_the_wrong_process_is_refused() {
    open_gate("wrong");
    let runner = Runner::in_memory();
    let done = runner.run::<sleeper>("wrong".into()).await.unwrap();
    let err = runner.resume::<looping>(&done.run_id).await.unwrap_err();
    assert!(
        err.to_string().contains("belongs to process `sleeper`"),
        "{err}"
    );
    assert!(
        matches!(
            &err,
            RunError::Version {
                mismatch: minder::VersionMismatch::OtherProcess { recorded, expected },
                ..
            } if recorded == "sleeper" && expected == "looping"
        ),
        "{err:?}"
    );
}

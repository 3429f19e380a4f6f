//! Step identity, replay and resume (BRIEF §4): keys independent of scheduling, stable under
//! unrelated edits, distinct per loop iteration; the two replay bugs of the JS SDK; changed
//! tasks and arguments are non-determinism errors; a completed run stays completed.

mod common;

use common::*;
use minder::prelude::*;
use minder::{journal::Event, MemoryStore, RunError};
use std::time::{Duration, Instant};

/// Creates a run, drives it until `what` ran `n` times under `tag`, then drops it (a crash).
async fn run_until_crash<P: minder::Process>(
    runner: &Runner,
    input: P::Input,
    tag: &str,
    what: &str,
    n: usize,
) -> String {
    let id = runner.create::<P>(&input).unwrap();
    let run = runner.resume::<P>(&id);
    tokio::select! {
        r = run => panic!("the run ended before the crash point: {:?}", r.map(|_| ())),
        _ = wait_for(tag, what, n) => {}
    }
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
        let id = run_until_crash::<branch_sequences>(&runner, input, &tag, "gate", 1).await;
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

/// A crash while the second task of a branch is in flight: the first task and the sibling
/// are replayed, the in-flight one runs again with the same idempotency key.
#[tokio::test]
async fn in_flight_step_runs_again_with_same_idempotency_key() {
    let tag = "inflight";
    let runner = Runner::in_memory();
    wait_for_nothing().await;
    let id = runner.create::<branch_in_flight>(&tag.to_string()).unwrap();
    tokio::select! {
        _ = runner.resume::<branch_in_flight>(&id) => panic!("ended early"),
        _ = async { wait_for(tag, "gate", 1).await; wait_for(tag, "c", 1).await; tokio::time::sleep(Duration::from_millis(20)).await } => {}
    }
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
    assert_eq!(keys[0], keys[1], "the idempotency key survives the crash");
    assert!(
        keys[0].contains(&id) && keys[0].contains("b0/common::gate#0"),
        "{}",
        keys[0]
    );
}

async fn wait_for_nothing() {}

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
    let id = run_until_crash::<sleeper>(&runner, tag.to_string(), tag, "gate", 1).await;
    open_gate(tag);
    let done = runner.resume::<sleeper>(&id).await.unwrap();
    assert_eq!(done.output, ["first-result", "second-result"]);
    assert_eq!((count(tag, "first"), count(tag, "second")), (1, 1));
}

/// A run stopped during a sleep waits only for what is left of it when resumed.
#[tokio::test]
async fn sleep_is_durable_across_a_crash() {
    let tag = "sleep-crash";
    let runner = Runner::in_memory();
    let started = Instant::now();
    let id = run_until_crash::<sleeper>(&runner, tag.to_string(), tag, "first", 1).await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    open_gate(tag);
    let resumed = Instant::now();
    runner.resume::<sleeper>(&id).await.unwrap();
    let total = started.elapsed();
    let after_resume = resumed.elapsed();
    assert!(total >= Duration::from_millis(150), "slept {total:?}");
    assert!(
        after_resume < Duration::from_millis(140),
        "the resumed run slept the whole duration again: {after_resume:?}"
    );
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
    let id = run_until_crash::<looping>(&runner, tag.to_string(), tag, "gate", 1).await;
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
    seed: u64,
}

#[process]
async fn fan(ctx: &Ctx, input: Fan) -> Result<usize, ProcessError> {
    let t = input.tag.clone();
    let d = |i: u64| (input.seed.wrapping_mul(31).wrapping_add(i * 17)) % 9;
    let (x, (y, z)) = parallel!(step(t.clone(), "x".into(), d(1)), async {
        let y = step(t.clone(), "y".into(), d(2)).await?;
        let z = parallel!(
            step(t.clone(), "z1".into(), d(3)),
            step(t.clone(), "z2".into(), d(4))
        )?;
        Ok::<_, TaskError>((y, z))
    },)?;
    let items: Vec<u64> = (0..12).collect();
    let mapped = ctx
        .map("items", items, |i| step(t.clone(), format!("m{i}"), d(i)))
        .limit(4)
        .await?;
    Ok(x.len() + y.len() + z.0.len() + mapped.len())
}

/// Two runs with different completion orders journal the same keys for the same calls.
#[tokio::test]
async fn keys_do_not_depend_on_scheduling() {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let mut journals = Vec::new();
    for seed in [1, 2, 5] {
        let done = runner
            .run::<fan>(Fan {
                tag: "sched".into(),
                seed,
            })
            .await
            .unwrap();
        // Key, task and the step's name argument (the delays differ between runs on purpose).
        let mut s: Vec<(String, String, String)> = started(&store.events(&done.run_id).unwrap())
            .into_iter()
            .map(|(k, t, args)| (k, t, args.split(',').nth(1).unwrap().to_string()))
            .collect();
        s.sort();
        journals.push(s);
    }
    assert_eq!(journals[0].len(), 16);
    assert_eq!(journals[0], journals[1]);
    assert_eq!(journals[0], journals[2]);
    let keys: Vec<&str> = journals[0].iter().map(|(k, _, _)| k.as_str()).collect();
    assert!(
        keys.contains(&"par(step+seq)#0/b0/common::step#0"),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"par(step+seq)#0/b1/par(step+step)#0/b1/common::step#0"),
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
    let id = run_until_crash::<evolving_v1>(&runner, tag.to_string(), tag, "gate", 1).await;
    // The structure changed, so resuming under the new code needs permission.
    let err = runner.resume::<evolving_v2>(&id).await.unwrap_err();
    assert!(matches!(err, RunError::Version(_)), "{err}");
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
    let id = run_until_crash::<swapped_v1>(&runner, tag.to_string(), tag, "gate", 1).await;

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
    let id = run_until_crash::<handles_errors>(&runner, tag.to_string(), tag, "gate", 1).await;
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
    let id = runner.store().list().unwrap()[0].clone();
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
}

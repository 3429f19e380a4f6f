//! `parallel!` and `ctx.map`: typed results in branch/input order, fail-fast with cancellation,
//! settle-all, any arity, nesting, sequence branches, concurrency limits, progress.

mod common;

use common::*;
use minder::prelude::*;
use minder::Notice;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

#[task]
async fn after(ms: u64, value: String) -> Result<String, TaskError> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(value)
}

#[task]
async fn number(n: u32) -> Result<u32, TaskError> {
    Ok(n)
}

/// Where the three branches of `ordered` meet: none passes until all three are running.
static MEET: LazyLock<tokio::sync::Barrier> = LazyLock::new(|| tokio::sync::Barrier::new(3));
/// The order the branches of `ordered` finished in.
static FINISHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[task]
async fn meet_then(ms: u64, value: String) -> Result<String, TaskError> {
    MEET.wait().await;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    FINISHED.lock().unwrap().push(value.clone());
    Ok(value)
}

#[process]
async fn ordered(_ctx: &Ctx, _input: ()) -> Result<Vec<String>, ProcessError> {
    // Slowest first: results still come back in branch order.
    let (slow, fast, medium) = parallel!(
        meet_then(60, "slow".into()),
        meet_then(1, "fast".into()),
        meet_then(30, "medium".into()),
    )?;
    Ok(vec![slow, fast, medium])
}

/// The branches meet at a barrier, so the run ends only if all three run at once (branches
/// run one after the other would wait there until the deadline); on tokio's paused clock they
/// then finish in the order of their delays.
#[tokio::test(start_paused = true)]
async fn results_are_in_branch_order_and_run_concurrently() {
    let runner = Runner::in_memory();
    let done = tokio::time::timeout(PATIENCE, runner.run::<ordered>(()))
        .await
        .expect("the branches never all ran at once")
        .unwrap();
    assert_eq!(
        *FINISHED.lock().unwrap(),
        ["fast", "medium", "slow"],
        "finished in the order of their delays"
    );
    assert_eq!(done.output, ["slow", "fast", "medium"]);
}

#[process]
async fn fail_fast(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let r = parallel!(
        step(tag.clone(), "slow".into(), 300),
        failing(tag.clone(), "boom".into(), 10),
        step(tag.clone(), "quick".into(), 0),
    );
    match r {
        Ok(_) => Ok("no error?".into()),
        Err(e) => Ok(format!("caught {e}")),
    }
}

static SLOW_FINISHED: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn slow_marker(ms: u64) -> Result<u32, TaskError> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    SLOW_FINISHED.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[process]
async fn cancels_sibling(_ctx: &Ctx, tag: String) -> Result<String, ProcessError> {
    let r = parallel!(slow_marker(100), failing(tag.clone(), "x".into(), 5));
    Ok(format!("{}", r.is_err()))
}

/// On tokio's paused clock: the times below are exact.
#[tokio::test(start_paused = true)]
async fn fail_fast_returns_the_first_error_and_cancels_siblings() {
    let started = tokio::time::Instant::now();
    let store = minder::MemoryStore::new();
    let done = Runner::new(store.clone())
        .run::<fail_fast>("ff".into())
        .await
        .unwrap();
    assert_eq!(done.output, "caught boom-failed");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "waited {:?} for the slow sibling",
        started.elapsed()
    );
    let events = store.events(&done.run_id).unwrap();
    assert!(
        events.iter().any(|e| matches!(e,
            minder::journal::Event::StepCancelled { key } if key.ends_with("/b0/common::step#0"))),
        "the slow sibling is journaled as cancelled: {events:?}"
    );

    let store = minder::MemoryStore::new();
    let done = Runner::new(store.clone())
        .run::<cancels_sibling>("cancel".into())
        .await
        .unwrap();
    assert_eq!(done.output, "true");
    let cancelled: Vec<_> = store
        .events(&done.run_id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            minder::journal::Event::StepCancelled { key } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, ["par(slow_marker+failing)#0/b0/slow_marker#0"]);
    // Past the time the sibling's body would have finished (the paused clock runs every timer
    // due by then, its sleep included, before this one).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        SLOW_FINISHED.load(Ordering::SeqCst),
        0,
        "the cancelled sibling's body kept running"
    );
}

#[process]
async fn settles(_ctx: &Ctx, tag: String) -> Result<Vec<String>, ProcessError> {
    let (a, b, c) = parallel!(settle:
        step(tag.clone(), "a".into(), 20),
        failing(tag.clone(), "b".into(), 0),
        step(tag.clone(), "c".into(), 5),
    );
    Ok(vec![
        format!("{a:?}"),
        format!("{}", b.unwrap_err()),
        format!("{c:?}"),
    ])
}

#[tokio::test]
async fn settle_keeps_every_result() {
    let done = Runner::in_memory()
        .run::<settles>("settle".into())
        .await
        .unwrap();
    assert_eq!(
        done.output,
        ["Ok(\"a-result\")", "b-failed", "Ok(\"c-result\")"]
    );
    assert_eq!(count("settle", "a"), 1);
    assert_eq!(count("settle", "c"), 1);
}

#[process]
async fn wide_and_nested(_ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    let (a, b, c, d, e, f, g, h, i, j, k, l) = parallel!(
        number(1),
        number(2),
        number(3),
        number(4),
        number(5),
        number(6),
        number(7),
        number(8),
        number(9),
        number(10),
        number(11),
        number(12),
    )?;
    let ((m, n), o) = parallel!(parallel!(number(13), number(14)), async {
        let x = number(15).await?;
        number(x + 1).await
    })?;
    Ok(a + b + c + d + e + f + g + h + i + j + k + l + m + n + o)
}

#[tokio::test]
async fn any_arity_nesting_and_sequences() {
    let done = Runner::in_memory()
        .run::<wide_and_nested>(())
        .await
        .unwrap();
    assert_eq!(done.output, (1..=14).sum::<u32>() + 16);
}

#[process]
async fn checked_by_the_process(_ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    let ((a, b), c) = parallel!(parallel!(number(13), number(14)), async {
        let x = number(15).await?;
        number(x + 1).await
    })?;
    Ok(a + b + c)
}

#[process]
async fn checked_by_parallel(_ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    // A task called through a collection: the process's constant cannot name it, so
    // `parallel!` checks the block itself, tapping every call (the nested block's too).
    let ((a, b), c) = parallel!(parallel!(number(13), number(14)), async {
        let x = number(15).await?;
        let f = [number][0];
        f(x + 1).await
    })?;
    Ok(a + b + c)
}

/// The step keys of a finished run, in journal order.
async fn step_keys(store: &minder::MemoryStore, run_id: &str) -> Vec<String> {
    use minder::Store;
    let events = store.read(run_id).await.unwrap();
    events
        .into_iter()
        .filter_map(|e| match e {
            minder::journal::Event::StepStarted { key, .. } => Some(key),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_block_checked_by_parallel_keeps_its_keys() {
    let store = minder::MemoryStore::new();
    let runner = Runner::new(store.clone());
    let by_process = runner.run::<checked_by_the_process>(()).await.unwrap();
    let by_parallel = runner.run::<checked_by_parallel>(()).await.unwrap();
    assert_eq!(by_process.output, 13 + 14 + 16);
    assert_eq!(by_parallel.output, 13 + 14 + 16);
    let mut expected = step_keys(&store, &by_process.run_id).await;
    let mut found = step_keys(&store, &by_parallel.run_id).await;
    expected.sort();
    found.sort();
    assert_eq!(expected.len(), 4);
    assert_eq!(found, expected);
}

#[tokio::test]
async fn outside_a_process_tasks_and_parallel_just_run() {
    assert_eq!(number(5).await.unwrap(), 5);
    let (a, b) = parallel!(number(1), after(1, "x".into())).unwrap();
    assert_eq!((a, b.as_str()), (1, "x"));
}

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn measured(i: u64) -> Result<u64, TaskError> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10 + (i * 7) % 13)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    Ok(i * i)
}

#[process]
async fn squares(ctx: &Ctx, n: u64) -> Result<Vec<u64>, ProcessError> {
    Ok(ctx.map("squares", 0..n, measured).limit(3).await?)
}

/// On tokio's paused clock, so the first three items are surely running at once.
#[tokio::test(start_paused = true)]
async fn map_keeps_input_order_and_respects_the_limit() {
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let runner = Runner::in_memory().on_notice(move |_, n| {
        if let Notice::Progress { done, total, .. } = n {
            seen.lock().unwrap().push((*done, *total));
        }
    });
    let done = runner.run::<squares>(20).await.unwrap();
    assert_eq!(done.output, (0..20).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(MAX_IN_FLIGHT.load(Ordering::SeqCst), 3);
    let progress = progress.lock().unwrap();
    assert_eq!(progress.len(), 20);
    assert_eq!(progress.last(), Some(&(20, 20)));
}

#[process]
async fn map_modes(ctx: &Ctx, tag: String) -> Result<Vec<String>, ProcessError> {
    let names: Vec<String> = (0..6).map(|i| format!("item{i}")).collect();
    let settled = ctx
        .map("settled", names.clone(), |n| {
            let t = tag.clone();
            async move {
                if n == "item3" {
                    failing(t, n, 0).await
                } else {
                    step(t, n, 0).await
                }
            }
        })
        .limit(2)
        .settle()
        .await;
    let mut out: Vec<String> = settled
        .iter()
        .map(|r| match r {
            Ok(v) => v.clone(),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    let fast = ctx
        .map("fail-fast", names, |n| {
            failing(tag.clone(), format!("ff-{n}"), 5)
        })
        .limit(1)
        .await;
    out.push(format!("{}", fast.unwrap_err()));
    Ok(out)
}

#[tokio::test]
async fn map_settle_and_fail_fast() {
    let done = Runner::in_memory()
        .run::<map_modes>("maps".into())
        .await
        .unwrap();
    assert_eq!(
        done.output,
        [
            "item0-result",
            "item1-result",
            "item2-result",
            "error: item3-failed",
            "item4-result",
            "item5-result",
            "ff-item0-failed"
        ]
    );
    assert_eq!(
        count("maps", "ff-item1"),
        0,
        "fail-fast started nothing after the error"
    );
}

static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);

#[task(retries = 2, backoff = "5ms")]
async fn flaky(fail_times: usize) -> Result<usize, TaskError> {
    let n = ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    if n < fail_times {
        Err(TaskError::new(format!("attempt {n} failed")))
    } else {
        Ok(n)
    }
}

#[task(timeout = "30ms")]
async fn too_slow() -> Result<u32, TaskError> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(1)
}

#[task]
async fn panics() -> Result<u32, TaskError> {
    panic!("kaboom")
}

#[process]
async fn failures(_ctx: &Ctx, _input: ()) -> Result<Vec<String>, ProcessError> {
    let retried = flaky(2).await?;
    let timeout = too_slow().await.unwrap_err();
    let panic = panics().await.unwrap_err();
    Ok(vec![
        retried.to_string(),
        format!("{:?}: {timeout}", timeout.kind),
        format!("{:?}: {panic}", panic.kind),
    ])
}

/// On tokio's paused clock: the times below are exact.
#[tokio::test(start_paused = true)]
async fn retries_timeouts_and_panics() {
    let started = tokio::time::Instant::now();
    let store = minder::MemoryStore::new();
    let done = Runner::new(store.clone())
        .run::<failures>(())
        .await
        .unwrap();
    let attempts: Vec<(String, u32)> = store
        .events(&done.run_id)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            minder::journal::Event::AttemptFailed { key, attempt, .. } => Some((key, attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(
        attempts,
        [("flaky#0".to_string(), 0), ("flaky#0".to_string(), 1)],
        "each failed attempt is journaled"
    );
    assert_eq!(
        done.output[0], "2",
        "two failures, then the third attempt succeeds"
    );
    assert_eq!(
        done.output[1],
        "Timeout: task `too_slow` timed out after 30ms"
    );
    assert_eq!(done.output[2], "Panicked: task `panics` panicked: kaboom");
    // Two backoffs (5 ms, 10 ms) and the 30 ms timeout; the 5 s body was not waited for.
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(45)..Duration::from_secs(5)).contains(&took),
        "took {took:?}"
    );
}

#[process]
async fn wider_than_the_joins(_ctx: &Ctx, _input: ()) -> Result<u32, ProcessError> {
    // More branches than the runtime's joins cover: the block polls them itself.
    let (a, b, c, d, e, f, g, h, i, j, k, l, m, n) = parallel!(
        number(1),
        number(2),
        number(3),
        number(4),
        number(5),
        number(6),
        number(7),
        number(8),
        number(9),
        number(10),
        number(11),
        number(12),
        number(13),
        number(14),
    )?;
    let settled = parallel!(settle:
        number(1), number(2), number(3), number(4), number(5), number(6), number(7),
        number(8), number(9), number(10), number(11), number(12), number(13), number(14),
    );
    Ok(a + b + c + d + e + f + g + h + i + j + k + l + m + n + settled.13.unwrap())
}

#[tokio::test]
async fn blocks_wider_than_the_joins() {
    let done = Runner::in_memory()
        .run::<wider_than_the_joins>(())
        .await
        .unwrap();
    assert_eq!(done.output, (1..=14).sum::<u32>() + 14);
}

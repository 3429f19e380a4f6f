//! Durability on the file journal: a parallel run shares fsyncs between concurrent step
//! completions (group commit), and every completed step is on disk when the run returns.

use minder::journal::Event;
use minder::prelude::*;
use minder::store::Store;
use minder::FileStore;
use std::sync::Mutex;

#[task]
async fn square(x: u64) -> Result<u64, TaskError> {
    Ok(x * x)
}

#[process]
async fn squares(ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let all = ctx.map("squares", 0..n, square).limit(256).await?;
    Ok(all.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let before = store.sync_count();
    let n = 2_000u64;
    let done = runner.run::<squares>(n).await.unwrap();
    assert_eq!(done.output, (0..n).map(|x| x * x).sum::<u64>());
    let syncs = store.sync_count() - before;
    let events = store.read(&done.run_id).await.unwrap();
    let completed = events
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. }))
        .count();
    assert_eq!(completed as u64, n, "every completion is journaled");
    let per_step = syncs as f64 / n as f64;
    eprintln!("group commit: {syncs} fsyncs for {n} completed steps = {per_step:.4} per step");
    assert!(
        per_step < 0.25,
        "{syncs} fsyncs for {n} steps: completions are not sharing syncs"
    );
}

/// The store of `each_sequential_step_is_synced_before_the_next`, for its task bodies.
static SEQUENTIAL_STORE: Mutex<Option<FileStore>> = Mutex::new(None);
/// What each task body of that test saw when it started: its input, the store's sync count,
/// and how many steps the journal on disk had completed.
static SEEN: Mutex<Vec<(u64, u64, usize)>> = Mutex::new(Vec::new());

#[task]
async fn square_noting_syncs(x: u64) -> Result<u64, TaskError> {
    let store = SEQUENTIAL_STORE.lock().unwrap().clone().unwrap();
    let key = minder::idempotency_key().unwrap();
    let run_id = key.split('/').next().unwrap();
    let completed = store
        .read(run_id)
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. }))
        .count();
    SEEN.lock()
        .unwrap()
        .push((x, store.sync_count(), completed));
    Ok(x * x)
}

#[process]
async fn one_at_a_time(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut sum = 0;
    for i in 0..n {
        sum += square_noting_syncs(i).await?;
    }
    Ok(sum)
}

/// Each step's completion is synced before the next step's body runs: every body sees one
/// more journal sync than the body before it, and the previous step completed in the file.
#[tokio::test]
async fn each_sequential_step_is_synced_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    *SEQUENTIAL_STORE.lock().unwrap() = Some(store.clone());
    let runner = Runner::new(store.clone());
    let before = store.sync_count();
    let done = runner.run::<one_at_a_time>(50).await.unwrap();
    assert_eq!(done.output, (0..50u64).map(|x| x * x).sum::<u64>());
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 50, "{seen:?}");
    // The run's creation is synced before the first step.
    let mut synced = before;
    for (i, &(x, syncs, completed)) in seen.iter().enumerate() {
        assert_eq!((x, completed), (i as u64, i), "step {i}: {seen:?}");
        assert!(
            syncs > synced,
            "step {i}'s body ran before a sync covered what came before it: {syncs} syncs, \
             {synced} when the step before it ran: {seen:?}"
        );
        synced = syncs;
    }
    assert!(store.sync_count() > synced, "the last completion is synced");
}

//! Durability on the file journal: a parallel run shares fsyncs between concurrent step
//! completions (group commit), and every completed step is on disk when the run returns.

use minder::journal::Event;
use minder::prelude::*;
use minder::store::Store;
use minder::FileStore;

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
    let events = store.read(&done.run_id).unwrap();
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

#[process]
async fn one_at_a_time(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut sum = 0;
    for i in 0..n {
        sum += square(i).await?;
    }
    Ok(sum)
}

#[tokio::test]
async fn each_sequential_step_is_synced_before_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let before = store.sync_count();
    let done = runner.run::<one_at_a_time>(50).await.unwrap();
    assert_eq!(done.output, (0..50u64).map(|x| x * x).sum::<u64>());
    let syncs = store.sync_count() - before;
    // One sync to create the run, one per step, one for the end.
    assert!(syncs >= 51, "only {syncs} syncs for 50 sequential steps");
}

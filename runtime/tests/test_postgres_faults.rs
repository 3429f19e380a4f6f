//! PostgreSQL having a bad day under running workers: every connection of the workers
//! terminated (`pg_terminate_backend`), then the server restarted, each while runs are in the
//! middle of a step. The workers reconnect or give their runs up; every run completes; no
//! event that was acknowledged is lost (each journal is contiguous and ends completed, and
//! every step key completed once). A binary of its own: the restart would disturb other tests.

mod common;
mod pg;

use common::PATIENCE;
use minder::prelude::*;
use minder::store::PgStore;
use minder::worker::{Processes, Worker, WorkerReport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[data]
struct Job {
    tag: String,
    /// `hold` waits until this file exists.
    gate: String,
}

#[task]
async fn quick(tag: String, step: u32) -> Result<String, TaskError> {
    Ok(format!("{tag}-{step}"))
}

#[task]
async fn hold(gate: String) -> Result<u32, TaskError> {
    while !Path::new(&gate).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(1)
}

#[process]
async fn steps(_ctx: &Ctx, job: Job) -> Result<String, ProcessError> {
    let a = quick(job.tag.clone(), 1).await?;
    hold(job.gate.clone()).await?;
    let b = quick(job.tag.clone(), 2).await?;
    Ok(format!("{a} {b}"))
}

fn start_workers(
    url: &str,
    n: usize,
) -> Vec<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<WorkerReport>,
)> {
    (0..n)
        .map(|_| {
            let url = url.to_string();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(async move {
                let store = PgStore::connect_with_lease(&url, Duration::from_secs(2))
                    .await
                    .unwrap();
                Worker::new(Runner::new(store), Processes::new().process::<steps>())
                    .concurrency(8)
                    .poll(Duration::from_millis(100))
                    .run_until(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap()
            });
            (stop, handle)
        })
        .collect()
}

/// Submits `n` runs held at `gate`, waits until every one is inside `hold`, does `fault`,
/// opens the gate, and checks that every run completes with a contiguous journal.
async fn survive(
    url: &str,
    name: &str,
    fault: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let gate: PathBuf = dir.path().join("gate");
    let submitter = Runner::new(PgStore::connect(url).await.unwrap());
    let mut ids = Vec::new();
    for i in 0..16 {
        let job = Job {
            tag: format!("{name}{i}"),
            gate: gate.display().to_string(),
        };
        ids.push(submitter.submit::<steps>(&job).await.unwrap());
    }
    let workers = start_workers(url, 2);
    let client = pg::sql(url).await;
    // Every run is at `hold` (its step 1 completed and flushed; `hold` waits for the gate).
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let started: i64 = client
            .query_one(
                "SELECT count(*) FROM minder_events, jsonb_array_elements(body::jsonb) AS e
                 WHERE e->>'event' = 'step_completed' AND e->>'key' LIKE '%quick%'
                   AND run_id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        if started >= ids.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{started} runs in `hold`"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(client);
    fault().await;
    std::fs::write(&gate, "").unwrap();
    let deadline = std::time::Instant::now() + PATIENCE * 4;
    let store = submitter.store().clone();
    'wait: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "runs did not complete after {name}"
        );
        for id in &ids {
            match store.read(id).await {
                Ok(events) if events.iter().any(|e| e.run_end().is_some()) => {}
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'wait;
                }
            }
        }
        break;
    }
    let mut total = WorkerReport::default();
    for (stop, handle) in workers {
        stop.send(()).unwrap();
        let report = handle.await.unwrap();
        total.completed += report.completed;
        total.errors += report.errors;
        total.lost += report.lost;
    }
    println!(
        "{name}: {} runs completed by the workers, {} runs given up on an error and taken again, {} lost to another worker",
        total.completed, total.errors, total.lost
    );
    let client = pg::sql(url).await;
    for id in &ids {
        let events = store.read(id).await.unwrap();
        let last = events.last().unwrap();
        assert!(
            matches!(last, minder::journal::Event::RunCompleted { .. }),
            "{id}: {last:?}"
        );
        let mut done: HashMap<String, usize> = HashMap::new();
        for e in &events {
            if let minder::journal::Event::StepCompleted { key, .. } = e {
                *done.entry(key.clone()).or_default() += 1;
            }
        }
        assert!(done.values().all(|n| *n == 1), "{id}: {done:?}");
        let seqs: Vec<i64> = client
            .query(
                "SELECT seq FROM minder_events WHERE run_id = $1 ORDER BY seq",
                &[id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_killed_connections_and_a_server_restart() {
    let url = pg::fresh_db("faults").await;
    let admin = url.clone();
    survive(&url, "terminated", move || {
        Box::pin(async move {
            let client = pg::sql(&admin).await;
            let killed: i64 = client
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()) k",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            println!("terminated {killed} connections");
            assert!(killed >= 4, "the workers' connections: {killed}");
        })
    })
    .await;
    survive(&url, "restarted", || {
        Box::pin(async {
            tokio::task::spawn_blocking(pg::restart).await.unwrap();
        })
    })
    .await;
}

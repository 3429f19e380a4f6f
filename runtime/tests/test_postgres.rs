//! The PostgreSQL store against a real server (a throwaway cluster, see `pg/mod.rs`): the
//! store contract, runs and workers on it, fencing of a stalled writer, bad URLs and servers.

mod common;
mod pg;

use common::PATIENCE;
use minder::journal::Event;
use minder::prelude::*;
use minder::store::{OpenRun, PgStore, Store, StoreError};
use minder::worker::{Processes, Worker, WorkerReport};
use minder::RunError;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

#[data]
struct Job {
    tag: String,
    /// A file each task appends `<tag> <what>` to (what really ran, across processes).
    log: String,
    /// `hold` waits until this file exists.
    gate: String,
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
async fn mark(log: String, tag: String, step: u32) -> Result<u32, TaskError> {
    append(&log, format!("{tag} {step}"));
    Ok(step)
}

#[task]
async fn hold(log: String, tag: String, gate: String) -> Result<u32, TaskError> {
    append(&log, format!("{tag} hold"));
    while !std::path::Path::new(&gate).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(10)
}

#[process]
async fn three_steps(_ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    let a = mark(job.log.clone(), job.tag.clone(), 1).await?;
    let b = hold(job.log.clone(), job.tag.clone(), job.gate.clone()).await?;
    let c = mark(job.log.clone(), job.tag.clone(), 2).await?;
    Ok(a + b + c)
}

#[task]
async fn noop(i: u32) -> Result<u32, TaskError> {
    Ok(i)
}

#[process]
async fn fan(ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let all: Vec<u32> = ctx.map("noops", 0..n, noop).limit(16).await?;
    Ok(all.iter().sum())
}

/// Set when `guarded`'s body was dropped before it finished.
static GUARDED_DROPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct DropFlag;

impl Drop for DropFlag {
    fn drop(&mut self) {
        GUARDED_DROPPED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[task]
async fn guarded(log: String, tag: String) -> Result<u32, TaskError> {
    append(&log, format!("{tag} guarded"));
    let flag = DropFlag;
    // Never finishes by itself: only a dropped body ends it.
    std::future::pending::<()>().await;
    std::mem::forget(flag);
    Ok(0)
}

#[process]
async fn stuck(_ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    let a = mark(job.log.clone(), job.tag.clone(), 1).await?;
    Ok(a + guarded(job.log, job.tag).await?)
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pg-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn created(run_id: &str) -> Event {
    Event::RunCreated {
        run_id: run_id.to_string(),
        process: "p".to_string(),
        input: serde_json::json!({"n": 1}),
        fingerprint: "f".to_string(),
        queue: None,
        priority: None,
        parent: None,
    }
}

fn log_event(i: usize) -> Event {
    Event::Log {
        key: format!("log/{i}"),
        message: format!("message {i} ✓"),
        seq: None,
        location: None,
        node: None,
    }
}

async fn wait_ended(store: &dyn Store, ids: &[String]) {
    let deadline = std::time::Instant::now() + PATIENCE * 4;
    loop {
        let mut open = 0;
        for id in ids {
            let events = store.read(id).await.unwrap();
            if !events.iter().any(|e| e.run_end().is_some()) {
                open += 1;
            }
        }
        if open == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} of {} runs did not end in time",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_contract_holds_on_postgres() {
    let url = pg::fresh_db("contract").await;
    let store = PgStore::connect(&url).await.unwrap();
    // Connecting again applies nothing new (the schema is there).
    let other = PgStore::connect(&url).await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    let log = store.create("r1", created("r1")).await.unwrap();
    for i in 0..10 {
        log.append(log_event(i)).unwrap();
    }
    log.flush().await.unwrap();
    assert!(matches!(
        store.create("r1", created("r1")).await,
        Err(StoreError::RunExists(_))
    ));
    // Held: nobody else opens or deletes it.
    assert!(matches!(other.open("r1").await, Err(StoreError::Locked(_))));
    assert!(matches!(
        other.delete("r1").await,
        Err(StoreError::Locked(_))
    ));
    assert!(matches!(
        other.open("nope").await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        other.read("nope").await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        other.open("../x").await,
        Err(StoreError::InvalidRunId(_))
    ));
    let read = other.read("r1").await.unwrap();
    assert_eq!(read.len(), 11);
    assert_eq!(read[0], created("r1"));
    assert_eq!(read[10], log_event(9));
    // Appended but not flushed when dropped: written on the way out, then the run is let go.
    log.append(log_event(10)).unwrap();
    drop(log);
    let deadline = std::time::Instant::now() + PATIENCE;
    let OpenRun { events, log, .. } = loop {
        match other.open("r1").await {
            Ok(open) => break open,
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(events.len(), 12);
    log.append(log_event(11)).unwrap();
    log.flush().await.unwrap();
    drop(log);
    assert_eq!(store.list().await.unwrap(), ["r1"]);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match store.delete("r1").await {
            Ok(()) => break,
            Err(StoreError::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(store.list().await.unwrap().is_empty());
    assert!(matches!(
        store.delete("r1").await,
        Err(StoreError::UnknownRun(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_and_resumes_on_postgres_without_rerunning_steps() {
    let url = pg::fresh_db("workflow").await;
    let dir = scratch();
    let runner = Runner::new(PgStore::connect(&url).await.unwrap());
    std::fs::write(dir.path().join("gate"), "").unwrap();
    let job = Job {
        tag: "w".into(),
        log: dir.path().join("log").display().to_string(),
        gate: dir.path().join("gate").display().to_string(),
    };
    let done = runner.run::<three_steps>(job).await.unwrap();
    assert_eq!(done.output, 13);
    // Another store instance (another machine) resumes it: the recorded output, nothing runs.
    let again = Runner::new(PgStore::connect(&url).await.unwrap());
    let deadline = std::time::Instant::now() + PATIENCE;
    let resumed = loop {
        match again.resume::<three_steps>(&done.run_id).await {
            Err(RunError::Store(StoreError::Locked(_))) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(resumed.output, 13);
    assert_eq!(lines(&dir.path().join("log")), ["w 1", "w hold", "w 2"]);
    let fan_out = runner.run::<fan>(300).await.unwrap();
    assert_eq!(fan_out.output, (0..300).sum::<u32>());
}

fn start_worker(
    url: String,
    concurrency: usize,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<WorkerReport>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let store = PgStore::connect_with_lease(&url, Duration::from_secs(2))
            .await
            .unwrap();
        Worker::new(
            Runner::new(store),
            Processes::new().process::<three_steps>().process::<fan>(),
        )
        .concurrency(concurrency)
        .poll(Duration::from_millis(200))
        .run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    (stop, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_complete_two_hundred_runs_each_once_with_contiguous_events() {
    let url = pg::fresh_db("fleet").await;
    let dir = scratch();
    std::fs::write(dir.path().join("gate"), "").unwrap();
    let submitter = Runner::new(PgStore::connect(&url).await.unwrap());
    let mut ids = Vec::new();
    for i in 0..200 {
        let job = Job {
            tag: format!("r{i}"),
            log: dir.path().join("log").display().to_string(),
            gate: dir.path().join("gate").display().to_string(),
        };
        ids.push(submitter.submit::<three_steps>(&job).await.unwrap());
    }
    let workers: Vec<_> = (0..4).map(|_| start_worker(url.clone(), 8)).collect();
    wait_ended(submitter.store().as_ref(), &ids).await;
    let mut total = WorkerReport::default();
    for (stop, handle) in workers {
        stop.send(()).unwrap();
        let report = handle.await.unwrap();
        assert!(
            report.completed > 0,
            "every worker took a share: {report:?}"
        );
        total.completed += report.completed;
        total.errors += report.errors + report.lost;
    }
    assert_eq!((total.completed, total.errors), (200, 0));
    let ran = lines(&dir.path().join("log"));
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in &ran {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    for i in 0..200 {
        for what in ["1", "hold", "2"] {
            assert_eq!(
                counts.get(format!("r{i} {what}").as_str()),
                Some(&1),
                "r{i} {what}"
            );
        }
    }
    // Each run's events are numbered 1..=n without a gap, and their epochs never go down.
    let client = pg::sql(&url).await;
    let rows = client
        .query(
            "SELECT run_id, array_agg(seq ORDER BY seq), array_agg(epoch ORDER BY seq)
             FROM minder_events GROUP BY run_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 200);
    for row in rows {
        let run_id: String = row.get(0);
        let seqs: Vec<i64> = row.get(1);
        let epochs: Vec<i64> = row.get(2);
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{run_id}"
        );
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "{run_id}: {epochs:?}"
        );
    }
}

/// Set in the child process of the fencing test: the database URL.
const STALL_CHILD: &str = "MINDER_TEST_PG_STALL_CHILD";

/// The child: opens run `stalled` with a 1-second lease, says so, then appends and flushes an
/// event every 20 ms, printing each result, until a flush fails.
fn stall_child(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = PgStore::connect_with_lease(url, Duration::from_secs(1))
            .await
            .unwrap();
        let OpenRun { log, .. } = store.open("stalled").await.unwrap();
        println!("held");
        let mut i = 0;
        loop {
            log.append(log_event(1000 + i)).unwrap_or(());
            match log.flush().await {
                Ok(()) => println!("flushed {i}"),
                Err(e) => {
                    println!("refused: {e}");
                    return;
                }
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn a_stalled_writer_past_its_lease_lands_nothing_after_another_took_the_run() {
    if let Ok(url) = std::env::var(STALL_CHILD) {
        return stall_child(&url);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = pg::fresh_db("fence").await;
        let store = PgStore::connect(&url).await.unwrap();
        drop(store.create("stalled", created("stalled")).await.unwrap());
        // Wait until the creator let it go.
        let client = pg::sql(&url).await;
        let deadline = std::time::Instant::now() + PATIENCE;
        while !client
            .query_one("SELECT owner IS NULL FROM minder_runs", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_stalled_writer_past_its_lease_lands_nothing_after_another_took_the_run",
                "--nocapture",
            ])
            .env(STALL_CHILD, &url)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // Held, and writing.
        loop {
            line.clear();
            out.read_line(&mut line).unwrap();
            if line.starts_with("flushed 3") {
                break;
            }
            assert!(!line.is_empty(), "the child stopped early");
        }
        let pid = child.id() as i32;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        // Its lease runs out; another writer takes the run (epoch + 1).
        let deadline = std::time::Instant::now() + PATIENCE;
        let OpenRun { events, log, .. } = loop {
            match store.open("stalled").await {
                Ok(open) => break open,
                Err(StoreError::Locked(_)) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the lease never ran out"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        // The claim wrote its row (no events) at the run's next number, with the new epoch.
        let claim = client
            .query_one(
                "SELECT seq, epoch, body FROM minder_events WHERE run_id = 'stalled'
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        let (taken_at, epoch): (i64, i64) = (claim.get(0), claim.get(1));
        assert_eq!(claim.get::<_, &str>(2), "[]");
        assert_eq!(store.read("stalled").await.unwrap(), events);
        log.append(log_event(1)).unwrap();
        log.flush().await.unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success());
        let refused = rest
            .lines()
            .find(|l| l.starts_with("refused"))
            .unwrap_or_else(|| panic!("the stale writer was never refused: {rest}"));
        assert!(refused.contains("taken over"), "{refused}");
        // Nothing the stale writer sent after the takeover landed: past the claim's row there
        // is only the new writer's row, every row has the new epoch, and the rows are
        // numbered without a gap.
        let rows = client
            .query(
                "SELECT seq, epoch FROM minder_events WHERE run_id = 'stalled' AND seq >= $1
                 ORDER BY seq",
                &[&taken_at],
            )
            .await
            .unwrap();
        let stale = rows.iter().filter(|r| r.get::<_, i64>(1) < epoch).count();
        println!(
            "rows from the takeover on: {}, from the stale writer: {stale}",
            rows.len()
        );
        let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(seqs, vec![taken_at, taken_at + 1]);
        assert_eq!(stale, 0);
        let count: i64 = client
            .query_one(
                "SELECT count(*) FROM minder_events WHERE run_id = 'stalled'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(count, taken_at + 1);
        let all = store.read("stalled").await.unwrap();
        assert_eq!(all.last(), Some(&log_event(1)));
    });
}

/// Takes `run_id` from under its holder as another writer's claim does (its epoch up by one,
/// the claim's row at the run's next number), without waiting for the lease.
async fn steal(client: &tokio_postgres::Client, run_id: &str) {
    let n = client
        .execute(
            "WITH u AS (UPDATE minder_runs SET owner = 'thief', epoch = epoch + 1
                 WHERE run_id = $1 RETURNING run_id, epoch)
             INSERT INTO minder_events (run_id, seq, epoch, body)
             SELECT u.run_id, (SELECT max(seq) + 1 FROM minder_events WHERE run_id = $1),
                 u.epoch, '[]'
             FROM u",
            &[&run_id],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_is_refused_alone_and_inside_a_shared_commit_the_others_land() {
    let url = pg::fresh_db("fence_batch").await;
    let store = PgStore::connect(&url).await.unwrap();
    let client = pg::sql(&url).await;
    let ids: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    let mut logs = Vec::new();
    for id in &ids {
        logs.push(store.create(id, created(id)).await.unwrap());
    }
    // b0's flush goes first and commits by itself; the nine after it arrive while it is
    // under way and share one transaction, in which b5's row is refused.
    steal(&client, "b0").await;
    steal(&client, "b5").await;
    for log in &logs {
        log.append(log_event(1)).unwrap();
    }
    let flushes: Vec<_> = logs.iter().map(|log| log.flush()).collect();
    let results = futures::future::join_all(flushes).await;
    for (id, result) in ids.iter().zip(&results) {
        match id.as_str() {
            "b0" | "b5" => assert!(
                matches!(result, Err(StoreError::Fenced(r)) if r == id),
                "{id}: {result:?}"
            ),
            _ => assert!(result.is_ok(), "{id}: {result:?}"),
        }
    }
    // The runs taken over take nothing more; the others go on.
    assert!(matches!(
        logs[5].append(log_event(2)),
        Err(StoreError::Fenced(_))
    ));
    logs[1].append(log_event(2)).unwrap();
    logs[1].flush().await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let rows: Vec<(i64, i64, String)> = client
            .query(
                "SELECT seq, epoch, body FROM minder_events WHERE run_id = $1 ORDER BY seq",
                &[id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let shape: Vec<(i64, i64)> = rows.iter().map(|(s, e, _)| (*s, *e)).collect();
        let events = store.read(id).await.unwrap();
        match i {
            // Created (1), the thief's claim (2); nothing of the stale writer.
            0 | 5 => {
                assert_eq!(shape, vec![(1, 1), (2, 2)], "{id}");
                assert_eq!(rows[1].2, "[]");
                assert_eq!(events, vec![created(id)], "{id}");
            }
            1 => assert_eq!(
                events,
                vec![created(id), log_event(1), log_event(2)],
                "{id}"
            ),
            _ => {
                assert_eq!(shape, vec![(1, 1), (2, 1)], "{id}");
                assert_eq!(events, vec![created(id), log_event(1)], "{id}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_dropped_half_way_still_writes_whole_and_in_order() {
    let url = pg::fresh_db("dropped_flush").await;
    let store = PgStore::connect(&url).await.unwrap();
    let log = store.create("d", created("d")).await.unwrap();
    // One flush first, through the writer (which connects), so the next one is a lone flush
    // on the writer's connection, driven by its own future.
    log.append(log_event(0)).unwrap();
    log.flush().await.unwrap();
    log.append(log_event(1)).unwrap();
    log.append(log_event(2)).unwrap();
    {
        // Polled once (its statement on its way), then dropped, as a branch's future is
        // when another branch fails.
        let mut flush = log.flush();
        assert!(futures::poll!(flush.as_mut()).is_pending());
    }
    // The next flush waits for the dropped one's write (they share the writer's connection,
    // taken in turn): once it returns, both are in, in order, one row each.
    log.append(log_event(3)).unwrap();
    log.flush().await.unwrap();
    let want = vec![
        created("d"),
        log_event(0),
        log_event(1),
        log_event(2),
        log_event(3),
    ];
    assert_eq!(store.read("d").await.unwrap(), want);
    let rows: i64 = pg::sql(&url)
        .await
        .query_one("SELECT count(*) FROM minder_events WHERE run_id = 'd'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_stops_the_hold_and_the_run_is_let_go_as_its_rows_say() {
    let url = pg::fresh_db("failed_flush").await;
    let store = PgStore::connect(&url).await.unwrap();
    let client = pg::sql(&url).await;
    let log = store.create("f", created("f")).await.unwrap();
    log.append(log_event(1)).unwrap();
    log.flush().await.unwrap();
    // The server refuses the next row (a constraint the test adds): the flush that would end
    // the run fails.
    client
        .batch_execute(
            "ALTER TABLE minder_events ADD CONSTRAINT refuse_ends
                 CHECK (body NOT LIKE '%run_completed%')",
        )
        .await
        .unwrap();
    log.append(Event::RunCompleted {
        output: serde_json::json!(1),
    })
    .unwrap();
    let e = log.flush().await.unwrap_err();
    assert!(e.to_string().contains("refuse_ends"), "{e}");
    // Nothing more goes through this hold, whatever the server would take now.
    client
        .batch_execute("ALTER TABLE minder_events DROP CONSTRAINT refuse_ends")
        .await
        .unwrap();
    let later = log.append(log_event(2)).unwrap_err();
    assert!(
        later.to_string().contains("an earlier write of it failed"),
        "{later}"
    );
    assert!(log.flush().await.is_err());
    // Let go in the readiness of its rows (ready: the end never landed), not of what was
    // appended; so a worker takes it again.
    let _ = log.close().await;
    drop(log);
    let row = client
        .query_one(
            "SELECT state, owner IS NULL FROM minder_runs WHERE run_id = 'f'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, bool>(1)),
        ("ready".to_string(), true)
    );
    assert_eq!(
        store.read("f").await.unwrap(),
        vec![created("f"), log_event(1)]
    );
    let OpenRun { events, .. } = store.open("f").await.unwrap();
    assert_eq!(events, vec![created("f"), log_event(1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_run_that_was_due_does_not_wake_the_workers_until_its_lease_runs_out() {
    let url = pg::fresh_db("held_due").await;
    let store = PgStore::connect(&url).await.unwrap();
    // A run claimed while due (its sleep over), held by a live writer: its row keeps `due`
    // and a past wake time until it is let go.
    pg::sql(&url)
        .await
        .execute(
            "INSERT INTO minder_runs (run_id, process, fingerprint, queue, state, wake_at, owner,
                 epoch, lease_until)
             VALUES ('held', 'p', 'f', 'default', 'due', 1, 'someone', 1,
                 now() + interval '1 hour')",
            &[],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    store.wait_for_work(Duration::from_millis(600)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600),
        "a worker woke at once for a run another holds ({waited:?})"
    );
    // Once its holder's lease ran out, it is due at once.
    pg::sql(&url)
        .await
        .execute(
            "UPDATE minder_runs SET lease_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    store.wait_for_work(PATIENCE).await;
    assert!(started.elapsed() < PATIENCE / 2, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_renews_the_runs_held_and_no_other_row_that_names_the_instance() {
    let url = pg::fresh_db("heartbeat_held").await;
    let store = PgStore::connect_with_lease(&url, Duration::from_secs(1))
        .await
        .unwrap();
    let _kept = store.create("kept", created("kept")).await.unwrap();
    // A row that names this instance but is not held by it (a release that could not be
    // sent): its lease must run out, so another worker takes the run.
    let client = pg::sql(&url).await;
    client
        .execute(
            "INSERT INTO minder_runs (run_id, process, fingerprint, queue, state, owner, epoch,
                 lease_until)
             VALUES ('leaked', 'p', 'f', 'default', 'ready', $1, 1, now() + interval '1 second')",
            &[&store.owner()],
        )
        .await
        .unwrap();
    // Four heartbeats (a third of the lease apart): more than the lease.
    let from = store.heartbeat_statements();
    common::wait_until("four heartbeats", || {
        store.heartbeat_statements() >= from + 4
    })
    .await;
    let rows: Vec<(String, bool)> = client
        .query(
            "SELECT run_id, lease_until > now() FROM minder_runs ORDER BY run_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![("kept".to_string(), true), ("leaked".to_string(), false)]
    );
}

/// Appends to run `run_id` a row that does not decode.
async fn add_unreadable_row(client: &tokio_postgres::Client, run_id: &str) {
    client
        .execute(
            "INSERT INTO minder_events (run_id, seq, epoch, body)
             VALUES ($1, (SELECT max(seq) + 1 FROM minder_events WHERE run_id = $1), 1,
                 'not json')",
            &[&run_id],
        )
        .await
        .unwrap();
}

/// Waits until run `run_id` is let go (its row names no holder); answers its state and how
/// far ahead its wake time is, in ms.
async fn let_go(client: &tokio_postgres::Client, run_id: &str) -> (String, Option<i64>) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let row = client
            .query_one(
                "SELECT owner IS NULL, state,
                     wake_at - (extract(epoch FROM now()) * 1000)::bigint
                 FROM minder_runs WHERE run_id = $1",
                &[&run_id],
            )
            .await
            .unwrap();
        if row.get::<_, bool>(0) {
            return (row.get(1), row.get(2));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{run_id} never let go"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_rows_cannot_be_read_is_let_go_at_once_in_the_state_it_had() {
    let url = pg::fresh_db("unreadable").await;
    let store = PgStore::connect(&url).await.unwrap();
    let log = store.create("u", created("u")).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    // The run waits for a person, and one of its rows does not decode.
    let client = pg::sql(&url).await;
    client
        .batch_execute("UPDATE minder_runs SET state = 'parked' WHERE run_id = 'u'")
        .await
        .unwrap();
    add_unreadable_row(&client, "u").await;
    let e = store.open("u").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("does not hold known events"), "{e}");
    // Let go at once (not at the end of the lease), still parked: no worker is sent to it.
    let (state, _) = let_go(&client, "u").await;
    assert_eq!(state, "parked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lets_go_a_run_it_cannot_read_and_keeps_the_others() {
    let url = pg::fresh_db("unreadable_claim").await;
    let store = PgStore::connect(&url).await.unwrap();
    for id in ["good", "bad"] {
        let log = store.create(id, created(id)).await.unwrap();
        log.close().await.unwrap();
    }
    let client = pg::sql(&url).await;
    add_unreadable_row(&client, "bad").await;
    let request =
        minder::store::ClaimRequest::new("w", vec![("p".to_string(), "f".to_string())], 10);
    let claimed = store.claim(&request).await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.run_id.as_str()).collect();
    assert_eq!(ids, ["good"]);
    // The unreadable run is let go at once (not at the end of the lease), due again in one
    // lease (for a build that reads it), so the next claim leaves it alone.
    let (state, ahead) = let_go(&client, "bad").await;
    assert_eq!(state, "due");
    let ahead = ahead.expect("a due run has a wake time");
    assert!(ahead > 5_000 && ahead <= 15_000, "due in {ahead} ms");
    let again = store.claim(&request).await.unwrap();
    assert!(again.is_empty(), "claimed again at once");
}

/// Set in the child of the kill test: the database URL.
const WORKER_CHILD: &str = "MINDER_TEST_PG_WORKER_CHILD";

#[test]
fn a_killed_worker_s_run_is_finished_by_another_after_its_lease() {
    if let Ok(url) = std::env::var(WORKER_CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = PgStore::connect_with_lease(&url, Duration::from_secs(1))
                .await
                .unwrap();
            Worker::new(
                Runner::new(store),
                Processes::new().process::<three_steps>(),
            )
            .poll(Duration::from_millis(50))
            .run()
            .await
            .unwrap();
        });
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = pg::fresh_db("kill").await;
        let dir = scratch();
        let log = dir.path().join("log");
        let gate = dir.path().join("gate");
        let runner = Runner::new(PgStore::connect(&url).await.unwrap());
        let id = runner
            .submit::<three_steps>(&Job {
                tag: "k".into(),
                log: log.display().to_string(),
                gate: gate.display().to_string(),
            })
            .await
            .unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_killed_worker_s_run_is_finished_by_another_after_its_lease",
                "--nocapture",
            ])
            .env(WORKER_CHILD, &url)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        common::wait_until("the child worker to reach `hold`", || {
            lines(&log).iter().any(|l| l == "k hold")
        })
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::write(&gate, "").unwrap();
        let (stop, worker) = start_worker(url.clone(), 2);
        wait_ended(runner.store().as_ref(), std::slice::from_ref(&id)).await;
        stop.send(()).unwrap();
        let report = worker.await.unwrap();
        assert_eq!(report.completed, 1, "{report:?}");
        assert_eq!(lines(&log), ["k 1", "k hold", "k hold", "k 2"]);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_servers_are_one_line_errors_with_the_password_masked() {
    let unreachable = "postgres://me:hunter2@/db?host=/nonexistent-minder&port=1&connect_timeout=2";
    let e = PgStore::connect(unreachable).await.unwrap_err().to_string();
    assert!(!e.contains("hunter2") && e.contains("me:***@"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let e = PgStore::connect("postgres://me:pw@host:notaport/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not a PostgreSQL URL") && !e.contains(":pw@"),
        "{e}"
    );
    // A database that does not exist.
    let missing = pg::url_of("no_such_database_here");
    let e = PgStore::connect(&missing).await.unwrap_err().to_string();
    assert!(e.contains("no_such_database_here"), "{e}");
    // The schema of a newer minder.
    let url = pg::fresh_db("newer").await;
    drop(PgStore::connect(&url).await.unwrap());
    pg::sql(&url)
        .await
        .execute("UPDATE minder_schema SET version = 99", &[])
        .await
        .unwrap();
    let e = PgStore::connect(&url).await.unwrap_err().to_string();
    assert!(e.contains("newer minder") && e.contains("99"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_drops_the_run_at_once_and_writes_nothing() {
    let url = pg::fresh_db("lost").await;
    let dir = scratch();
    let log = dir.path().join("log");
    let store = PgStore::connect_with_lease(&url, Duration::from_secs(1))
        .await
        .unwrap();
    let runner = Runner::new(store.clone());
    let id = runner
        .submit::<stuck>(&Job {
            tag: "s".into(),
            log: log.display().to_string(),
            gate: String::new(),
        })
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(Runner::new(store), Processes::new().process::<stuck>())
            .poll(Duration::from_millis(50))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    common::wait_until("the task to start", || {
        lines(&log).iter().any(|l| l == "s guarded")
    })
    .await;
    // Another writer takes the run (as a worker would once the lease lapsed).
    let client = pg::sql(&url).await;
    let before: i64 = client
        .query_one(
            "SELECT count(*) FROM minder_events WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    steal(&client, &id).await;
    // The heartbeat finds the lease gone; the runner drops the body (the task with it).
    common::wait_until("the stale worker to drop the task", || {
        GUARDED_DROPPED.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!((report.lost, report.completed), (1, 0), "{report:?}");
    let after: i64 = client
        .query_one(
            "SELECT count(*) FROM minder_events WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        after,
        before + 1,
        "the stale worker wrote after losing the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limits_hold_across_workers_on_postgres() {
    let url = pg::fresh_db("queues").await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    common::queues::queue_limits_hold(store, "p").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_a_one_line_error_with_the_password_masked() {
    let url = pg::fresh_db("creds").await;
    pg::sql(&url)
        .await
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE minder_pw LOGIN PASSWORD 'right-one'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    pg::require_password("minder_pw").await;
    // The test URLs name the user `postgres`: the same server as user `minder_pw`.
    let as_user = |password: &str| url.replacen("postgres@", &format!("minder_pw:{password}@"), 1);
    let e = PgStore::connect(&as_user("wrong-one"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot connect") && e.contains("minder_pw:***@"),
        "{e}"
    );
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("wrong-one") && !e.contains('\n'), "{e}");
    // The right password gets in (and may create the schema: the role owns nothing, so it is
    // refused with a one-line error too, naming what failed).
    match PgStore::connect(&as_user("right-one")).await {
        Ok(_) => {}
        Err(e) => {
            let e = e.to_string();
            assert!(!e.contains("right-one") && !e.contains('\n'), "{e}");
            assert!(!e.contains("password authentication failed"), "{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_the_url_asks_for_it_with_the_server_certificate_verified() {
    let url = pg::fresh_db("tls").await;
    let db = url
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let (tls_url, cert) = pg::tls_url(&db);
    // Mozilla's roots do not know the test server's certificate: refused, one line.
    // SAFETY (set_var): the other tests do not read PGSSLROOTCERT (they do not ask for TLS).
    std::env::remove_var("PGSSLROOTCERT");
    let e = PgStore::connect(&tls_url).await.unwrap_err().to_string();
    assert!(e.contains("cannot connect") && !e.contains('\n'), "{e}");
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // With its CA in PGSSLROOTCERT, the store connects over TLS and works.
    std::env::set_var("PGSSLROOTCERT", &cert);
    let store = PgStore::connect(&tls_url).await.unwrap();
    let log = store.create("tls-run", created("tls-run")).await.unwrap();
    log.append(log_event(1)).unwrap();
    log.close().await.unwrap();
    assert_eq!(store.read("tls-run").await.unwrap().len(), 2);
    let encrypted: i64 = pg::sql(&url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE s.ssl AND a.datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "no connection of the store is encrypted");
    // An unreadable PGSSLROOTCERT is said as such.
    std::env::set_var("PGSSLROOTCERT", "/nonexistent/ca.pem");
    let e = PgStore::connect(&tls_url).await.unwrap_err().to_string();
    assert!(e.contains("PGSSLROOTCERT=/nonexistent/ca.pem"), "{e}");
    std::env::remove_var("PGSSLROOTCERT");
    // libpq's `sslrootcert=` in the URL works the same, without the variable.
    let with_root = format!("{tls_url}&sslrootcert={}", cert.display());
    let store = PgStore::connect(&with_root).await.unwrap();
    assert_eq!(store.read("tls-run").await.unwrap().len(), 2);
    let e = PgStore::connect(&format!("{tls_url}&sslrootcert=/nonexistent/ca.pem"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sslrootcert=/nonexistent/ca.pem") && !e.contains('\n'),
        "{e}"
    );
}

#[process]
async fn asks(ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    if !ctx.breakpoint("go", &job.tag).await.is_approved() {
        return Err(ProcessError::msg("rejected"));
    }
    Ok(mark(job.log, job.tag, 7).await?)
}

/// Two `three_steps` children at once, then one that waits for a person.
#[process]
async fn family(ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    let child = |tag: &str| Job {
        tag: format!("{}-{tag}", job.tag),
        log: job.log.clone(),
        gate: job.gate.clone(),
    };
    let (a, b) = parallel!(
        ctx.child::<three_steps>(child("a")),
        ctx.child::<three_steps>(child("b"))
    )?;
    let c = ctx.child::<asks>(child("c")).await?;
    Ok(a + b + c)
}

/// Child processes on PostgreSQL: inline on a runner, and on workers, where the parent parks
/// while its children run and a child that ends makes its parent ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_processes_run_inline_and_on_workers_on_postgres() {
    use minder::inspect::{summarize, RunState};
    let url = pg::fresh_db("children").await;
    let dir = scratch();
    std::fs::write(dir.path().join("gate"), "").unwrap();
    let job = |tag: &str| Job {
        tag: tag.into(),
        log: dir.path().join("log").display().to_string(),
        gate: dir.path().join("gate").display().to_string(),
    };
    let store = PgStore::connect(&url).await.unwrap();
    let runner = Runner::new(store.clone());
    // Inline: the parent stops when its third child waits; the decision and a resume of the
    // parent finish both.
    let err = runner.run::<family>(job("i")).await.unwrap_err();
    let RunError::Suspended {
        run_id: id,
        waiting,
    } = err
    else {
        panic!("{err}")
    };
    let child = waiting[0].input["run_id"].as_str().unwrap().to_string();
    let yes = Decision::Approved { feedback: None };
    runner.decide(&child, "go#0", yes.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let done = loop {
        match runner.resume::<family>(&id).await {
            Err(RunError::Store(StoreError::Locked(_))) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(done.output, 13 + 13 + 7);

    // On workers.
    let id = runner.submit::<family>(&job("w")).await.unwrap();
    let (stop, handle) = tokio::spawn({
        let url = url.clone();
        async move {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let store = PgStore::connect_with_lease(&url, Duration::from_secs(2))
                .await
                .unwrap();
            let worker = Worker::new(
                Runner::new(store),
                Processes::new()
                    .process::<family>()
                    .process::<three_steps>()
                    .process::<asks>(),
            )
            .concurrency(4)
            .poll(Duration::from_millis(100));
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
    })
    .await
    .unwrap();
    // The parent parks for its third child, which parks for its breakpoint.
    let deadline = std::time::Instant::now() + PATIENCE;
    let child = loop {
        let events = store.read(&id).await.unwrap();
        let asked = events.iter().find_map(|e| match e {
            Event::EffectRequested { key, input, .. } if key == "asks#0" => {
                Some(input["run_id"].as_str().unwrap().to_string())
            }
            _ => None,
        });
        let parked = matches!(events.last(), Some(Event::Suspended { .. }));
        if let (Some(child), true) = (asked, parked) {
            if matches!(
                store
                    .read(&child)
                    .await
                    .ok()
                    .as_deref()
                    .and_then(<[Event]>::last),
                Some(Event::Suspended { .. })
            ) {
                break child;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the runs never parked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    runner.decide(&child, "go#0", yes).await.unwrap();
    wait_ended(&store, std::slice::from_ref(&id)).await;
    stop.send(()).unwrap();
    let report = handle.await.unwrap();
    let summary = summarize(&store.read(&id).await.unwrap());
    assert_eq!(summary.state, RunState::Completed, "{summary:?}");
    assert_eq!(summary.output, Some(serde_json::json!(33)));
    assert_eq!(
        (report.completed, report.errors, report.lost),
        (4, 0, 0),
        "{report:?}"
    );
    // Each child's steps ran once.
    let ran = lines(&dir.path().join("log"));
    for line in ["w-a 1", "w-a hold", "w-a 2", "w-b 1", "w-b 2", "w-c 7"] {
        assert_eq!(
            ran.iter().filter(|l| *l == line).count(),
            1,
            "{line}: {ran:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_a_run_another_writer_holds_through_its_inbox_on_postgres() {
    let url = pg::fresh_db("inbox").await;
    let holder: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let poster: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    common::inbox::answers_reach_a_held_run(holder, poster, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_a_silent_holder_never_takes_waits_in_the_inbox_for_the_next_driver_on_postgres()
{
    let url = pg::fresh_db("silent").await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let poster: Arc<dyn Store> = Arc::new(PgStore::connect(&url).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    common::inbox::a_silent_holder_leaves_the_answer_for_the_next_driver(store, poster, dir.path())
        .await;
}

/// The tables of schema versions 1 and 2 (version 1 kept bodies as `jsonb`): one row an
/// event, a foreign key from events to runs, the runs' `next_seq`.
const OLD_SCHEMA: &str = "
CREATE TABLE minder_schema (version int NOT NULL);
CREATE TABLE minder_runs (
    run_id text PRIMARY KEY, process text NOT NULL, fingerprint text NOT NULL,
    queue text NOT NULL, priority int NOT NULL DEFAULT 0, state text NOT NULL, wake_at bigint,
    owner text, epoch bigint NOT NULL DEFAULT 0, lease_until timestamptz,
    next_seq bigint NOT NULL DEFAULT 0, cancel_requested boolean NOT NULL DEFAULT false,
    cancel_reason text, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE minder_events (
    run_id text NOT NULL REFERENCES minder_runs (run_id) ON DELETE CASCADE,
    seq bigint NOT NULL, epoch bigint NOT NULL, body BODY_TYPE NOT NULL,
    PRIMARY KEY (run_id, seq));
CREATE TABLE minder_workers (
    worker_id text PRIMARY KEY, host text NOT NULL, pid int NOT NULL,
    lease_ms bigint NOT NULL DEFAULT 15000, started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE minder_queues (
    name text PRIMARY KEY, concurrency int, rate_max int, rate_period_ms bigint,
    window_start timestamptz, window_count int NOT NULL DEFAULT 0);
CREATE TABLE minder_inbox (
    run_id text NOT NULL REFERENCES minder_runs (run_id) ON DELETE CASCADE,
    id text NOT NULL, key text NOT NULL, outcome text NOT NULL, answer text,
    created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, id));
CREATE INDEX minder_runs_ready ON minder_runs (queue, priority, created_at) WHERE state = 'ready';
CREATE INDEX minder_runs_due ON minder_runs (wake_at) WHERE state = 'due';
CREATE INDEX minder_runs_held ON minder_runs (owner) WHERE owner IS NOT NULL;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_of_schema_versions_1_and_2_are_migrated_and_their_runs_go_on() {
    for (version, body_type) in [(1, "jsonb"), (2, "text")] {
        let url = pg::fresh_db(&format!("v{version}")).await;
        // A run as an older minder left it: one row an event, `next_seq` on the run's row.
        let sql = pg::sql(&url).await;
        sql.batch_execute(&OLD_SCHEMA.replace("BODY_TYPE", body_type))
            .await
            .unwrap();
        let before = vec![created("old-run"), log_event(1)];
        sql.execute(
            "INSERT INTO minder_runs (run_id, process, fingerprint, queue, state, epoch, next_seq)
             VALUES ('old-run', 'old', 'f', 'default', 'ready', 1, 2)",
            &[],
        )
        .await
        .unwrap();
        for (seq, event) in before.iter().enumerate() {
            sql.execute(
                &format!(
                    "INSERT INTO minder_events (run_id, seq, epoch, body)
                     VALUES ('old-run', $1, 1, $2::text::{body_type})"
                ),
                &[&(seq as i64 + 1), &serde_json::to_string(event).unwrap()],
            )
            .await
            .unwrap();
        }
        sql.execute("INSERT INTO minder_schema VALUES ($1)", &[&version])
            .await
            .unwrap();
        // Opened by this build: migrated (text bodies, no foreign key, no `next_seq`,
        // version 3), the run read as it was and written on; a second start changes nothing.
        let store = PgStore::connect(&url).await.unwrap();
        let row = sql
            .query_one(
                "SELECT (SELECT max(version) FROM minder_schema),
                        (SELECT data_type FROM information_schema.columns
                         WHERE table_name = 'minder_events' AND column_name = 'body'),
                        (SELECT count(*) FROM information_schema.columns
                         WHERE table_name = 'minder_runs' AND column_name = 'next_seq'),
                        (SELECT count(*) FROM information_schema.table_constraints
                         WHERE table_name = 'minder_events' AND constraint_type = 'FOREIGN KEY')",
                &[],
            )
            .await
            .unwrap();
        let migrated: (i32, String, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            migrated,
            (3, "text".to_string(), 0, 0),
            "from version {version}"
        );
        assert_eq!(store.read("old-run").await.unwrap(), before);
        let OpenRun { events, log, .. } = store.open("old-run").await.unwrap();
        assert_eq!(events, before);
        log.append(log_event(2)).unwrap();
        log.append(log_event(3)).unwrap();
        log.close().await.unwrap();
        let mut after = before.clone();
        after.extend([log_event(2), log_event(3)]);
        assert_eq!(store.read("old-run").await.unwrap(), after);
        // The old rows keep their numbers; the claim's row and the new flush's follow.
        let rows: Vec<(i64, i64)> = sql
            .query(
                "SELECT seq, epoch FROM minder_events WHERE run_id = 'old-run' ORDER BY seq",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(rows, vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
        drop(PgStore::connect(&url).await.unwrap());
        let versions: i64 = sql
            .query_one("SELECT count(*) FROM minder_schema", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, 1);
    }
}

//! `minder-bench --store postgres`: minder on PostgreSQL against the same server's floors, in
//! one run: a sequential step against a bare one-row commit, a fan-out at limit 256, post →
//! running latency through LISTEN/NOTIFY, throughput with 1, 2 and 4 workers, and the
//! statements per second a worker spends on heartbeats while it holds 1,000 runs.
//!
//! The server: `MINDER_BENCH_POSTGRES_URL`, else a throwaway cluster started from the system's
//! `initdb` / `pg_ctl` (the tests' harness, `runtime/tests/pg/mod.rs`), stopped when the bench
//! exits.

#[path = "../../runtime/tests/pg/mod.rs"]
mod pg;

use crate::stats::median;
use minder::prelude::*;
use minder::store::{PgStore, Store};
use minder::worker::{Processes, Worker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[task]
async fn noop(i: u32) -> Result<u32, TaskError> {
    Ok(i)
}

#[process]
async fn pg_sequential(_ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let mut sum = 0;
    for i in 0..n {
        sum += noop(i).await?;
    }
    Ok(sum)
}

#[process]
async fn pg_fan_out(ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let all: Vec<u32> = ctx.map("noops", 0..n, noop).limit(256).await?;
    Ok(all.len() as u32)
}

#[process]
async fn pg_three(_ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    Ok(noop(n).await? + noop(n + 1).await? + noop(n + 2).await?)
}

/// When the step after the external result started, in µs since `EPOCH`.
static STARTED_US: AtomicU64 = AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

#[task]
async fn stamp() -> Result<u32, TaskError> {
    let epoch = EPOCH.get_or_init(Instant::now);
    STARTED_US.store(epoch.elapsed().as_micros() as u64, Ordering::SeqCst);
    Ok(1)
}

#[process]
async fn pg_waits(ctx: &Ctx, _n: u32) -> Result<u32, ProcessError> {
    let _: u32 = ctx.external("go", &()).await?;
    Ok(stamp().await?)
}

async fn server() -> String {
    match std::env::var("MINDER_BENCH_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) => pg::fresh_db("bench").await,
    }
}

/// The floor's tables: a bare one-row table, and events in the shape of minder's (the writes
/// of a step, without the engine). Made afresh by each run of the bench (its rows would
/// collide with the last run's), under names of the bench's own.
const SHAPE_TABLES: &str = "
DROP TABLE IF EXISTS minder_bench_floor, minder_bench_shape;
CREATE TABLE minder_bench_floor (id bigserial, v text);
CREATE TABLE minder_bench_shape (
    run_id text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL, body text NOT NULL,
    PRIMARY KEY (run_id, seq));";

/// A step's writes as minder makes them: one row (the step's events), numbered by the holder
/// (the fence: see the PostgreSQL store's "Leases and fencing"), in one statement.
const SHAPE_APPEND: &str =
    "INSERT INTO minder_bench_shape (run_id, seq, epoch, body) VALUES ($1, $2, $3, $4)";

/// Runs the PostgreSQL section and prints its table (Markdown); `sequential_only`: the first
/// row only, in `rounds` rounds (default 3).
pub fn run(quick: bool, sequential_only: bool, rounds: Option<usize>) {
    crate::runtime().block_on(async move {
        let url = server().await;
        let rounds = rounds.unwrap_or(if quick { 1 } else { 3 });
        let seq_n: u32 = if quick { 100 } else { 500 };
        let fan_n: u32 = if quick { 1_000 } else { 10_000 };
        println!("## PostgreSQL (`minder-bench --store postgres`)\n");
        println!("Server: {}\n", masked(&url));

        // 1. Sequential: one step a commit, against a bare one-row commit (prepared once, as
        //    minder's writer prepares its statements) and against the same writes minder makes
        //    for a step (one row of the step's two events) without the engine. Interleaved, so the server's moods hit all three alike.
        let client = pg::sql(&url).await;
        client
            .batch_execute(SHAPE_TABLES)
            .await
            .unwrap();
        let floor_insert = client
            .prepare("INSERT INTO minder_bench_floor (v) VALUES ($1)")
            .await
            .unwrap();
        let shape_append = client.prepare(SHAPE_APPEND).await.unwrap();
        let store = PgStore::connect(&url).await.unwrap();
        let runner = Runner::new(store.clone());
        let (mut floors, mut shapes, mut minders) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let t = Instant::now();
            for i in 0..seq_n {
                let v = format!("{{\"step\":{i},\"output\":{i}}}");
                client.execute(&floor_insert, &[&v]).await.unwrap();
            }
            floors.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(seq_n));
            let run_id = format!("shape-{round}");
            let t = Instant::now();
            for i in 0..seq_n {
                let key = format!("pg_sequential::step#{i}");
                let body = format!(
                    "[{{\"event\":\"step_started\",\"key\":\"{key}\",\"task\":\"step\",\"args\":[{i}],\"seq\":{i}}},\
                     {{\"event\":\"step_completed\",\"key\":\"{key}\",\"outcome\":{{\"ok\":{i}}}}}]"
                );
                let n = client
                    .execute(&shape_append, &[&run_id, &i64::from(i + 2), &1i64, &body])
                    .await
                    .unwrap();
                assert_eq!(n, 1);
            }
            shapes.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(seq_n));
            let t = Instant::now();
            runner.run::<pg_sequential>(seq_n).await.unwrap();
            minders.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(seq_n));
        }
        let floor = median(&mut floors);
        let shape = median(&mut shapes);
        let seq = median(&mut minders);
        println!("| measurement | value | target |");
        println!("|---|---:|---|");
        println!(
            "| sequential step ({seq_n} steps, median of {rounds}) | {seq:.0} µs vs a prepared one-row commit {floor:.0} µs = **{:.2}×**; vs minder's own writes for a step without the engine (one row: the step's two events) {shape:.0} µs = {:.2}× | ≤ 1.2× the one-row commit |",
            seq / floor,
            seq / shape
        );
        if sequential_only {
            return;
        }

        // 2. Fan-out at limit 256.
        let mut fans = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            runner.run::<pg_fan_out>(fan_n).await.unwrap();
            fans.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(fan_n));
        }
        let fan = median(&mut fans);
        println!(
            "| fan-out, {fan_n} no-op steps, limit 256 (median of {rounds}) | **{fan:.1} µs** a step | ≤ 50 µs |"
        );

        // 3. Post → running: a worker waiting on LISTEN; time from `post` returning to the
        //    next step starting.
        let worker_store = PgStore::connect(&url).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(
            Worker::new(
                Runner::new(worker_store),
                Processes::new()
                    .process::<pg_waits>()
                    .process::<pg_three>(),
            )
            .poll(Duration::from_secs(5))
            .run_until(async {
                let _ = stopped.await;
            }),
        );
        let mut latencies = Vec::new();
        let mut post_times = Vec::new();
        for _ in 0..if quick { 3 } else { 9 } {
            let id = runner.submit::<pg_waits>(&0).await.unwrap();
            // Wait until the worker parked it on the external task.
            let key = loop {
                let events = store.read(&id).await.unwrap();
                if events
                    .iter()
                    .any(|e| matches!(e, minder::journal::Event::Suspended { .. }))
                {
                    if let Some(key) = events.iter().find_map(|e| match e {
                        minder::journal::Event::EffectRequested { key, .. } => Some(key.clone()),
                        _ => None,
                    }) {
                        break key;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let epoch = *EPOCH.get_or_init(Instant::now);
            STARTED_US.store(0, Ordering::SeqCst);
            let t = Instant::now();
            runner
                .post::<pg_waits>(&id, &key, Ok(serde_json::json!(1)))
                .await
                .unwrap();
            let posted = epoch.elapsed();
            post_times.push(t.elapsed().as_secs_f64() * 1e3);
            while STARTED_US.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let started = Duration::from_micros(STARTED_US.load(Ordering::SeqCst));
            latencies.push((started.saturating_sub(posted)).as_secs_f64() * 1e3);
        }
        let latency = median(&mut latencies);
        let post_time = median(&mut post_times);
        println!(
            "| post → running (a worker on LISTEN; median of {}) | **{latency:.1} ms** after `post` returned (`post` itself: {post_time:.1} ms) | < 10 ms |",
            latencies.len()
        );
        stop.send(()).unwrap();
        worker.await.unwrap().unwrap();

        // 4. Throughput with 1, 2, 4 workers (each its own store instance, 8 runs at once).
        let runs = if quick { 50 } else { 200 };
        let mut line = String::new();
        for workers in [1usize, 2, 4] {
            let mut ids = Vec::new();
            for i in 0..runs {
                ids.push(runner.submit::<pg_three>(&i).await.unwrap());
            }
            let t = Instant::now();
            let mut stops = Vec::new();
            let mut handles = Vec::new();
            for _ in 0..workers {
                let s = PgStore::connect(&url).await.unwrap();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                handles.push(tokio::spawn(
                    Worker::new(Runner::new(s), Processes::new().process::<pg_three>())
                        .concurrency(8)
                        .poll(Duration::from_millis(200))
                        .run_until(async {
                            let _ = stopped.await;
                        }),
                ));
                stops.push(stop);
            }
            wait_ended(store.clone(), &ids).await;
            let secs = t.elapsed().as_secs_f64();
            for stop in stops {
                let _ = stop.send(());
            }
            for h in handles {
                h.await.unwrap().unwrap();
            }
            line.push_str(&format!(
                "{workers}: {:.0} runs/s; ",
                f64::from(runs) / secs
            ));
        }
        println!(
            "| throughput, {runs} runs of 3 steps (workers: runs/s) | {} | grows with workers |",
            line.trim_end_matches("; ")
        );

        // 5. Heartbeats while holding runs: the server's commits per second with 10 runs
        //    held, then with 1,000 (a heartbeat renews them all in one statement).
        let holder = PgStore::connect_with_lease(&url, Duration::from_secs(3))
            .await
            .unwrap();
        let window = Duration::from_secs(if quick { 3 } else { 10 });
        let mut held = Vec::new();
        let mut rates = Vec::new();
        for target in [10usize, 1_000] {
            while held.len() < target {
                let run_id = runner.submit::<pg_three>(&0).await.unwrap();
                held.push(holder.open(&run_id).await.unwrap());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let before = holder.heartbeat_statements();
            tokio::time::sleep(window).await;
            rates.push((holder.heartbeat_statements() - before) as f64 / window.as_secs_f64());
        }
        println!(
            "| heartbeat statements a second while one worker holds 10 / 1,000 runs (lease 3 s) | {:.1} / **{:.1}** | one statement a heartbeat, however many runs |",
            rates[0], rates[1]
        );
        drop(held);
        println!();
    });
}

async fn wait_ended(store: PgStore, ids: &[String]) {
    let client_store: Arc<dyn Store> = Arc::new(store);
    'wait: loop {
        for id in ids {
            let events = client_store.read(id).await.unwrap();
            if !events.iter().any(|e| e.run_end().is_some()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'wait;
            }
        }
        return;
    }
}

fn masked(url: &str) -> String {
    match url.split_once('@') {
        Some((head, tail)) if head.contains(':') && head.matches(':').count() > 1 => {
            let (user, _) = head.rsplit_once(':').unwrap();
            format!("{user}:***@{tail}")
        }
        _ => url.to_string(),
    }
}

//! Workers on the file store: runs submitted are driven by whichever worker claims them; a
//! worker killed mid-step lets go of its run with its lock and another finishes it without
//! re-running completed steps; due sleeps and resolved breakpoints wake their runs.

mod common;

use common::PATIENCE;
use minder::journal::Event;
use minder::prelude::*;
use minder::store::{FileStore, Store};
use minder::worker::{Processes, Worker, WorkerReport};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[data]
struct Job {
    /// A file each task appends `<tag> <what>` to: what really ran, across processes.
    log: String,
    /// `hold` waits until this file exists.
    gate: String,
    tag: String,
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
    while !Path::new(&gate).exists() {
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

#[process]
async fn nap(ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    ctx.sleep(Duration::from_millis(1500)).await;
    stamp(format!("{}.at", job.log)).await?;
    Ok(mark(job.log, job.tag, 1).await?)
}

/// Writes the wall-clock time (milliseconds since the epoch) it ran at into `path` (a file's
/// mtime comes from the kernel's coarse clock, which lags by up to a tick).
#[task]
async fn stamp(path: String) -> Result<u64, TaskError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    std::fs::write(&path, now.to_string()).unwrap();
    Ok(now)
}

#[process]
async fn ask(ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    match ctx.breakpoint("go", &job.tag).await {
        Decision::Approved { .. } => Ok(mark(job.log, job.tag, 1).await?),
        _ => Err(ProcessError::msg("rejected")),
    }
}

#[process(queue = "deploys")]
async fn deploy(_ctx: &Ctx, job: Job) -> Result<u32, ProcessError> {
    Ok(mark(job.log, job.tag, 1).await?)
}

fn processes() -> Processes {
    Processes::new()
        .process::<three_steps>()
        .process::<nap>()
        .process::<ask>()
}

fn runner(runs: &Path) -> Runner {
    Runner::new(FileStore::new(runs)).suspend_sleeps_longer_than(Duration::from_millis(500))
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(log: &Path, line: &str) -> usize {
    lines(log).iter().filter(|l| *l == line).count()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("worker-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn job(dir: &Path, tag: &str, gate_open: bool) -> Job {
    let gate = dir.join(format!("gate-{tag}"));
    if gate_open {
        std::fs::write(&gate, "").unwrap();
    }
    Job {
        log: dir.join("log").display().to_string(),
        gate: gate.display().to_string(),
        tag: tag.to_string(),
    }
}

/// Waits until every run in `ids` has ended (its journal says so).
async fn wait_ended(store: &FileStore, ids: &[String]) {
    let deadline = std::time::Instant::now() + PATIENCE;
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
            "{open} of {} runs did not end within {PATIENCE:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a worker on `runs` in this process; returns its stop switch and its report.
fn start_worker(
    runs: &Path,
    concurrency: usize,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<WorkerReport>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(runner(runs), processes())
        .concurrency(concurrency)
        .poll(Duration::from_millis(20));
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

fn completed(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::RunCompleted { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_complete_every_submitted_run_once() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let submitter = runner(&runs);
    let mut ids = Vec::new();
    for i in 0..30 {
        let job = job(dir.path(), &format!("r{i}"), true);
        ids.push(submitter.submit::<three_steps>(&job).await.unwrap());
    }
    let (stop_a, a) = start_worker(&runs, 4);
    let (stop_b, b) = start_worker(&runs, 4);
    let store = FileStore::new(&runs);
    wait_ended(&store, &ids).await;
    stop_a.send(()).unwrap();
    stop_b.send(()).unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.completed + b.completed, 30, "{a:?} {b:?}");
    assert_eq!(a.errors + b.errors + a.lost + b.lost, 0, "{a:?} {b:?}");
    let log = dir.path().join("log");
    for i in 0..30 {
        for what in ["1", "hold", "2"] {
            assert_eq!(count(&log, &format!("r{i} {what}")), 1, "r{i} {what}");
        }
    }
    for id in &ids {
        let events = store.read(id).await.unwrap();
        assert!(completed(&events), "{id}");
        let output = events.iter().find_map(|e| match e {
            Event::RunCompleted { output } => Some(output.clone()),
            _ => None,
        });
        assert_eq!(output, Some(serde_json::json!(13)));
    }
    // Ended runs leave the index: nothing is left to claim.
    let left: Vec<_> = std::fs::read_dir(runs.join(".ready"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Set in the child process of `a_killed_worker_s_run_is_finished_by_another_worker`: the
/// runs directory of the worker it runs.
const WORKER_CHILD: &str = "MINDER_TEST_WORKER_CHILD";

#[test]
fn a_killed_worker_s_run_is_finished_by_another_worker() {
    if let Some(runs) = std::env::var_os(WORKER_CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let worker =
                Worker::new(runner(Path::new(&runs)), processes()).poll(Duration::from_millis(20));
            worker.run().await.unwrap();
        });
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = scratch();
        let runs = dir.path().join("runs");
        let log = dir.path().join("log");
        let job = job(dir.path(), "k", false);
        let id = runner(&runs).submit::<three_steps>(&job).await.unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_killed_worker_s_run_is_finished_by_another_worker",
                "--nocapture",
            ])
            .env(WORKER_CHILD, &runs)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The child's worker claimed the run, finished step 1 and is inside `hold`.
        common::wait_until("the child worker to reach `hold`", || {
            count(&log, "k hold") == 1
        })
        .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(lines(&log), ["k 1", "k hold"]);
        std::fs::write(&job.gate, "").unwrap();
        let (stop, worker) = start_worker(&runs, 2);
        let store = FileStore::new(&runs);
        wait_ended(&store, std::slice::from_ref(&id)).await;
        stop.send(()).unwrap();
        let report = worker.await.unwrap();
        assert_eq!(report.completed, 1, "{report:?}");
        // Step 1 completed before the kill and is not run again; `hold` was in flight, so it
        // runs again (at least once); step 2 runs once.
        assert_eq!(lines(&log), ["k 1", "k hold", "k hold", "k 2"]);
        assert!(completed(&store.read(&id).await.unwrap()));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sleep_lets_the_run_go_and_a_worker_takes_it_back_when_due() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let log = dir.path().join("log");
    let id = runner(&runs)
        .submit::<nap>(&job(dir.path(), "n", true))
        .await
        .unwrap();
    let (stop, worker) = start_worker(&runs, 2);
    let store = FileStore::new(&runs);
    wait_ended(&store, std::slice::from_ref(&id)).await;
    stop.send(()).unwrap();
    let report = worker.await.unwrap();
    // Driven twice: once to the sleep (suspended: the run was let go), once when it was due.
    assert_eq!((report.suspended, report.completed), (1, 1), "{report:?}");
    let events = store.read(&id).await.unwrap();
    let due = events
        .iter()
        .find_map(|e| match e {
            Event::Suspended { due_ms, .. } => *due_ms,
            _ => None,
        })
        .expect("the run suspended on its sleep");
    let at = std::fs::read_to_string(format!("{}.at", log.display())).unwrap();
    let done_ms: u64 = at.parse().unwrap();
    assert!(
        done_ms >= due,
        "step ran at {done_ms}, before the sleep's end {due}"
    );
    assert_eq!(lines(&log), ["n 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_run_waits_for_its_decision_then_a_worker_finishes_it() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let log = dir.path().join("log");
    let submitter = runner(&runs);
    let id = submitter
        .submit::<ask>(&job(dir.path(), "b", true))
        .await
        .unwrap();
    let (stop, worker) = start_worker(&runs, 2);
    let store = FileStore::new(&runs);
    // The worker drives it to the breakpoint, where it parks.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let events = store.read(&id).await.unwrap();
        if events.iter().any(|e| matches!(e, Event::Suspended { .. })) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the run never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !runs.join(".ready").join(&id).exists(),
        "a parked run is not indexed"
    );
    // The decision (as `approve` on the command line) makes it ready; the worker finishes it.
    let key = store
        .read(&id)
        .await
        .unwrap()
        .iter()
        .find_map(|e| match e {
            Event::EffectRequested { key, .. } => Some(key.clone()),
            _ => None,
        })
        .unwrap();
    submitter
        .decide(&id, &key, Decision::Approved { feedback: None })
        .await
        .unwrap();
    wait_ended(&store, std::slice::from_ref(&id)).await;
    stop.send(()).unwrap();
    let report = worker.await.unwrap();
    assert_eq!((report.suspended, report.completed), (1, 1), "{report:?}");
    assert_eq!(lines(&log), ["b 1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_other_processes_or_queues_are_left_alone() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let submitter = runner(&runs);
    let other_queue = submitter
        .submit_with::<three_steps>(
            &job(dir.path(), "q", true),
            minder::Submit::default().queue("deploys"),
        )
        .await
        .unwrap();
    let mine = submitter
        .submit::<three_steps>(&job(dir.path(), "m", true))
        .await
        .unwrap();
    let nap_run = submitter
        .submit::<nap>(&job(dir.path(), "z", true))
        .await
        .unwrap();
    // `#[process(queue = "deploys")]`: its runs go to that queue unless told otherwise.
    let deploy_run = submitter
        .submit::<deploy>(&job(dir.path(), "d", true))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(
        runner(&runs),
        Processes::new()
            .process::<three_steps>()
            .process::<deploy>(),
    )
    .queues(vec!["default".to_string()])
    .poll(Duration::from_millis(20));
    let handle = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    let store = FileStore::new(&runs);
    wait_ended(&store, std::slice::from_ref(&mine)).await;
    stop.send(()).unwrap();
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    for untouched in [&other_queue, &nap_run, &deploy_run] {
        assert_eq!(store.read(untouched).await.unwrap().len(), 1, "{untouched}");
    }
    let first = store.read(&deploy_run).await.unwrap().remove(0);
    assert!(
        matches!(&first, Event::RunCreated { queue: Some(q), .. } if q == "deploys"),
        "{first:?}"
    );
    // A worker on that queue takes both runs there.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(
        runner(&runs),
        Processes::new()
            .process::<three_steps>()
            .process::<deploy>(),
    )
    .queues(vec!["deploys".to_string()])
    .poll(Duration::from_millis(20));
    let handle = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    wait_ended(&store, &[other_queue.clone(), deploy_run.clone()]).await;
    stop.send(()).unwrap();
    assert_eq!(handle.await.unwrap().unwrap().completed, 2);
    assert_eq!(store.read(&nap_run).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_limits_hold_across_workers_on_the_file_store() {
    let dir = scratch();
    let store: Arc<dyn Store> = Arc::new(FileStore::new(dir.path().join("runs")));
    common::queues::queue_limits_hold(store, "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_says_which_ready_runs_it_leaves_for_others() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let id = runner(&runs)
        .submit::<nap>(&job(dir.path(), "x", true))
        .await
        .unwrap();
    let said = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let heard = said.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(runner(&runs), Processes::new().process::<three_steps>())
        .poll(Duration::from_millis(20))
        .on_notice(move |m| heard.lock().unwrap().push(m.to_string()));
    let handle = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    common::wait_until("the worker to say it leaves the run", || {
        !said.lock().unwrap().is_empty()
    })
    .await;
    stop.send(()).unwrap();
    let report = handle.await.unwrap().unwrap();
    let said = said.lock().unwrap().clone();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("process `nap`, which this worker does not have")
            && said[0].contains("1 ready run"),
        "{said:?}"
    );
    assert_eq!(report, WorkerReport::default());
    let store = FileStore::new(&runs);
    assert_eq!(store.read(&id).await.unwrap().len(), 1, "left alone");
}

/// Set in the child process of `a_stopped_worker_keeps_its_run_and_finishes_it_when_continued`.
const STOPPED_CHILD: &str = "MINDER_TEST_STOPPED_WORKER_CHILD";

#[test]
fn a_stopped_worker_keeps_its_run_and_finishes_it_when_continued() {
    if let Some(runs) = std::env::var_os(STOPPED_CHILD) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            Worker::new(runner(Path::new(&runs)), processes())
                .poll(Duration::from_millis(20))
                .run()
                .await
                .unwrap();
        });
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = scratch();
        let runs = dir.path().join("runs");
        let log = dir.path().join("log");
        let job = job(dir.path(), "s", false);
        let id = runner(&runs).submit::<three_steps>(&job).await.unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_stopped_worker_keeps_its_run_and_finishes_it_when_continued",
                "--nocapture",
            ])
            .env(STOPPED_CHILD, &runs)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        common::wait_until("the child worker to reach `hold`", || {
            count(&log, "s hold") == 1
        })
        .await;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
        // On the runs directory the run lock is the claim: while the stopped worker lives, no
        // other worker takes its run (nothing to fence), and `workers` shows who holds it.
        std::fs::write(&job.gate, "").unwrap();
        let store = FileStore::new(&runs);
        let held = store.workers().await.unwrap();
        assert!(
            held.iter()
                .any(|w| w.pid == child.id() && w.holds.contains(&id)),
            "{held:?}"
        );
        let request = minder::store::ClaimRequest::new("other", processes().fingerprints(), 4);
        let claimed = store.claim(&request).await.unwrap();
        assert!(
            claimed.is_empty(),
            "another worker took the stopped worker's run"
        );
        assert_eq!(lines(&log), ["s 1", "s hold"]);
        // Continued, it finishes the run itself: every step once.
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        wait_ended(&store, std::slice::from_ref(&id)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(lines(&log), ["s 1", "s hold", "s 2"]);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_a_run_another_writer_holds_through_its_inbox_on_the_file_store() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let holder: Arc<dyn Store> = Arc::new(FileStore::new(&runs));
    let poster: Arc<dyn Store> = Arc::new(FileStore::new(&runs));
    common::inbox::answers_reach_a_held_run(holder, poster, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_a_silent_holder_never_takes_waits_in_the_inbox_for_the_next_driver() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store: Arc<dyn Store> = Arc::new(FileStore::new(&runs));
    let poster: Arc<dyn Store> = Arc::new(FileStore::new(&runs));
    common::inbox::a_silent_holder_leaves_the_answer_for_the_next_driver(store, poster, dir.path())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reach_a_run_another_writer_holds_through_its_inbox_in_memory() {
    let dir = scratch();
    let store = minder::store::MemoryStore::new();
    let (holder, poster): (Arc<dyn Store>, Arc<dyn Store>) =
        (Arc::new(store.clone()), Arc::new(store));
    common::inbox::answers_reach_a_held_run(holder, poster, dir.path()).await;
}

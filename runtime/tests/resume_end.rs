//! Resuming a run that ended, on the file journal: the store finds the run's end from its
//! `end` note (two records read, not the whole journal), and falls back to reading the whole
//! journal whenever the note is missing, torn, stale or copied from another run, or the
//! journal was cut, grown or poisoned since: what a crash at any point can leave.

use minder::journal::Event;
use minder::prelude::*;
use minder::store::{FileStore, Opening, Store, StoreError};
use minder::RunError;
use std::fs;
use std::path::PathBuf;

#[task]
async fn add_one(x: u64) -> Result<u64, TaskError> {
    Ok(x + 1)
}

#[process]
async fn count_up(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut x = 0;
    for _ in 0..n {
        x = add_one(x).await?;
    }
    Ok(x)
}

#[process]
async fn count_then_fail(_ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let mut x = 0;
    for _ in 0..n {
        x = add_one(x).await?;
    }
    Err(ProcessError::msg(format!("gave up at {x}")))
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("resume-end-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn run_file(store: &FileStore, run_id: &str, name: &str) -> PathBuf {
    store.runs_dir().join(run_id).join(name)
}

/// Whether the store finds `run_id` ended without opening it (else the run is opened, its
/// journal read whole, and closed).
async fn ended_by_note(store: &FileStore, run_id: &str) -> Option<Event> {
    match store.open_unless_ended(run_id).await.unwrap() {
        Opening::Ended { first, end } => {
            assert!(matches!(first, Event::RunCreated { .. }), "{first:?}");
            Some(end)
        }
        Opening::Open(stream) => {
            let run = stream.collect().await.unwrap();
            assert!(matches!(run.events.first(), Some(Event::RunCreated { .. })));
            None
        }
        _ => unreachable!(),
    }
}

/// The steps started in the journal of `run_id`.
async fn started(runner: &Runner, run_id: &str) -> usize {
    let events = runner.store().read(run_id).await.unwrap();
    events
        .iter()
        .filter(|e| matches!(e, Event::StepStarted { .. }))
        .count()
}

/// Resumes `run_id` of `count_up` and checks it returns `expected` without running a step.
async fn resumes_to(runner: &Runner, run_id: &str, expected: u64) {
    let before = started(runner, run_id).await;
    let done = runner.resume::<count_up>(run_id).await.unwrap();
    assert_eq!(done.output, expected);
    assert_eq!(started(runner, run_id).await, before, "nothing ran again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_resumes_from_its_end_note() {
    let dir = scratch();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let done = runner.run::<count_up>(5).await.unwrap();
    assert_eq!(done.output, 5);
    let id = done.run_id;
    assert!(
        run_file(&store, &id, "end").is_file(),
        "the run's end is noted"
    );
    assert!(matches!(
        ended_by_note(&store, &id).await,
        Some(Event::RunCompleted { .. })
    ));
    resumes_to(&runner, &id, 5).await;
    // Read back, the journal is whole and unchanged by the resume.
    let events = store.read(&id).await.unwrap();
    assert!(matches!(events.last(), Some(Event::RunCompleted { .. })));

    // A writer holding the run: the resume says so, as an open does.
    let held = store.open(&id).await.unwrap();
    match store.open_unless_ended(&id).await {
        Err(StoreError::Locked(locked)) => assert_eq!(locked, id),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(held);

    // A process that is not the run's is refused, note or not.
    let wrong = runner.resume::<count_then_fail>(&id).await.unwrap_err();
    assert!(matches!(wrong, RunError::Version { .. }), "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_resumes_to_its_failure_from_its_note() {
    let dir = scratch();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let id = runner.create::<count_then_fail>(&3).await.unwrap();
    let first = runner.resume::<count_then_fail>(&id).await.unwrap_err();
    assert!(matches!(
        ended_by_note(&store, &id).await,
        Some(Event::RunFailed { .. })
    ));
    let again = runner.resume::<count_then_fail>(&id).await.unwrap_err();
    assert_eq!(again.to_string(), first.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_is_noted_too() {
    let dir = scratch();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let id = runner.create::<count_up>(&3).await.unwrap();
    runner.cancel(&id, Some("no".into())).await.unwrap();
    assert!(matches!(
        ended_by_note(&store, &id).await,
        Some(Event::RunCancelled { .. })
    ));
    let err = runner.resume::<count_up>(&id).await.unwrap_err();
    assert!(matches!(err, RunError::Cancelled { .. }), "{err}");
}

/// Every state a crash (or an edit) can leave the note in sends the resume the long way,
/// which still returns the run's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_torn_stale_or_foreign_note_reads_the_whole_journal() {
    let dir = scratch();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let a = runner.run::<count_up>(4).await.unwrap().run_id;
    let b = runner.run::<count_up>(7).await.unwrap().run_id;
    let note = fs::read(run_file(&store, &a, "end")).unwrap();

    // No note: a crash between the end's sync and the note, or a journal that ended before
    // notes were written. The note is only ever written by the writer of the end record.
    fs::remove_file(run_file(&store, &a, "end")).unwrap();
    assert_eq!(ended_by_note(&store, &a).await, None);
    resumes_to(&runner, &a, 4).await;

    // A crash while the note was written leaves only `end.tmp`, never a half note.
    fs::write(run_file(&store, &a, "end.tmp"), &note[..10]).unwrap();
    assert_eq!(ended_by_note(&store, &a).await, None);
    resumes_to(&runner, &a, 4).await;

    // A damaged note: every byte flipped in turn.
    for i in 0..note.len() {
        let mut bad = note.clone();
        bad[i] ^= 0x01;
        fs::write(run_file(&store, &a, "end"), &bad).unwrap();
        assert_eq!(ended_by_note(&store, &a).await, None, "byte {i} flipped");
    }
    fs::write(run_file(&store, &a, "end"), &note[..note.len() - 1]).unwrap();
    assert_eq!(ended_by_note(&store, &a).await, None);

    // Another run's note: its length and offset do not fit this journal.
    fs::copy(run_file(&store, &b, "end"), run_file(&store, &a, "end")).unwrap();
    assert_eq!(ended_by_note(&store, &a).await, None);
    resumes_to(&runner, &a, 4).await;

    // The right note again: used.
    fs::write(run_file(&store, &a, "end"), &note).unwrap();
    assert!(ended_by_note(&store, &a).await.is_some());

    // A torn tail after the end (the journal grew since the note): the long way, which cuts
    // the tail off; the cut journal is the noted one again, so the note serves the next
    // resume.
    let journal = run_file(&store, &a, "journal.log");
    let len = fs::metadata(&journal).unwrap().len();
    let mut bytes = fs::read(&journal).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
    fs::write(&journal, &bytes).unwrap();
    assert_eq!(ended_by_note(&store, &a).await, None);
    resumes_to(&runner, &a, 4).await;
    assert_eq!(
        fs::metadata(&journal).unwrap().len(),
        len,
        "the torn tail was cut"
    );
    assert!(ended_by_note(&store, &a).await.is_some());

    // A journal cut short inside its end record: the note no longer fits, and the long way
    // drops the torn end, so the run goes on from its last step (nothing runs again: the
    // steps are journaled; the process returns the same output and ends it again).
    let cut = len - 3;
    let file = fs::OpenOptions::new().write(true).open(&journal).unwrap();
    file.set_len(cut).unwrap();
    drop(file);
    assert_eq!(ended_by_note(&store, &a).await, None);
    resumes_to(&runner, &a, 4).await;
    assert!(
        ended_by_note(&store, &a).await.is_some(),
        "ended and noted again"
    );

    // A poisoned writer's durable-offset record waiting: the long way, which applies it.
    let journal_b = run_file(&store, &b, "journal.log");
    let len_b = fs::metadata(&journal_b).unwrap().len();
    fs::write(
        run_file(&store, &b, "durable-offset"),
        format!("minder durable offset {len_b}\n"),
    )
    .unwrap();
    assert_eq!(ended_by_note(&store, &b).await, None);
    assert!(!run_file(&store, &b, "durable-offset").exists());
    resumes_to(&runner, &b, 7).await;
}

/// The resume of an ended run does not grow with its journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_an_ended_run_reads_two_records() {
    let dir = scratch();
    let store = FileStore::new(dir.path());
    let runner = Runner::new(store.clone());
    let id = runner.run::<count_up>(2_000).await.unwrap().run_id;
    // Damage in the middle of the journal (same length): the note's resume does not read
    // there, so it still returns the end; a full read reports the damage.
    let journal = run_file(&store, &id, "journal.log");
    let mut bytes = fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&journal, &bytes).unwrap();
    // The write changed nothing the note checks (length, the first and the end record).
    let done = runner.resume::<count_up>(&id).await.unwrap();
    assert_eq!(done.output, 2_000);
    assert!(matches!(store.read(&id).await, Err(StoreError::Corrupt(_))));
}

/// Set in the child process of `a_writer_killed_at_any_point_leaves_runs_that_resume`: the
/// runs directory.
const KILL_CHILD: &str = "MINDER_RESUME_END_KILL_CHILD";

/// A writer killed (SIGKILL) at an arbitrary point — while it appends, syncs, writes a run's
/// end or its end note — leaves every run resumable: a run whose end is durable resumes to its
/// output without running anything (from its note, or from the whole journal when the note
/// did not make it), the others run to their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_at_any_point_leaves_runs_that_resume() {
    if let Some(runs) = std::env::var_os(KILL_CHILD) {
        // The child: one small run after another, until it is killed.
        let runner = Runner::new(FileStore::new(runs));
        loop {
            runner.run::<count_up>(3).await.unwrap();
        }
    }
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    let runner = Runner::new(store.clone());
    for round in 0..6u64 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_writer_killed_at_any_point_leaves_runs_that_resume",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(KILL_CHILD, &runs)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for some runs to exist (a generous deadline), then a little more, varied.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.list().await.unwrap().len() < 2 * (round as usize + 1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child made no runs"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(3 * round)).await;
        // SIGKILL: no destructor, no flush, no note.
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let ids = store.list().await.unwrap();
    assert!(ids.len() >= 12, "{} runs", ids.len());
    for id in &ids {
        let before = store.read(id).await.unwrap();
        let ended = before.last().and_then(Event::run_end).is_some();
        let done = runner.resume::<count_up>(id).await.unwrap();
        assert_eq!(done.output, 3, "run {id}");
        let after = store.read(id).await.unwrap();
        if ended {
            // Its note may be missing (killed between the end's sync and the note): then it
            // took the long way, which writes nothing.
            assert_eq!(after.len(), before.len(), "run {id}: nothing ran again");
        } else {
            // Ended by this resume, and noted: the next resume reads two records.
            assert!(ended_by_note(&store, id).await.is_some(), "run {id}");
        }
    }
}

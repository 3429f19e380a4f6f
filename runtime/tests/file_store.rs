//! The embedded file journal (`minder::store::FileStore`): format, reopen, torn tails, damage in
//! the middle, a journal without its first record, the writer lock, run id checks, group
//! commit, a failed write or sync poisoning the log (and the next open cutting the journal back
//! to the last durable offset), symbolic links refused, private file modes, and a whole run
//! through `Runner`. Tests that need a process of their own (a file size limit, a umask, a
//! second process) run themselves again as a child in another role.

use minder::journal::{Event, Outcome};
use minder::prelude::*;
use minder::store::{FileStore, OpenRun, Store, StoreError};
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory on the same disk as the target directory (so syncs are real).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("file-store-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

fn created(run_id: &str) -> Event {
    Event::RunCreated {
        run_id: run_id.to_string(),
        process: "test".to_string(),
        input: json!({"n": 1}),
        fingerprint: "f".to_string(),
        queue: None,
        priority: None,
        parent: None,
    }
}

/// A mix of every event kind, with varying sizes and non-ASCII text.
fn event(i: usize) -> Event {
    match i % 5 {
        0 => Event::StepStarted {
            key: format!("step/{i}"),
            task: "tests::work".to_string(),
            location: "tests/file_store.rs:1".to_string(),
            args: json!([i, "x".repeat(i % 37)]),
            seq: None,
            node: None,
        },
        1 => Event::StepCompleted {
            key: format!("step/{}", i - 1),
            outcome: if i.is_multiple_of(3) {
                Outcome::Err(json!({"kind": "failed", "message": "nope"}))
            } else {
                Outcome::Ok(json!(i))
            },
        },
        2 => Event::Recorded {
            key: format!("now/{i}"),
            value: json!(1_700_000_000_000u64 + i as u64),
            seq: None,
            location: None,
            node: None,
        },
        3 => Event::Log {
            key: format!("log/{i}"),
            message: format!("line {i}: héllo ✓ \"quoted\"\n"),
            seq: None,
            location: None,
            node: None,
        },
        _ => Event::Log {
            key: format!("log/{i}"),
            message: String::new(),
            seq: None,
            location: None,
            node: None,
        },
    }
}

/// An independent CRC-32 (bitwise, no table) to check the format from the outside.
fn crc32_bitwise(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The byte offsets where each record starts, parsed independently of the store.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    assert_eq!(&bytes[..8], b"MINDERJ1");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
    let mut offsets = Vec::new();
    let mut at = 12;
    while at < bytes.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let payload = &bytes[at + 8..at + 8 + len];
        assert_eq!(crc, crc32_bitwise(payload), "CRC of the record at {at}");
        serde_json::from_slice::<serde_json::Value>(payload).unwrap();
        at += 8 + len;
    }
    assert_eq!(at, bytes.len());
    offsets
}

/// A run `r` with `n` events (the creation event included), flushed and closed.
async fn journal_with(store: &FileStore, run_id: &str, n: usize) -> Vec<Event> {
    let mut expected = vec![created(run_id)];
    let log = store.create(run_id, created(run_id)).await.unwrap();
    for i in 1..n {
        let e = event(i);
        log.append(e.clone()).unwrap();
        expected.push(e);
    }
    log.flush().await.unwrap();
    expected
}

fn journal(store: &FileStore, run_id: &str) -> PathBuf {
    store.journal_path(run_id).unwrap()
}

fn assert_corrupt(err: StoreError, path: &Path, offset: usize) {
    let StoreError::Corrupt(message) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(
        message.contains(&path.display().to_string()),
        "message names the file: {message}"
    );
    assert!(
        message.contains(&format!("byte offset {offset}:")),
        "message names offset {offset}: {message}"
    );
}

#[tokio::test]
async fn round_trip_of_many_events_in_the_documented_format() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let expected = journal_with(&store, "r1", 1000).await;

    assert_eq!(store.read("r1").await.unwrap(), expected);
    let bytes = fs::read(journal(&store, "r1")).unwrap();
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), expected.len());
    // Each payload is exactly the event's serde_json encoding.
    for (at, event) in offsets.iter().zip(&expected) {
        let len = u32::from_le_bytes(bytes[*at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(
            &bytes[at + 8..at + 8 + len],
            serde_json::to_vec(event).unwrap()
        );
    }
    assert!(dir.path().join("runs/r1/lock").is_file());

    let OpenRun { events, log, .. } = store.open("r1").await.unwrap();
    assert_eq!(events, expected);
    drop(log);
    assert_eq!(store.list().await.unwrap(), ["r1"]);
}

#[tokio::test]
async fn reopening_appends_after_the_existing_events() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let mut expected = journal_with(&store, "again", 10).await;

    for round in 0..3 {
        let OpenRun { events, log, .. } = store.open("again").await.unwrap();
        assert_eq!(events, expected, "round {round}");
        for i in 0..7 {
            let e = event(100 * round + i);
            log.append(e.clone()).unwrap();
            expected.push(e);
        }
        log.flush().await.unwrap();
        drop(log);
    }
    assert_eq!(store.read("again").await.unwrap(), expected);
    // A fresh store on the same directory (another process) sees the same.
    let other = FileStore::new(dir.path().join("runs"));
    assert_eq!(other.read("again").await.unwrap(), expected);
}

#[tokio::test]
async fn events_appended_without_a_flush_are_written_when_the_log_is_dropped() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store
        .create("unflushed", created("unflushed"))
        .await
        .unwrap();
    log.append(event(1)).unwrap();
    log.append(event(2)).unwrap();
    drop(log);
    // The writer thread writes them once the log is dropped, holding the run's lock until
    // they are synced: an open waits for it.
    let OpenRun { events, .. } = store.open("unflushed").await.unwrap();
    assert_eq!(events, [created("unflushed"), event(1), event(2)]);
}

#[tokio::test]
async fn a_torn_tail_is_dropped_at_every_cut_inside_the_last_record() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let expected = journal_with(&store, "torn", 6).await;
    let path = journal(&store, "torn");
    let whole = fs::read(&path).unwrap();
    let last = *record_offsets(&whole).last().unwrap();
    let extra = event(99);

    for cut in last..whole.len() {
        fs::write(&path, &whole[..cut]).unwrap();
        assert_eq!(
            store.read("torn").await.unwrap(),
            expected[..5],
            "read with the file cut at {cut}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            cut as u64,
            "read does not modify"
        );

        let OpenRun { events, log, .. } = store.open("torn").await.unwrap();
        assert_eq!(events, expected[..5], "open with the file cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last as u64, "truncated");
        log.append(extra.clone()).unwrap();
        log.flush().await.unwrap();
        drop(log);

        let mut now = expected[..5].to_vec();
        now.push(extra.clone());
        assert_eq!(store.read("torn").await.unwrap(), now, "cut at {cut}");
        assert_eq!(record_offsets(&fs::read(&path).unwrap()).len(), 6);
    }
}

#[tokio::test]
async fn a_bad_checksum_or_zeros_in_the_last_record_is_a_torn_tail() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let expected = journal_with(&store, "tail", 4).await;
    let path = journal(&store, "tail");
    let whole = fs::read(&path).unwrap();
    let last = *record_offsets(&whole).last().unwrap();

    // A checksum mismatch in the last record, which ends at the end of the file.
    let mut bad = whole.clone();
    let n = bad.len();
    bad[n - 2] ^= 0x01;
    fs::write(&path, &bad).unwrap();
    assert_eq!(store.read("tail").await.unwrap(), expected[..3]);
    let OpenRun { events, log, .. } = store.open("tail").await.unwrap();
    assert_eq!(events, expected[..3]);
    drop(log);
    assert_eq!(fs::metadata(&path).unwrap().len(), last as u64);

    // Zero bytes after the good records (unsynced pages after a crash).
    let mut zeros = whole[..last].to_vec();
    zeros.extend([0u8; 300]);
    fs::write(&path, &zeros).unwrap();
    assert_eq!(store.read("tail").await.unwrap(), expected[..3]);
    let OpenRun { events, log, .. } = store.open("tail").await.unwrap();
    assert_eq!(events, expected[..3]);
    log.append(event(7)).unwrap();
    log.flush().await.unwrap();
    drop(log);
    let mut now = expected[..3].to_vec();
    now.push(event(7));
    assert_eq!(store.read("tail").await.unwrap(), now);
}

#[tokio::test]
async fn damage_in_the_middle_is_corrupt_at_its_offset_and_the_file_is_left_alone() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "mid", 8).await;
    let path = journal(&store, "mid");
    let whole = fs::read(&path).unwrap();
    let offsets = record_offsets(&whole);
    // Every byte of an earlier record: its length, its checksum, its payload.
    let (start, end) = (offsets[3], offsets[4]);
    for at in start..end {
        let mut bad = whole.clone();
        bad[at] ^= 0xFF;
        fs::write(&path, &bad).unwrap();
        assert_corrupt(store.read("mid").await.unwrap_err(), &path, start);
        assert_corrupt(store.open("mid").await.unwrap_err(), &path, start);
        assert_eq!(
            fs::read(&path).unwrap(),
            bad,
            "flipped byte {at}: unchanged"
        );
    }
    // The first record too.
    let mut bad = whole.clone();
    bad[offsets[0] + 20] ^= 0x01;
    fs::write(&path, &bad).unwrap();
    assert_corrupt(store.open("mid").await.unwrap_err(), &path, offsets[0]);

    // A length field damaged to point past the end looks like a torn record, but intact records
    // follow it: still corrupt.
    let mut bad = whole.clone();
    bad[offsets[2]..offsets[2] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&path, &bad).unwrap();
    assert_corrupt(store.open("mid").await.unwrap_err(), &path, offsets[2]);
    assert_eq!(fs::read(&path).unwrap(), bad);

    // A record whose checksum matches but which is not an event.
    let payload = br#"{"event":"from_the_future"}"#;
    let mut bad = whole[..offsets[5]].to_vec();
    bad.extend((payload.len() as u32).to_le_bytes());
    bad.extend(crc32_bitwise(payload).to_le_bytes());
    bad.extend(payload);
    bad.extend(&whole[offsets[5]..]);
    fs::write(&path, &bad).unwrap();
    assert_corrupt(store.read("mid").await.unwrap_err(), &path, offsets[5]);
}

#[tokio::test]
async fn a_bad_header_is_corrupt() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "head", 3).await;
    let path = journal(&store, "head");
    let whole = fs::read(&path).unwrap();

    for damage in [0usize, 7, 8] {
        let mut bad = whole.clone();
        bad[damage] ^= 0x20;
        fs::write(&path, &bad).unwrap();
        let err = store.open("head").await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(fs::read(&path).unwrap(), bad);
    }
    fs::write(&path, b"MINDER").unwrap();
    let err = store.read("head").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn one_writer_per_run() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store.create("locked", created("locked")).await.unwrap();
    log.append(event(1)).unwrap();
    log.flush().await.unwrap();

    let err = store.open("locked").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked(id) if id == "locked"),
        "{err:?}"
    );
    assert!(err.to_string().contains("locked"), "{err}");
    // Another store on the same directory (as another process would) is refused too.
    let other = FileStore::new(dir.path().join("runs"));
    assert!(matches!(
        other.open("locked").await,
        Err(StoreError::Locked(_))
    ));
    // Reading does not need the lock.
    assert_eq!(other.read("locked").await.unwrap().len(), 2);

    drop(log);
    let OpenRun { events, log, .. } = other.open("locked").await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(
        store.open("locked").await,
        Err(StoreError::Locked(_))
    ));
    drop(log);
    store.open("locked").await.unwrap();
}

#[tokio::test]
async fn creating_an_existing_run_is_refused_and_changes_nothing() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "once", 3).await;
    let before = fs::read(journal(&store, "once")).unwrap();
    let err = store.create("once", created("once")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::RunExists(id) if id == "once"),
        "{err:?}"
    );
    assert_eq!(fs::read(journal(&store, "once")).unwrap(), before);
    // No staging directory is left behind (beside the run, only the workers' ready index).
    let entries: Vec<_> = fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != ".ready")
        .collect();
    assert_eq!(entries, ["once"]);
}

#[tokio::test]
async fn bad_run_ids_are_refused_before_touching_the_disk() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    for id in ["../x", "a/b", "", "..", ".", "/tmp/x", "a\\b", "x\0y", "é"] {
        let err = store.create(id, created(id)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidRunId(_)),
            "{id:?}: {err:?}"
        );
        assert!(matches!(
            store.open(id).await,
            Err(StoreError::InvalidRunId(_))
        ));
        assert!(matches!(
            store.read(id).await,
            Err(StoreError::InvalidRunId(_))
        ));
        assert!(store.journal_path(id).is_err());
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
    assert!(!dir.path().parent().unwrap().join("x").exists());
}

#[tokio::test]
async fn unknown_runs_and_listing() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    assert_eq!(store.list().await.unwrap(), Vec::<String>::new());
    assert!(matches!(store.open("nope").await, Err(StoreError::UnknownRun(id)) if id == "nope"));
    assert!(matches!(
        store.read("nope").await,
        Err(StoreError::UnknownRun(_))
    ));

    for id in ["b-2", "a_1", "c"] {
        journal_with(&store, id, 2).await;
    }
    // Stray entries: a file, a directory without a journal, a leftover staging directory, a
    // name that is not a run id.
    fs::write(runs.join("notes.txt"), "hi").unwrap();
    fs::create_dir(runs.join("empty")).unwrap();
    fs::create_dir(runs.join(".create-d-1-0")).unwrap();
    fs::write(runs.join(".create-d-1-0/journal.log"), "x").unwrap();
    fs::create_dir(runs.join("has space")).unwrap();
    fs::write(runs.join("has space/journal.log"), "x").unwrap();
    assert_eq!(store.list().await.unwrap(), ["a_1", "b-2", "c"]);
    assert!(matches!(
        store.open("empty").await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.read("empty").await,
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.create("empty", created("empty")).await,
        Err(StoreError::RunExists(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_share_syncs() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store.create("group", created("group")).await.unwrap();
    let before = store.sync_count();
    let started = std::time::Instant::now();

    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.append(Event::StepCompleted {
                    key: format!("k{i}"),
                    outcome: Outcome::Ok(json!(i)),
                })
                .unwrap();
                log.flush().await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let syncs = store.sync_count() - before;
    let elapsed = started.elapsed();
    drop(log);

    let events = store.read("group").await.unwrap();
    assert_eq!(events.len(), 1001);
    let mut keys: Vec<_> = events[1..]
        .iter()
        .map(|e| match e {
            Event::StepCompleted { key, .. } => key[1..].parse::<usize>().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    keys.sort();
    assert_eq!(keys, (0..1000).collect::<Vec<_>>());
    println!(
        "group commit: 1000 concurrent append+flush -> {syncs} fdatasyncs \
         ({:.3} per step), {elapsed:?}",
        syncs as f64 / 1000.0
    );
    assert!(syncs >= 1);
    assert!(syncs < 500, "{syncs} syncs for 1000 concurrent flushes");
}

static SQUARES: AtomicUsize = AtomicUsize::new(0);

#[task]
async fn square(x: u64) -> Result<u64, TaskError> {
    SQUARES.fetch_add(1, Ordering::SeqCst);
    Ok(x * x)
}

#[process]
async fn sum_of_squares(ctx: &Ctx, n: u64) -> Result<u64, ProcessError> {
    let (a, b) = parallel!(square(n), square(n + 1))?;
    let rest: Vec<u64> = ctx.map("squares", 0..n, square).limit(4).await?;
    ctx.log(format!("{a} + {b} + {}", rest.len()));
    Ok(a + b + rest.iter().sum::<u64>())
}

#[tokio::test]
async fn a_run_on_the_file_store_resumes_from_disk_without_rerunning_tasks() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let expected = 9 + 16 + (0..3u64).map(|x| x * x).sum::<u64>();

    let runner = Runner::new(FileStore::new(&runs));
    let done = runner.run::<sum_of_squares>(3).await.unwrap();
    assert_eq!(done.output, expected);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 5);

    // A new runner and store on the same directory, as after a restart.
    let store = FileStore::new(&runs);
    let events = store.read(&done.run_id).await.unwrap();
    let completed = events
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. }))
        .count();
    assert_eq!(completed, 5);
    assert!(matches!(events.last(), Some(Event::RunCompleted { .. })));

    let runner = Runner::new(store.clone());
    let again = runner.resume::<sum_of_squares>(&done.run_id).await.unwrap();
    assert_eq!(again, done);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 5, "no task ran again");
    assert_eq!(
        store.read(&done.run_id).await.unwrap(),
        events,
        "nothing appended"
    );
    assert_eq!(store.list().await.unwrap(), [done.run_id.as_str()]);

    // A created-but-not-started run runs on resume, and its lock is free afterwards.
    let run_id = runner.create::<sum_of_squares>(&1).await.unwrap();
    let done = runner.resume::<sum_of_squares>(&run_id).await.unwrap();
    assert_eq!(done.output, 1 + 4);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 5 + 3);
    let OpenRun { log, .. } = store.open(&run_id).await.unwrap();
    drop(log);
}

/// Runs this test binary again as a child process that runs only the test `test`, with the
/// environment variable `role` set to `value` (which makes that test play its child role), after
/// the shell commands `setup` (a `ulimit`, a `umask`); returns its standard output, checked to
/// have succeeded. The child role lives in the same test function as the parent role, so no
/// test passes by doing nothing.
fn rerun_as_child(test: &str, setup: &str, role: &str, value: &Path) -> String {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            r#"{setup} exec "$0" --exact "$1" --nocapture --test-threads 1"#
        ))
        .arg(std::env::current_exe().unwrap())
        .arg(test)
        .env(role, value)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child did not run the test: {stdout}"
    );
    stdout
}

/// A value the child printed as `<label>: <value>`.
fn reported<T: std::str::FromStr>(stdout: &str, label: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{label}: ")))
        .unwrap_or_else(|| panic!("no `{label}` from the child: {stdout}"));
    line.trim().parse().unwrap()
}

/// Checks `err` is the poisoned-log error for a failed `op` with last durable offset `durable`.
fn assert_poisoned(err: &StoreError, op: &str, durable: u64, path: &Path) {
    let StoreError::Poisoned {
        op: failed,
        durable: offset,
        path: journal,
        ..
    } = err
    else {
        panic!("expected Poisoned, got {err:?}");
    };
    assert_eq!((*failed, *offset, journal.as_path()), (op, durable, path));
    let message = err.to_string();
    for part in [
        &format!("the {op} of journal {}", path.display()),
        "poisoned",
        "nothing more is written",
        &format!("byte {durable}"),
        "nothing acknowledged was lost",
    ] {
        assert!(message.contains(part), "no `{part}` in: {message}");
    }
    assert!(!message.contains("resume the run to continue"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// The record a poisoned writer leaves in a run directory.
fn durable_record(run_dir: &Path) -> Option<String> {
    fs::read_to_string(run_dir.join("durable-offset")).ok()
}

/// How many intact records (length, CRC, JSON) start back to back at `at`.
fn intact_records_from(bytes: &[u8], mut at: usize) -> usize {
    let mut n = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().unwrap());
        match bytes.get(at + 8..at + 8 + len) {
            Some(payload) if len > 0 && crc32_bitwise(payload) == crc => n += 1,
            _ => break,
        }
        at += 8 + len;
    }
    n
}

/// Set in the child process of
/// `a_failed_write_poisons_the_log_and_the_next_open_trusts_only_what_was_synced`.
const FSIZE_CHILD: &str = "MINDER_FILE_STORE_FSIZE_CHILD";

/// Runs its child role under a file size limit (`ulimit -f`, SIGXFSZ ignored) so that the
/// journal's writes fail with EFBIG part way through a batch, and checks what it reported and
/// left on disk: the intact records of the half-written batch are past the recorded durable
/// offset, so readers ignore them and the next open cuts them off.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_poisons_the_log_and_the_next_open_trusts_only_what_was_synced() {
    if let Some(runs) = std::env::var_os(FSIZE_CHILD) {
        return write_failure_child(PathBuf::from(runs));
    }
    let dir = scratch();
    let runs = dir.path().join("runs");
    let stdout = rerun_as_child(
        "a_failed_write_poisons_the_log_and_the_next_open_trusts_only_what_was_synced",
        "trap '' XFSZ; ulimit -f 16 &&",
        FSIZE_CHILD,
        &runs,
    );
    print!("{stdout}");
    let durable_events: usize = reported(&stdout, "durable events");
    let durable: usize = reported(&stdout, "durable offset");

    futures::executor::block_on(check_cut_back(&runs, durable, durable_events));
}

async fn check_cut_back(runs: &Path, durable: usize, durable_events: usize) {
    let store = FileStore::new(runs);
    let path = journal(&store, "limited");
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > durable, "the failed batch was partly written");
    assert!(
        intact_records_from(&bytes, durable) >= 1,
        "intact but never synced records follow the durable offset"
    );
    assert_eq!(
        durable_record(&runs.join("limited")).unwrap(),
        format!("minder durable offset {durable}\n")
    );
    // Readers stop at the durable offset, and change nothing.
    let read = store.read("limited").await.unwrap();
    assert_eq!(read.len(), durable_events);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    // The next open cuts the journal back to it and forgets the record.
    let notice = store.recover("limited").await.unwrap().expect("a notice");
    assert!(notice.contains(&format!("offset {durable}")), "{notice}");
    assert!(notice.contains("nothing acknowledged was lost"), "{notice}");
    assert_eq!(fs::metadata(&path).unwrap().len(), durable as u64);
    assert_eq!(durable_record(&runs.join("limited")), None);
    let OpenRun { events, log, .. } = store.open("limited").await.unwrap();
    assert_eq!(events, read);
    log.append(event(1)).unwrap();
    drop(log);
    assert_eq!(
        store.read("limited").await.unwrap().len(),
        durable_events + 1
    );
}

/// The child role of the test above: appends batches until the file size limit fails a write.
fn write_failure_child(runs: PathBuf) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FileStore::new(runs);
        let path = journal(&store, "limited");
        let log = store.create("limited", created("limited")).await.unwrap();
        let mut durable = 1;
        let mut synced_len = fs::metadata(&path).unwrap().len();
        let error = loop {
            assert!(durable < 100_000, "the file size limit never hit");
            for _ in 0..8 {
                log.append(event(3)).unwrap();
            }
            match log.flush().await {
                Ok(()) => {
                    durable += 8;
                    synced_len = fs::metadata(&path).unwrap().len();
                }
                Err(e) => break e,
            }
        };
        assert_poisoned(&error, "write", synced_len, &path);
        assert!(
            matches!(&error, StoreError::Poisoned { source, .. } if source.kind() == std::io::ErrorKind::FileTooLarge),
            "{error:?}"
        );
        println!("write error: {error}");
        // The log is poisoned: nothing more is accepted, and every call reports it.
        for err in [
            log.append(event(3)).unwrap_err(),
            log.flush().await.unwrap_err(),
            log.flush().await.unwrap_err(),
        ] {
            assert_poisoned(&err, "write", synced_len, &path);
        }
        drop(log);
        println!("durable events: {durable}");
        println!("durable offset: {synced_len}");
    });
}

#[tokio::test]
async fn a_failed_sync_poisons_the_log_and_the_next_open_cuts_the_journal_back() {
    // Once through each path of a flush: the writer thread (an open step keeps the flush off
    // the caller's thread) and, when no other test has a log open, in place.
    for writer_thread in [true, false] {
        let dir = scratch();
        let store = FileStore::new(dir.path().join("runs"));
        let id = "fsync";
        let path = journal(&store, id);
        let log = store.create(id, created(id)).await.unwrap();
        if writer_thread {
            log.append(Event::StepStarted {
                key: "open".to_string(),
                task: "tests::slow".to_string(),
                location: "tests/file_store.rs:1".to_string(),
                args: json!([]),
                seq: None,
                node: None,
            })
            .unwrap();
        }
        for i in 1..4 {
            log.append(event(i)).unwrap();
        }
        log.flush().await.unwrap();
        let durable = fs::metadata(&path).unwrap().len();
        let acknowledged = store.read(id).await.unwrap();

        // The disk fails the next sync after the write went into the page cache.
        store.fail_next_sync();
        log.append(event(5)).unwrap();
        log.append(event(6)).unwrap();
        let err = log.flush().await.unwrap_err();
        assert_poisoned(&err, "sync", durable, &path);
        println!("sync error: {err}");
        // The written bytes read back as intact records: what today's page cache shows, and
        // what the disk may never hold.
        let bytes = fs::read(&path).unwrap();
        assert_eq!(record_offsets(&bytes).len(), acknowledged.len() + 2);
        assert_eq!(
            durable_record(&dir.path().join("runs").join(id)).unwrap(),
            format!("minder durable offset {durable}\n")
        );

        // Nothing more is accepted or written by this writer, even when it is dropped.
        assert_poisoned(&log.append(event(7)).unwrap_err(), "sync", durable, &path);
        assert_poisoned(&log.flush().await.unwrap_err(), "sync", durable, &path);
        drop(log);
        assert_eq!(fs::read(&path).unwrap(), bytes);

        // Readers trust only the synced prefix, and change nothing.
        assert_eq!(store.read(id).await.unwrap(), acknowledged);
        assert_eq!(fs::read(&path).unwrap(), bytes);

        // The next open cuts the journal back to the durable offset, then writes on.
        let OpenRun { events, log, .. } = store.open(id).await.unwrap();
        assert_eq!(events, acknowledged);
        assert_eq!(fs::metadata(&path).unwrap().len(), durable);
        assert_eq!(durable_record(&dir.path().join("runs").join(id)), None);
        log.append(event(8)).unwrap();
        log.flush().await.unwrap();
        drop(log);
        let mut now = acknowledged.clone();
        now.push(event(8));
        assert_eq!(store.read(id).await.unwrap(), now);
        // Nothing left to recover.
        assert_eq!(store.recover(id).await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_failed_sync_whose_offset_cannot_be_recorded_cuts_the_journal_back_at_once() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let path = journal(&store, "unrecorded");
    let log = store
        .create("unrecorded", created("unrecorded"))
        .await
        .unwrap();
    log.append(event(1)).unwrap();
    log.flush().await.unwrap();
    let durable = fs::metadata(&path).unwrap().len();
    let acknowledged = store.read("unrecorded").await.unwrap();
    // A directory where the record's temporary file goes: recording it fails (even as root).
    let run = dir.path().join("runs/unrecorded");
    fs::create_dir(run.join("durable-offset.tmp")).unwrap();

    store.fail_next_sync();
    log.append(event(2)).unwrap();
    let err = log.flush().await.unwrap_err();
    assert_poisoned(&err, "sync", durable, &path);
    assert!(err.to_string().contains("could not be recorded"), "{err}");
    assert!(
        err.to_string()
            .contains("so the journal was cut back to it"),
        "{err}"
    );
    drop(log);
    assert_eq!(fs::metadata(&path).unwrap().len(), durable);
    assert_eq!(durable_record(&run), None);
    let OpenRun { events, log, .. } = store.open("unrecorded").await.unwrap();
    assert_eq!(events, acknowledged);
    drop(log);
}

#[tokio::test]
async fn a_durable_offset_past_the_end_or_unreadable_is_corrupt() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "rec", 3).await;
    let path = journal(&store, "rec");
    let record = dir.path().join("runs/rec/durable-offset");
    let len = fs::metadata(&path).unwrap().len();
    for text in [
        format!("minder durable offset {}\n", len + 1),
        String::new(),
        "minder durable offset 12".to_string(),
        "\0\0\0\0".to_string(),
    ] {
        fs::write(&record, &text).unwrap();
        for err in [
            store.read("rec").await.unwrap_err(),
            store.open("rec").await.map(|_| ()).unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Corrupt(_)), "{text:?}: {err:?}");
            assert!(err.to_string().contains("durable offset"), "{err}");
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), len, "unchanged");
    }
}

#[tokio::test]
async fn a_journal_without_a_complete_first_record_is_corrupt() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "first", 3).await;
    let path = journal(&store, "first");
    let whole = fs::read(&path).unwrap();
    let first_end = record_offsets(&whole)[1];
    let mut zeros = whole[..12].to_vec();
    zeros.extend([0; 100]);
    let cuts: Vec<Vec<u8>> = [12, 13, 19, 20, 21, first_end - 1]
        .iter()
        .map(|&cut| whole[..cut].to_vec())
        .chain([zeros])
        .collect();
    for bad in cuts {
        fs::write(&path, &bad).unwrap();
        let len = bad.len();
        for err in [
            store.read("first").await.unwrap_err(),
            store.open("first").await.map(|_| ()).unwrap_err(),
        ] {
            assert_corrupt(err, &path, 12);
        }
        assert_eq!(fs::read(&path).unwrap(), bad, "{len} bytes: unchanged");
    }
}

fn assert_symlink(err: StoreError, path: &Path) {
    assert!(
        matches!(&err, StoreError::Symlink(p) if p == path),
        "expected a symlink error for {}, got {err:?}",
        path.display()
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{} is a symbolic link", path.display())),
        "{err}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn symbolic_links_inside_the_runs_directory_are_refused() {
    use std::os::unix::fs::symlink;
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    journal_with(&store, "real", 3).await;
    let real = journal(&store, "real");
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let entries = |d: &Path| {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };

    // A run directory that is a link to a directory elsewhere, with a journal and a request.
    let elsewhere = outside.join("run");
    fs::create_dir(&elsewhere).unwrap();
    fs::copy(&real, elsewhere.join("journal.log")).unwrap();
    fs::write(elsewhere.join("cancel-request"), r#"{"reason":"x"}"#).unwrap();
    let linked = runs.join("linked-dir");
    symlink(&elsewhere, &linked).unwrap();
    assert_symlink(store.read("linked-dir").await.unwrap_err(), &linked);
    assert_symlink(
        store.open("linked-dir").await.map(|_| ()).unwrap_err(),
        &linked,
    );
    assert_symlink(store.recover("linked-dir").await.unwrap_err(), &linked);
    assert_symlink(
        store.request_cancel("linked-dir", None).await.unwrap_err(),
        &linked,
    );
    assert_eq!(store.cancel_request("linked-dir").await, None);
    store.clear_cancel_request("linked-dir").await;
    assert_eq!(entries(&elsewhere), ["cancel-request", "journal.log"]);

    // A journal that is a link.
    let run = runs.join("linked-journal");
    fs::create_dir(&run).unwrap();
    symlink(&real, run.join("journal.log")).unwrap();
    assert_symlink(
        store.read("linked-journal").await.unwrap_err(),
        &run.join("journal.log"),
    );
    assert_symlink(
        store.open("linked-journal").await.map(|_| ()).unwrap_err(),
        &run.join("journal.log"),
    );
    assert_eq!(entries(&run), ["journal.log"], "no lock file made");

    // A lock that is a link to a path that does not exist: refused, and nothing created.
    let run = runs.join("linked-lock");
    fs::create_dir(&run).unwrap();
    fs::copy(&real, run.join("journal.log")).unwrap();
    let target = outside.join("made-by-the-lock");
    symlink(&target, run.join("lock")).unwrap();
    assert_symlink(
        store.open("linked-lock").await.map(|_| ()).unwrap_err(),
        &run.join("lock"),
    );
    assert!(
        target.symlink_metadata().is_err(),
        "the lock's target was created"
    );
    // Reading needs no lock.
    assert_eq!(store.read("linked-lock").await.unwrap().len(), 3);

    // A cancel request that is a link: not read, and a new request replaces the link instead
    // of writing through it.
    let planted = outside.join("planted");
    fs::write(&planted, r#"{"reason":"planted"}"#).unwrap();
    symlink(&planted, runs.join("real/cancel-request")).unwrap();
    assert_eq!(store.cancel_request("real").await, None);
    store
        .request_cancel("real", Some("mine".into()))
        .await
        .unwrap();
    assert_eq!(
        store.cancel_request("real").await,
        Some(Some("mine".into()))
    );
    assert_eq!(
        fs::read_to_string(&planted).unwrap(),
        r#"{"reason":"planted"}"#
    );
    assert_eq!(entries(&outside), ["planted", "run"]);
    assert_eq!(store.read("real").await.unwrap().len(), 3);
}

/// Set in the child process of `files_and_directories_are_private_whatever_the_umask`.
const UMASK_CHILD: &str = "MINDER_FILE_STORE_UMASK_CHILD";

/// Its child role runs under umask 0 (a process-wide setting, hence a child) and makes every
/// kind of file the store writes; the parent checks their modes.
#[cfg(target_os = "linux")]
#[test]
fn files_and_directories_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    if let Some(runs) = std::env::var_os(UMASK_CHILD) {
        return umask_child(PathBuf::from(runs));
    }
    let dir = scratch();
    let made = dir.path().join("made");
    let runs = made.join("runs");
    let stdout = rerun_as_child(
        "files_and_directories_are_private_whatever_the_umask",
        "umask 000 &&",
        UMASK_CHILD,
        &runs,
    );
    assert!(stdout.contains("umask: 0000"), "{stdout}");
    let run = runs.join("private");
    for (path, mode) in [
        (&made, 0o700),
        (&runs, 0o700),
        (&run, 0o700),
        (&run.join("journal.log"), 0o600),
        (&run.join("lock"), 0o600),
        (&run.join("cancel-request"), 0o600),
        (&run.join("durable-offset"), 0o600),
    ] {
        let actual = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            actual,
            mode,
            "{}: {actual:o} instead of {mode:o}",
            path.display()
        );
    }
}

/// The child role of the test above.
fn umask_child(runs: PathBuf) {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap()
        .trim();
    println!("umask: {umask}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = FileStore::new(runs);
        let log = store.create("private", created("private")).await.unwrap();
        store.fail_next_sync();
        log.append(event(1)).unwrap();
        assert!(log.flush().await.is_err());
        drop(log);
        store.request_cancel("private", None).await.unwrap();
    });
}

/// Set in the child process of `another_process_is_locked_out`: `<runs dir>` `|` `<expected>`.
const LOCK_CHILD: &str = "MINDER_FILE_STORE_LOCK_CHILD";

#[tokio::test]
async fn another_process_is_locked_out() {
    if let Some(arg) = std::env::var_os(LOCK_CHILD) {
        return lock_child(arg.to_str().unwrap()).await;
    }
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    let log = store.create("shared", created("shared")).await.unwrap();
    let in_child = |expect: &str| {
        rerun_as_child(
            "another_process_is_locked_out",
            "",
            LOCK_CHILD,
            Path::new(&format!("{}|{expect}", runs.display())),
        )
    };
    let stdout = in_child("locked");
    assert!(stdout.contains("child: locked: run `shared`"), "{stdout}");
    drop(log);
    let stdout = in_child("open");
    assert!(stdout.contains("child: opened 1 events"), "{stdout}");
}

/// The child role of the test above: opens the run, expecting `<runs dir>|<expected>`.
async fn lock_child(arg: &str) {
    let (runs, expect) = arg.split_once('|').unwrap();
    let store = FileStore::new(runs);
    match (store.open("shared").await, expect) {
        (Err(e @ StoreError::Locked(_)), "locked") => println!("child: locked: {e}"),
        (Ok(OpenRun { events, .. }), "open") => println!("child: opened {} events", events.len()),
        (other, _) => panic!("expected {expect}, got {:?}", other.map(|o| o.events.len())),
    }
}

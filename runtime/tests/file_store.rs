//! The embedded file journal (`minder::store::FileStore`): format, reopen, torn tails, damage in
//! the middle, the writer lock, run id checks, group commit, and a whole run through `Runner`.

use minder::journal::{Event, Outcome};
use minder::prelude::*;
use minder::store::{FileStore, Store, StoreError};
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
        },
        3 => Event::Log {
            key: format!("log/{i}"),
            message: format!("line {i}: héllo ✓ \"quoted\"\n"),
        },
        _ => Event::Log {
            key: format!("log/{i}"),
            message: String::new(),
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
    let log = store.create(run_id, created(run_id)).unwrap();
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

    assert_eq!(store.read("r1").unwrap(), expected);
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

    let (events, log) = store.open("r1").unwrap();
    assert_eq!(events, expected);
    drop(log);
    assert_eq!(store.list().unwrap(), ["r1"]);
}

#[tokio::test]
async fn reopening_appends_after_the_existing_events() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let mut expected = journal_with(&store, "again", 10).await;

    for round in 0..3 {
        let (events, log) = store.open("again").unwrap();
        assert_eq!(events, expected, "round {round}");
        for i in 0..7 {
            let e = event(100 * round + i);
            log.append(e.clone()).unwrap();
            expected.push(e);
        }
        log.flush().await.unwrap();
        drop(log);
    }
    assert_eq!(store.read("again").unwrap(), expected);
    // A fresh store on the same directory (another process) sees the same.
    let other = FileStore::new(dir.path().join("runs"));
    assert_eq!(other.read("again").unwrap(), expected);
}

#[tokio::test]
async fn events_appended_without_a_flush_are_written_when_the_log_is_dropped() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store.create("unflushed", created("unflushed")).unwrap();
    log.append(event(1)).unwrap();
    log.append(event(2)).unwrap();
    drop(log);
    assert_eq!(
        store.read("unflushed").unwrap(),
        [created("unflushed"), event(1), event(2)]
    );
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
            store.read("torn").unwrap(),
            expected[..5],
            "read with the file cut at {cut}"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            cut as u64,
            "read does not modify"
        );

        let (events, log) = store.open("torn").unwrap();
        assert_eq!(events, expected[..5], "open with the file cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last as u64, "truncated");
        log.append(extra.clone()).unwrap();
        log.flush().await.unwrap();
        drop(log);

        let mut now = expected[..5].to_vec();
        now.push(extra.clone());
        assert_eq!(store.read("torn").unwrap(), now, "cut at {cut}");
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
    assert_eq!(store.read("tail").unwrap(), expected[..3]);
    let (events, log) = store.open("tail").unwrap();
    assert_eq!(events, expected[..3]);
    drop(log);
    assert_eq!(fs::metadata(&path).unwrap().len(), last as u64);

    // Zero bytes after the good records (unsynced pages after a crash).
    let mut zeros = whole[..last].to_vec();
    zeros.extend([0u8; 300]);
    fs::write(&path, &zeros).unwrap();
    assert_eq!(store.read("tail").unwrap(), expected[..3]);
    let (events, log) = store.open("tail").unwrap();
    assert_eq!(events, expected[..3]);
    log.append(event(7)).unwrap();
    log.flush().await.unwrap();
    drop(log);
    let mut now = expected[..3].to_vec();
    now.push(event(7));
    assert_eq!(store.read("tail").unwrap(), now);
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
        assert_corrupt(store.read("mid").unwrap_err(), &path, start);
        assert_corrupt(store.open("mid").unwrap_err(), &path, start);
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
    assert_corrupt(store.open("mid").unwrap_err(), &path, offsets[0]);

    // A length field damaged to point past the end looks like a torn record, but intact records
    // follow it: still corrupt.
    let mut bad = whole.clone();
    bad[offsets[2]..offsets[2] + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(&path, &bad).unwrap();
    assert_corrupt(store.open("mid").unwrap_err(), &path, offsets[2]);
    assert_eq!(fs::read(&path).unwrap(), bad);

    // A record whose checksum matches but which is not an event.
    let payload = br#"{"event":"from_the_future"}"#;
    let mut bad = whole[..offsets[5]].to_vec();
    bad.extend((payload.len() as u32).to_le_bytes());
    bad.extend(crc32_bitwise(payload).to_le_bytes());
    bad.extend(payload);
    bad.extend(&whole[offsets[5]..]);
    fs::write(&path, &bad).unwrap();
    assert_corrupt(store.read("mid").unwrap_err(), &path, offsets[5]);
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
        let err = store.open("head").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(fs::read(&path).unwrap(), bad);
    }
    fs::write(&path, b"MINDER").unwrap();
    let err = store.read("head").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test]
async fn one_writer_per_run() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store.create("locked", created("locked")).unwrap();
    log.append(event(1)).unwrap();
    log.flush().await.unwrap();

    let err = store.open("locked").unwrap_err();
    assert!(
        matches!(&err, StoreError::Locked(id) if id == "locked"),
        "{err:?}"
    );
    assert!(err.to_string().contains("locked"), "{err}");
    // Another store on the same directory (as another process would) is refused too.
    let other = FileStore::new(dir.path().join("runs"));
    assert!(matches!(other.open("locked"), Err(StoreError::Locked(_))));
    // Reading does not need the lock.
    assert_eq!(other.read("locked").unwrap().len(), 2);

    drop(log);
    let (events, log) = other.open("locked").unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(store.open("locked"), Err(StoreError::Locked(_))));
    drop(log);
    store.open("locked").unwrap();
}

#[tokio::test]
async fn creating_an_existing_run_is_refused_and_changes_nothing() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    journal_with(&store, "once", 3).await;
    let before = fs::read(journal(&store, "once")).unwrap();
    let err = store.create("once", created("once")).unwrap_err();
    assert!(
        matches!(&err, StoreError::RunExists(id) if id == "once"),
        "{err:?}"
    );
    assert_eq!(fs::read(journal(&store, "once")).unwrap(), before);
    // No staging directory is left behind.
    let entries: Vec<_> = fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["once"]);
}

#[tokio::test]
async fn bad_run_ids_are_refused_before_touching_the_disk() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    for id in ["../x", "a/b", "", "..", ".", "/tmp/x", "a\\b", "x\0y", "é"] {
        let err = store.create(id, created(id)).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidRunId(_)),
            "{id:?}: {err:?}"
        );
        assert!(matches!(store.open(id), Err(StoreError::InvalidRunId(_))));
        assert!(matches!(store.read(id), Err(StoreError::InvalidRunId(_))));
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
    assert_eq!(store.list().unwrap(), Vec::<String>::new());
    assert!(matches!(store.open("nope"), Err(StoreError::UnknownRun(id)) if id == "nope"));
    assert!(matches!(store.read("nope"), Err(StoreError::UnknownRun(_))));

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
    assert_eq!(store.list().unwrap(), ["a_1", "b-2", "c"]);
    assert!(matches!(
        store.open("empty"),
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.read("empty"),
        Err(StoreError::UnknownRun(_))
    ));
    assert!(matches!(
        store.create("empty", created("empty")),
        Err(StoreError::RunExists(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_share_syncs() {
    let dir = scratch();
    let store = FileStore::new(dir.path().join("runs"));
    let log = store.create("group", created("group")).unwrap();
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

    let events = store.read("group").unwrap();
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
    let events = store.read(&done.run_id).unwrap();
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
        store.read(&done.run_id).unwrap(),
        events,
        "nothing appended"
    );
    assert_eq!(store.list().unwrap(), [done.run_id.as_str()]);

    // A created-but-not-started run runs on resume, and its lock is free afterwards.
    let run_id = runner.create::<sum_of_squares>(&1).unwrap();
    let done = runner.resume::<sum_of_squares>(&run_id).await.unwrap();
    assert_eq!(done.output, 1 + 4);
    assert_eq!(SQUARES.load(Ordering::SeqCst), 5 + 3);
    let (_, log) = store.open(&run_id).unwrap();
    drop(log);
}

/// Set in the child process of `a_failed_write_is_reported_by_flush_and_every_later_call`.
const FSIZE_CHILD: &str = "MINDER_FILE_STORE_FSIZE_CHILD";

/// Runs a child process with a file size limit (`ulimit -f`, SIGXFSZ ignored) so that the
/// journal's writes fail with EFBIG part way, and checks what it reported and left on disk.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_is_reported_by_flush_and_every_later_call() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let exe = std::env::current_exe().unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 16 && exec "$0" --exact write_failure_child --nocapture --test-threads 1"#)
        .arg(&exe)
        .env(FSIZE_CHILD, &runs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("durable events: "))
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
    let durable: usize = line.trim().parse().unwrap();
    print!("{stdout}");

    // Everything the child was told is durable is there; the failed batch is at most a torn
    // tail, which open drops.
    let store = FileStore::new(&runs);
    let read = store.read("limited").unwrap();
    assert!(read.len() >= durable, "{} < {durable}", read.len());
    let (events, log) = store.open("limited").unwrap();
    assert_eq!(events, read);
    drop(log);
}

/// The child half of the test above: does nothing unless started by it.
#[tokio::test]
async fn write_failure_child() {
    let Some(runs) = std::env::var_os(FSIZE_CHILD) else {
        return;
    };
    let store = FileStore::new(PathBuf::from(runs));
    let log = store.create("limited", created("limited")).unwrap();
    let mut durable = 1;
    let error = loop {
        assert!(durable < 100_000, "the file size limit never hit");
        log.append(event(3)).unwrap();
        match log.flush().await {
            Ok(()) => durable += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&error, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::FileTooLarge),
        "{error:?}"
    );
    assert!(error.to_string().contains("journal.log"), "{error}");
    println!("write error: {error}");
    // The log is poisoned: nothing more is accepted, and every flush reports the error.
    assert!(log.append(event(3)).is_err());
    assert!(log.flush().await.is_err());
    assert!(log.flush().await.is_err());
    drop(log);
    println!("durable events: {durable}");
}

/// Set in the child process of `another_process_is_locked_out`: `<runs dir>` `|` `<expected>`.
const LOCK_CHILD: &str = "MINDER_FILE_STORE_LOCK_CHILD";

fn open_in_child_process(runs: &Path, expect: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(LOCK_CHILD, format!("{}|{expect}", runs.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn another_process_is_locked_out() {
    let dir = scratch();
    let runs = dir.path().join("runs");
    let store = FileStore::new(&runs);
    let log = store.create("shared", created("shared")).unwrap();
    let stdout = open_in_child_process(&runs, "locked");
    assert!(stdout.contains("child: locked: run `shared`"), "{stdout}");
    drop(log);
    let stdout = open_in_child_process(&runs, "open");
    assert!(stdout.contains("child: opened 1 events"), "{stdout}");
}

/// The child half of the test above: does nothing unless started by it.
#[test]
fn lock_child() {
    let Some(arg) = std::env::var(LOCK_CHILD).ok() else {
        return;
    };
    let (runs, expect) = arg.split_once('|').unwrap();
    let store = FileStore::new(runs);
    match (store.open("shared"), expect) {
        (Err(e @ StoreError::Locked(_)), "locked") => println!("child: locked: {e}"),
        (Ok((events, _log)), "open") => println!("child: opened {} events", events.len()),
        (other, _) => panic!("expected {expect}, got {:?}", other.map(|(e, _)| e.len())),
    }
}

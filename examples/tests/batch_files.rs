//! `batch-files`: real files in a temp dir and the shipped sample directory, checked against
//! counts and checksums computed here.

mod common;

use common::{data_dir, failure, fnv, logging_runner, write};
use minder::prelude::*;
use minder_examples::batch_files::{batch_dirs, batch_files, BatchInput, DirsInput};
use std::path::Path;

/// Lines counted by newlines (plus an unterminated last line), independently of `str::lines`.
fn count_lines(bytes: &[u8]) -> u64 {
    let newlines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
    newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
}

fn count_words(text: &str) -> u64 {
    let mut words = 0;
    let mut inside = false;
    for c in text.chars() {
        if c.is_whitespace() {
            inside = false;
        } else if !inside {
            inside = true;
            words += 1;
        }
    }
    words
}

fn input(dir: &Path, limit: usize) -> BatchInput {
    BatchInput {
        dir: dir.to_string_lossy().into_owned(),
        limit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarizes_every_file_and_reports_the_non_utf8_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "a.txt", "hello world\nsecond line\n");
    write(dir, "b.md", "# Title\n\nsome *markdown* text");
    write(dir, "c-latin1.txt", b"caf\xe9 au lait\n");
    write(dir, "d-empty.txt", "");
    write(dir, "e-unicode.txt", "Grüße 🦀\nzwei\tWörter\n");
    write(
        dir,
        "sub/ignored.txt",
        "a subdirectory is not a regular file",
    );

    let (runner, logs) = logging_runner();
    let done = runner.run::<batch_files>(input(dir, 2)).await.unwrap();
    let report = done.output;

    assert_eq!(report.processed, 5);
    let names: Vec<&str> = report.successful.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(names, ["a.txt", "b.md", "d-empty.txt", "e-unicode.txt"]);
    for summary in &report.successful {
        let bytes = std::fs::read(dir.join(&summary.file)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(summary.bytes, bytes.len() as u64, "{}", summary.file);
        assert_eq!(summary.lines, count_lines(&bytes), "{}", summary.file);
        assert_eq!(summary.words, count_words(&text), "{}", summary.file);
        assert_eq!(summary.fnv1a64, fnv(&bytes), "{}", summary.file);
        assert_eq!(summary.ascii, text.is_ascii(), "{}", summary.file);
    }
    assert_eq!(report.successful[0].lines, 2);
    assert_eq!(report.successful[0].words, 4);
    assert_eq!(report.successful[2].fnv1a64, "cbf29ce484222325"); // FNV offset basis: empty

    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].file, "c-latin1.txt");
    assert!(
        report.failed[0].error.contains("not UTF-8") && report.failed[0].error.contains("0xe9"),
        "{}",
        report.failed[0].error
    );

    let totals = &report.totals;
    assert_eq!(totals.files, 4);
    assert_eq!(
        totals.bytes,
        report.successful.iter().map(|s| s.bytes).sum::<u64>()
    );
    // a.txt 2, b.md 3, d-empty.txt 0, e-unicode.txt 2
    assert_eq!(totals.lines, 7);
    assert_eq!(
        totals.words,
        report.successful.iter().map(|s| s.words).sum::<u64>()
    );

    let logs = logs.lock().unwrap();
    assert!(logs.iter().any(|l| l.starts_with("skipped c-latin1.txt")));
    assert_eq!(logs.last().unwrap(), "processed 4/5 files (1 failed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_does_not_change_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..9 {
        write(tmp.path(), &format!("f{i}.txt"), "word ".repeat(i + 1));
    }
    let runner = Runner::in_memory();
    let one = runner
        .run::<batch_files>(input(tmp.path(), 1))
        .await
        .unwrap();
    let many = runner
        .run::<batch_files>(input(tmp.path(), 8))
        .await
        .unwrap();
    assert_eq!(one.output, many.output);
    let words: Vec<u64> = one.output.successful.iter().map(|s| s.words).collect();
    assert_eq!(words, (1..=9).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_sample_directory() {
    let dir = data_dir("batch");
    let done = Runner::in_memory()
        .run::<batch_files>(input(&dir, 4))
        .await
        .unwrap();
    let report = done.output;
    assert_eq!(report.processed, 12);
    assert_eq!(report.successful.len(), 11);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].file, "07-latin1.txt");
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with("07-latin1.txt"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(report.totals.bytes, bytes);
    let unicode = report
        .successful
        .iter()
        .find(|s| s.file == "06-unicode.txt")
        .unwrap();
    assert!(!unicode.ascii);
    assert_eq!(
        unicode.fnv1a64,
        fnv(&std::fs::read(dir.join("06-unicode.txt")).unwrap())
    );
}

#[tokio::test]
async fn a_zero_limit_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let message = failure(
        Runner::in_memory()
            .run::<batch_files>(input(tmp.path(), 0))
            .await,
    );
    assert!(message.contains("`limit` must be at least 1"), "{message}");
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let message = failure(
        Runner::in_memory()
            .run::<batch_files>(input(&missing, 3))
            .await,
    );
    assert!(message.contains("cannot read directory"), "{message}");
    assert!(message.contains("nope"), "{message}");
}

/// `batch-dirs`: each directory is a child process (a `batch-files` run of its own, on the
/// runs directory), the parent adds them up; a missing directory is one failed child; a
/// resume of the ended parent starts no child again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_directories_are_each_a_child_run_of_batch_files() {
    use minder::inspect::{summarize, RunState};
    use minder::store::{FileStore, Store};
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    write(&one, "a.txt", "alpha beta\ngamma\n");
    write(&one, "b.txt", "delta");
    write(&two, "c.txt", "one two three\n");
    write(&two, "latin1.txt", b"caf\xe9\n");
    let missing = tmp.path().join("missing");
    let dirs: Vec<String> = [&one, &two, &missing]
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let store = FileStore::new(tmp.path().join("runs"));
    let runner = Runner::new(store.clone());
    let input = DirsInput {
        dirs: dirs.clone(),
        limit: 2,
        at_once: 2,
    };
    let done = runner.run::<batch_dirs>(input).await.unwrap();
    let report = &done.output;
    // Each directory's report is what `batch-files` gives for it alone.
    let alone = runner
        .run::<batch_files>(BatchInput {
            dir: dirs[0].clone(),
            limit: 2,
        })
        .await
        .unwrap()
        .output;
    assert_eq!(report.dirs[0].report.as_ref(), Some(&alone));
    let second = report.dirs[1].report.as_ref().unwrap();
    assert_eq!(second.successful.len(), 1);
    assert_eq!(second.failed[0].file, "latin1.txt");
    assert_eq!(
        (report.totals.files, report.totals.words),
        (3, 3 + 1 + 3),
        "{report:?}"
    );
    assert_eq!(
        report.totals.bytes,
        ("alpha beta\ngamma\n".len() + "delta".len() + "one two three\n".len()) as u64
    );
    let error = report.dirs[2].error.as_deref().unwrap();
    assert!(
        error.contains("child process `batch-files`") && error.contains("cannot read directory"),
        "{error}"
    );
    // Four runs of this parent: it and its three children, each naming it as the parent.
    let parent = store.read(&done.run_id).await.unwrap();
    let summary = summarize(&parent);
    let kids: Vec<String> = summary
        .effects
        .iter()
        .map(|e| e.child_run().unwrap().to_string())
        .collect();
    assert_eq!(kids.len(), 3);
    for (i, kid) in kids.iter().enumerate() {
        let s = summarize(&store.read(kid).await.unwrap());
        assert_eq!(s.process, "batch-files");
        let link = s.parent.unwrap();
        assert_eq!(link.run_id, done.run_id);
        assert_eq!(link.key, format!("map(dirs)#0/{i}/batch-files#0"));
        let state = if i == 2 {
            RunState::Failed
        } else {
            RunState::Completed
        };
        assert_eq!(s.state, state, "{kid}");
    }
    let runs = store.list().await.unwrap().len();
    let again = runner.resume::<batch_dirs>(&done.run_id).await.unwrap();
    assert_eq!(&again.output, report);
    assert_eq!(store.list().await.unwrap().len(), runs);
}

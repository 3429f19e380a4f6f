//! The command line end to end on the file journal: crash safety under SIGKILL, lock
//! contention, and bad input (BRIEF §5, §7).

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_minder-examples");

fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the examples binary runs")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A directory of `n` real text files of varied sizes.
fn make_files(dir: &Path, n: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let body: String = (0..(i % 17 + 1))
            .map(|l| format!("line {l} of file {i}: {}\n", "word ".repeat(l % 7 + 1)))
            .collect();
        fs::write(dir.join(format!("f{i:04}.txt")), body).unwrap();
    }
}

fn write_input(path: &Path, dir: &Path, limit: usize) {
    let input = serde_json::json!({ "dir": dir, "limit": limit });
    fs::write(path, input.to_string()).unwrap();
}

/// No `step_started` may follow a `step_completed` of the same key. Returns the steps completed.
fn assert_no_completed_step_ran_again(events: &[Value]) -> usize {
    let mut completed = HashSet::new();
    for e in events {
        let key = e["key"].as_str().unwrap_or_default().to_string();
        match e["event"].as_str() {
            Some("step_completed") => {
                completed.insert(key);
            }
            Some("step_started") => {
                assert!(
                    !completed.contains(&key),
                    "completed step `{key}` ran again"
                );
            }
            _ => {}
        }
    }
    completed.len()
}

/// A tiny deterministic generator for kill delays.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn run_ids(runs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(runs)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_output() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 800);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 4);
    let input_s = input.to_str().unwrap();

    // The reference: one uninterrupted run, also timed to pick kill moments inside a run.
    let clean = tmp.path().join("clean");
    let timer = Instant::now();
    let out = cli(&[
        "run",
        "batch-files",
        "--input",
        input_s,
        "--runs-dir",
        clean.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean_ms = timer.elapsed().as_millis() as u64;
    // How long the binary takes to start, and how long the work itself takes.
    let timer = Instant::now();
    let listed = cli(&["list", "--runs-dir", clean.to_str().unwrap()]);
    assert!(listed.status.success());
    let startup_ms = timer.elapsed().as_millis() as u64;
    let clean_id = &run_ids(&clean)[0];
    let clean_journal = fs::metadata(clean.join(clean_id).join("journal.log"))
        .unwrap()
        .len();
    let reference = stdout_json(&out)["output"].clone();
    assert_eq!(reference["processed"], 800);

    let runs = tmp.path().join("crashy");
    let runs_s = runs.to_str().unwrap().to_string();
    let mut rng = Lcg(0x5eed);
    let mut kills = 0;
    let mut starts = 0;
    // Kills that landed after some progress and before the end: steps in flight.
    let mut mid_run_kills = 0;
    let mut last_done = 0;
    let output = loop {
        starts += 1;
        assert!(starts < 400, "the run never completed");
        let mut cmd = Command::new(BIN);
        match run_ids(&runs).first() {
            None => cmd.args(["run", "batch-files", "--input", input_s]),
            Some(id) => cmd.args(["resume", id]),
        };
        // Output goes to a file: a pipe nobody reads while we wait would fill and block.
        let out_path = tmp.path().join(format!("out-{starts}.json"));
        let mut child = cmd
            .args(["--runs-dir", &runs_s, "--json"])
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a random moment for the first 60 starts, then let it finish. One start in
        // four is killed during start-up or replay (a random moment within start-up time);
        // the others once the journal grows (steps are running), a random moment later.
        let journal = run_ids(&runs)
            .first()
            .map(|id| runs.join(id).join("journal.log"));
        let size = |p: &Option<PathBuf>| {
            p.as_ref()
                .and_then(|p| fs::metadata(p).ok())
                .map_or(0, |m| m.len())
        };
        let size_at_start = size(&journal);
        let during_startup = starts % 4 == 1 || journal.is_none();
        // Killed once the journal has grown by a random share (up to 1/50) of a whole run's:
        // steps are running, and each start does a bounded part of the work however fast the
        // machine is at the moment.
        let grow = rng.below((clean_journal / 50).max(2));
        let deadline = if kills >= 60 {
            Some(Instant::now() + Duration::from_secs(120))
        } else if during_startup {
            Some(Instant::now() + Duration::from_millis(1 + rng.below(startup_ms.max(2))))
        } else {
            None
        };
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            match deadline {
                Some(d) if Instant::now() >= d => break None,
                None if size(&journal) > size_at_start + grow => break None,
                _ => {}
            }
            thread::sleep(Duration::from_millis(1));
        };
        match finished {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            Some(status) => {
                assert!(status.success(), "exit {status}");
                let out: Value = serde_json::from_slice(&fs::read(&out_path).unwrap()).unwrap();
                break out["output"].clone();
            }
        }
        // After every kill the journal opens.
        if let Some(id) = run_ids(&runs).first() {
            let status = cli(&["status", id, "--runs-dir", &runs_s, "--json"]);
            assert!(
                status.status.success(),
                "the journal did not open after kill {kills}: {}",
                String::from_utf8_lossy(&status.stderr)
            );
            let done = stdout_json(&status)["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["state"] == "done")
                .count();
            if done > last_done && done < 801 {
                mid_run_kills += 1;
            }
            last_done = done;
        }
    };
    assert!(
        kills >= 30,
        "only {kills} kills landed before the run completed"
    );
    assert!(starts > kills, "the run completed on its own at the end");
    assert!(
        mid_run_kills >= 10,
        "only {mid_run_kills} kills landed while steps ran"
    );
    assert_eq!(
        output, reference,
        "the output differs from an uninterrupted run"
    );

    let id = &run_ids(&runs)[0];
    let events = stdout_json(&cli(&["events", id, "--runs-dir", &runs_s, "--json"]));
    let completed = assert_no_completed_step_ran_again(events.as_array().unwrap());
    assert_eq!(completed, 801, "list_files plus one step per file");
    eprintln!(
        "crash test: {kills} SIGKILLs over {starts} starts ({mid_run_kills} while steps ran; clean run {clean_ms} ms); {completed} steps, none ran again after completing"
    );
}

/// Starts `run batch-files` on `input` in the background; returns the child and the run id
/// once the run exists. The caller waits for the child (or kills it).
#[allow(clippy::zombie_processes)]
fn start_batch_run(input: &Path, runs: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["run", "batch-files", "--input"])
        .arg(input)
        .arg("--runs-dir")
        .arg(runs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(id) = run_ids(runs).first() {
            return (child, id.clone());
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().ok();
            child.wait().ok();
            panic!("the run never appeared");
        }
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_processes_resuming_one_run_get_a_lock_error() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 300);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 1);
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();

    let (mut first, id) = start_batch_run(&input, &runs);
    let journal = runs.join(&id).join("journal.log");
    // The first writer is stopped while it holds the run (its lock is taken before the run
    // appears), so the second contends however fast the first would have finished.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGSTOP) };
    let second = cli(&["resume", &id, "--runs-dir", runs_s]);
    let still_running = first.try_wait().unwrap().is_none();
    first.kill().ok();
    first.wait().unwrap();
    assert!(
        still_running,
        "the first writer ended before it was stopped"
    );
    assert_eq!(second.status.code(), Some(3));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("run `{id}` is already open by another writer")),
        "{err}"
    );
    // Once the first writer is gone, resuming works and finishes the run.
    let before = fs::metadata(&journal).unwrap().len();
    let out = cli(&["resume", &id, "--runs-dir", runs_s, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["output"]["processed"], 300);
    assert!(fs::metadata(&journal).unwrap().len() > before);
}

/// Every file under a directory with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn bad_input_is_a_one_line_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 3);
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let good = tmp.path().join("good.json");
    write_input(&good, &files, 2);
    let out = cli(&[
        "run",
        "batch-files",
        "--input",
        good.to_str().unwrap(),
        "--runs-dir",
        runs_s,
    ]);
    assert!(out.status.success());
    let id = run_ids(&runs)[0].clone();
    let before = snapshot(&runs);

    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let malformed = write("malformed.json", "{\"dir\": \"x\", \"limit\": ");
    let mistyped = write("mistyped.json", "{\"dir\": \"x\", \"limit\": \"four\"}");
    let missing = write("missing.json", "{\"limit\": 4}");
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["run", "batch-files", "--input", &malformed],
            2,
            format!("the input in `{malformed}` is not valid JSON: EOF while parsing"),
        ),
        (
            vec!["run", "batch-files", "--input", &mistyped],
            2,
            "invalid input for process `batch-files` at `limit`: invalid type: string \"four\", expected usize".into(),
        ),
        (
            vec!["run", "batch-files", "--input", &missing],
            2,
            "invalid input for process `batch-files`: missing field `dir`".into(),
        ),
        (
            vec!["run", "batch-files", "--input", "/no/such/file.json"],
            2,
            "cannot read the input file `/no/such/file.json`".into(),
        ),
        (
            vec!["run", "no-such-process", "--input", &malformed],
            2,
            "unknown process `no-such-process`; this binary has: batch-files, batch-dirs, quality-checks".into(),
        ),
        (
            vec!["resume", "20990101-000000-abcdef"],
            2,
            "no run `20990101-000000-abcdef`".into(),
        ),
        (
            vec!["status", "20990101-000000-abcdef"],
            2,
            "no run `20990101-000000-abcdef`".into(),
        ),
        (vec!["resume", "../x"], 2, "invalid run id `../x`".into()),
        (vec!["events", "../../etc"], 2, "invalid run id `../../etc`".into()),
    ];
    for (args, code, message) in cases {
        let mut all = args.clone();
        all.extend(["--runs-dir", runs_s]);
        let out = cli(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: {message}")),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert_eq!(
            snapshot(&runs),
            before,
            "{args:?} changed the runs directory"
        );
    }
    assert_eq!(run_ids(&runs), [id]);
}

/// A completed `batch-files` run over `n` files in a new runs directory under `tmp`: the runs
/// directory, the run id and the run's output.
fn finished_run(tmp: &Path, n: usize) -> (PathBuf, String, Value) {
    let files = tmp.join("files");
    make_files(&files, n);
    let input = tmp.join("input.json");
    write_input(&input, &files, 2);
    let runs = tmp.join("runs");
    let out = cli(&[
        "run",
        "batch-files",
        "--input",
        input.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = run_ids(&runs)[0].clone();
    (runs, id, stdout_json(&out)["output"].clone())
}

/// The offset of each record of a journal file, with its event as JSON.
fn records(bytes: &[u8]) -> Vec<(usize, Value)> {
    assert_eq!(&bytes[..8], b"MINDERJ1");
    let mut out = Vec::new();
    let mut at = 12;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((
            at,
            serde_json::from_slice(&bytes[at + 8..at + 8 + len]).unwrap(),
        ));
        at += 8 + len;
    }
    out
}

/// Runs the examples binary on `args` plus `--runs-dir runs`; checks it failed with `code` and
/// a one-line error starting with `message`.
fn fails_with(args: &[&str], runs: &Path, code: i32, message: &str) {
    let mut all = args.to_vec();
    all.extend(["--runs-dir", runs.to_str().unwrap()]);
    let out = cli(&all);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.starts_with(&format!("error: {message}")),
        "{args:?}: {err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
}

#[test]
fn a_journal_without_its_first_record_is_an_exit_3_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, id, _) = finished_run(tmp.path(), 2);
    let journal = runs.join(&id).join("journal.log");
    let whole = fs::read(&journal).unwrap();
    let first_end = records(&whole)[1].0;
    // Only the header; cut inside the first record's header; inside its payload.
    for cut in [12, 14, 20, first_end - 1] {
        fs::write(&journal, &whole[..cut]).unwrap();
        let message = format!("corrupt journal {} at byte offset 12", journal.display());
        fails_with(&["status", &id], &runs, 3, &message);
        fails_with(&["resume", &id], &runs, 3, &message);
        assert_eq!(fs::read(&journal).unwrap(), &whole[..cut], "unchanged");
    }
}

#[test]
fn a_run_id_with_a_newline_is_echoed_escaped_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for (command, id, shown) in [
        ("status", "a\nb", r"a\nb"),
        ("resume", "x\ny", r"x\ny"),
        ("events", "bell\u{7}\r\n", r"bell\u{7}\r\n"),
    ] {
        fails_with(
            &[command, id],
            &runs,
            2,
            &format!("invalid run id `{shown}`: use letters, digits"),
        );
    }
    assert!(!runs.exists());
}

#[cfg(unix)]
#[test]
fn a_run_reached_through_a_symbolic_link_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, id, _) = finished_run(tmp.path(), 1);
    // The run moved elsewhere, a link left in its place.
    let elsewhere = tmp.path().join("elsewhere");
    fs::rename(runs.join(&id), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, runs.join(&id)).unwrap();
    let before = snapshot(&elsewhere);
    let message = format!("{} is a symbolic link", runs.join(&id).display());
    for command in ["status", "resume", "events", "cancel"] {
        fails_with(&[command, &id], &runs, 3, &message);
    }
    assert_eq!(
        snapshot(&elsewhere),
        before,
        "nothing written through the link"
    );
}

#[test]
fn resume_after_a_failed_sync_cuts_the_journal_back_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, id, output) = finished_run(tmp.path(), 3);
    let runs_s = runs.to_str().unwrap();
    let journal = runs.join(&id).join("journal.log");
    let whole = fs::read(&journal).unwrap();
    // A writer whose sync failed after the last step completed left this record: the last
    // step's completion and the run's end were written but never made durable.
    let cut = records(&whole)
        .iter()
        .rev()
        .find(|(_, e)| e["event"] == "step_completed")
        .unwrap()
        .0;
    let record = runs.join(&id).join("durable-offset");
    fs::write(&record, format!("minder durable offset {cut}\n")).unwrap();
    let done = |out: &Output| {
        stdout_json(out)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "done")
            .count()
    };

    // Looking at the run trusts only the durable bytes, and changes nothing.
    let status = cli(&["status", &id, "--runs-dir", runs_s, "--json"]);
    assert!(status.status.success());
    assert_eq!(
        done(&status),
        3,
        "the last step's completion is not trusted"
    );
    assert_eq!(fs::read(&journal).unwrap(), whole);

    let out = cli(&["resume", &id, "--runs-dir", runs_s, "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.starts_with(&format!(
            "warning: a write or sync of journal {} failed earlier",
            journal.display()
        )),
        "{err}"
    );
    for part in [
        &format!("offset {cut}"),
        &format!("({} bytes dropped)", whole.len() - cut),
        "nothing acknowledged was lost",
    ] {
        assert!(err.contains(part), "no `{part}` in: {err}");
    }
    assert_eq!(stdout_json(&out)["output"], output);
    assert!(!record.exists(), "the record is gone once acted on");
    let events = stdout_json(&cli(&["events", &id, "--runs-dir", runs_s, "--json"]));
    assert_eq!(
        assert_no_completed_step_ran_again(events.as_array().unwrap()),
        4
    );
    let status = cli(&["status", &id, "--runs-dir", runs_s, "--json"]);
    assert_eq!(done(&status), 4);
}

/// Whether `pid` runs (exists and is not a zombie).
#[cfg(target_os = "linux")]
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !(state.starts_with('Z') || state.starts_with('X'))
        })
        .unwrap_or(false)
}

/// Polls `done` every 10 ms for up to 30 s; panics with `what` if it never holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A `command-pipeline` run started in the background whose one program records its pid and a
/// long-lived child's in `work/pids` and waits for the child; once `work/marker` exists, the
/// program writes the secret it got (`TOKEN`, from the runner's `MINDER_TEST_TOKEN`) to
/// `work/seen` and ends.
#[cfg(target_os = "linux")]
struct CommandRun {
    runner: std::process::Child,
    id: String,
    runs: PathBuf,
    work: PathBuf,
    secret: String,
    /// The program's pid, then its child's.
    first: Vec<i32>,
}

#[cfg(target_os = "linux")]
impl CommandRun {
    /// Starts the run and waits until both pids are recorded and the group is journaled.
    fn start(tmp: &Path) -> CommandRun {
        let work = tmp.join("work");
        fs::create_dir_all(&work).unwrap();
        let runs = tmp.join("runs");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let secret = format!("tok-{}-{nanos}", std::process::id());
        let script = "if [ -e marker ]; then printf %s \"$TOKEN\" > seen; exit 0; fi; \
                      echo $$ >> pids; sleep 300 & echo $! >> pids; wait";
        let input = serde_json::json!({
            "dir": work,
            "steps": [{ "name": "serve", "program": "sh", "args": ["-c", script] }],
            "secrets": { "TOKEN": "MINDER_TEST_TOKEN" },
            "timeout_secs": 600,
        });
        let input_path = tmp.join("input.json");
        fs::write(&input_path, input.to_string()).unwrap();
        let runner = Command::new(BIN)
            .args(["run", "command-pipeline", "--input"])
            .arg(&input_path)
            .arg("--runs-dir")
            .arg(&runs)
            .env("MINDER_TEST_TOKEN", &secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pids = || -> Vec<i32> {
            fs::read_to_string(work.join("pids"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        };
        wait_until("the program and its child recorded their pids", || {
            pids().len() >= 2
        });
        let id = run_ids(&runs).pop().unwrap();
        let first = pids();
        let mut run = CommandRun {
            runner,
            id,
            runs,
            work,
            secret,
            first,
        };
        wait_until("the process group is journaled", || {
            run.journaled("\"child_started\"")
        });
        assert!(run.first.iter().all(|&p| alive(p)));
        run.first.truncate(2);
        run
    }

    fn journaled(&self, what: &str) -> bool {
        fs::read(self.runs.join(&self.id).join("journal.log"))
            .map(|b| b.windows(what.len()).any(|w| w == what.as_bytes()))
            .unwrap_or(false)
    }

    /// Lets the program end, resumes the run to its end, and checks the secret got there.
    fn resume_to_the_end(&self) {
        fs::write(self.work.join("marker"), "").unwrap();
        let out = Command::new(BIN)
            .args(["resume", &self.id, "--json", "--runs-dir"])
            .arg(&self.runs)
            .env("MINDER_TEST_TOKEN", &self.secret)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = stdout_json(&out);
        assert_eq!(report["state"], "completed", "{report}");
        assert_eq!(report["output"]["passed"], true, "{report}");
        assert_eq!(
            fs::read_to_string(self.work.join("seen")).unwrap(),
            self.secret
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_the_runner_during_a_command_then_resume_leaves_no_process_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = CommandRun::start(tmp.path());
    let (leader, child) = (run.first[0], run.first[1]);
    run.runner.kill().unwrap(); // SIGKILL
    run.runner.wait().unwrap();
    // The program dies with the runner (parent-death signal); its child, in its group, is
    // an orphan until the run is resumed.
    wait_until("the program died with the runner", || !alive(leader));
    assert!(
        alive(child),
        "the orphan is already gone: nothing left to test"
    );

    run.resume_to_the_end();
    // The resume killed the orphan group before the command ran again.
    wait_until("no process of the first attempt runs", || {
        run.first.iter().all(|&p| !alive(p))
    });
    // The secret reached the program (above), and is neither journaled nor printed.
    assert!(!run.journaled(&run.secret), "the secret is in the journal");
    let runs_s = run.runs.to_str().unwrap();
    for json in [false, true] {
        let mut args = vec!["events", run.id.as_str(), "--runs-dir", runs_s];
        if json {
            args.push("--json");
        }
        let events = cli(&args);
        assert!(events.status.success());
        let text = String::from_utf8_lossy(&events.stdout);
        assert!(
            !text.contains(&run.secret),
            "`events` printed the secret: {text}"
        );
        assert!(text.contains("MINDER_TEST_TOKEN"), "{text}");
        let groups = if json {
            text.matches("\"child_started\"").count()
        } else {
            text.matches("in process group").count()
        };
        assert_eq!(groups, 2, "one group per attempt: {text}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn ctrl_c_of_the_runner_kills_the_programs_whole_group() {
    let tmp = tempfile::tempdir().unwrap();
    let mut run = CommandRun::start(tmp.path());
    // What Ctrl-C sends the runner; the program, in a group of its own, does not get it.
    let sent = Command::new("kill")
        .args(["-INT", &run.runner.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = run.runner.wait().unwrap();
    assert_eq!(status.code(), Some(130), "128 + SIGINT");
    wait_until("no process of the interrupted run runs", || {
        run.first.iter().all(|&p| !alive(p))
    });
    run.resume_to_the_end();
}

/// Runs the examples binary with `args` in runs directory `runs`; returns its output and the
/// id of the run it created.
fn new_run(args: &[&str], runs: &Path) -> (Output, String) {
    let before = run_ids(runs);
    let mut all = args.to_vec();
    all.extend(["--runs-dir", runs.to_str().unwrap()]);
    let out = cli(&all);
    let id = run_ids(runs)
        .into_iter()
        .find(|id| !before.contains(id))
        .unwrap_or_else(|| panic!("{args:?} created no run: {out:?}"));
    (out, id)
}

/// Makes a run's journal look last written `days` days ago.
fn age(runs: &Path, id: &str, days: u64) {
    let journal = runs.join(id).join("journal.log");
    fs::File::options()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

fn ids_of(list: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids
}

#[test]
fn prune_deletes_old_finished_runs_and_unfinished_ones_only_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 3);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 2);
    let input_s = input.to_str().unwrap();
    let run = ["run", "batch-files", "--input", input_s];

    let (out, old_done) = new_run(&run, &runs);
    assert!(out.status.success(), "{out:?}");
    let (out, new_done) = new_run(&run, &runs);
    assert!(out.status.success(), "{out:?}");
    let zero = tmp.path().join("zero.json");
    write_input(&zero, &files, 0);
    let (out, old_failed) = new_run(
        &["run", "batch-files", "--input", zero.to_str().unwrap()],
        &runs,
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let prod = tmp.path().join("prod.json");
    let deploy = serde_json::json!({
        "src_dir": concat!(env!("CARGO_MANIFEST_DIR"), "/data/services"),
        "out_dir": tmp.path().join("out"),
        "env": "prod",
    });
    fs::write(&prod, deploy.to_string()).unwrap();
    let (out, old_waiting) = new_run(
        &["run", "deploy-services", "--input", prod.to_str().unwrap()],
        &runs,
    );
    assert_eq!(out.status.code(), Some(5), "{out:?}");

    // A run being driven: not deleted even when named, as its writer holds it.
    let many = tmp.path().join("many");
    make_files(&many, 300);
    let slow = tmp.path().join("slow.json");
    write_input(&slow, &many, 1);
    let before = run_ids(&runs);
    let mut runner = Command::new(BIN)
        .args(["run", "batch-files", "--input", slow.to_str().unwrap()])
        .args(["--runs-dir", runs_s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = String::new();
    wait_until("the run appears", || {
        match run_ids(&runs).into_iter().find(|id| !before.contains(id)) {
            Some(id) => {
                running = id;
                true
            }
            None => false,
        }
    });
    // Past `create` (which lets go of the run for a moment): steps are being journaled.
    wait_until("the run journals steps", || {
        let events = cli(&["events", &running, "--json", "--runs-dir", runs_s]);
        serde_json::from_slice::<Vec<Value>>(&events.stdout).is_ok_and(|e| e.len() > 2)
    });
    let refused = cli(&["prune", &running, "--runs-dir", runs_s]);
    let still_running = runner.try_wait().unwrap().is_none();
    runner.kill().ok();
    runner.wait().unwrap();
    assert!(still_running, "the run ended before prune could contend");
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&format!(
        "run `{running}` is already open by another writer"
    )));
    let interrupted = running;
    for id in [&old_done, &old_failed, &old_waiting, &interrupted] {
        age(&runs, id, 40);
    }
    let all = run_ids(&runs);
    assert_eq!(all.len(), 5);

    // --dry-run lists the old finished runs and deletes nothing.
    let out = cli(&[
        "prune",
        "--older-than",
        "30d",
        "--dry-run",
        "--json",
        "--runs-dir",
        runs_s,
    ]);
    assert!(out.status.success(), "{out:?}");
    let listed = stdout_json(&out);
    let mut expected = vec![old_done.as_str(), old_failed.as_str()];
    expected.sort();
    assert_eq!(ids_of(&listed), expected);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["removed"] == false));
    assert_eq!(run_ids(&runs), all);

    // --state narrows it to the failed run.
    let out = cli(&[
        "prune",
        "--older-than",
        "30d",
        "--state",
        "failed",
        "--json",
        "--runs-dir",
        runs_s,
    ]);
    let removed = stdout_json(&out);
    assert_eq!(ids_of(&removed), [old_failed.as_str()]);
    assert_eq!(removed[0]["state"], "failed");
    assert_eq!(removed[0]["removed"], true);
    assert!(!runs.join(&old_failed).exists());

    // Without --state: every finished state; the recent run, the waiting one and the
    // interrupted one stay.
    let out = cli(&["prune", "--older-than", "30d", "--runs-dir", runs_s]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "removed run {old_done}  batch-files  completed  last event "
        )),
        "{text}"
    );
    assert!(text.trim_end().ends_with("removed 1 run"), "{text}");
    let mut left = vec![new_done.clone(), old_waiting.clone(), interrupted.clone()];
    left.sort();
    assert_eq!(run_ids(&runs), left);

    // Named, a waiting or interrupted run goes too.
    let out = cli(&[
        "prune",
        &old_waiting,
        &interrupted,
        "--json",
        "--runs-dir",
        runs_s,
    ]);
    assert!(out.status.success(), "{out:?}");
    let removed = stdout_json(&out);
    let states: Vec<&str> = removed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["waiting", "incomplete"]);
    assert_eq!(run_ids(&runs), [new_done.as_str()]);

    // An unknown id deletes nothing; so do asking for nothing and mixing ids with --older-than.
    fails_with(&["prune", &new_done, "nope"], &runs, 2, "no run `nope`");
    let out = cli(&["prune", "--runs-dir", runs_s]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = cli(&[
        "prune",
        &new_done,
        "--older-than",
        "1s",
        "--runs-dir",
        runs_s,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(run_ids(&runs), [new_done]);
}

#[test]
fn the_command_line_mounts_as_a_subcommand_of_a_teams_own_app() {
    // `team-app` (examples/src/bin/team-app.rs): its own clap app and tokio runtime, minder's
    // command line mounted under `flows`.
    const TEAM: &str = env!("CARGO_BIN_EXE_team-app");
    let team = |args: &[&str]| Command::new(TEAM).args(args).output().unwrap();
    let out = team(&["hello", "Ada"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello Ada\n");
    let out = team(&["--version"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team-app 0.1.0\n");

    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 4);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 2);
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let out = team(&[
        "flows",
        "run",
        "batch-files",
        "--input",
        input.to_str().unwrap(),
        "--runs-dir",
        runs_s,
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let done = stdout_json(&out);
    assert_eq!(done["output"]["processed"], 4);
    let out = team(&["flows", "list", "--runs-dir", runs_s, "--json"]);
    assert_eq!(
        ids_of(&stdout_json(&out)),
        [done["run_id"].as_str().unwrap()]
    );
    // Its errors are minder's: status and JSON.
    let out = team(&["flows", "status", "nope", "--runs-dir", runs_s, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout_json(&out)["error"], "no run `nope`");
    let out = team(&["flows", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: team-app flows [OPTIONS] <COMMAND>"),
        "{help}"
    );
    assert!(help.contains("prune"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_takes_the_callers_arguments_inside_the_callers_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 3);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 2);
    let runs = tmp.path().join("runs");
    let registry = minder_examples::registry();
    let runs_s = runs.to_str().unwrap().to_string();
    let run = |args: Vec<&str>| {
        let mut all = vec!["my-service".to_string()];
        all.extend(args.into_iter().map(String::from));
        all.extend(["--runs-dir".into(), runs_s.clone(), "--json".into()]);
        minder::cli::run(&registry, all)
    };
    let code = run(vec![
        "run",
        "batch-files",
        "--input",
        input.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let id = run_ids(&runs).pop().expect("the run exists");
    let events = fs::read(runs.join(&id).join("journal.log")).unwrap();
    assert!(records(&events)
        .iter()
        .any(|(_, e)| e["event"] == "run_completed"));
    // Bad arguments and unknown runs are statuses, not an exit of the test's process.
    assert_eq!(
        run(vec!["status", "nope"]).await,
        std::process::ExitCode::from(2)
    );
    assert_eq!(
        run(vec!["no-such-command"]).await,
        std::process::ExitCode::from(2)
    );
}

#[test]
fn version_completions_graph_json_and_list_filters() {
    let out = cli(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "minder-examples 0.1.0\n"
    );
    for (shell, marker) in [
        ("bash", "-o default minder-examples"),
        ("zsh", "#compdef minder-examples"),
        ("fish", "complete -c minder-examples"),
    ] {
        let out = cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["prune", "completions", "older-than", "since"] {
            assert!(script.contains(sub), "{shell} lacks {sub}");
        }
    }

    let out = cli(&["graph", "batch-files", "--json"]);
    let graph = stdout_json(&out);
    assert_eq!(graph["process"], "batch-files");
    assert_eq!(graph["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(
        graph["nodes"][0],
        serde_json::json!({ "kind": "call", "name": "list_files" })
    );
    assert_eq!(graph["nodes"][2]["kind"], "map");
    assert_eq!(graph["nodes"][2]["body"][0]["name"], "summarize_file");

    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let runs_s = runs.to_str().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 2);
    let good = tmp.path().join("good.json");
    write_input(&good, &files, 2);
    let zero = tmp.path().join("zero.json");
    write_input(&zero, &files, 0);
    let (_, done) = new_run(
        &["run", "batch-files", "--input", good.to_str().unwrap()],
        &runs,
    );
    let (_, failed) = new_run(
        &["run", "batch-files", "--input", zero.to_str().unwrap()],
        &runs,
    );
    age(&runs, &failed, 10);
    let list = |filters: &[&str]| {
        let mut args = vec!["list", "--json", "--runs-dir", runs_s];
        args.extend(filters);
        let out = cli(&args);
        assert!(out.status.success(), "{filters:?}: {out:?}");
        ids_of(&stdout_json(&out))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let mut both = vec![done.clone(), failed.clone()];
    both.sort();
    assert_eq!(list(&[]), both);
    assert_eq!(list(&["--state", "failed"]), [failed.as_str()]);
    assert_eq!(list(&["--state", "completed,failed"]), both);
    assert_eq!(list(&["--state", "waiting"]), Vec::<String>::new());
    assert_eq!(list(&["--process", "batch-files", "--since", "1d"]), [done]);
    assert_eq!(
        list(&["--process", "deploy-services"]),
        Vec::<String>::new()
    );
    assert_eq!(list(&["--since", "11d"]), both);
}

#[test]
fn errors_under_json_are_one_object_on_standard_output_only() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    for (args, code, message) in [
        (vec!["status", "nope"], 2, "no run `nope`"),
        (
            vec!["run", "no-such-process", "--input", "-"],
            2,
            "unknown process `no-such-process`",
        ),
        (vec!["events", "../x"], 2, "invalid run id `../x`"),
        (
            vec!["list", "--since", "soon"],
            2,
            "invalid value 'soon' for '--since <SINCE>'",
        ),
        (vec!["prune"], 2, "the following required arguments"),
    ] {
        let mut all = args.clone();
        all.extend(["--json", "--runs-dir", runs.to_str().unwrap()]);
        let out = Command::new(BIN)
            .args(&all)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}: stderr");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim_end().lines().count(), 1, "{args:?}: {text}");
        let error = stdout_json(&out);
        assert!(
            error["error"].as_str().unwrap().starts_with(message),
            "{args:?}: {error}"
        );
        assert_eq!(error["exit"], code);
    }
}

#[test]
fn rust_log_shows_the_runs_spans_on_standard_error_and_nothing_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tmp.path().join("files");
    make_files(&files, 2);
    let input = tmp.path().join("input.json");
    write_input(&input, &files, 1);
    let runs = tmp.path().join("runs");
    let run = |log: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "batch-files", "--json", "--input"])
            .arg(&input)
            .arg("--runs-dir")
            .arg(&runs)
            .env_remove("RUST_LOG");
        if let Some(log) = log {
            cmd.env("RUST_LOG", log);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let id = stdout_json(&out)["run_id"].as_str().unwrap().to_string();
        (id, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (_, quiet) = run(None);
    assert_eq!(quiet, "");
    let (id, logged) = run(Some("minder=debug"));
    let run_span = format!("run{{run_id=\"{id}\" process=\"batch-files\"}}");
    let started = logged
        .lines()
        .find(|l| l.contains("run started"))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(started.contains(" INFO "), "{started}");
    assert!(started.contains(&run_span), "{started}");
    let step = logged
        .lines()
        .find(|l| l.contains("step completed"))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(
        step.contains(&format!(
            "{run_span}:step{{key=batch_files::list_files#0 \
             task=minder_examples::batch_files::list_files replayed=false attempt=0}}"
        )),
        "{step}"
    );
    assert!(
        logged.lines().any(|l| l.contains("run completed")),
        "{logged}"
    );
    // At `info`, the run's events without its steps'.
    let (_, info_only) = run(Some("info"));
    assert!(!info_only.contains("step completed"), "{info_only}");
    assert!(info_only.contains("run completed"), "{info_only}");
}

//! Workers from the command line, as the README shows them: runs submitted with
//! `run --detach`, two `worker` processes, one killed with SIGKILL part way; every run
//! completes, no completed step runs twice, and the survivor stops cleanly on SIGTERM. On the
//! runs directory and on PostgreSQL (a throwaway cluster, see `runtime/tests/pg/mod.rs`).

#[path = "../../runtime/tests/pg/mod.rs"]
mod pg;

use serde_json::Value;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_minder-examples");
const PATIENCE: Duration = Duration::from_secs(180);

fn minder(store: &[&str], args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(store)
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap()
}

fn json(store: &[&str], args: &[&str]) -> Value {
    let out = minder(store, &[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn worker(store: &[&str]) -> Child {
    Command::new(BIN)
        .args(store)
        .args([
            "worker",
            "--concurrency",
            "2",
            "--poll",
            "100ms",
            "--lease",
            "2s",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// How many of the runs are completed.
fn completed(store: &[&str]) -> usize {
    json(store, &["list", "--state", "completed"])
        .as_array()
        .unwrap()
        .len()
}

fn two_workers_one_killed(store: &[&str]) {
    let runs = 40;
    let mut ids = Vec::new();
    for _ in 0..runs {
        let submitted = json(
            store,
            &[
                "run",
                "batch-files",
                "--input",
                "examples/data/batch-input.json",
                "--detach",
            ],
        );
        assert_eq!(submitted["state"], "submitted");
        ids.push(submitted["run_id"].as_str().unwrap().to_string());
    }
    let mut a = worker(store);
    let b = worker(store);
    let deadline = Instant::now() + PATIENCE;
    while completed(store) < 4 {
        assert!(Instant::now() < deadline, "the workers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill().unwrap(); // SIGKILL, mid-way through the batch
    a.wait().unwrap();
    while completed(store) < runs {
        assert!(
            Instant::now() < deadline,
            "only {} of {runs} runs completed",
            completed(store)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    let out = b.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("worker stopped:"), "{stderr}");
    // No step that completed ran again: each step key completed once in each journal.
    for id in &ids {
        let events = json(store, &["events", id]);
        let mut done: HashMap<&str, usize> = HashMap::new();
        for e in events.as_array().unwrap() {
            if e["event"] == "step_completed" {
                *done.entry(e["key"].as_str().unwrap()).or_default() += 1;
            }
        }
        assert!(done.values().all(|n| *n == 1), "{id}: {done:?}");
        assert_eq!(
            events.as_array().unwrap().last().unwrap()["event"],
            "run_completed"
        );
    }
}

#[test]
fn on_a_runs_directory_the_survivor_finishes_what_a_killed_worker_left() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = dir.path().join("runs").display().to_string();
    let store = ["--runs-dir", runs.as_str()];
    two_workers_one_killed(&store);
    // `list --queue`: the 40 runs are on the default queue; one submitted to another is
    // listed there only.
    let other = json(
        &store,
        &[
            "run",
            "batch-files",
            "--input",
            "examples/data/batch-input.json",
            "--detach",
            "--queue",
            "nightly",
        ],
    );
    let listed = |queue: &str| json(&store, &["list", "--queue", queue]);
    let nightly = listed("nightly");
    assert_eq!(nightly.as_array().unwrap().len(), 1, "{nightly}");
    assert_eq!(nightly[0]["run_id"], other["run_id"]);
    assert_eq!(listed("default").as_array().unwrap().len(), 40);
}

#[test]
fn on_postgres_the_survivor_finishes_what_a_killed_worker_left() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(pg::fresh_db("cli_workers"));
    two_workers_one_killed(&["--store", &url]);
    // `workers` lists none once both are gone: the stopped one removed its row, the killed
    // one's drops out once its heartbeat is older than its lease.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = json(&["--store", &url], &["workers"]);
        if listed.as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{listed}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `batch-dirs` under a worker from the command line: its children (one `batch-files` run per
/// directory) are runs of their own that the worker drives too; the parent waits for them
/// and completes; `status` links a child to its parent; `graph` draws the child step.
#[test]
fn a_worker_drives_a_parent_and_its_child_processes() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = dir.path().join("runs").display().to_string();
    let store = ["--runs-dir", runs.as_str()];
    let submitted = json(
        &store,
        &[
            "run",
            "batch-dirs",
            "--input",
            "examples/data/batch-dirs-input.json",
            "--detach",
        ],
    );
    let id = submitted["run_id"].as_str().unwrap().to_string();
    let mut w = worker(&store);
    let deadline = Instant::now() + PATIENCE;
    while completed(&store) < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} of 4 runs completed",
            completed(&store)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.kill().unwrap();
    w.wait().unwrap();
    let status = json(&store, &["status", &id]);
    assert_eq!(status["state"], "completed", "{status}");
    assert_eq!(status["output"]["totals"]["files"], 15, "{status}");
    let effects = status["effects"].as_array().unwrap();
    assert_eq!(effects.len(), 3, "{status}");
    let child = effects[0]["input"]["run_id"].as_str().unwrap();
    assert_eq!(effects[0]["kind"], "child");
    let out = minder(&store, &["status", child]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "parent   {id} (its step map(dirs)#0/0/batch-files#0"
        )),
        "{text}"
    );
    let out = minder(&store, &["graph", "batch-dirs"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ctx.child"), "{text}");
}

const TINY_MANIFEST: &str = "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\n[workspace]\n";

/// A crate whose test waits until the file named by `TINY_GATE` exists: `cargo test` (one of
/// the parallel checks) runs until the test says so.
const TINY_GATED_LIB: &str = r#"pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[cfg(test)]
mod tests {
    #[test]
    fn waits_for_the_gate() {
        let gate = std::env::var("TINY_GATE").unwrap();
        while !std::path::Path::new(&gate).exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(super::add(1, 2), 3);
    }
}
"#;

/// `approve` from the command line while a worker holds the run (its `cargo test` check is
/// still running): the decision goes through the run's inbox, the worker journals it without
/// letting the run go, and the run completes signed off once the checks are done.
fn a_sign_off_reaches_a_run_a_worker_holds(store: &[&str]) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let krate = dir.path().join("tiny");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(krate.join("Cargo.toml"), TINY_MANIFEST).unwrap();
    std::fs::write(krate.join("src/lib.rs"), TINY_GATED_LIB).unwrap();
    let gate = dir.path().join("gate");
    let input = dir.path().join("input.json");
    let checks = serde_json::json!({
        "crate_dir": krate,
        "target_dir": dir.path().join("target"),
        "offline": true,
        "reviewer": "ana",
    });
    std::fs::write(&input, checks.to_string()).unwrap();

    let mut w = Command::new(BIN)
        .args(store)
        .args(["worker", "--poll", "100ms"])
        .env("TINY_GATE", &gate)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = input.display().to_string();
    let submitted = json(
        store,
        &["run", "quality-checks", "--input", &input, "--detach"],
    );
    let id = submitted["run_id"].as_str().unwrap().to_string();
    let events = |id: &str| json(store, &["events", id]).as_array().unwrap().clone();
    let deadline = Instant::now() + PATIENCE;
    let key = loop {
        let found = events(&id)
            .into_iter()
            .find(|e| e["event"] == "effect_requested" && e["name"] == "sign-off");
        if let Some(e) = found {
            break e["key"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{:?}", events(&id));
        std::thread::sleep(Duration::from_millis(50));
    };
    let approved = minder(store, &["approve", &id, &key, "--feedback", "lgtm"]);
    assert!(
        approved.status.success(),
        "{}{}",
        String::from_utf8_lossy(&approved.stdout),
        String::from_utf8_lossy(&approved.stderr)
    );
    // Journaled by the worker, which still holds the run: `cargo test` waits for the gate.
    let now = events(&id);
    assert!(
        now.iter()
            .any(|e| e["event"] == "effect_resolved" && e["key"] == key.as_str()),
        "{now:?}"
    );
    assert!(
        !now.iter()
            .any(|e| e["event"] == "suspended" || e["event"] == "run_completed"),
        "{now:?}"
    );
    std::fs::write(&gate, "").unwrap();
    let end = loop {
        let last = events(&id).last().cloned().unwrap();
        if last["event"] == "run_completed" {
            break last;
        }
        assert!(Instant::now() < deadline, "{:?}", events(&id));
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(end["output"]["sign_off"], "approved by ana: lgtm", "{end}");
    assert_eq!(end["output"]["passed"], true, "{end}");
    // The run was never let go: no suspension in its journal.
    assert!(!events(&id).iter().any(|e| e["event"] == "suspended"));
    w.kill().unwrap();
    w.wait().unwrap();
}

#[test]
fn on_a_runs_directory_approve_reaches_a_run_a_worker_holds() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runs = dir.path().join("runs").display().to_string();
    a_sign_off_reaches_a_run_a_worker_holds(&["--runs-dir", runs.as_str()]);
}

#[test]
fn on_postgres_approve_reaches_a_run_a_worker_holds() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt.block_on(pg::fresh_db("cli_inbox"));
    a_sign_off_reaches_a_run_a_worker_holds(&["--store", &url]);
}

//! The outer loop end to end through the command line: a run stops to wait (a breakpoint, an
//! external review), `tasks --pending` shows what it waits for, `approve` / `reject` / `post`
//! resolve it (checked, nothing written on bad input), and `resume` goes on to the end.

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_minder-examples");

fn cli(runs: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--runs-dir")
        .arg(runs)
        .output()
        .expect("the examples binary runs")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn journal(runs: &Path, id: &str) -> Vec<u8> {
    fs::read(runs.join(id).join("journal.log")).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Copies the sample services under `tmp` and writes a deploy input for `env` (and a
/// maintenance window, if given). Returns the input file and the output directory.
fn deploy_input(tmp: &Path, env: &str, not_before: Option<u64>) -> (PathBuf, PathBuf) {
    let src = tmp.join("services");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/services"),
        &src,
    );
    let out = tmp.join("out");
    let input = tmp.join("deploy.json");
    let mut spec = json!({ "src_dir": src, "out_dir": out, "env": env });
    if let Some(opens) = not_before {
        spec["not_before"] = json!(opens);
    }
    fs::write(&input, spec.to_string()).unwrap();
    (input, out)
}

/// Starts a `production` deploy of the sample services; it stops at the approval breakpoint.
/// Returns the run id, the output directory and the runs directory.
fn start_production_deploy(tmp: &Path) -> (String, PathBuf, PathBuf) {
    let (input, out) = deploy_input(tmp, "production", None);
    let runs = tmp.join("runs");
    let run = cli(
        &runs,
        &[
            "run",
            "deploy-services",
            "--input",
            input.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    let waiting = json_of(&run);
    assert_eq!(waiting["state"], "waiting");
    assert_eq!(waiting["waiting"][0]["key"], "approve-production#0");
    let id = waiting["run_id"].as_str().unwrap().to_string();
    (id, out, runs)
}

#[test]
fn production_deploy_waits_for_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, out_dir, runs) = start_production_deploy(tmp.path());
    assert!(
        !out_dir.join("production").exists(),
        "nothing deployed before approval"
    );

    let tasks = json_of(&cli(&runs, &["tasks", &id, "--pending", "--json"]));
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["kind"], "breakpoint");
    assert!(
        tasks[0]["input"]
            .as_str()
            .unwrap()
            .starts_with("deploy api "),
        "{tasks}"
    );

    // Posting a value to a breakpoint is refused, and changes nothing.
    let before = journal(&runs, &id);
    let wrong = cli(
        &runs,
        &["post", &id, "approve-production#0", "--value", "true"],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        stderr(&wrong).contains("is a breakpoint: approve or reject it"),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(journal(&runs, &id), before);

    let ok = cli(
        &runs,
        &[
            "approve",
            &id,
            "approve-production#0",
            "--feedback",
            "release 42",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let again = cli(&runs, &["approve", &id, "approve-production#0"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("is already resolved"),
        "{}",
        stderr(&again)
    );

    let done = cli(&runs, &["resume", &id, "--json"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let report = &json_of(&done)["output"];
    assert_eq!(report["success"], true);
    assert_eq!(report["approval"], "approved: release 42");
    for svc in ["api", "web", "worker"] {
        assert!(out_dir
            .join("production")
            .join(svc)
            .join("MANIFEST.json")
            .exists());
    }
    // The builds were not redone on resume: one started event per build step.
    let events = json_of(&cli(&runs, &["events", &id, "--json"]));
    let build_starts = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"] == "step_started" && e["key"].as_str().unwrap().starts_with("map(build)")
        })
        .count();
    assert_eq!(build_starts, 3);
}

#[test]
fn a_rejected_production_deploy_deploys_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, out_dir, runs) = start_production_deploy(tmp.path());
    let no = cli(
        &runs,
        &[
            "reject",
            &id,
            "approve-production#0",
            "--feedback",
            "freeze week",
        ],
    );
    assert!(no.status.success(), "{}", stderr(&no));
    let done = cli(&runs, &["resume", &id, "--json"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let report = &json_of(&done)["output"];
    assert_eq!(report["success"], false);
    assert_eq!(report["approval"], "rejected: freeze week");
    assert!(!out_dir.join("production").exists());
}

#[test]
fn convergence_loop_with_an_external_reviewer() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    fs::write(
        &file,
        "a line with trailing spaces   \n\tindented with a tab\nok\nanother  \nfine\n",
    )
    .unwrap();
    let input = tmp.path().join("input.json");
    let spec = json!({
        "file": file, "target_score": 90, "max_iterations": 5,
        "fixes_per_iteration": 1, "max_width": 80, "external_review": true
    });
    fs::write(&input, spec.to_string()).unwrap();
    let runs = tmp.path().join("runs");

    let run = cli(
        &runs,
        &[
            "run",
            "quality-convergence",
            "--input",
            input.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    let id = json_of(&run)["run_id"].as_str().unwrap().to_string();
    let pending = json_of(&cli(&runs, &["tasks", &id, "--pending", "--json"]));
    assert_eq!(pending[0]["key"], "review#0");
    assert_eq!(pending[0]["kind"], "external");
    assert_eq!(pending[0]["input"]["iteration"], 1);
    let measured = pending[0]["input"]["measured_score"].as_u64().unwrap();
    assert!(measured < 100);

    // A review of the wrong type: the type and the field are named, nothing is written.
    let before = journal(&runs, &id);
    let bad = cli(
        &runs,
        &["post", &id, "review#0", "--value", r#"{"score": "great"}"#],
    );
    assert_eq!(bad.status.code(), Some(2));
    let msg = stderr(&bad);
    assert!(
        msg.contains("does not fit `minder_examples::quality_convergence::Review`"),
        "{msg}"
    );
    assert!(msg.contains("at `score`"), "{msg}");
    assert_eq!(journal(&runs, &id), before);
    let unknown = cli(
        &runs,
        &["post", &id, "review#7", "--value", r#"{"score": 1}"#],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("has no effect `review#7`; pending: review#0"),
        "{}",
        stderr(&unknown)
    );
    let not_json = cli(&runs, &["post", &id, "review#0", "--value", "{score"]);
    assert_eq!(not_json.status.code(), Some(2));
    assert_eq!(journal(&runs, &id), before);

    // Iteration 1: the reviewer wants more. The loop goes on and asks again.
    let posted = cli(
        &runs,
        &[
            "post",
            &id,
            "review#0",
            "--value",
            r#"{"score": 60, "comments": "tabs remain"}"#,
        ],
    );
    assert!(posted.status.success(), "{}", stderr(&posted));
    let second = cli(&runs, &["resume", &id, "--json"]);
    assert_eq!(second.status.code(), Some(5), "{}", stderr(&second));
    assert_eq!(json_of(&second)["waiting"][0]["key"], "review#1");
    assert_eq!(json_of(&second)["waiting"][0]["input"]["iteration"], 2);

    // Iteration 2: good enough; the run completes.
    let posted = cli(
        &runs,
        &[
            "post",
            &id,
            "review#1",
            "--value",
            r#"{"score": 95, "comments": "clean"}"#,
        ],
    );
    assert!(posted.status.success(), "{}", stderr(&posted));
    let done = cli(&runs, &["resume", &id, "--json"]);
    assert!(done.status.success(), "{}", stderr(&done));
    let report = &json_of(&done)["output"];
    assert_eq!(report["iterations"], 2);
    assert_eq!(report["score"], 95);
    assert_eq!(report["converged"], true);
    let status = json_of(&cli(&runs, &["status", &id, "--json"]));
    assert_eq!(status["state"], "completed");
    assert_eq!(status["effects"].as_array().unwrap().len(), 2);
}

#[test]
fn a_worker_waits_for_the_decision_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, out_dir, runs) = start_production_deploy(tmp.path());
    // The worker keeps the run going instead of exiting at the breakpoint.
    let worker = Command::new(BIN)
        .args(["resume", &id, "--wait", "--json", "--runs-dir"])
        .arg(&runs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Approve once the worker has replayed the run and is waiting itself: the journal then
    // holds a second `suspended` event.
    let suspended = || {
        json_of(&cli(&runs, &["events", &id, "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "suspended")
            .count()
    };
    let started = std::time::Instant::now();
    while suspended() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the worker never waited"
        );
    }
    let ok = cli(
        &runs,
        &[
            "approve",
            &id,
            "approve-production#0",
            "--feedback",
            "from the worker test",
        ],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let out = worker.wait_with_output().unwrap();
    assert!(out.status.success());
    // The worker printed the waiting state, then the completed run.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"state\": \"waiting\""), "{text}");
    assert!(
        text.contains("\"approval\": \"approved: from the worker test\""),
        "{text}"
    );
    assert!(out_dir.join("production/api/MANIFEST.json").exists());
}

#[test]
fn graph_draws_a_process_before_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let mermaid = cli(&runs, &["graph", "deploy-services"]);
    let text = String::from_utf8_lossy(&mermaid.stdout);
    assert!(text.starts_with("flowchart TD\n"), "{text}");
    assert!(
        text.contains("ctx.breakpoint") && text.contains("map build (each item)"),
        "{text}"
    );
    let dot = cli(&runs, &["graph", "deploy-services", "--format", "dot"]);
    assert!(String::from_utf8_lossy(&dot.stdout).starts_with("digraph \"deploy-services\" {"));
    let tree = cli(&runs, &["graph", "quality-convergence", "--format", "tree"]);
    let text = String::from_utf8_lossy(&tree.stdout);
    assert!(
        text.contains("while loop")
            && text.contains("parallel check_trailing_whitespace+check_tabs"),
        "{text}"
    );
    let unknown = cli(&runs, &["graph", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(!runs.exists(), "drawing a graph writes nothing");
}

#[test]
fn a_maintenance_window_suspends_the_deploy_until_it_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let opens = unix_now() + 3;
    let (input, out) = deploy_input(tmp.path(), "staging", Some(opens));
    let runs = tmp.path().join("runs");
    let limit = ["--suspend-sleeps-over", "1s"];

    // Built at once, then saved as waiting for the window: nothing deployed yet.
    let run = cli(
        &runs,
        &[
            &[
                "run",
                "deploy-services",
                "--input",
                input.to_str().unwrap(),
                "--json",
            ][..],
            &limit,
        ]
        .concat(),
    );
    assert_eq!(run.status.code(), Some(5), "{}", stderr(&run));
    let waiting = json_of(&run);
    let id = waiting["run_id"].as_str().unwrap().to_string();
    assert_eq!(waiting["waiting"][0]["kind"], "sleep", "{waiting}");
    assert_eq!(waiting["waiting"][0]["due_ms"], opens * 1000, "{waiting}");
    assert!(!out.join("staging").exists());

    // Resumed before it opens: still waiting, says when it goes on; `status` says so too.
    let early = cli(&runs, &[&["resume", &id][..], &limit].concat());
    assert_eq!(early.status.code(), Some(5), "{}", stderr(&early));
    let text = String::from_utf8_lossy(&early.stdout);
    assert!(
        text.contains("sleep") && text.contains("goes on by itself at"),
        "{text}"
    );
    let status = cli(&runs, &["status", &id]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("wakes"));
    let pending = cli(&runs, &["tasks", &id, "--pending"]);
    let text = String::from_utf8_lossy(&pending.stdout);
    assert!(
        text.contains("no pending effects") && text.contains("goes on by itself at"),
        "{text}"
    );

    // A worker waits for the window and deploys; nothing is built twice.
    let done = cli(
        &runs,
        &[&["resume", &id, "--wait", "--json"][..], &limit].concat(),
    );
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(unix_now() >= opens, "deployed before the window opened");
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(text.contains("\"success\": true"), "{text}");
    assert!(out.join("staging/api/MANIFEST.json").exists());
    let events = json_of(&cli(&runs, &["events", &id, "--json"]));
    let builds = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["event"] == "step_started" && e["task"].as_str().unwrap().ends_with("build_service")
        })
        .count();
    assert_eq!(builds, 3);
}

#[test]
fn cancel_stops_a_run_another_process_is_driving() {
    let tmp = tempfile::tempdir().unwrap();
    // A window an hour away, waited out in the program: the run holds its journal and cannot
    // finish before the cancel comes.
    let (input, out) = deploy_input(tmp.path(), "staging", Some(unix_now() + 3_600));
    let runs = tmp.path().join("runs");
    let mut running = Command::new(BIN)
        .args([
            "run",
            "deploy-services",
            "--suspend-sleeps-over",
            "2h",
            "--input",
        ])
        .arg(&input)
        .arg("--runs-dir")
        .arg(&runs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the builds are journaled and the run sleeps.
    let started = std::time::Instant::now();
    let id = loop {
        let listed = fs::read_dir(&runs)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|n| !n.starts_with('.'))
            })
            .ok()
            .flatten();
        if let Some(id) = listed {
            let events = cli(&runs, &["events", &id, "--json"]);
            if events.status.success()
                && String::from_utf8_lossy(&events.stdout).contains("sleep#0")
            {
                break id;
            }
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            running.kill().ok();
            running.wait().ok();
            panic!("the run never reached its window");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let cancel = cli(&runs, &["cancel", &id, "--reason", "window moved"]);
    let status = running.wait().unwrap();
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    assert!(String::from_utf8_lossy(&cancel.stdout).contains(&format!("run {id} cancelled")));
    // The driving process stopped with the cancelled status; nothing was deployed.
    assert_eq!(
        status.code(),
        Some(6),
        "the run was not stopped by the cancel"
    );
    assert!(!out.join("staging").exists());
    let events = json_of(&cli(&runs, &["events", &id, "--json"]));
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "run_cancelled", "{last}");
    assert_eq!(last["reason"], "window moved", "{last}");
    assert!(!runs.join(&id).join("cancel-request").exists());
    // A cancelled run stays cancelled.
    let again = cli(&runs, &["resume", &id]);
    assert_eq!(again.status.code(), Some(6));
}

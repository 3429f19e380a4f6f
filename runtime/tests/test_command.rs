//! Command tasks: a program with arguments (no shell), env, working directory, timeout;
//! status and output captured, large output kept in the run directory; killed on timeout and
//! when a fail-fast sibling cancels it.

use minder::command::{command, Cmd, CmdOutput, JOURNALED_OUTPUT};
use minder::prelude::*;
use std::time::{Duration, Instant};

#[process]
async fn one(_ctx: &Ctx, cmd: Cmd) -> Result<CmdOutput, ProcessError> {
    Ok(command(cmd).await?)
}

async fn run(cmd: Cmd) -> Result<CmdOutput, String> {
    Runner::in_memory()
        .run::<one>(cmd)
        .await
        .map(|d| d.output)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn arguments_are_passed_as_they_are() {
    let out = run(Cmd::new("printf").args(["%s|", "a b", "*", "$HOME", "'q'"]))
        .await
        .unwrap();
    assert!(out.success);
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout, "a b|*|$HOME|'q'|");
}

#[tokio::test]
async fn env_working_directory_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Cmd::new("pwd").current_dir(dir.path().to_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::canonicalize(out.stdout.trim()).unwrap(),
        std::fs::canonicalize(dir.path()).unwrap()
    );
    let out = run(Cmd::new("printenv")
        .arg("MINDER_TEST_VAR")
        .env("MINDER_TEST_VAR", "value 1"))
    .await
    .unwrap();
    assert_eq!(out.stdout, "value 1\n");
    let out = run(Cmd::new("ls").arg("/no/such/dir")).await.unwrap();
    assert!(!out.success);
    assert_eq!(out.status, Some(2));
    assert!(out.stderr.contains("No such file"), "{}", out.stderr);
    let err = out.check().unwrap_err();
    assert!(err.message.starts_with("exited with 2: "), "{err}");
    let err = run(Cmd::new("/no/such/program")).await.unwrap_err();
    assert!(err.contains("cannot start `/no/such/program`"), "{err}");
}

#[tokio::test]
async fn a_timeout_kills_the_program() {
    let started = Instant::now();
    let err = run(Cmd::new("sleep")
        .arg("10")
        .timeout(Duration::from_millis(100)))
    .await
    .unwrap_err();
    assert!(err.contains("`sleep 10` was killed after 100 ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[process]
async fn cancelled(_ctx: &Ctx, pid_file: String) -> Result<bool, ProcessError> {
    // The shell is the program here on purpose: it records its pid, then becomes `sleep`.
    let long = Cmd::new("sh").args(["-c", &format!("echo $$ > {pid_file}; exec sleep 30")]);
    let quick_failure = Cmd::new("sh").args(["-c", "sleep 0.3; exit 3"]);
    let r = parallel!(command(long), async {
        command(quick_failure).await?.check()
    });
    Ok(r.is_err())
}

#[tokio::test]
async fn fail_fast_kills_a_sibling_program() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let started = Instant::now();
    let done = Runner::in_memory()
        .run::<cancelled>(pid_file.to_str().unwrap().to_string())
        .await
        .unwrap();
    assert!(done.output);
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let proc = format!("/proc/{pid}");
    for _ in 0..100 {
        let alive = std::fs::read_to_string(format!("{proc}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the cancelled `sleep 30` (pid {pid}) is still running");
}

#[tokio::test]
async fn large_output_goes_to_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runner = Runner::in_memory().artifacts_in(dir.path());
    let done = runner
        .run::<one>(Cmd::new("seq").args(["1", "100000"]))
        .await
        .unwrap();
    let out = done.output;
    let full: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(out.stdout.len(), JOURNALED_OUTPUT);
    assert!(full.ends_with(&out.stdout));
    let file = out.stdout_file.expect("the whole output is kept in a file");
    assert!(file.starts_with(
        dir.path()
            .join(&done.run_id)
            .join("artifacts")
            .to_str()
            .unwrap()
    ));
    assert_eq!(std::fs::read_to_string(file).unwrap(), full);
}

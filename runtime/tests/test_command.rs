//! Command tasks: a program with arguments (no shell), env, working directory, timeout;
//! status and output captured, large output kept in the run directory; killed on timeout and
//! when a fail-fast sibling cancels it.

use minder::command::{command, Cmd, CmdOutput, JOURNALED_OUTPUT};
use minder::journal::Event;
use minder::prelude::*;
use minder::{MemoryStore, Store};
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

// ---- Process groups: what a program started dies with it ----------------------------------

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !(state.starts_with('Z') || state.starts_with('X'))
        })
        .unwrap_or(false)
}

/// The pids in `file`, one a line, once it has at least `n` of them (waits up to 30 s).
async fn pids_in(file: &std::path::Path, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pids: Vec<i32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= n {
            return pids;
        }
        assert!(Instant::now() < deadline, "{} has {pids:?}", file.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until none of `pids` runs (up to 10 s); panics naming the survivors.
async fn all_gone(pids: &[i32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for &p in &left {
                // SAFETY: test cleanup of processes this test started.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            panic!("{what}: processes {left:?} are still running");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A shell that records its pid and two background `sleep 300`s' in `file`, then waits.
fn with_grandchildren(file: &std::path::Path) -> Cmd {
    let f = file.display();
    Cmd::new("sh").args([
        "-c",
        &format!("echo $$ >> {f}; sleep 300 & echo $! >> {f}; sleep 300 & echo $! >> {f}; wait"),
    ])
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_timeout_kills_what_the_program_started() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let err = run(with_grandchildren(&file).timeout(Duration::from_secs(3)))
        .await
        .unwrap_err();
    assert!(err.contains("was killed after 3000 ms"), "{err}");
    let pids = pids_in(&file, 3).await;
    all_gone(&pids, "after the timeout").await;
}

#[process]
async fn fail_fast_sibling(_ctx: &Ctx, file: String) -> Result<bool, ProcessError> {
    let long = with_grandchildren(std::path::Path::new(&file));
    // Fails once the long program and its two children have recorded their pids.
    let quick_failure = Cmd::new("sh")
        .args([
            "-c",
            &format!(
                "until [ -f {file} ] && [ $(wc -l < {file}) -ge 3 ]; do sleep 0.02; done; exit 3"
            ),
        ])
        .timeout_secs(30);
    let r = parallel!(command(long), async {
        command(quick_failure).await?.check()
    });
    Ok(r.is_err())
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_fail_fast_cancel_kills_what_the_program_started() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let done = Runner::in_memory()
        .run::<fail_fast_sibling>(file.display().to_string())
        .await
        .unwrap();
    assert!(done.output);
    let pids = pids_in(&file, 3).await;
    all_gone(&pids, "after the fail-fast cancel").await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn what_a_finished_program_left_running_is_killed_and_does_not_hold_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let f = file.display();
    // The background `sleep` inherits standard output: without the group kill the step would
    // wait for it (here: until the 60 s timeout).
    let started = Instant::now();
    let out = run(Cmd::new("sh")
        .args(["-c", &format!("sleep 300 & echo $! > {f}; echo started")])
        .timeout_secs(60))
    .await
    .unwrap();
    assert!(out.success);
    assert_eq!(out.stdout, "started\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    let pids = pids_in(&file, 1).await;
    all_gone(&pids, "after the program exited").await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_process_group_is_journaled_durably() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pid");
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let done = runner
        .run::<one>(Cmd::new("sh").args(["-c", &format!("echo $$ > {}", file.display())]))
        .await
        .unwrap();
    let pid: u32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let events = store.events(&done.run_id).unwrap();
    let child = events
        .iter()
        .find_map(|e| match e {
            Event::ChildStarted {
                pgid,
                program,
                started,
                boot_id,
                ..
            } => Some((*pgid, program.clone(), started.is_some(), boot_id.is_some())),
            _ => None,
        })
        .expect("a child_started event");
    assert_eq!(child, (pid, "sh".to_string(), true, true));
}

// ---- After a crash: the resume kills the orphan group -------------------------------------

/// A program that, the first time, records its pid and a background `sleep 300`'s in
/// `dir/pids` and waits; once `dir/marker` exists, it reports, for each pid recorded before,
/// the state that process is in (empty: gone), and exits 0.
fn crash_then_report(dir: &std::path::Path) -> Cmd {
    let d = dir.display();
    Cmd::new("sh").args([
        "-c",
        &format!(
            "if [ -e {d}/marker ]; then \
               for p in $(cat {d}/pids); do \
                 echo \"$p:$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null)\"; \
               done; exit 0; \
             fi; \
             echo $$ >> {d}/pids; sleep 300 & echo $! >> {d}/pids; wait"
        ),
    ])
}

/// Runs `cmd` until its program and its child have recorded their pids and its group is
/// journaled, then abandons the run as a crashed runner would: nothing is dropped, nothing
/// killed. Returns the journal and the two pids.
async fn crashed_run(cmd: Cmd, dir: &std::path::Path) -> (Vec<Event>, Vec<i32>) {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let mut run = Box::pin(runner.run::<one>(cmd));
    let pid_file = dir.join("pids");
    let pids = tokio::select! {
        r = &mut run => panic!("the run ended: {r:?}"),
        pids = pids_in(&pid_file, 2) => pids,
    };
    let id = store.list().await.unwrap().pop().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = store.events(&id).unwrap();
        if events
            .iter()
            .any(|e| matches!(e, Event::ChildStarted { .. }))
        {
            break events;
        }
        assert!(Instant::now() < deadline, "no child_started in {events:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // The crash: the runner's state is gone without a trace, its programs keep running.
    std::mem::forget(run);
    assert!(pids.iter().all(|&p| alive(p)));
    (events, pids)
}

/// Resumes the journal `events` on a fresh store: the program's report of the pids it
/// recorded the first time.
async fn resume_report(events: Vec<Event>) -> String {
    let store = MemoryStore::new();
    let id = match &events[0] {
        Event::RunCreated { run_id, .. } => run_id.clone(),
        e => panic!("{e:?}"),
    };
    store.set_events(&id, events);
    let done = Runner::new(store).resume::<one>(&id).await.unwrap();
    assert!(done.output.success, "{:?}", done.output);
    done.output.stdout
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_kills_the_orphan_group_before_the_command_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = crash_then_report(dir.path());
    let (events, pids) = crashed_run(cmd, dir.path()).await;
    std::fs::write(dir.path().join("marker"), "").unwrap();
    let report = resume_report(events).await;
    // When the command started again, the processes of the first attempt were gone (no
    // state) or dead (a zombie waiting for its parent).
    for line in report.lines() {
        let (pid, state) = line.split_once(':').unwrap();
        assert!(
            state.is_empty() || state == "Z",
            "process {pid} of the first attempt was in state `{state}` when the command ran again"
        );
    }
    assert_eq!(report.lines().count(), 2, "{report}");
    all_gone(&pids, "after the resume").await;
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_leaves_alone_a_group_that_is_not_the_journaled_one() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = crash_then_report(dir.path());
    let (events, pids) = crashed_run(cmd, dir.path()).await;
    std::fs::write(dir.path().join("marker"), "").unwrap();
    // The group number reused by a program started later (another start time), and the same
    // group recorded on another boot: neither is the journaled group.
    let altered = |change: &dyn Fn(&mut Option<u64>, &mut Option<String>)| {
        let mut events = events.clone();
        for e in &mut events {
            if let Event::ChildStarted {
                started, boot_id, ..
            } = e
            {
                change(started, boot_id);
            }
        }
        events
    };
    let later = altered(&|started, _| *started = started.map(|s| s.saturating_sub(1)));
    let other_boot =
        altered(&|_, boot| *boot = Some("00000000-0000-0000-0000-000000000000".into()));
    for events in [later, other_boot] {
        resume_report(events).await;
        assert!(
            pids.iter().all(|&p| alive(p)),
            "a group that is not the journaled one was killed"
        );
    }
    for &p in &pids {
        // SAFETY: cleanup of processes this test started.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    all_gone(&pids, "after the cleanup").await;
}

// ---- Secrets --------------------------------------------------------------------------------

#[tokio::test]
async fn a_secret_reaches_the_program_but_not_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("s3cr3t-{}", std::process::id());
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let seen = dir.path().join("seen");
    let store = MemoryStore::new();
    let done = Runner::new(store.clone())
        .run::<one>(
            Cmd::new("sh")
                .args(["-c", r#"printf %s "$TOKEN" > "$1""#, "sh"])
                .arg(seen.display().to_string())
                .env_secret_file("TOKEN", secret_file.display().to_string()),
        )
        .await
        .unwrap();
    assert!(done.output.success);
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), secret);
    let journal = serde_json::to_string(&store.events(&done.run_id).unwrap()).unwrap();
    assert!(
        !journal.contains(&secret),
        "the secret is in the journal: {journal}"
    );
    assert!(
        journal.contains(r#""secret_env":[{"key":"TOKEN","source":{"file":"#),
        "{journal}"
    );

    // A missing source is an error that names it.
    let err = run(Cmd::new("true").env_secret_from("TOKEN", "MINDER_TEST_NO_SUCH_VARIABLE"))
        .await
        .unwrap_err();
    assert!(
        err.contains(
            "the runner's environment variable `MINDER_TEST_NO_SUCH_VARIABLE`, which is not set"
        ),
        "{err}"
    );
}

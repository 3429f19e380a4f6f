//! Command tasks: run a program with arguments (never through a shell), with environment,
//! working directory and timeout; exit status, standard output and error captured.
//!
//! ```no_run
//! use minder::prelude::*;
//! use minder::command::{command, Cmd};
//!
//! #[process]
//! async fn fmt_check(_ctx: &Ctx, dir: String) -> Result<bool, ProcessError> {
//!     let out = command(Cmd::new("cargo").args(["fmt", "--check"]).current_dir(dir).timeout_secs(300)).await?;
//!     Ok(out.success)
//! }
//! ```
//!
//! # The program's processes end with the step
//!
//! On Unix the program runs in a process group of its own, and everything in that group (the
//! program and whatever it started) is killed with `SIGKILL`:
//!
//! * on the command's timeout ([`Cmd::timeout`]) and on the task's;
//! * when the step is cancelled: a fail-fast `parallel!` sibling failed, the run was cancelled,
//!   or the future driving the run was dropped (the end of the runner);
//! * when the program itself exits: what it left running in its group is killed then, so a
//!   background process cannot keep the step (or its output pipes) open.
//!
//! On Linux the program also gets a parent-death signal (`PR_SET_PDEATHSIG`, `SIGKILL`): if the
//! runner is killed outright (`kill -9`, out of memory), the program dies with it. Its own
//! children do not get that signal; instead, the program's process group is journaled
//! ([`Event::ChildStarted`](crate::journal::Event::ChildStarted)) and durable before the step
//! waits for it, and the next [`Runner::resume`](crate::Runner::resume) (or
//! [`Runner::cancel`](crate::Runner::cancel)) of the run kills what is left of every such group
//! of a step that had not completed, before anything runs again. A group is only killed when it
//! is the one journaled: same boot (`/proc/sys/kernel/random/boot_id`), same pid namespace, the
//! group's leader either gone or started at the journaled time, and only processes of the
//! group that started at or after that time.
//!
//! ## What cannot be interrupted
//!
//! * A process that leaves the program's process group (`setsid`, `setpgid`, daemonizing
//!   tools, a service manager or container engine that starts it for the program) is not the
//!   step's: it is neither killed nor recorded. If it keeps the program's standard output or
//!   error open, the step waits for it (up to the command's timeout).
//! * A process in uninterruptible sleep (state `D`, e.g. on a hung network file system) dies
//!   when the kernel lets it; the kill is a `SIGKILL`, so the program gets no chance to clean
//!   up (no `SIGTERM` first).
//! * After a `SIGKILL` of the runner, the program's children keep running until the run is
//!   resumed or cancelled. If the runner dies in the instant between the program's start and
//!   the journaling of its group, processes the program started in that instant are not
//!   recorded (the program itself still gets the parent-death signal).
//! * The parent-death signal is tied to the runner thread that started the program; minder
//!   starts programs from the async runtime's worker threads, which live as long as the
//!   runtime.
//! * Outside Linux there is no parent-death signal and a resume does not look for orphans
//!   (there is no portable way to tell a reused process group from the journaled one); the
//!   group is still killed on timeout, cancel and the end of the runner. Outside Unix only the
//!   program itself is killed.
//!
//! # Secrets
//!
//! A step's arguments — the whole [`Cmd`] — are journaled, printed by `events` and compared on
//! replay. An environment value that must not be is passed by *where it comes from*:
//! [`Cmd::env_secret_from`] (a variable of the runner's own environment) or
//! [`Cmd::env_secret_file`] (a file, e.g. a container or systemd credential). The journal holds
//! the variable's name and its source, never the value, which is read each time the program
//! starts. This is deliberate: a value handed to the step in memory would have to be journaled
//! to survive a retry (a retry re-reads its arguments from the journal) or a resume in another
//! process, and a value the workflow computed is already in the journal as some step's output.
//! A resume needs the same source (the variable set, the file present); without it the step
//! fails with an error naming the source, not the value. What the program prints is captured
//! as usual: a program that echoes its secret puts it in the journal.

use crate::error::{TaskError, TaskErrorKind};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Output kept in the journal per stream; the rest goes to a file in the run's directory.
pub const JOURNALED_OUTPUT: usize = 64 * 1024;

/// A program to run: what `command` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd {
    /// The program (looked up on `PATH` unless it is a path).
    pub program: String,
    /// Its arguments, passed as they are (no shell, no splitting, no globbing).
    pub args: Vec<String>,
    /// Extra environment variables (journaled: see [`Cmd::env_secret_from`] for secrets).
    pub env: Vec<(String, String)>,
    /// Environment variables whose values are secret: only their sources are journaled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnv>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Kill the program after this many milliseconds.
    pub timeout_ms: Option<u64>,
}

/// An environment variable of the program whose value is secret: the journal has `key` and
/// `source`, the value is read from the source when the program starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEnv {
    /// The variable the program sees.
    pub key: String,
    /// Where its value is read from.
    pub source: SecretSource,
}

/// Where a secret value is read from when the program starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    /// A variable of the runner's own environment (the value as it is).
    Env(String),
    /// A file (its content as UTF-8, without one trailing newline).
    File(String),
}

impl SecretSource {
    fn read(&self, key: &str) -> Result<String, TaskError> {
        match self {
            SecretSource::Env(var) => std::env::var(var).map_err(|e| {
                TaskError::new(format!(
                    "the secret for `{key}` comes from the runner's environment variable \
                     `{var}`, which is {}",
                    match e {
                        std::env::VarError::NotPresent => "not set",
                        std::env::VarError::NotUnicode(_) => "not valid UTF-8",
                    }
                ))
            }),
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(mut value) => {
                    if value.ends_with('\n') {
                        value.pop();
                        if value.ends_with('\r') {
                            value.pop();
                        }
                    }
                    Ok(value)
                }
                Err(e) => Err(TaskError::new(format!(
                    "cannot read the secret for `{key}` from `{path}`: {e}"
                ))),
            },
        }
    }
}

impl Cmd {
    /// A program without arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            secret_env: Vec::new(),
            cwd: None,
            timeout_ms: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the program. The value is journaled and shown by
    /// `events`; for a secret use [`Cmd::env_secret_from`] or [`Cmd::env_secret_file`].
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the program's environment variable `key` to the value of the runner's environment
    /// variable `runner_var`, read when the program starts. The journal has both names, not
    /// the value (see [the module docs](self#secrets)).
    pub fn env_secret_from(
        mut self,
        key: impl Into<String>,
        runner_var: impl Into<String>,
    ) -> Self {
        self.secret_env.push(SecretEnv {
            key: key.into(),
            source: SecretSource::Env(runner_var.into()),
        });
        self
    }

    /// Sets the program's environment variable `key` to the content of the file `path` (one
    /// trailing newline removed), read when the program starts. The journal has the name and
    /// the path, not the value.
    pub fn env_secret_file(mut self, key: impl Into<String>, path: impl Into<String>) -> Self {
        self.secret_env.push(SecretEnv {
            key: key.into(),
            source: SecretSource::File(path.into()),
        });
        self
    }

    /// Runs the program in `dir`.
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kills the program (and its process group) after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Kills the program (and its process group) after `secs` seconds.
    pub fn timeout_secs(self, secs: u64) -> Self {
        self.timeout(Duration::from_secs(secs))
    }

    fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a program did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdOutput {
    /// The exit code (`None` when killed by a signal).
    pub status: Option<i32>,
    /// Whether it exited with 0.
    pub success: bool,
    /// Standard output (its last 64 KiB when longer; see `stdout_file`).
    pub stdout: String,
    /// Standard error (its last 64 KiB when longer; see `stderr_file`).
    pub stderr: String,
    /// The whole standard output, when it was longer than 64 KiB and the run has a directory.
    pub stdout_file: Option<String>,
    /// The whole standard error, likewise.
    pub stderr_file: Option<String>,
    /// How long it ran.
    pub duration_ms: u64,
}

impl CmdOutput {
    /// `Ok` when the program exited with 0, else a `TaskError` with its status and the end of
    /// its standard error.
    pub fn check(self) -> Result<CmdOutput, TaskError> {
        if self.success {
            return Ok(self);
        }
        let tail: String = {
            let lines: Vec<&str> = self.stderr.lines().collect();
            lines[lines.len().saturating_sub(5)..].join("\n")
        };
        Err(TaskError::new(format!(
            "exited with {}: {tail}",
            self.status
                .map(|c| c.to_string())
                .unwrap_or_else(|| "a signal".into())
        )))
    }
}

/// Keeps the tail of `bytes` for the journal, and writes all of it to a file when it is long.
fn keep(bytes: Vec<u8>, name: &str) -> (String, Option<String>) {
    if bytes.len() <= JOURNALED_OUTPUT {
        return (String::from_utf8_lossy(&bytes).into_owned(), None);
    }
    let file = crate::task::artifact_dir().and_then(|dir| {
        let key = crate::idempotency_key().unwrap_or_default();
        let safe: String = key
            .rsplit_once('/')
            .map(|(_, k)| k)
            .unwrap_or(&key)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path: PathBuf = dir.join(format!(
            "{safe}-{}.{name}",
            crate::engine::random_u64() & 0xffff
        ));
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&path, &bytes).ok()?;
        Some(path.display().to_string())
    });
    let tail = &bytes[bytes.len() - JOURNALED_OUTPUT..];
    (String::from_utf8_lossy(tail).into_owned(), file)
}

/// The body of the `command` task (also usable outside a process).
async fn run(cmd: Cmd) -> Result<CmdOutput, TaskError> {
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for secret in &cmd.secret_env {
        command.env(&secret.key, secret.source.read(&secret.key)?);
    }
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    group::configure(&mut command);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| TaskError::new(format!("cannot start `{}`: {e}", cmd.display())))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // From here on, dropping `child` (timeout, cancel, the end of the runner) kills its group.
    let mut child = group::Owned::new(child);
    #[cfg(unix)]
    if let Some(step) = crate::task::current_step() {
        let event = child.journal_event(step.key.clone(), &cmd.program);
        step.run.append(event);
        if let Err(e) = step.run.flush().await {
            step.run.fail(crate::error::RunError::Store(e));
            return Err(TaskError::new(format!(
                "`{}` was killed: its process group could not be journaled",
                cmd.display()
            )));
        }
    }
    let io = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).map(|_| (out, err))
    };
    let finished = async {
        // The program's exit ends the step: what it left in its group is killed then, which
        // also closes the pipes those processes inherited.
        let (io, status) = tokio::join!(io, child.wait());
        let (out, err) = io?;
        Ok::<_, std::io::Error>((status?, out, err))
    };
    let result = match cmd.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), finished).await {
            Ok(r) => r,
            Err(_) => {
                // Returning drops `child`, which kills its group.
                return Err(TaskError::with_kind(
                    TaskErrorKind::Timeout,
                    format!("`{}` was killed after {ms} ms", cmd.display()),
                ));
            }
        },
        None => finished.await,
    };
    let (status, out, err) =
        result.map_err(|e| TaskError::new(format!("`{}` failed: {e}", cmd.display())))?;
    let (stdout, stdout_file) = keep(out, "stdout");
    let (stderr, stderr_file) = keep(err, "stderr");
    Ok(CmdOutput {
        status: status.code(),
        success: status.success(),
        stdout,
        stderr,
        stdout_file,
        stderr_file,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Runs a program as a journaled task: on replay its recorded output comes back and it does
/// not run again. A non-zero exit is not an error (see [`CmdOutput::check`]); failing to start
/// it, or its timeout, is.
#[minder_macros::task(crate = "crate")]
pub async fn command(cmd: Cmd) -> Result<CmdOutput, TaskError> {
    run(cmd).await
}

/// Kills what is left of the process groups that command steps of a crashed runner journaled
/// ([`Event::ChildStarted`](crate::journal::Event::ChildStarted)) and waits until they are
/// gone. Groups of completed steps, and every group of a run that ended, are left alone. Called
/// by [`Runner::resume`](crate::Runner::resume) and [`Runner::cancel`](crate::Runner::cancel)
/// while they hold the run, before anything runs. Linux only (elsewhere it does nothing).
pub(crate) async fn kill_orphans(events: &[crate::journal::Event]) {
    #[cfg(target_os = "linux")]
    group::kill_orphans(events).await;
    #[cfg(not(target_os = "linux"))]
    let _ = events;
}

/// Process groups: the program leads a group of its own, killed as a whole.
#[cfg(unix)]
mod group {
    use crate::journal::Event;

    /// The program's own process group, and on Linux the parent-death signal.
    pub(super) fn configure(command: &mut tokio::process::Command) {
        command.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let runner = std::process::id() as libc::pid_t;
            // SAFETY: between fork and exec only async-signal-safe calls are made (`prctl`,
            // `getppid`), and the closure allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) == -1
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The runner died before the signal was set: it will never come.
                    if libc::getppid() != runner {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                    Ok(())
                });
            }
        }
    }

    /// Sends `SIGKILL` to every process of group `pgid`.
    fn killpg(pgid: i32) {
        // SAFETY: a plain system call on a number.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }

    /// Whether group `pgid` has any process.
    fn group_exists(pgid: i32) -> bool {
        // SAFETY: signal 0 only checks.
        let found = unsafe { libc::killpg(pgid, 0) } == 0;
        found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }

    /// A program that leads its own process group: the group is killed when this is dropped
    /// before it was waited for, and what is left of it once the program has exited.
    pub(super) struct Owned {
        child: tokio::process::Child,
        pgid: Option<i32>,
        /// When the leader started (Linux: clock ticks since boot).
        started: Option<u64>,
        /// The leader was waited for: its pid may be reused once its group is empty.
        reaped: bool,
    }

    impl Owned {
        pub(super) fn new(child: tokio::process::Child) -> Owned {
            let pgid = child.id().map(|id| id as i32);
            Owned {
                started: pgid.and_then(|p| proc::stat(p).map(|s| s.started)),
                child,
                pgid,
                reaped: false,
            }
        }

        /// The journal event that lets a later resume find this group.
        pub(super) fn journal_event(&self, key: String, program: &str) -> Event {
            Event::ChildStarted {
                key,
                pgid: self.pgid.unwrap_or_default() as u32,
                program: program.to_string(),
                started: self.started,
                boot_id: proc::boot_id(),
                pid_ns: proc::pid_ns(),
            }
        }

        /// Waits for the program, then kills what it left in its group.
        pub(super) async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
            let status = self.child.wait().await?;
            self.reaped = true;
            self.kill_rest();
            Ok(status)
        }

        /// Kills the group after its leader was reaped: only when it still has processes,
        /// and (Linux) only the group the leader started, not one that reused its number.
        fn kill_rest(&self) {
            let Some(pgid) = self.pgid else { return };
            if !group_exists(pgid) {
                return;
            }
            #[cfg(target_os = "linux")]
            if let Some(started) = self.started {
                if !proc::is_our_group(&proc::scan(), pgid, started) {
                    return;
                }
            }
            killpg(pgid);
        }
    }

    impl Drop for Owned {
        fn drop(&mut self) {
            match self.pgid {
                // The leader is not reaped: its pid, hence the group number, is still ours.
                Some(pgid) if !self.reaped => killpg(pgid),
                Some(_) => self.kill_rest(),
                None => {}
            }
        }
    }

    #[cfg(target_os = "linux")]
    pub(super) async fn kill_orphans(events: &[Event]) {
        use std::collections::HashMap;
        use std::time::Duration;
        if events.iter().any(|e| e.run_end().is_some())
            || !events
                .iter()
                .any(|e| matches!(e, Event::ChildStarted { .. }))
        {
            return;
        }
        let mut groups: HashMap<&str, Vec<(i32, u64)>> = HashMap::new();
        let (boot, ns) = (proc::boot_id(), proc::pid_ns());
        for event in events {
            match event {
                Event::ChildStarted {
                    key,
                    pgid,
                    started: Some(started),
                    boot_id,
                    pid_ns,
                    ..
                } if boot.is_some() && *boot_id == boot && *pid_ns == ns => {
                    groups
                        .entry(key.as_str())
                        .or_default()
                        .push((*pgid as i32, *started));
                }
                Event::StepCompleted { key, .. } => {
                    groups.remove(key.as_str());
                }
                _ => {}
            }
        }
        if groups.is_empty() {
            return;
        }
        let procs = proc::scan();
        let mut killed = Vec::new();
        for (key, list) in &groups {
            for &(pgid, started) in list {
                if pgid <= 1 || !proc::is_our_group(&procs, pgid, started) {
                    continue;
                }
                let members: Vec<_> = procs
                    .iter()
                    .filter(|p| p.pgrp == pgid && p.started >= started && !p.zombie)
                    .collect();
                tracing::warn!(
                    step = %key,
                    pgid,
                    processes = members.len(),
                    "killing the process group a command left running when its runner died"
                );
                killpg(pgid);
                killed.extend(members.into_iter().map(|p| (p.pid, p.started)));
            }
        }
        // Wait until they are gone (zombies are gone: they run nothing).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while killed.iter().any(|&(pid, started)| {
            proc::stat(pid).is_some_and(|s| s.started == started && !s.zombie)
        }) && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Process facts from `/proc` (Linux); elsewhere nothing is known.
    pub(super) mod proc {
        /// One process, from `/proc/<pid>/stat`.
        #[derive(Debug, Clone, Copy)]
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        pub(crate) struct Stat {
            pub(crate) pid: i32,
            pub(crate) pgrp: i32,
            /// Clock ticks since boot.
            pub(crate) started: u64,
            pub(crate) zombie: bool,
        }

        #[cfg(target_os = "linux")]
        pub(crate) fn stat(pid: i32) -> Option<Stat> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`: comm may hold anything, so split after the
            // last `)`; `starttime` is field 22.
            let rest = text.get(text.rfind(')')? + 1..)?;
            let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
            Some(Stat {
                pid,
                pgrp: fields.get(2)?.parse().ok()?,
                started: fields.get(19)?.parse().ok()?,
                zombie: matches!(*fields.first()?, "Z" | "X"),
            })
        }

        #[cfg(not(target_os = "linux"))]
        pub(crate) fn stat(_pid: i32) -> Option<Stat> {
            None
        }

        /// Every process visible now.
        #[cfg(target_os = "linux")]
        pub(crate) fn scan() -> Vec<Stat> {
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(stat)
                .collect()
        }

        /// Whether group `pgid` is still the one whose leader started at `started`: the
        /// leader's pid is not alive with another start time (then the number was reused, and
        /// the group is someone else's), and the group has a process started since.
        #[cfg(target_os = "linux")]
        pub(crate) fn is_our_group(procs: &[Stat], pgid: i32, started: u64) -> bool {
            if procs.iter().any(|p| p.pid == pgid && p.started != started) {
                return false;
            }
            procs
                .iter()
                .any(|p| p.pgrp == pgid && p.started >= started && !p.zombie)
        }

        /// This boot's id.
        pub(crate) fn boot_id() -> Option<String> {
            #[cfg(target_os = "linux")]
            {
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .ok()
                    .map(|s| s.trim().to_string())
            }
            #[cfg(not(target_os = "linux"))]
            None
        }

        /// This process's pid namespace (the inode of `/proc/self/ns/pid`).
        pub(crate) fn pid_ns() -> Option<u64> {
            #[cfg(target_os = "linux")]
            {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
            }
            #[cfg(not(target_os = "linux"))]
            None
        }
    }
}

/// Outside Unix: only the program itself is killed (`kill_on_drop`).
#[cfg(not(unix))]
mod group {
    pub(super) struct Owned(tokio::process::Child);
    impl Owned {
        pub(super) fn new(child: tokio::process::Child) -> Owned {
            Owned(child)
        }
        pub(super) async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
            self.0.wait().await
        }
    }
}

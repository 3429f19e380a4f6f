//! Command tasks: run a program with arguments (never through a shell), with environment,
//! working directory and timeout; exit status, standard output and error captured. The child
//! is killed on timeout, and when the step is cancelled (a fail-fast sibling failed).
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
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: Option<String>,
    /// Kill the program after this many milliseconds.
    pub timeout_ms: Option<u64>,
}

impl Cmd {
    /// A program without arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
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

    /// Sets an environment variable for the program.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the program in `dir`.
    pub fn current_dir(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kills the program after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Kills the program after `secs` seconds.
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
            crate::ctx::random_u64() & 0xffff
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
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| TaskError::new(format!("cannot start `{}`: {e}", cmd.display())))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let io = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).map(|_| (out, err))
    };
    let finished = async {
        let (out, err) = io.await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, out, err))
    };
    let result = match cmd.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), finished).await {
            Ok(r) => r,
            Err(_) => {
                // Dropping the future dropped the child: `kill_on_drop` killed it.
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

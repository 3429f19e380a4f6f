//! The command line for any binary that registers its processes ([`Registry`]) and calls
//! [`main`]. Behind the `cli` feature.
//!
//! - `run <process> --input FILE|-`, `resume <run> [--wait] [--allow-version-change]`: start or
//!   continue a run and drive it until it ends or stops to wait.
//! - `status [<run>]`, `list`, `events <run>`, `tasks <run> [--pending]`: read the journals.
//! - `post <run> <effect> --value JSON|--error MSG`, `approve|reject <run> <breakpoint>
//!   [--feedback ..]`, `cancel <run> [--reason ..]`: resolve what a run waits for, or end it.
//! - `graph <process> [--format mermaid|dot|tree]`: the process's static graph.
//!
//! Every command takes `--runs-dir DIR` (default `.minder/runs`), `--json` (one JSON document
//! on standard output; an error is `{"error": .., "exit": ..}`) and `--suspend-sleeps-over
//! DURATION` (default `60s`).
//!
//! ```no_run
//! use minder::prelude::*;
//!
//! #[task]
//! async fn shout(text: String) -> Result<String, TaskError> {
//!     Ok(text.to_uppercase())
//! }
//!
//! #[process]
//! async fn loud(_ctx: &Ctx, text: String) -> Result<String, ProcessError> {
//!     Ok(shout(text).await?)
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     minder::cli::main(minder::cli::Registry::new().process::<loud>())
//! }
//! ```
//!
//! Exit status: 0 when the command did what it was asked (a run completed), 1 when the run's
//! process failed, 2 for bad input (arguments, input JSON, unknown run or process), 3 when the
//! journal cannot be used (corrupt, locked, a symbolic link, a failed write or sync, I/O), 4 for non-determinism or a version mismatch,
//! 5 when the run stopped to wait for breakpoints, external tasks or a long sleep (`tasks
//! --pending` lists the effects; `approve`, `reject` and `post` resolve them; `resume`
//! continues, a sleep once it is due), 6 when the run was cancelled.
//!
//! The code: `args` (the arguments, as clap types), `execute` (the commands), `wait` (driving a
//! run until it stops, and `resume --wait`), `format` (text and JSON output, progress bars);
//! here, the entry point [`main`], the [`Registry`] of processes and the exit statuses.

/// Prints a line to standard error; a closed pipe is not an error.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Prints a line to standard output; a closed pipe (`| head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod args;
mod execute;
mod format;
mod wait;

use crate::graph::Graph;
use crate::run::{Process, Runner};
use crate::store::StoreError;
use crate::RunError;
use args::Cli;
use clap::Parser;
use execute::execute;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::fmt;
use std::process::ExitCode;

type RunFn = for<'a> fn(&'a Runner, &'a str) -> BoxFuture<'a, Result<Value, RunError>>;
type CreateFn = for<'a> fn(&'a Runner, Value) -> BoxFuture<'a, Result<String, CliError>>;
type PostFn = for<'a> fn(
    &'a Runner,
    &'a str,
    &'a str,
    Result<Value, Value>,
) -> BoxFuture<'a, Result<(), RunError>>;

/// One registered process, with its types erased so the command line can handle it by name.
struct Entry {
    name: &'static str,
    graph: &'static Graph,
    create: CreateFn,
    resume: RunFn,
    post: PostFn,
}

/// The processes a binary offers on its command line.
#[derive(Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

fn decode_input<P: Process>(name: &str, input: Value) -> Result<P::Input, CliError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        CliError::Input(format!(
            "invalid input for process `{name}`{at}: {}",
            e.into_inner()
        ))
    })
}

fn create<P: Process>(runner: &Runner, input: Value) -> BoxFuture<'_, Result<String, CliError>> {
    Box::pin(async move {
        let input = decode_input::<P>(P::NAME, input)?;
        Ok(runner.create::<P>(&input).await?)
    })
}

fn resume<'a, P: Process>(
    runner: &'a Runner,
    id: &'a str,
) -> BoxFuture<'a, Result<Value, RunError>> {
    Box::pin(async move {
        let done = runner.resume::<P>(id).await?;
        serde_json::to_value(done.output).map_err(|e| RunError::Decode {
            problem: crate::error::DecodeProblem::RunOutput,
            message: e.to_string(),
        })
    })
}

fn post<'a, P: Process>(
    runner: &'a Runner,
    id: &'a str,
    effect: &'a str,
    value: Result<Value, Value>,
) -> BoxFuture<'a, Result<(), RunError>> {
    Box::pin(runner.post::<P>(id, effect, value))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a process (the type `#[process]` generated).
    pub fn process<P: Process>(mut self) -> Self {
        self.entries.push(Entry {
            name: P::NAME,
            graph: P::graph(),
            create: create::<P>,
            resume: resume::<P>,
            post: post::<P>,
        });
        self
    }

    fn find(&self, name: &str) -> Result<&Entry, CliError> {
        self.entries.iter().find(|e| e.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.entries.iter().map(|e| e.name).collect();
            CliError::Input(format!(
                "unknown process `{name}`; this binary has: {}",
                known.join(", ")
            ))
        })
    }

    /// The names of the registered processes.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("the run is waiting: resolve what it waits for, then resume it")]
    Waiting,
    #[error("interrupted by {0}: the run's programs were killed; resume the run to continue")]
    Interrupted(&'static str, u8),
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Run(RunError::Store(e))
    }
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Input(_) => 2,
            CliError::Waiting => 5,
            CliError::Interrupted(_, signal) => 128 + signal,
            CliError::Run(RunError::Effect { .. } | RunError::NotCancelled { .. }) => 2,
            CliError::Run(RunError::Cancelled { .. }) => 6,
            CliError::Run(RunError::Failed { .. }) => 1,
            CliError::Run(RunError::Store(
                StoreError::UnknownRun(_) | StoreError::InvalidRunId(_),
            )) => 2,
            CliError::Run(RunError::Store(_)) => 3,
            CliError::Run(RunError::NonDeterminism { .. } | RunError::Version { .. }) => 4,
            CliError::Run(_) => 3,
        }
    }
}

/// Parses the process arguments and runs the command. Call it from `main`.
pub fn main(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(async {
        tokio::select! {
            result = execute(&registry, &cli) => result,
            (name, number) = stop_signal() => Err(CliError::Interrupted(name, number)),
        }
    });
    // The run's tasks go with the runtime, and with them the process groups of its programs.
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Waiting) => ExitCode::from(CliError::Waiting.exit_code()),
        Err(e) => {
            if cli.json {
                out!(
                    "{}",
                    json!({ "error": e.to_string(), "exit": e.exit_code() })
                );
            }
            note!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves when the runner is asked to stop (`SIGINT`, `SIGTERM`, `SIGHUP`): the run is then
/// dropped, which kills its programs' process groups — a program runs in a group of its own, so
/// the terminal's Ctrl-C does not reach it. The run stays resumable.
async fn stop_signal() -> (&'static str, u8) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| signal(kind).ok();
        let (mut int, mut term, mut hup) = (
            listen(SignalKind::interrupt()),
            listen(SignalKind::terminate()),
            listen(SignalKind::hangup()),
        );
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut int) => ("SIGINT", 2),
            _ = next(&mut term) => ("SIGTERM", 15),
            _ = next(&mut hup) => ("SIGHUP", 1),
        }
    }
    #[cfg(not(unix))]
    {
        std::future::pending().await
    }
}

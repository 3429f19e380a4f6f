//! The command line for any binary that registers its processes ([`Registry`]). Behind the
//! `cli` feature. [`main`] takes over `main` (its own runtime, `std::env::args`, `RUST_LOG` on
//! standard error); [`run`] runs inside your runtime with your arguments; [`command`] and
//! [`Args`] mount it as a subcommand of your own clap application ([`run_args`]).
//!
//! - `run <process> --input FILE|-`, `resume <run> [--wait] [--allow-version-change]`: start or
//!   continue a run and drive it until it ends or stops to wait.
//! - `status [<run>]`, `list [--process ..] [--state ..] [--since ..]`, `events <run>`,
//!   `tasks <run> [--pending]`: read the journals.
//! - `post <run> <effect> --value JSON|--error MSG`, `approve|reject <run> <breakpoint>
//!   [--feedback ..]`, `cancel <run> [--reason ..]`: resolve what a run waits for, or end it.
//! - `prune --older-than DURATION [--state ..] [--dry-run]`, `prune <run>...`: delete runs.
//! - `graph <process> [--format mermaid|dot|tree] [--run <run>] [--json]`: the process's
//!   static graph; with `--run`, that run drawn on it (each node done, running, waiting, ..).
//! - `completions bash|zsh|fish`: shell completions.
//!
//! Every command takes `--runs-dir DIR` (default `.minder/runs`), `--json` (one JSON document
//! on standard output; an error is `{"error": .., "exit": ..}`, nothing on standard error) and
//! `--suspend-sleeps-over DURATION` (default `60s`).
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
//! Under `--json`, an error is one JSON object, `{"error": "...", "exit": N}`, on standard
//! output, and nothing is written to standard error.
//!
//! The code: `args` (the arguments, as clap types), `execute` (the commands), `wait` (driving a
//! run until it stops, and `resume --wait`), `prune` (retention), `format` (text and JSON
//! output, progress bars); here, the entry points, the [`Registry`] of processes and the exit
//! statuses.

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
mod prune;
mod wait;

use crate::graph::Graph;
use crate::run::{Process, Runner};
use crate::store::StoreError;
use crate::RunError;
use args::Cli;
use clap::FromArgMatches;
use execute::execute;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::fmt;
use std::process::ExitCode;

type RunFn = for<'a> fn(&'a Runner, &'a str) -> BoxFuture<'a, Result<Value, RunError>>;
type CreateFn =
    for<'a> fn(&'a Runner, Value, crate::Submit) -> BoxFuture<'a, Result<String, CliError>>;
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
    binary: Option<(&'static str, &'static str)>,
    /// The same processes, for `worker`.
    processes: crate::worker::Processes,
    /// Task state for the runners of `run`, `resume` and `worker`.
    states: crate::state::StateMap,
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

fn create<P: Process>(
    runner: &Runner,
    input: Value,
    options: crate::Submit,
) -> BoxFuture<'_, Result<String, CliError>> {
    Box::pin(async move {
        let input = decode_input::<P>(P::NAME, input)?;
        Ok(runner.submit_with::<P>(&input, options).await?)
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
        self.processes = self.processes.process::<P>();
        self
    }

    /// Registers `value` as task state for every run this command line drives (`run`,
    /// `resume`, `worker`): what [`Runner::state`] does for a runner of your own.
    pub fn state<T: crate::TaskState>(mut self, value: T) -> Self {
        self.states.insert(value);
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

    /// Names the binary: `--version` prints `name version`, and help and `completions` use
    /// the name. Pass your crate's: `.binary(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))`.
    /// Without it, the name is the file name the binary was started as, and the version
    /// minder's.
    pub fn binary(mut self, name: &'static str, version: &'static str) -> Self {
        self.binary = Some((name, version));
        self
    }

    /// The command line of this binary: [`command`] named and versioned as
    /// [`Registry::binary`] says.
    pub fn command(&self) -> clap::Command {
        self.command_for(None)
    }

    /// The command named as the registry says, else after `argv0`'s file name.
    fn command_for(&self, argv0: Option<&OsString>) -> clap::Command {
        let cmd = command().version(env!("CARGO_PKG_VERSION"));
        match self.binary {
            Some((name, version)) => cmd.name(name).bin_name(name).version(version),
            None => match argv0
                .and_then(|a| std::path::Path::new(a).file_name())
                .and_then(|f| f.to_str())
            {
                Some(name) => cmd.name(name.to_string()),
                None => cmd,
            },
        }
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
            CliError::Run(e) => run_exit_code(e),
        }
    }
}

fn run_exit_code(e: &RunError) -> u8 {
    match e {
        RunError::Effect { .. } | RunError::NotCancelled { .. } => 2,
        RunError::Cancelled { .. } => 6,
        RunError::Failed { .. } => 1,
        RunError::Store(StoreError::UnknownRun(_) | StoreError::InvalidRunId(_)) => 2,
        RunError::Store(_) => 3,
        RunError::NonDeterminism { .. } | RunError::Version { .. } => 4,
        // A child's runner error: the child's code.
        RunError::Child { error, .. } => run_exit_code(error),
        _ => 3,
    }
}

/// Parses the process arguments and runs the command. Call it from `main`: it starts its own
/// tokio runtime, and installs a `tracing` subscriber that writes to standard error what
/// `RUST_LOG` asks for (nothing without it). Inside a runtime of your own, call [`run`].
pub fn main(registry: Registry) -> ExitCode {
    install_tracing();
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
    let code = runtime.block_on(run(&registry, std::env::args_os()));
    // The run's tasks go with the runtime, and with them the process groups of its programs.
    drop(runtime);
    code
}

/// Installs a `tracing` subscriber that prints to standard error the spans and events
/// `RUST_LOG` asks for (`RUST_LOG=minder=debug`, `RUST_LOG=info`): a run's `run` span, its
/// steps' `step` spans, their events, and your tasks' own. Without `RUST_LOG`, nothing is
/// installed and nothing printed. [`main`] calls it; call it before [`run`] if you want the
/// same, unless your program installs a subscriber of its own. Does nothing when a global
/// subscriber is installed already.
pub fn install_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                note!("warning: RUST_LOG is ignored: {e}");
            }
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses `args` (the first one is the binary's name, as in [`std::env::args_os`]) and runs
/// the command inside the caller's tokio runtime (a multi-threaded one: a command task's
/// program is waited for on it); returns the exit status (see the module docs). A parse error,
/// `--help` or `--version` prints what clap prints and returns its status, never exits the
/// process. It installs no `tracing` subscriber (see [`install_tracing`]).
///
/// While a command runs, `SIGINT`, `SIGTERM` and `SIGHUP` stop it (a run's programs are
/// killed, the run stays resumable; the status is 128 + the signal). It listens for them
/// through tokio, which keeps handling them for the rest of the process once asked: after
/// `run` returns, Ctrl-C no longer ends a program that does not listen for it itself.
///
/// ```no_run
/// # use minder::cli::Registry;
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     let registry = Registry::new().binary(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
///     minder::cli::run(&registry, std::env::args_os()).await
/// }
/// ```
pub async fn run<I, T>(registry: &Registry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let parsed = registry
        .command_for(args.first())
        .try_get_matches_from(&args)
        .and_then(|matches| Args::from_arg_matches(&matches));
    match parsed {
        Ok(args) => run_args(registry, args).await,
        Err(e) => {
            let json = args.iter().skip(1).any(|a| a == "--json");
            parse_error(e, json)
        }
    }
}

/// Runs a command whose arguments were parsed already: the minder command line mounted as a
/// subcommand of your own clap application, as [`Args`] in a derived `Subcommand` or through
/// [`command`] and [`clap::FromArgMatches`]. As [`run`] otherwise.
pub async fn run_args(registry: &Registry, args: Args) -> ExitCode {
    let cli = args.cli;
    let result = if matches!(cli.command, args::Command::Worker { .. }) {
        // A worker stops claiming at the first signal and lets its runs finish for the grace
        // period; a second signal ends it at once.
        tokio::select! {
            result = execute::worker(registry, &cli, stop_signal()) => result,
            _ = async {
                stop_signal().await;
                stop_signal().await
            } => Err(CliError::Interrupted("a second signal", 2)),
        }
    } else {
        tokio::select! {
            result = execute(registry, &cli) => result,
            (name, number) = stop_signal() => Err(CliError::Interrupted(name, number)),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Waiting) => ExitCode::from(CliError::Waiting.exit_code()),
        Err(e) => {
            if cli.json {
                // One JSON object on standard output, nothing on standard error.
                out!(
                    "{}",
                    json!({ "error": e.to_string(), "exit": e.exit_code() })
                );
            } else {
                note!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Prints clap's error, help or version text and returns its status; under `--json`, an
/// error is one JSON object on standard output instead.
fn parse_error(e: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let code = e.exit_code().clamp(0, 255) as u8;
    let shown = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if json && !shown {
        let mut message = e.kind().to_string();
        if let Some(first) = e.render().to_string().lines().next() {
            message = first.trim_start_matches("error: ").to_string();
        }
        out!("{}", json!({ "error": message, "exit": code }));
    } else {
        let _ = e.print();
    }
    ExitCode::from(code)
}

/// The minder command line as a clap [`Command`](clap::Command), to mount as a subcommand of
/// your own application (rename it with [`Command::name`](clap::Command::name)); parse its
/// matches with [`clap::FromArgMatches`] into [`Args`] and call [`run_args`].
///
/// ```
/// use clap::FromArgMatches;
///
/// let app = clap::Command::new("shop")
///     .subcommand(clap::Command::new("serve"))
///     .subcommand(minder::cli::command().name("flows"));
/// let matches = app.get_matches_from(["shop", "flows", "list", "--json"]);
/// let (name, sub) = matches.subcommand().unwrap();
/// assert_eq!(name, "flows");
/// let args = minder::cli::Args::from_arg_matches(sub).unwrap();
/// // minder::cli::run_args(&registry, args).await
/// # let _ = args;
/// ```
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// The parsed arguments of the minder command line. It implements [`clap::Args`], so it
/// mounts in a derived application: `Flows(minder::cli::Args)` in your `Subcommand` enum,
/// then [`run_args`].
#[derive(Debug, Clone)]
pub struct Args {
    cli: Cli,
}

impl clap::FromArgMatches for Args {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Cli::from_arg_matches(matches).map(|cli| Args { cli })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.cli.update_from_arg_matches(matches)
    }
}

impl clap::Args for Args {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Cli::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Cli::augment_args_for_update(cmd)
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

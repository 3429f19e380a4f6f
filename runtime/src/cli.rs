//! The command line: `run`, `resume`, `status`, `list`, `events`, `graph`, for any binary that
//! registers its processes. Behind the `cli` feature.
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

use crate::engine::Notice;
use crate::graph::Graph;
use crate::inspect::{summarize, RunSummary, StepState};
use crate::journal::Event;
use crate::run::{Process, Runner};
use crate::store::{FileStore, Store, StoreError};
use crate::RunError;
use clap::{Parser, Subcommand, ValueEnum};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

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

type RunFn = for<'a> fn(&'a Runner, &'a str) -> BoxFuture<'a, Result<Value, RunError>>;
type CreateFn = fn(&Runner, Value) -> Result<String, CliError>;
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

fn create<P: Process>(runner: &Runner, input: Value) -> Result<String, CliError> {
    let input = decode_input::<P>(P::NAME, input)?;
    Ok(runner.create::<P>(&input)?)
}

fn resume<'a, P: Process>(
    runner: &'a Runner,
    id: &'a str,
) -> BoxFuture<'a, Result<Value, RunError>> {
    Box::pin(async move {
        let done = runner.resume::<P>(id).await?;
        serde_json::to_value(done.output)
            .map_err(|e| RunError::Decode(format!("cannot encode the output: {e}")))
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

#[derive(Parser, Debug)]
#[command(about = "Run and inspect durable minder workflows", version)]
struct Cli {
    /// Directory that holds the run journals.
    #[arg(long, global = true, default_value = ".minder/runs")]
    runs_dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A durable sleep with more than this left suspends the run (saved as waiting) instead
    /// of keeping the program up: `500ms`, `30s`, `5m`, `2h`.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    suspend_sleeps_over: std::time::Duration,
    #[command(subcommand)]
    command: Command,
}

/// `500ms`, `30s`, `5m`, `2h`: a number and a unit.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit: write `500ms`, `30s`, `5m` or `2h`"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => return Err(format!("unknown unit `{other}`: use ms, s, m or h")),
    };
    ms.map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a run of a process and drive it to its end.
    Run {
        /// The process name.
        process: String,
        /// The input JSON: a file, or `-` for standard input.
        #[arg(long)]
        input: String,
    },
    /// Continue a run: journaled steps are replayed, the rest runs.
    Resume {
        /// The run id.
        run_id: String,
        /// Worker mode: when the run stops to wait, wait for its results to be posted (by
        /// `post`, `approve` or `reject` from another shell) and continue, until it ends.
        #[arg(long)]
        wait: bool,
        /// Continue even though the process's structure changed since the run started.
        #[arg(long)]
        allow_version_change: bool,
    },
    /// One run's steps, or every run when no id is given.
    Status {
        /// The run id.
        run_id: Option<String>,
    },
    /// Every run in the runs directory.
    List,
    /// A run's journal, event by event.
    Events {
        /// The run id.
        run_id: String,
    },
    /// The breakpoints and external tasks of a run.
    Tasks {
        /// The run id.
        run_id: String,
        /// Only those still waiting for a result.
        #[arg(long)]
        pending: bool,
    },
    /// Post the result of a pending external task (checked against its type); then `resume`.
    Post {
        /// The run id.
        run_id: String,
        /// The effect id (from `tasks --pending`).
        effect: String,
        /// The result, as JSON.
        #[arg(long, conflicts_with = "error", required_unless_present = "error")]
        value: Option<String>,
        /// Post a failure with this message instead.
        #[arg(long)]
        error: Option<String>,
    },
    /// Approve a pending breakpoint; then `resume`.
    Approve {
        /// The run id.
        run_id: String,
        /// The breakpoint's effect id.
        breakpoint: String,
        /// What to tell the process.
        #[arg(long)]
        feedback: Option<String>,
    },
    /// Reject a pending breakpoint; then `resume`.
    Reject {
        /// The run id.
        run_id: String,
        /// The breakpoint's effect id.
        breakpoint: String,
        /// What to tell the process.
        #[arg(long)]
        feedback: Option<String>,
    },
    /// Cancel a run: it never runs again. A run another process is driving is asked to stop
    /// (its unfinished steps are cancelled, command tasks killed); this waits until it has.
    Cancel {
        /// The run id.
        run_id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Draw a process's static graph.
    Graph {
        /// The process name.
        process: String,
        /// The drawing format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
    Tree,
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
            CliError::Run(RunError::Effect(_)) => 2,
            CliError::Run(RunError::Cancelled(_)) => 6,
            CliError::Run(RunError::Failed { .. }) => 1,
            CliError::Run(RunError::Store(
                StoreError::UnknownRun(_) | StoreError::InvalidRunId(_),
            )) => 2,
            CliError::Run(RunError::Store(_)) => 3,
            CliError::Run(RunError::NonDeterminism { .. } | RunError::Version(_)) => 4,
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

fn read_input(source: &str) -> Result<Value, CliError> {
    let (text, origin) = if source == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            CliError::Input(format!("cannot read the input from standard input: {e}"))
        })?;
        (text, "standard input".to_string())
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| CliError::Input(format!("cannot read the input file `{source}`: {e}")))?;
        (text, format!("`{source}`"))
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("the input in {origin} is not valid JSON: {e}")))
}

async fn execute(registry: &Registry, cli: &Cli) -> Result<(), CliError> {
    let store = FileStore::new(cli.runs_dir.clone());
    match &cli.command {
        Command::Run { process, input } => {
            let entry = registry.find(process)?;
            let input = read_input(input)?;
            let runner = runner(store, cli);
            let run_id = (entry.create)(&runner, input)?;
            if !cli.json {
                note!(
                    "run {run_id} of `{}` started in {}",
                    entry.name,
                    cli.runs_dir.display()
                );
            }
            drive(entry, &runner, &run_id, cli).await
        }
        Command::Resume {
            run_id,
            wait,
            allow_version_change,
        } => {
            recover(&store, run_id)?;
            let events = store.read(run_id)?;
            let summary = summarize(&events);
            let entry = registry.find(&summary.process)?;
            let runner = runner(store.clone(), cli).allow_version_change(*allow_version_change);
            loop {
                match drive(entry, &runner, run_id, cli).await {
                    Err(CliError::Waiting) if *wait => {
                        // The lock is released while waiting, so `post` / `approve` can write;
                        // a breakpoint's timeout also ends the wait.
                        let events = store.read(run_id)?;
                        let seen = events.len();
                        let due = events.iter().rev().find_map(|e| match e {
                            Event::Suspended { due_ms, .. } => Some(*due_ms),
                            _ => None,
                        });
                        let due = due.flatten();
                        loop {
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            let now = crate::engine::unix_millis(std::time::SystemTime::now());
                            if store.read(run_id)?.len() != seen || due.is_some_and(|d| now >= d) {
                                break;
                            }
                        }
                    }
                    other => return other,
                }
            }
        }
        Command::Status { run_id: Some(id) } => {
            let summary = summarize(&store.read(id)?);
            if cli.json {
                print_json(&summary);
            } else {
                print_status(&summary);
            }
            Ok(())
        }
        Command::Status { run_id: None } | Command::List => {
            let mut runs = Vec::new();
            for id in store.list()? {
                match store.read(&id) {
                    Ok(events) => runs.push(summarize(&events)),
                    Err(e) => note!("warning: run `{id}`: {e}"),
                }
            }
            if cli.json {
                print_json(&runs);
            } else {
                print_list(&runs);
            }
            Ok(())
        }
        Command::Events { run_id } => {
            let events = store.read(run_id)?;
            if cli.json {
                print_json(&events);
            } else {
                for (i, e) in events.iter().enumerate() {
                    out!("{i:>5}  {}", describe(e));
                }
            }
            Ok(())
        }
        Command::Tasks { run_id, pending } => {
            let summary = summarize(&store.read(run_id)?);
            let effects: Vec<_> = summary
                .effects
                .iter()
                .filter(|e| !*pending || !e.resolved)
                .collect();
            if cli.json {
                print_json(&effects);
            } else if effects.is_empty() {
                out!("no {}effects", if *pending { "pending " } else { "" });
            } else {
                for e in effects {
                    let state = if e.resolved { "resolved" } else { "pending" };
                    out!("{state:<9} {:<11} {}  {}", e.kind, e.key, short(&e.input));
                }
            }
            if let (false, Some(ms)) = (cli.json, summary.wakes_at_ms) {
                out!(
                    "the run goes on by itself at {} (a sleep or a breakpoint's timeout)",
                    crate::inspect::utc_time(ms)
                );
            }
            Ok(())
        }
        Command::Post {
            run_id,
            effect,
            value,
            error,
        } => {
            let summary = summarize(&store.read(run_id)?);
            let entry = registry.find(&summary.process)?;
            let result = match (value, error) {
                (Some(v), _) => Ok(serde_json::from_str(v).map_err(|e| {
                    CliError::Input(format!("the value for `{effect}` is not valid JSON: {e}"))
                })?),
                (None, Some(message)) => Err(json!({ "kind": "failed", "message": message })),
                (None, None) => return Err(CliError::Input("give --value or --error".into())),
            };
            recover(&store, run_id)?;
            let runner = Runner::new(store);
            (entry.post)(&runner, run_id, effect, result).await?;
            report(cli, run_id, effect, "posted");
            Ok(())
        }
        Command::Approve {
            run_id,
            breakpoint,
            feedback,
        }
        | Command::Reject {
            run_id,
            breakpoint,
            feedback,
        } => {
            let approve = matches!(cli.command, Command::Approve { .. });
            let decision = if approve {
                crate::Decision::Approved {
                    feedback: feedback.clone(),
                }
            } else {
                crate::Decision::Rejected {
                    feedback: feedback.clone(),
                }
            };
            recover(&store, run_id)?;
            Runner::new(store)
                .decide(run_id, breakpoint, decision)
                .await?;
            report(
                cli,
                run_id,
                breakpoint,
                if approve { "approved" } else { "rejected" },
            );
            Ok(())
        }
        Command::Cancel { run_id, reason } => {
            recover(&store, run_id)?;
            Runner::new(store).cancel(run_id, reason.clone()).await?;
            if cli.json {
                print_json(&json!({ "run_id": run_id, "state": "cancelled" }));
            } else {
                out!("run {run_id} cancelled");
            }
            Ok(())
        }
        Command::Graph { process, format } => {
            let graph = registry.find(process)?.graph;
            match format {
                GraphFormat::Mermaid => out!("{}", graph.to_mermaid().trim_end()),
                GraphFormat::Dot => out!("{}", graph.to_dot().trim_end()),
                GraphFormat::Tree => out!("{}", graph.to_string().trim_end()),
            }
            Ok(())
        }
    }
}

/// Before a command writes to run `run_id`: if its last writer was poisoned by a failed write or
/// sync, cuts the journal back to the last durable offset ([`FileStore::recover`]) and tells
/// the user on standard error. A run held by a writer is left to the command, which reports it.
fn recover(store: &FileStore, run_id: &str) -> Result<(), CliError> {
    match store.recover(run_id) {
        Ok(Some(notice)) => {
            note!("warning: {notice}");
            Ok(())
        }
        Ok(None) | Err(StoreError::Locked(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn report(cli: &Cli, run_id: &str, effect: &str, what: &str) {
    if cli.json {
        print_json(&json!({ "run_id": run_id, "effect": effect, "result": what }));
    } else {
        out!("{what} `{effect}` of run {run_id}; continue it with: resume {run_id}");
    }
}

async fn drive(entry: &Entry, runner: &Runner, run_id: &str, cli: &Cli) -> Result<(), CliError> {
    let result = (entry.resume)(runner, run_id).await;
    match result {
        Ok(output) => {
            if cli.json {
                print_json(&json!({ "run_id": run_id, "state": "completed", "output": output }));
            } else {
                out!("run {run_id} completed");
                out!(
                    "{}",
                    serde_json::to_string_pretty(&output).unwrap_or_default()
                );
                note!(
                    "look at it with: status {run_id} | events {run_id} (add --runs-dir {} if not the default)",
                    cli.runs_dir.display()
                );
            }
            Ok(())
        }
        Err(RunError::Suspended { run_id, waiting }) => {
            if cli.json {
                print_json(&json!({ "run_id": run_id, "state": "waiting", "waiting": waiting }));
            } else {
                out!("run {run_id} is waiting for:");
                for w in &waiting {
                    match w.due_ms {
                        Some(due) if w.kind == "sleep" => out!(
                            "  {:<11} {}  until {}",
                            w.kind,
                            w.key,
                            crate::inspect::utc_time(due)
                        ),
                        _ => out!("  {:<11} {}  {}", w.kind, w.key, short(&w.input)),
                    }
                }
                if waiting.iter().any(|w| w.kind != "sleep") {
                    out!(
                        "resolve with: approve|reject {run_id} <breakpoint>, post {run_id} <effect> --value JSON; then: resume {run_id}"
                    );
                }
                if let Some(due) = waiting.iter().filter_map(|w| w.due_ms).min() {
                    out!(
                        "it goes on by itself at {}: resume {run_id} then, or now with `resume {run_id} --wait`",
                        crate::inspect::utc_time(due)
                    );
                }
            }
            Err(CliError::Waiting)
        }
        Err(RunError::Failed { process, message }) => {
            if !cli.json {
                out!("run {run_id} failed");
            }
            Err(CliError::Run(RunError::Failed { process, message }))
        }
        Err(e) => Err(e.into()),
    }
}

/// A runner over the file store that shows logs and map progress on a terminal.
fn runner(store: FileStore, cli: &Cli) -> Runner {
    let root = store.runs_dir().to_path_buf();
    let runner = Runner::new(store)
        .artifacts_in(root)
        .suspend_sleeps_longer_than(cli.suspend_sleeps_over);
    let json = cli.json;
    if json {
        return runner;
    }
    let terminal = std::io::stderr().is_terminal();
    let bars = Arc::new(Mutex::new(Progress::new(terminal)));
    runner.on_notice(move |_, notice| bars.lock().unwrap().show(notice))
}

struct Progress {
    multi: Option<indicatif::MultiProgress>,
    bars: HashMap<String, indicatif::ProgressBar>,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Progress {
            multi: terminal.then(indicatif::MultiProgress::new),
            bars: HashMap::new(),
        }
    }

    fn show(&mut self, notice: &Notice) {
        match notice {
            Notice::Log { message, .. } => match &self.multi {
                Some(m) => {
                    let _ = m.println(format!("  log: {message}"));
                }
                None => note!("  log: {message}"),
            },
            Notice::Progress { label, done, total } => {
                let Some(multi) = &self.multi else {
                    return;
                };
                let bar = self.bars.entry(label.clone()).or_insert_with(|| {
                    let bar = multi.add(indicatif::ProgressBar::new(*total as u64));
                    if let Ok(style) = indicatif::ProgressStyle::with_template(
                        "  {prefix} [{bar:30}] {pos}/{len} {elapsed}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_prefix(label.clone());
                    bar
                });
                bar.set_position(*done as u64);
                if done == total {
                    bar.finish();
                    self.bars.remove(label);
                }
            }
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("\"{e}\""))
    );
}

fn print_list(runs: &[RunSummary]) {
    if runs.is_empty() {
        out!("no runs");
        return;
    }
    let width = runs
        .iter()
        .map(|r| r.process.len())
        .max()
        .unwrap_or(7)
        .max(7);
    out!(
        "{:<24}  {:<width$}  {:<10}  {:>5}  {:>6}",
        "RUN",
        "PROCESS",
        "STATE",
        "DONE",
        "FAILED"
    );
    for r in runs {
        out!(
            "{:<24}  {:<width$}  {:<10}  {:>5}  {:>6}",
            r.run_id,
            r.process,
            r.state.to_string(),
            r.count(StepState::Done),
            r.count(StepState::Failed),
        );
    }
}

fn print_status(s: &RunSummary) {
    out!("run      {}", s.run_id);
    out!("process  {}", s.process);
    out!("state    {}", s.state);
    out!(
        "steps    {} done, {} failed, {} running or interrupted",
        s.count(StepState::Done),
        s.count(StepState::Failed),
        s.count(StepState::Running)
    );
    if let Some(e) = &s.error {
        out!("error    {e}");
    }
    for e in &s.effects {
        let state = if e.resolved { "resolved" } else { "waiting" };
        out!("{:<8} {} `{}` ({})", state, e.kind, e.name, e.key);
    }
    if let Some(ms) = s.wakes_at_ms {
        out!(
            "wakes    {} (resume it then, or keep it going with `resume --wait`)",
            crate::inspect::utc_time(ms)
        );
    }
    let width = s
        .steps
        .iter()
        .map(|st| st.key.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if !s.steps.is_empty() {
        out!("");
        out!("{:<8}  {:<width$}  TASK", "STATE", "STEP");
        for st in &s.steps {
            let state = match st.state {
                StepState::Done => "done",
                StepState::Failed => "failed",
                StepState::Running => "running",
                StepState::Cancelled => "cancelled",
            };
            out!("{state:<8}  {:<width$}  {}", st.key, st.task);
        }
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn describe(e: &Event) -> String {
    use crate::journal::Outcome;
    match e {
        Event::RunCreated {
            process,
            input,
            fingerprint,
            ..
        } => {
            format!(
                "created     {process} input={} structure={fingerprint}",
                short(input)
            )
        }
        Event::StepStarted {
            key, task, args, ..
        } => {
            format!("started     {key}  {task}{}", short(args))
        }
        Event::StepCompleted {
            key,
            outcome: Outcome::Ok(v),
        } => {
            format!("completed   {key}  ok {}", short(v))
        }
        Event::StepCompleted {
            key,
            outcome: Outcome::Err(v),
        } => {
            format!("completed   {key}  error {}", short(v))
        }
        Event::Recorded { key, value, .. } => format!("recorded    {key}  {}", short(value)),
        Event::Log { key, message, .. } => format!("log         {key}  {message}"),
        Event::EffectRequested {
            key,
            kind,
            name,
            input,
            ..
        } => {
            format!("waits for   {key}  {kind} `{name}` {}", short(input))
        }
        Event::EffectResolved {
            key,
            outcome: Outcome::Ok(v),
        } => {
            format!("resolved    {key}  ok {}", short(v))
        }
        Event::EffectResolved {
            key,
            outcome: Outcome::Err(v),
        } => {
            format!("resolved    {key}  error {}", short(v))
        }
        Event::AttemptFailed {
            key,
            attempt,
            error,
        } => {
            format!(
                "retrying    {key}  attempt {attempt} failed: {}",
                short(error)
            )
        }
        Event::StepCancelled { key } => format!("cancelled   {key}"),
        Event::ChildStarted {
            key, pgid, program, ..
        } => format!("process     {key}  `{program}` in process group {pgid}"),
        Event::Suspended { waiting, .. } => {
            format!("suspended   waiting for {}", waiting.join(", "))
        }
        Event::RunCompleted { output } => format!("run done    output={}", short(output)),
        Event::RunFailed { error } => format!("run failed  {error}"),
        Event::RunCancelled { reason } => {
            format!(
                "cancelled   {}",
                reason.as_deref().unwrap_or("(no reason given)")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_on_the_command_line() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10d")
            .unwrap_err()
            .contains("unknown unit `d`"));
        assert!(parse_duration("s")
            .unwrap_err()
            .contains("does not start with a number"));
        assert!(parse_duration("99999999999999999h")
            .unwrap_err()
            .contains("too long"));
    }
}

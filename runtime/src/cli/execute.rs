//! The commands: what each subcommand does.

use super::args::{Cli, Command, GraphFormat};
use super::format::{describe, graph_json, print_json, print_list, print_status, short, Progress};
use super::wait::{drive, until_news};
use super::{CliError, Registry};
use crate::inspect::summarize;
use crate::run::Runner;
use crate::store::{FileStore, Store, StoreError};
use serde_json::{json, Value};
use std::io::{IsTerminal, Read};
use std::sync::{Arc, Mutex};

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

/// The store the command line works on: `--store` (a PostgreSQL URL or a runs directory),
/// else `--runs-dir`.
pub(super) struct CliStore {
    pub(super) shared: Arc<dyn Store>,
    /// The same store when it is a runs directory (recovery and artifacts need it).
    file: Option<FileStore>,
    /// Where it is, for messages.
    pub(super) label: String,
}

impl std::ops::Deref for CliStore {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        self.shared.as_ref()
    }
}

fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

pub(super) async fn open_store(
    cli: &Cli,
    lease: Option<std::time::Duration>,
) -> Result<CliStore, CliError> {
    match cli.store.as_deref() {
        Some(url) if is_postgres_url(url) => {
            #[cfg(feature = "postgres")]
            {
                let lease = lease.unwrap_or(std::time::Duration::from_secs(15));
                let store = crate::store::PgStore::connect_with_lease(url, lease).await?;
                let label = store.url().to_string();
                Ok(CliStore {
                    shared: Arc::new(store),
                    file: None,
                    label,
                })
            }
            #[cfg(not(feature = "postgres"))]
            {
                let _ = lease;
                Err(CliError::Input(format!(
                    "--store {}: this binary was built without minder's `postgres` feature",
                    url.split('@').next_back().unwrap_or(url)
                )))
            }
        }
        Some(url) if url.contains("://") => Err(CliError::Input(format!(
            "--store `{}`: not a store this binary knows; give a postgres:// URL or a runs \
             directory",
            url.split('@').next_back().unwrap_or(url)
        ))),
        other => {
            let dir = other.map_or_else(|| cli.runs_dir.clone(), std::path::PathBuf::from);
            let file = FileStore::new(dir.clone());
            Ok(CliStore {
                shared: Arc::new(file.clone()),
                file: Some(file),
                label: dir.display().to_string(),
            })
        }
    }
}

pub(super) async fn execute(registry: &Registry, cli: &Cli) -> Result<(), CliError> {
    let store = open_store(cli, None).await?;
    match &cli.command {
        Command::Run {
            process,
            input,
            detach,
            queue,
            priority,
        } => {
            let entry = registry.find(process)?;
            let input = read_input(input)?;
            let runner = runner(&store, cli).with_states(&registry.states);
            let mut options = crate::Submit::default();
            if let Some(queue) = queue {
                options = options.queue(queue.clone());
            }
            if let Some(priority) = priority {
                options = options.priority(*priority);
            }
            let run_id = (entry.create)(&runner, input, options).await?;
            if *detach {
                if cli.json {
                    print_json(&json!({ "run_id": run_id, "state": "submitted" }));
                } else {
                    out!("{run_id}");
                    note!(
                        "run {run_id} of `{}` submitted to {}: a worker drives it (`worker`)",
                        entry.name,
                        store.label
                    );
                }
                return Ok(());
            }
            if !cli.json {
                note!(
                    "run {run_id} of `{}` started in {}",
                    entry.name,
                    store.label
                );
            }
            drive(entry, &runner, &run_id, cli).await
        }
        Command::Worker { .. } => unreachable!("`worker` is run by `worker()`"),
        Command::Queue {
            name,
            concurrency,
            rate,
            unlimited,
        } => {
            if let Some(name) = name {
                let mut limits = crate::store::QueueLimits::none();
                if let Some(n) = concurrency {
                    limits = limits.concurrency(*n);
                }
                if let Some((max, period)) = rate {
                    limits = limits.rate(*max, *period);
                }
                if limits == crate::store::QueueLimits::none() && !*unlimited {
                    return Err(CliError::Input(
                        "give --concurrency, --rate, or --unlimited to remove the limits".into(),
                    ));
                }
                store.set_queue(name, limits).await?;
            }
            let queues = store.queues().await?;
            if cli.json {
                let queues: Vec<_> = queues
                    .iter()
                    .map(|(name, limits)| json!({ "queue": name, "limits": limits }))
                    .collect();
                print_json(&queues);
            } else if queues.is_empty() {
                out!("no queue has limits");
            } else {
                for (name, limits) in queues {
                    let mut parts = Vec::new();
                    if let Some(n) = limits.concurrency {
                        parts.push(format!("at most {n} at once"));
                    }
                    if let Some(r) = limits.rate {
                        parts.push(format!(
                            "at most {} started per {}",
                            r.max,
                            humantime::format_duration(std::time::Duration::from_millis(
                                r.period_ms
                            ))
                        ));
                    }
                    out!("{name:<16} {}", parts.join(", "));
                }
            }
            Ok(())
        }
        Command::Workers => {
            let workers = store.workers().await?;
            if cli.json {
                print_json(&workers);
            } else if workers.is_empty() {
                out!("no live workers on {}", store.label);
            } else {
                for w in workers {
                    out!(
                        "{}  {}:{}  since {}  holds {}",
                        w.id,
                        w.host,
                        w.pid,
                        crate::inspect::utc_time(w.started_ms),
                        if w.holds.is_empty() {
                            "nothing".to_string()
                        } else {
                            w.holds.join(", ")
                        }
                    );
                }
            }
            Ok(())
        }
        Command::Resume {
            run_id,
            wait,
            allow_version_change,
        } => {
            recover(&store, run_id).await?;
            let events = store.read(run_id).await?;
            let summary = summarize(&events);
            let entry = registry.find(&summary.process)?;
            let runner = runner(&store, cli)
                .with_states(&registry.states)
                .allow_version_change(*allow_version_change);
            loop {
                match drive(entry, &runner, run_id, cli).await {
                    Err(CliError::Waiting) if *wait => {
                        // The lock is released while waiting, so `post` / `approve` can write;
                        // a breakpoint's timeout also ends the wait.
                        until_news(&*store, run_id).await?;
                    }
                    other => return other,
                }
            }
        }
        Command::Status { run_id: Some(id) } => {
            let events = store.read(id).await?;
            let summary = summarize(&events);
            // Where the run stands on its graph, when this binary has the process.
            let graph = registry.find(&summary.process).ok().map(|e| e.graph);
            let at = graph.map(|g| {
                let states = g.run_states(&events, std::time::SystemTime::now());
                (g, states)
            });
            if cli.json {
                let mut value = serde_json::to_value(&summary).unwrap_or(Value::Null);
                if let (Some((g, states)), Some(obj)) = (&at, value.as_object_mut()) {
                    obj.insert("at".into(), super::format::at_json(g, states));
                }
                print_json(&value);
            } else {
                print_status(&summary, at.as_ref().map(|(g, s)| (*g, s)));
                // What the children it waits for wait for, one level down.
                for child in summary.pending().filter_map(|e| e.child_run()) {
                    let Ok(events) = store.read(child).await else {
                        continue;
                    };
                    let c = summarize(&events);
                    let waits: Vec<String> = c
                        .pending()
                        .map(|p| format!("{} `{}` ({})", p.kind, p.name, p.key))
                        .collect();
                    match waits.is_empty() {
                        true => out!("child    {child} is {}", c.state),
                        false => out!("child    {child} is {}, for {}", c.state, waits.join(", ")),
                    }
                }
            }
            Ok(())
        }
        Command::Status { run_id: None } => list(&*store, cli, &Filter::default()).await,
        Command::List {
            process,
            state,
            since,
            queue,
        } => {
            let filter = Filter {
                process: process.as_deref(),
                states: state,
                since: *since,
                queue: queue.as_deref(),
            };
            list(&*store, cli, &filter).await
        }
        Command::Events { run_id } => {
            let events = store.read(run_id).await?;
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
            let summary = summarize(&store.read(run_id).await?);
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
            let summary = summarize(&store.read(run_id).await?);
            let entry = registry.find(&summary.process)?;
            let result = match (value, error) {
                (Some(v), _) => Ok(serde_json::from_str(v).map_err(|e| {
                    CliError::Input(format!("the value for `{effect}` is not valid JSON: {e}"))
                })?),
                (None, Some(message)) => Err(json!({ "kind": "failed", "message": message })),
                (None, None) => return Err(CliError::Input("give --value or --error".into())),
            };
            recover(&store, run_id).await?;
            let runner = Runner::from_store(store.shared.clone());
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
            recover(&store, run_id).await?;
            Runner::from_store(store.shared.clone())
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
            recover(&store, run_id).await?;
            Runner::from_store(store.shared.clone())
                .cancel(run_id, reason.clone())
                .await?;
            if cli.json {
                print_json(&json!({ "run_id": run_id, "state": "cancelled" }));
            } else {
                out!("run {run_id} cancelled");
            }
            Ok(())
        }
        Command::Prune {
            run_ids,
            older_than,
            state,
            dry_run,
        } => {
            let ask = super::prune::Ask {
                run_ids,
                older_than: *older_than,
                states: state,
                dry_run: *dry_run,
            };
            super::prune::prune(&*store, cli, ask).await
        }
        Command::Completions { shell } => {
            let mut command = registry.command();
            let name = command.get_name().to_string();
            clap_complete::generate(*shell, &mut command, name, &mut std::io::stdout());
            Ok(())
        }
        Command::Graph {
            process,
            format,
            run,
        } => {
            let graph = registry.find(process)?.graph;
            let states = match run {
                None => None,
                Some(id) => {
                    let states =
                        graph.run_states(&store.read(id).await?, std::time::SystemTime::now());
                    if states.process != graph.process {
                        return Err(CliError::Input(format!(
                            "run `{id}` is a run of `{}`, not of `{}`: draw it with `graph {} --run {id}`",
                            states.process, graph.process, states.process
                        )));
                    }
                    if !states.same_structure {
                        note!(
                            "warning: `{}` changed since run `{id}` started (its structure differs): \
                             its steps are drawn on the nodes they recorded, which may have moved",
                            graph.process
                        );
                    }
                    Some(states)
                }
            };
            if cli.json {
                print_json(&graph_json(graph, states.as_ref()));
                return Ok(());
            }
            let text = match (format, &states) {
                (GraphFormat::Mermaid, None) => graph.to_mermaid(),
                (GraphFormat::Dot, None) => graph.to_dot(),
                (GraphFormat::Tree, None) => graph.to_string(),
                (GraphFormat::Mermaid, Some(s)) => graph.to_mermaid_with(s),
                (GraphFormat::Dot, Some(s)) => graph.to_dot_with(s),
                (GraphFormat::Tree, Some(s)) => graph.to_tree_with(s),
            };
            out!("{}", text.trim_end());
            Ok(())
        }
    }
}

/// What `list` shows: the runs that match every filter given.
#[derive(Default)]
struct Filter<'a> {
    process: Option<&'a str>,
    states: &'a [String],
    since: Option<std::time::Duration>,
    queue: Option<&'a str>,
}

async fn list(store: &dyn Store, cli: &Cli, filter: &Filter<'_>) -> Result<(), CliError> {
    let now = std::time::SystemTime::now();
    let mut runs = Vec::new();
    for id in store.list().await? {
        let (summary, queue) = match store.read(&id).await {
            Ok(events) => {
                let queue = match events.first() {
                    Some(crate::journal::Event::RunCreated { queue, .. }) => queue
                        .clone()
                        .unwrap_or_else(|| crate::store::DEFAULT_QUEUE.to_string()),
                    _ => crate::store::DEFAULT_QUEUE.to_string(),
                };
                (summarize(&events), queue)
            }
            Err(e) => {
                note!("warning: run `{id}`: {e}");
                continue;
            }
        };
        if filter.queue.is_some_and(|q| q != queue) {
            continue;
        }
        if filter.process.is_some_and(|p| p != summary.process)
            || !(filter.states.is_empty() || filter.states.contains(&summary.state.to_string()))
        {
            continue;
        }
        if let Some(since) = filter.since {
            // A run whose store cannot say when it was last written does not match.
            let recent = match store.last_write(&id).await? {
                Some(written) => now.duration_since(written).unwrap_or_default() <= since,
                None => false,
            };
            if !recent {
                continue;
            }
        }
        runs.push(summary);
    }
    if cli.json {
        print_json(&runs);
    } else {
        print_list(&runs);
    }
    Ok(())
}

/// Before a command writes to run `run_id`: if its last writer was poisoned by a failed write or
/// sync, cuts the journal back to the last durable offset ([`FileStore::recover`]) and tells
/// the user on standard error. A run held by a writer is left to the command, which reports it.
async fn recover(store: &CliStore, run_id: &str) -> Result<(), CliError> {
    let Some(file) = &store.file else {
        return Ok(());
    };
    match file.recover(run_id).await {
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

/// A runner over the store that shows logs and map progress on a terminal.
fn runner(store: &CliStore, cli: &Cli) -> Runner {
    let mut runner = Runner::from_store(store.shared.clone())
        .suspend_sleeps_longer_than(cli.suspend_sleeps_over);
    if let Some(file) = &store.file {
        runner = runner.artifacts_in(file.runs_dir().to_path_buf());
    }
    let json = cli.json;
    if json {
        return runner;
    }
    let terminal = std::io::stderr().is_terminal();
    let bars = Arc::new(Mutex::new(Progress::new(terminal)));
    runner.on_notice(move |_, notice| bars.lock().unwrap().show(notice))
}

/// `worker`: drives every ready run of the registry's processes until `stop` resolves, then
/// lets the runs under way finish for the grace period.
pub(super) async fn worker(
    registry: &Registry,
    cli: &Cli,
    stop: impl std::future::Future<Output = (&'static str, u8)>,
) -> Result<(), CliError> {
    let Command::Worker {
        queues,
        concurrency,
        grace,
        lease,
        poll,
    } = &cli.command
    else {
        unreachable!("called for `worker` only")
    };
    let store = open_store(cli, Some(*lease)).await?;
    let runner = Runner::from_store(store.shared.clone())
        .with_states(&registry.states)
        .suspend_sleeps_longer_than(cli.suspend_sleeps_over);
    let runner = match &store.file {
        Some(file) => runner.artifacts_in(file.runs_dir().to_path_buf()),
        None => runner,
    };
    let json = cli.json;
    let worker = crate::worker::Worker::new(runner, registry.processes.clone())
        .concurrency(*concurrency)
        .queues(queues.clone())
        .grace(*grace)
        .lease(*lease)
        .poll(*poll)
        .on_notice(move |message| {
            if json {
                print_json(&json!({ "notice": message }));
            } else {
                note!("{message}");
            }
        })
        .on_run(move |run_id, outcome| {
            if json {
                print_json(&json!({ "run_id": run_id, "outcome": outcome }));
            } else {
                note!("run {run_id} {outcome}");
            }
        });
    if !json {
        note!(
            "worker {} on {}: {} (at most {} runs at once{}); stop it with Ctrl-C or SIGTERM",
            worker.id(),
            store.label,
            registry.names().join(", "),
            concurrency,
            if queues.is_empty() {
                String::new()
            } else {
                format!(", queues {}", queues.join(", "))
            }
        );
    }
    let report = worker
        .run_until(async {
            let (name, _) = stop.await;
            if !json {
                note!(
                    "{name}: claiming nothing more; the runs under way get {} to finish",
                    humantime::format_duration(*grace)
                );
            }
        })
        .await?;
    if json {
        print_json(&json!({
            "completed": report.completed,
            "failed": report.failed,
            "suspended": report.suspended,
            "cancelled": report.cancelled,
            "lost": report.lost,
            "errors": report.errors,
            "abandoned": report.abandoned,
        }));
    } else {
        note!(
            "worker stopped: {} completed, {} failed, {} waiting, {} cancelled, {} lost to \
             other workers, {} errors, {} left unfinished",
            report.completed,
            report.failed,
            report.suspended,
            report.cancelled,
            report.lost,
            report.errors,
            report.abandoned
        );
    }
    Ok(())
}

//! Driving a run until it ends or stops to wait, and `resume --wait`'s wait for news.

use super::args::Cli;
use super::format::{print_json, short};
use super::{CliError, Entry};
use crate::inspect::WaitKind;
use crate::journal::Event;
use crate::run::Runner;
use crate::store::Store;
use crate::RunError;
use serde_json::json;

pub(super) async fn drive(
    entry: &Entry,
    runner: &Runner,
    run_id: &str,
    cli: &Cli,
) -> Result<(), CliError> {
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
                let hint = match &cli.store {
                    Some(_) => " (with the same --store)".to_string(),
                    None => format!(
                        " (add --runs-dir {} if not the default)",
                        cli.runs_dir.display()
                    ),
                };
                note!("look at it with: status {run_id} | events {run_id}{hint}");
            }
            Ok(())
        }
        Err(RunError::Suspended { run_id, waiting }) => {
            if cli.json {
                print_json(&json!({ "run_id": run_id, "state": "waiting", "waiting": waiting }));
            } else {
                out!("run {run_id} is waiting for:");
                for w in &waiting {
                    let child = w.input.get("run_id").and_then(|id| id.as_str());
                    match w.due_ms {
                        _ if w.kind == WaitKind::Child => out!(
                            "  {:<11} {}  run {}: `status {}` says what it waits for",
                            w.kind,
                            w.key,
                            child.unwrap_or("?"),
                            child.unwrap_or("?")
                        ),
                        Some(due) if w.kind == WaitKind::Sleep => out!(
                            "  {:<11} {}  until {}",
                            w.kind,
                            w.key,
                            crate::inspect::utc_time(due)
                        ),
                        _ => out!("  {:<11} {}  {}", w.kind, w.key, short(&w.input)),
                    }
                }
                if waiting
                    .iter()
                    .any(|w| w.kind != WaitKind::Sleep && w.kind != WaitKind::Child)
                {
                    out!(
                        "resolve with: approve|reject {run_id} <breakpoint>, post {run_id} <effect> --value JSON; then: resume {run_id}"
                    );
                }
                if waiting.iter().any(|w| w.kind == WaitKind::Child) {
                    out!(
                        "a child run goes on when what it waits for is resolved; then: resume {run_id} (it resumes the child first)"
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

/// Waits while a run is suspended: returns once its journal grew (a result posted, a
/// breakpoint decided) or its earliest due time (a sleep, a breakpoint's timeout) passed.
pub(super) async fn until_news(store: &dyn Store, run_id: &str) -> Result<(), CliError> {
    let events = store.read(run_id).await?;
    let seen = events.len();
    let due = events.iter().rev().find_map(|e| match e {
        Event::Suspended { due_ms, .. } => Some(*due_ms),
        _ => None,
    });
    let due = due.flatten();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = crate::engine::unix_millis(std::time::SystemTime::now());
        if store.read(run_id).await?.len() != seen || due.is_some_and(|d| now >= d) {
            break;
        }
    }
    Ok(())
}

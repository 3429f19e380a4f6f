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
/// breakpoint decided) or its earliest due time (a sleep, a breakpoint's timeout) passed —
/// or the journal or due time of a child process it waits for (and of theirs): resuming the
/// run resumes them.
pub(super) async fn until_news(store: &dyn Store, run_id: &str) -> Result<(), CliError> {
    let mut watched: Vec<(String, usize)> = Vec::new();
    let mut due: Option<u64> = None;
    let mut next = vec![run_id.to_string()];
    while let Some(id) = next.pop() {
        let events = store.read(&id).await?;
        let waiting = events.iter().rev().find_map(|e| match e {
            Event::Suspended { waiting, due_ms } => Some((waiting.clone(), *due_ms)),
            _ => None,
        });
        if let Some((waiting, due_ms)) = waiting {
            due = due.into_iter().chain(due_ms).min();
            // The children among what it waits for (bounded, against a cycle of ids).
            for e in &events {
                if let Event::EffectRequested {
                    key, kind, input, ..
                } = e
                {
                    let child = input.get("run_id").and_then(|id| id.as_str());
                    if let (WaitKind::Child, Some(child), true) =
                        (WaitKind::of_effect(kind), child, waiting.contains(key))
                    {
                        if watched.len() < 64 && !watched.iter().any(|(w, _)| w == child) {
                            next.push(child.to_string());
                        }
                    }
                }
            }
        }
        watched.push((id, events.len()));
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let now = crate::engine::unix_millis(std::time::SystemTime::now());
        if due.is_some_and(|d| now >= d) {
            break;
        }
        let mut news = false;
        for (id, seen) in &watched {
            news |= store.read(id).await?.len() != *seen;
        }
        if news {
            break;
        }
    }
    Ok(())
}

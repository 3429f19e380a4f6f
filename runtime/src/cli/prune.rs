//! `prune`: deleting old finished runs, or runs named by id.
//!
//! A run's age is the time since its journal was last written ([`Store::last_write`]): for a
//! finished run, about when it ended. By age, only finished runs (completed, failed,
//! cancelled) are deleted; a run that is running, interrupted or waiting goes only when named
//! by id. Either way the store refuses a run a writer holds ([`StoreError::Locked`]).

use super::args::{Cli, Ended};
use super::format::print_json;
use super::CliError;
use crate::inspect::{summarize, utc_time, RunState};
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// A run `prune` deletes (or, with `--dry-run`, would delete).
#[derive(Debug, Serialize)]
struct Pruned {
    run_id: String,
    process: String,
    state: RunState,
    /// When its journal was last written, in milliseconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_write_ms: Option<u64>,
    /// Whether it was deleted: `false` with `--dry-run`.
    removed: bool,
}

/// What `prune` was asked for.
pub(super) struct Ask<'a> {
    pub(super) run_ids: &'a [String],
    pub(super) older_than: Option<Duration>,
    pub(super) states: &'a [Ended],
    pub(super) dry_run: bool,
}

fn ended(state: RunState) -> Option<Ended> {
    match state {
        RunState::Completed => Some(Ended::Completed),
        RunState::Failed => Some(Ended::Failed),
        RunState::Cancelled => Some(Ended::Cancelled),
        RunState::Waiting | RunState::Incomplete => None,
    }
}

fn millis(time: Option<SystemTime>) -> Option<u64> {
    time.map(crate::engine::unix_millis)
}

/// The runs to delete: every named run (all must exist: nothing is deleted otherwise), or the
/// finished runs in `states` older than `older_than`.
async fn chosen(store: &dyn Store, ask: &Ask<'_>) -> Result<Vec<Pruned>, CliError> {
    let mut out = Vec::new();
    if !ask.run_ids.is_empty() {
        for id in ask.run_ids {
            let summary = summarize(&store.read(id).await?);
            out.push(Pruned {
                run_id: id.clone(),
                process: summary.process,
                state: summary.state,
                last_write_ms: millis(store.last_write(id).await?),
                removed: false,
            });
        }
        return Ok(out);
    }
    let Some(older_than) = ask.older_than else {
        return Err(CliError::Input(
            "give the runs to delete, or --older-than".into(),
        ));
    };
    let now = SystemTime::now();
    for id in store.list().await? {
        let summary = match store.read(&id).await {
            Ok(events) => summarize(&events),
            Err(e) => {
                note!("warning: run `{id}` left alone: {e}");
                continue;
            }
        };
        let Some(how) = ended(summary.state) else {
            continue;
        };
        if !ask.states.is_empty() && !ask.states.contains(&how) {
            continue;
        }
        let written = match store.last_write(&id).await {
            Ok(Some(written)) => written,
            Ok(None) => continue,
            Err(e) => {
                note!("warning: run `{id}` left alone: {e}");
                continue;
            }
        };
        // A time in the future (a clock set back) is no age at all.
        let age = now.duration_since(written).unwrap_or(Duration::ZERO);
        if age > older_than {
            out.push(Pruned {
                run_id: id,
                process: summary.process,
                state: summary.state,
                last_write_ms: millis(Some(written)),
                removed: false,
            });
        }
    }
    Ok(out)
}

pub(super) async fn prune(store: &dyn Store, cli: &Cli, ask: Ask<'_>) -> Result<(), CliError> {
    let mut runs = chosen(store, &ask).await?;
    let named = !ask.run_ids.is_empty();
    let mut done = Vec::new();
    for mut run in runs.drain(..) {
        if !ask.dry_run {
            match store.delete(&run.run_id).await {
                Ok(()) => run.removed = true,
                // Taken up by a writer since it was read (a `resume`): left alone.
                Err(e @ (StoreError::Locked(_) | StoreError::UnknownRun(_))) if !named => {
                    note!("warning: run `{}` left alone: {e}", run.run_id);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !cli.json {
            let when = run
                .last_write_ms
                .map(|ms| format!("  last event {}", utc_time(ms)))
                .unwrap_or_default();
            let verb = if ask.dry_run {
                "would remove"
            } else {
                "removed"
            };
            out!(
                "{verb} run {}  {}  {}{when}",
                run.run_id,
                run.process,
                run.state
            );
        }
        done.push(run);
    }
    if cli.json {
        print_json(&done);
    } else if done.is_empty() {
        out!("no runs to remove");
    } else {
        let n = done.len();
        let runs = if n == 1 { "run" } else { "runs" };
        if ask.dry_run {
            out!("{n} {runs} would be removed (--dry-run: nothing was)");
        } else {
            out!("removed {n} {runs}");
        }
    }
    Ok(())
}

//! The replay map: what a run's journal says about each step key, built once when a run is
//! opened and consumed key by key as the process body runs again.
//!
//! Building it checks the journal's own consistency (a step started again after it completed,
//! a second run end, an effect resolved twice are corruption). Taking an entry checks the
//! code against it: the step's position in its scope must be the journaled one, and a new
//! step must not stand where the journal has another.

use crate::ctx::StepKey;
use crate::error::RunError;
use crate::journal::{Event, Outcome};
use crate::store::StoreError;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// What the journal says about a step key.
#[derive(Debug, Clone)]
pub(crate) enum Replayed {
    /// A task step that started (its latest attempt was in flight or cancelled).
    Started {
        task: String,
        location: String,
        args: Value,
        /// Attempts journaled as failed (`attempt_failed`): the retry budget already spent.
        failed_attempts: u32,
    },
    /// A task step with its result.
    Completed {
        task: String,
        location: String,
        args: Value,
        outcome: Outcome,
    },
    /// `ctx.now()`, `ctx.random()`, a sleep's deadline, a select's winner, ...
    Recorded {
        value: Value,
        location: Option<String>,
    },
    /// A `ctx.log` line.
    Logged {
        message: String,
        location: Option<String>,
    },
    /// A breakpoint or an external task.
    Effect {
        kind: String,
        name: String,
        input: Value,
        resolved: Option<Outcome>,
        location: Option<String>,
    },
}

fn at(location: &Option<String>) -> String {
    location
        .as_deref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

impl fmt::Display for Replayed {
    /// What the journal has, as a divergence message says it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replayed::Started {
                task,
                location,
                args,
                ..
            }
            | Replayed::Completed {
                task,
                location,
                args,
                ..
            } => write!(f, "task `{task}` ({location}) with arguments {args}"),
            Replayed::Recorded { value, location } => {
                write!(f, "the recorded value {value}{}", at(location))
            }
            Replayed::Logged { message, location } => {
                write!(f, "the log {message:?}{}", at(location))
            }
            Replayed::Effect {
                kind,
                name,
                input,
                location,
                ..
            } => write!(f, "{kind} `{name}` with input {input}{}", at(location)),
        }
    }
}

struct Entry {
    /// The step's position in its scope, when the journal recorded it.
    seq: Option<u32>,
    what: Replayed,
}

/// The journal of one run by step key.
pub(crate) struct ReplayMap {
    entries: HashMap<Arc<str>, Entry>,
    /// Per scope path, the journaled steps by position (sorted by position), and how many of
    /// them the code has passed.
    positions: HashMap<Box<str>, (usize, Vec<(u32, Arc<str>)>)>,
}

impl fmt::Debug for ReplayMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayMap")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// A journal read into a replay map.
#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) map: ReplayMap,
    /// The `run_created` event's process, input and fingerprint.
    pub(crate) created: Option<(String, Value, String)>,
    /// The event that ended the run, if one did.
    pub(crate) end: Option<Event>,
}

fn scope_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(scope, _)| scope).unwrap_or("")
}

impl ReplayMap {
    /// Reads `events` (the journal of `run_id`), checking that they could have been written by
    /// one run: every key journaled once per kind, a step completed once and never started
    /// again after it, effects resolved once, nothing after the run's end.
    pub(crate) fn build(run_id: &str, events: Vec<Event>) -> Result<Journal, RunError> {
        // A step takes two events (started, completed): sized once, the map never rehashes,
        // which at 100,000 steps would hold the old and the new table at the peak.
        let mut entries: HashMap<Arc<str>, Entry> = HashMap::with_capacity(events.len() / 2 + 1);
        let mut positions: HashMap<Box<str>, (usize, Vec<(u32, Arc<str>)>)> = HashMap::new();
        let mut created = None;
        let mut end: Option<(usize, Event)> = None;
        let corrupt = |index: usize, what: String| {
            RunError::Store(StoreError::Corrupt(format!(
                "run `{run_id}`: event {} of the journal {what}",
                index + 1
            )))
        };
        let mut insert = |entries: &mut HashMap<Arc<str>, Entry>,
                          index: usize,
                          key: String,
                          seq: Option<u32>,
                          what: Replayed|
         -> Result<(), RunError> {
            let key: Arc<str> = Arc::from(key);
            if let Some(seq) = seq {
                positions
                    .entry(scope_of(&key).into())
                    .or_default()
                    .1
                    .push((seq, key.clone()));
            }
            match entries.insert(key.clone(), Entry { seq, what }) {
                None => Ok(()),
                Some(earlier) => Err(corrupt(
                    index,
                    format!(
                        "journals `{key}` a second time (it already has {})",
                        earlier.what
                    ),
                )),
            }
        };
        for (index, event) in events.into_iter().enumerate() {
            if let Some((ended, e)) = &end {
                return Err(corrupt(
                    index,
                    format!(
                        "follows the end of the run (event {}: run {})",
                        ended + 1,
                        e.run_end().unwrap_or("ended")
                    ),
                ));
            }
            match event {
                Event::RunCreated {
                    process,
                    input,
                    fingerprint,
                    ..
                } => {
                    if created.is_some() || index != 0 {
                        return Err(corrupt(index, "creates the run a second time".into()));
                    }
                    created = Some((process, input, fingerprint));
                }
                Event::StepStarted {
                    key,
                    task,
                    location,
                    args,
                    seq,
                } => match entries.get_mut(key.as_str()) {
                    // Started again after a crash or a cancellation: the same step.
                    Some(Entry {
                        what:
                            Replayed::Started {
                                task: t, args: a, ..
                            },
                        ..
                    }) if *t == task && *a == args => {}
                    Some(Entry {
                        what: Replayed::Completed { .. },
                        ..
                    }) => {
                        return Err(corrupt(
                            index,
                            format!("starts step `{key}` again after it completed"),
                        ))
                    }
                    _ => insert(
                        &mut entries,
                        index,
                        key,
                        seq,
                        Replayed::Started {
                            task,
                            location,
                            args,
                            failed_attempts: 0,
                        },
                    )?,
                },
                Event::StepCompleted { key, outcome } => {
                    let entry = entries.get_mut(key.as_str());
                    match entry.map(|e| &mut e.what) {
                        Some(slot @ Replayed::Started { .. }) => {
                            let Replayed::Started {
                                task,
                                location,
                                args,
                                ..
                            } = std::mem::replace(
                                slot,
                                Replayed::Recorded {
                                    value: Value::Null,
                                    location: None,
                                },
                            )
                            else {
                                unreachable!("matched above")
                            };
                            *slot = Replayed::Completed {
                                task,
                                location,
                                args,
                                outcome,
                            };
                        }
                        Some(Replayed::Completed { .. }) => {
                            return Err(corrupt(
                                index,
                                format!("completes step `{key}` a second time"),
                            ))
                        }
                        _ => {
                            return Err(corrupt(
                                index,
                                format!("completes step `{key}`, which never started"),
                            ))
                        }
                    }
                }
                Event::AttemptFailed { key, .. } => match entries.get_mut(key.as_str()) {
                    Some(Entry {
                        what:
                            Replayed::Started {
                                failed_attempts, ..
                            },
                        ..
                    }) => *failed_attempts += 1,
                    _ => {
                        return Err(corrupt(
                            index,
                            format!("fails an attempt of step `{key}`, which is not running"),
                        ))
                    }
                },
                Event::StepCancelled { key } => match entries.get(key.as_str()) {
                    Some(Entry {
                        what: Replayed::Started { .. },
                        ..
                    }) => {}
                    _ => {
                        return Err(corrupt(
                            index,
                            format!("cancels step `{key}`, which is not running"),
                        ))
                    }
                },
                Event::Recorded {
                    key,
                    value,
                    seq,
                    location,
                } => insert(
                    &mut entries,
                    index,
                    key,
                    seq,
                    Replayed::Recorded { value, location },
                )?,
                Event::Log {
                    key,
                    message,
                    seq,
                    location,
                } => insert(
                    &mut entries,
                    index,
                    key,
                    seq,
                    Replayed::Logged { message, location },
                )?,
                Event::EffectRequested {
                    key,
                    kind,
                    name,
                    input,
                    seq,
                    location,
                    ..
                } => insert(
                    &mut entries,
                    index,
                    key,
                    seq,
                    Replayed::Effect {
                        kind,
                        name,
                        input,
                        resolved: None,
                        location,
                    },
                )?,
                Event::EffectResolved { key, outcome } => match entries.get_mut(key.as_str()) {
                    Some(Entry {
                        what: Replayed::Effect { resolved, .. },
                        ..
                    }) => {
                        if resolved.is_some() {
                            return Err(corrupt(
                                index,
                                format!("resolves effect `{key}` a second time"),
                            ));
                        }
                        *resolved = Some(outcome);
                    }
                    _ => {
                        return Err(corrupt(
                            index,
                            format!("resolves effect `{key}`, which was never requested"),
                        ))
                    }
                },
                Event::Suspended { .. } => {}
                e @ (Event::RunCompleted { .. }
                | Event::RunFailed { .. }
                | Event::RunCancelled { .. }) => end = Some((index, e)),
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        for (_, list) in positions.values_mut() {
            list.sort_unstable_by_key(|(seq, _)| *seq);
        }
        Ok(Journal {
            map: ReplayMap { entries, positions },
            created,
            end: end.map(|(_, e)| e),
        })
    }

    /// An empty map (a new run).
    pub(crate) fn empty() -> ReplayMap {
        ReplayMap {
            entries: HashMap::new(),
            positions: HashMap::new(),
        }
    }

    /// Checks, when the code takes the key of `step`, that it reaches the journaled steps of
    /// its scope in the journal's order: a journaled step passed over (removed, replaced by
    /// another, or moved after a later one) is a non-determinism error. New steps may stand
    /// anywhere (adding a call does not disturb the steps around it).
    ///
    /// A new task step where the journal has, at the same position, a task of the same name
    /// from another module is taken for what it almost always is, a swapped task, and is an
    /// error before it runs (`task` is the new task's bare name and what the code calls).
    pub(crate) fn check_order(
        &mut self,
        step: &StepKey,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> Result<(), RunError> {
        let journaled = match self.entries.get(step.key.as_str()) {
            Some(Entry {
                seq: Some(journaled),
                ..
            }) => *journaled,
            Some(_) => return Ok(()),
            None => return self.check_swapped(step, task),
        };
        let Some((passed, list)) = self.positions.get_mut(scope_of(&step.key)) else {
            return Ok(());
        };
        let Ok(at) = list.binary_search_by_key(&journaled, |(s, _)| *s) else {
            return Ok(());
        };
        if at < *passed {
            return Ok(());
        }
        let skipped = list[*passed..at].first().map(|(_, key)| key.clone());
        *passed = at + 1;
        match skipped {
            None => Ok(()),
            Some(skipped) => {
                let what = self
                    .entries
                    .get(&skipped)
                    .map(|e| e.what.to_string())
                    .unwrap_or_else(|| "a step".into());
                Err(RunError::NonDeterminism {
                    key: step.key.clone(),
                    detail: format!(
                        "the journal has `{skipped}` ({what}) before `{}` in this scope; the \
                         code now reaches `{}` without it: a step was removed, replaced or \
                         moved",
                        step.key, step.key
                    ),
                })
            }
        }
    }

    /// See [`ReplayMap::check_order`]: a new task where the journal's next step of the scope is
    /// a same-named task of another module at the same position.
    fn check_swapped(
        &self,
        step: &StepKey,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> Result<(), RunError> {
        let Some((name, code)) = task else {
            return Ok(());
        };
        let Some((passed, list)) = self.positions.get(scope_of(&step.key)) else {
            return Ok(());
        };
        let Some((seq, key)) = list.get(*passed) else {
            return Ok(());
        };
        let Some(entry) = self.entries.get(key) else {
            return Ok(());
        };
        let journaled_task = match &entry.what {
            Replayed::Started { task, .. } | Replayed::Completed { task, .. } => task,
            _ => return Ok(()),
        };
        let bare = journaled_task.rsplit("::").next().unwrap_or(journaled_task);
        if *seq != step.seq || bare != name {
            return Ok(());
        }
        Err(RunError::NonDeterminism {
            key: step.key.clone(),
            detail: format!(
                "the journal has {} here (`{key}`); the code now calls {}",
                entry.what,
                code()
            ),
        })
    }

    /// What the journal says about `step`, taken out (each key is reached once per run).
    pub(crate) fn take(&mut self, step: &StepKey) -> Option<Replayed> {
        self.entries.remove(step.key.as_str()).map(|e| e.what)
    }
}

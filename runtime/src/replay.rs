//! The replay map: what a run's journal says about each step key, built once when a run is
//! opened and consumed key by key as the process body runs again.
//!
//! Building it checks the journal's own consistency (a step started again after it completed,
//! a second run end, an effect resolved twice are corruption). Taking an entry checks the
//! code against it: the step's position in its scope must be the journaled one, and a new
//! step must not stand where the journal has another.

use crate::error::RunError;
use crate::journal::{Event, Outcome};
use crate::store::StoreError;
use serde_json::Value;
use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Step keys are hashed several times per replayed step; they come from the run's own
/// journal (no untrusted input to defend against flooding), so a simple multiplicative hash
/// (FxHash's) does instead of SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by step keys (or scope paths).
pub(crate) type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<KeyHasher>>;
use std::fmt;

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
    entries: HashMap<String, Entry>,
    /// Per scope path, the journaled steps by position (sorted by position), and how many of
    /// them the code has passed.
    positions: HashMap<Box<str>, Positions>,
}

/// The journaled steps of one scope: their positions (sorted, while the journal is read), and
/// how many of them the code has passed.
#[derive(Default)]
struct Positions {
    seqs: Vec<u32>,
    passed: u32,
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
        let mut entries: HashMap<String, Entry> =
            HashMap::with_capacity_and_hasher(events.len() / 2 + 1, Default::default());
        let mut positions: HashMap<Box<str>, Positions> = HashMap::default();
        let mut created = None;
        let mut end: Option<(usize, Event)> = None;
        let corrupt = |index: usize, what: String| {
            RunError::Store(StoreError::Corrupt(format!(
                "run `{run_id}`: event {} of the journal {what}",
                index + 1
            )))
        };
        let mut insert = |entries: &mut HashMap<String, Entry>,
                          index: usize,
                          key: String,
                          seq: Option<u32>,
                          what: Replayed|
         -> Result<(), RunError> {
            if let Some(seq) = seq {
                let scope = scope_of(&key);
                match positions.get_mut(scope) {
                    Some(p) => p.seqs.push(seq),
                    None => {
                        positions.insert(
                            scope.into(),
                            Positions {
                                seqs: vec![seq],
                                passed: 0,
                            },
                        );
                    }
                }
            }
            match entries.entry(key) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Entry { seq, what });
                    Ok(())
                }
                std::collections::hash_map::Entry::Occupied(earlier) => Err(corrupt(
                    index,
                    format!(
                        "journals `{}` a second time (it already has {})",
                        earlier.key(),
                        earlier.get().what
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
        for p in positions.values_mut() {
            p.seqs.sort_unstable();
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
            entries: HashMap::default(),
            positions: HashMap::default(),
        }
    }

    /// Takes out what the journal has at `key`, which the code takes now at position `seq`
    /// of its scope (each key is reached once per run), after checking that the code reaches
    /// the journaled steps of the scope in the journal's order: a journaled step passed over
    /// (removed, replaced by another, or moved after a later one) is a non-determinism error.
    /// New steps may stand anywhere (adding a call does not disturb the steps around it).
    ///
    /// A new task step where the journal has, at the same position, a task of the same name
    /// from another module is taken for what it almost always is, a swapped task, and is an
    /// error before it runs (`task` is the new task's bare name and what the code calls).
    pub(crate) fn take(
        &mut self,
        key: &str,
        seq: u32,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> Result<Option<Replayed>, RunError> {
        let Some(entry) = self.entries.remove(key) else {
            self.check_swapped(key, seq, task)?;
            return Ok(None);
        };
        let Some(journaled) = entry.seq else {
            return Ok(Some(entry.what));
        };
        let scope = scope_of(key);
        let Some(p) = self.positions.get_mut(scope) else {
            return Ok(Some(entry.what));
        };
        // How many journaled steps of the scope come before this one.
        let rank = p.seqs.partition_point(|s| *s < journaled) as u32;
        if rank < p.passed {
            return Ok(Some(entry.what));
        }
        let passed = std::mem::replace(&mut p.passed, rank + 1);
        if rank == passed {
            return Ok(Some(entry.what));
        }
        // Passed over the journaled step of rank `passed`: find it (an error, so rare).
        let (skipped, what) = self
            .at_rank(scope, passed)
            .map(|(k, e)| (k.to_string(), e.what.to_string()))
            .unwrap_or_else(|| ("?".into(), "a step".into()));
        Err(RunError::NonDeterminism {
            key: key.to_string(),
            detail: format!(
                "the journal has `{skipped}` ({what}) before `{key}` in this scope; the code \
                 now reaches `{key}` without it: a step was removed, replaced or moved"
            ),
        })
    }

    /// The untaken journaled entry of `scope` with `rank`: a scan, for error paths only.
    fn at_rank(&self, scope: &str, rank: u32) -> Option<(&str, &Entry)> {
        let seq = *self.positions.get(scope)?.seqs.get(rank as usize)?;
        self.entries
            .iter()
            .find(|(k, e)| e.seq == Some(seq) && scope_of(k) == scope)
            .map(|(k, e)| (k.as_str(), e))
    }

    /// See [`ReplayMap::check_order`]: a new task where the journal's next step of the scope is
    /// a same-named task of another module at the same position.
    fn check_swapped(
        &self,
        new_key: &str,
        seq: u32,
        task: Option<(&str, &dyn Fn() -> String)>,
    ) -> Result<(), RunError> {
        let Some((name, code)) = task else {
            return Ok(());
        };
        let scope = scope_of(new_key);
        let Some(p) = self.positions.get(scope) else {
            return Ok(());
        };
        // Only while journaled steps of the scope lie ahead (not at the frontier of a resume),
        // and only when the next one stands at this very position.
        if p.passed as usize >= p.seqs.len() || p.seqs[p.passed as usize] != seq {
            return Ok(());
        }
        let Some((key, entry)) = self.at_rank(scope, p.passed) else {
            return Ok(());
        };
        let journaled_task = match &entry.what {
            Replayed::Started { task, .. } | Replayed::Completed { task, .. } => task,
            _ => return Ok(()),
        };
        let bare = journaled_task.rsplit("::").next().unwrap_or(journaled_task);
        if bare != name {
            return Ok(());
        }
        Err(RunError::NonDeterminism {
            key: new_key.to_string(),
            detail: format!(
                "the journal has {} here (`{key}`); the code now calls {}",
                entry.what,
                code()
            ),
        })
    }
}

//! Building the replay map from a journal, event by event as it streams in, with the
//! journal's consistency checks.

use super::{scope_of, too_large, Entry, Journal, Kind, Positions, ReplayMap, Span, NONE};
use crate::error::RunError;
use crate::journal::{Event, Outcome};
use crate::store::{JournalStream, RunLog, StoreError};
use serde_json::Value;
use std::sync::Arc;

/// Reads a journal event by event into a [`ReplayMap`], checking that the events could have
/// been written by one run: every key journaled once per kind, a step completed once and never
/// started again after it, effects resolved once, nothing after the run's end.
pub(crate) struct Builder<'a> {
    run_id: &'a str,
    map: ReplayMap,
    created: Option<(String, Value, String)>,
    parent: Option<crate::journal::ParentLink>,
    end: Option<(usize, Event)>,
    /// Events read so far.
    index: usize,
}

impl<'a> Builder<'a> {
    /// A builder for the journal of `run_id`.
    pub(crate) fn new(run_id: &'a str) -> Self {
        Builder {
            run_id,
            map: ReplayMap::empty(),
            created: None,
            parent: None,
            end: None,
            index: 0,
        }
    }

    fn corrupt(&self, what: String) -> RunError {
        RunError::Store(StoreError::Corrupt(format!(
            "run `{}`: event {} of the journal {what}",
            self.run_id,
            self.index + 1
        )))
    }

    /// A new entry at `key` (`what` describes its kind, for the error when the key has one).
    fn insert(&mut self, key: &str, seq: Option<u32>, entry: Entry) -> Result<(), RunError> {
        if let Some(index) = self.map.find(key) {
            let earlier = self.map.replayed(&self.map.entries[index]);
            return Err(self.corrupt(format!(
                "journals `{key}` a second time (it already has {earlier})"
            )));
        }
        if let Some(seq) = seq {
            let scope = scope_of(key);
            match self.map.positions.get_mut(scope) {
                Some(p) => p.seqs.push(seq),
                None => {
                    self.map.positions.insert(
                        scope.into(),
                        Positions {
                            seqs: vec![seq],
                            passed: 0,
                        },
                    );
                }
            }
        }
        let run_id = self.run_id;
        let key = self
            .map
            .store(key.as_bytes())
            .ok_or_else(|| too_large(run_id))?;
        self.map.add(Entry { key, seq, ..entry });
        Ok(())
    }

    fn entry(kind: Kind) -> Entry {
        Entry {
            key: Span::default(),
            a: Span::default(),
            b: Span::default(),
            seq: None,
            name: NONE,
            location: NONE,
            extra: 0,
            kind,
            ok: true,
            resolved: false,
        }
    }

    fn value(&mut self, value: &Value) -> Result<Span, RunError> {
        let run_id = self.run_id;
        self.map.store_value(value).ok_or_else(|| too_large(run_id))
    }

    /// Reads the next event of the journal.
    pub(crate) fn push(&mut self, event: Event) -> Result<(), RunError> {
        let result = self.read(event);
        self.index += 1;
        result
    }

    fn read(&mut self, event: Event) -> Result<(), RunError> {
        if let Some((ended, e)) = &self.end {
            return Err(self.corrupt(format!(
                "follows the end of the run (event {}: run {})",
                ended + 1,
                e.run_end().unwrap_or("ended")
            )));
        }
        match event {
            Event::RunCreated {
                process,
                input,
                fingerprint,
                parent,
                ..
            } => {
                if self.created.is_some() || self.index != 0 {
                    return Err(self.corrupt("creates the run a second time".into()));
                }
                self.created = Some((process, input, fingerprint));
                self.parent = parent;
            }
            Event::StepStarted {
                key,
                task,
                location,
                args,
                seq,
                ..
            } => match self.map.live(&key).map(|i| self.map.entries[i]) {
                // Started again after a crash or a cancellation: the same step.
                Some(e)
                    if e.kind == Kind::Started
                        && self.map.string(e.name) == task
                        && self.map.holds(e.a, &args) => {}
                Some(e) if e.kind == Kind::Completed => {
                    return Err(
                        self.corrupt(format!("starts step `{key}` again after it completed"))
                    )
                }
                _ => {
                    let mut entry = Self::entry(Kind::Started);
                    entry.name = self.map.intern(&task);
                    entry.location = self.map.intern(&location);
                    entry.a = self.value(&args)?;
                    self.insert(&key, seq, entry)?;
                }
            },
            Event::StepCompleted { key, outcome } => {
                let index = self.map.live(&key);
                match index.map(|i| (i, self.map.entries[i].kind)) {
                    Some((i, Kind::Started)) => {
                        let (ok, value) = match &outcome {
                            Outcome::Ok(v) => (true, v),
                            Outcome::Err(v) => (false, v),
                        };
                        let b = self.value(value)?;
                        let e = &mut self.map.entries[i];
                        e.kind = Kind::Completed;
                        e.b = b;
                        e.ok = ok;
                        e.extra = 0;
                    }
                    Some((_, Kind::Completed)) => {
                        return Err(self.corrupt(format!("completes step `{key}` a second time")))
                    }
                    _ => {
                        return Err(
                            self.corrupt(format!("completes step `{key}`, which never started"))
                        )
                    }
                }
            }
            Event::AttemptFailed { key, .. } => match self.map.live(&key) {
                Some(i) if self.map.entries[i].kind == Kind::Started => {
                    self.map.entries[i].extra += 1;
                }
                _ => {
                    return Err(self.corrupt(format!(
                        "fails an attempt of step `{key}`, which is not running"
                    )))
                }
            },
            Event::StepCancelled { key } => match self.map.live(&key) {
                Some(i) if self.map.entries[i].kind == Kind::Started => {}
                _ => {
                    return Err(self.corrupt(format!("cancels step `{key}`, which is not running")))
                }
            },
            Event::Recorded {
                key,
                value,
                seq,
                location,
                ..
            } => {
                let mut entry = Self::entry(Kind::Recorded);
                entry.a = self.value(&value)?;
                entry.location = self.map.intern_opt(location.as_deref());
                self.insert(&key, seq, entry)?;
            }
            Event::Log {
                key,
                message,
                seq,
                location,
                ..
            } => {
                let mut entry = Self::entry(Kind::Logged);
                let run_id = self.run_id;
                entry.a = self
                    .map
                    .store(message.as_bytes())
                    .ok_or_else(|| too_large(run_id))?;
                entry.location = self.map.intern_opt(location.as_deref());
                self.insert(&key, seq, entry)?;
            }
            Event::EffectRequested {
                key,
                kind,
                name,
                input,
                seq,
                location,
                ..
            } => {
                let mut entry = Self::entry(Kind::Effect);
                entry.extra = self.map.intern(&kind);
                entry.name = self.map.intern(&name);
                entry.a = self.value(&input)?;
                entry.location = self.map.intern_opt(location.as_deref());
                self.insert(&key, seq, entry)?;
            }
            Event::EffectResolved { key, outcome } => match self.map.live(&key) {
                Some(i) if self.map.entries[i].kind == Kind::Effect => {
                    if self.map.entries[i].resolved {
                        return Err(self.corrupt(format!("resolves effect `{key}` a second time")));
                    }
                    let (ok, value) = match &outcome {
                        Outcome::Ok(v) => (true, v),
                        Outcome::Err(v) => (false, v),
                    };
                    let b = self.value(value)?;
                    let e = &mut self.map.entries[i];
                    e.resolved = true;
                    e.ok = ok;
                    e.b = b;
                }
                _ => {
                    return Err(self.corrupt(format!(
                        "resolves effect `{key}`, which was never requested"
                    )))
                }
            },
            Event::Suspended { .. } => {}
            e @ (Event::RunCompleted { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled { .. }) => self.end = Some((self.index, e)),
            #[allow(unreachable_patterns)]
            _ => {}
        }
        Ok(())
    }

    /// The map, once every event was read.
    pub(crate) fn finish(self) -> Journal {
        let mut map = self.map;
        for p in map.positions.values_mut() {
            p.seqs.sort_unstable();
        }
        map.scratch = Vec::new();
        Journal {
            map,
            created: self.created,
            parent: self.parent,
            end: self.end.map(|(_, e)| e),
        }
    }
}

/// A journal read from a [`JournalStream`]: the replay map (or why the journal is not
/// consistent), the run's log, and the events the orphan check looks at.
pub(crate) struct Streamed {
    pub(crate) journal: Result<Journal, RunError>,
    pub(crate) log: Arc<dyn RunLog>,
    /// Programs started, the completions of their steps, the run's end, in journal order
    /// (what the orphan check of command tasks looks at).
    pub(crate) orphans: Vec<Event>,
    /// How many events the journal has.
    pub(crate) events: usize,
}

/// Reads the journal of `run_id` as it streams in, into a replay map. A journal that is not
/// consistent is read to its end all the same (for the orphan check), and reported in
/// [`Streamed::journal`]; damage the store finds is the error.
pub(crate) async fn read_stream(
    run_id: &str,
    mut stream: JournalStream,
) -> Result<Streamed, RunError> {
    let mut builder = Builder::new(run_id);
    let mut inconsistent = None;
    let mut orphans = OrphanEvents::default();
    let mut events = 0;
    while let Some(batch) = stream.next_batch().await {
        for event in batch? {
            events += 1;
            orphans.see(&event);
            if inconsistent.is_none() {
                if let Err(e) = builder.push(event) {
                    inconsistent = Some(e);
                }
            }
        }
    }
    let log = stream.finish().await?;
    Ok(Streamed {
        journal: match inconsistent {
            None => Ok(builder.finish()),
            Some(e) => Err(e),
        },
        log,
        orphans: orphans.events,
        events,
    })
}

/// The events of a journal the orphan check of command tasks looks at, in
/// journal order: programs started, the completions of their steps, the run's end.
#[derive(Default)]
struct OrphanEvents {
    events: Vec<Event>,
    /// Keys of steps that started a program.
    keys: std::collections::HashSet<String>,
}

impl OrphanEvents {
    fn see(&mut self, event: &Event) {
        match event {
            Event::ChildStarted { key, .. } => {
                self.keys.insert(key.clone());
                self.events.push(event.clone());
            }
            Event::StepCompleted { key, .. } if self.keys.contains(key) => {
                self.events.push(event.clone());
            }
            e if e.run_end().is_some() => self.events.push(event.clone()),
            _ => {}
        }
    }
}

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

/// Where bytes of the journal kept for replay (a key, a value's JSON, a message) lie in the
/// map's arena.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    off: u32,
    len: u32,
}

/// No interned string (an absent location).
const NONE: u32 = u32::MAX;

/// What kind of entry an [`Entry`] is (see [`Replayed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Started,
    Completed,
    Recorded,
    Logged,
    Effect,
    /// Taken by the code: gone, as if removed (its key still lies in the table).
    Taken,
}

/// One journaled step key, compactly: strings that repeat (task paths, locations, effect
/// kinds and names) are interned; keys and values are bytes in the arena (values as JSON),
/// decoded back into a [`Replayed`] when the code takes the entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Span,
    /// Args (`Started`, `Completed`), value (`Recorded`), message (`Logged`), input (`Effect`).
    a: Span,
    /// Outcome (`Completed`, a resolved `Effect`).
    b: Span,
    /// The step's position in its scope, when the journal recorded it.
    seq: Option<u32>,
    /// Task path (`Started`, `Completed`) or effect name, interned.
    name: u32,
    /// Location, interned (or [`NONE`]).
    location: u32,
    /// Failed attempts (`Started`), or the effect's kind, interned (`Effect`).
    extra: u32,
    kind: Kind,
    /// The outcome in `b` is `Ok` (else `Err`).
    ok: bool,
    /// An effect has its outcome in `b`.
    resolved: bool,
}

/// The journal of one run by step key, kept compactly (about 40 bytes per step plus its key
/// and values as bytes), so replaying a long journal costs a fraction of its events in memory.
pub(crate) struct ReplayMap {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Open addressing over `entries`: slot = index + 1, 0 = empty; at most half full.
    table: Vec<u32>,
    /// Interned strings, and their indexes.
    strings: Vec<Box<str>>,
    interned: HashMap<Box<str>, u32>,
    /// Per scope path, the journaled steps by position (sorted by position), and how many of
    /// them the code has passed.
    positions: HashMap<Box<str>, Positions>,
    /// A buffer for encoding a value.
    scratch: Vec<u8>,
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

fn hash_key(key: &[u8]) -> u64 {
    let mut h = KeyHasher::default();
    h.write(key);
    // Spread the multiplicative hash's high bits into the low ones the table uses.
    h.finish() ^ (h.finish() >> 29)
}

/// The arena is addressed with 32-bit offsets.
fn too_large(run_id: &str) -> RunError {
    RunError::Store(StoreError::Corrupt(format!(
        "run `{run_id}`: the journal's keys and values exceed 4 GiB, more than a replay keeps"
    )))
}

impl ReplayMap {
    /// An empty map (a new run).
    pub(crate) fn empty() -> ReplayMap {
        ReplayMap {
            arena: Vec::new(),
            entries: Vec::new(),
            table: Vec::new(),
            strings: Vec::new(),
            interned: HashMap::default(),
            positions: HashMap::default(),
            scratch: Vec::new(),
        }
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.arena[span.off as usize..(span.off + span.len) as usize]
    }

    fn key(&self, entry: &Entry) -> &str {
        std::str::from_utf8(self.bytes(entry.key)).expect("keys are stored as UTF-8")
    }

    fn string(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    fn opt_string(&self, id: u32) -> Option<String> {
        (id != NONE).then(|| self.string(id).to_string())
    }

    fn value(&self, span: Span) -> Value {
        serde_json::from_slice(self.bytes(span)).expect("values are stored as JSON")
    }

    fn outcome(&self, span: Span, ok: bool) -> Outcome {
        let value = self.value(span);
        if ok {
            Outcome::Ok(value)
        } else {
            Outcome::Err(value)
        }
    }

    /// The entry as [`Replayed`] (values decoded).
    fn replayed(&self, e: &Entry) -> Replayed {
        match e.kind {
            Kind::Started => Replayed::Started {
                task: self.string(e.name).to_string(),
                location: self.string(e.location).to_string(),
                args: self.value(e.a),
                failed_attempts: e.extra,
            },
            Kind::Completed => Replayed::Completed {
                task: self.string(e.name).to_string(),
                location: self.string(e.location).to_string(),
                args: self.value(e.a),
                outcome: self.outcome(e.b, e.ok),
            },
            Kind::Recorded => Replayed::Recorded {
                value: self.value(e.a),
                location: self.opt_string(e.location),
            },
            Kind::Logged => Replayed::Logged {
                message: String::from_utf8_lossy(self.bytes(e.a)).into_owned(),
                location: self.opt_string(e.location),
            },
            Kind::Effect => Replayed::Effect {
                kind: self.string(e.extra).to_string(),
                name: self.string(e.name).to_string(),
                input: self.value(e.a),
                resolved: e.resolved.then(|| self.outcome(e.b, e.ok)),
                location: self.opt_string(e.location),
            },
            Kind::Taken => unreachable!("a taken entry is never read"),
        }
    }

    /// The index of the entry of `key` (taken or not).
    fn find(&self, key: &str) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut slot = hash_key(key.as_bytes()) as usize & mask;
        loop {
            match self.table[slot] {
                0 => return None,
                i => {
                    let index = i as usize - 1;
                    if self.bytes(self.entries[index].key) == key.as_bytes() {
                        return Some(index);
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
    }

    /// The live (not taken) entry of `key`.
    fn live(&self, key: &str) -> Option<usize> {
        self.find(key)
            .filter(|&i| self.entries[i].kind != Kind::Taken)
    }

    /// Puts `index` (whose key is in the arena) into the table.
    fn place(table: &mut [u32], arena: &[u8], entries: &[Entry], index: usize) {
        let mask = table.len() - 1;
        let key = entries[index].key;
        let mut slot =
            hash_key(&arena[key.off as usize..(key.off + key.len) as usize]) as usize & mask;
        while table[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        table[slot] = index as u32 + 1;
    }

    /// Adds `entry`, whose key is new, growing the table as needed.
    fn add(&mut self, entry: Entry) {
        self.entries.push(entry);
        if self.entries.len() * 2 > self.table.len() {
            let size = (self.entries.len() * 2).next_power_of_two().max(64);
            let mut table = vec![0u32; size];
            for index in 0..self.entries.len() - 1 {
                Self::place(&mut table, &self.arena, &self.entries, index);
            }
            self.table = table;
        }
        let last = self.entries.len() - 1;
        Self::place(&mut self.table, &self.arena, &self.entries, last);
    }

    /// Copies `bytes` into the arena.
    fn store(&mut self, bytes: &[u8]) -> Option<Span> {
        let off = u32::try_from(self.arena.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        off.checked_add(len)?;
        self.arena.extend_from_slice(bytes);
        Some(Span { off, len })
    }

    /// Encodes `value` into the arena.
    fn store_value(&mut self, value: &Value) -> Option<Span> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        serde_json::to_writer(&mut scratch, value).expect("a JSON value encodes");
        let span = self.store(&scratch);
        self.scratch = scratch;
        span
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.interned.get(text) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.push(text.into());
        self.interned.insert(text.into(), id);
        id
    }

    fn intern_opt(&mut self, text: Option<&str>) -> u32 {
        text.map_or(NONE, |t| self.intern(t))
    }

    /// Whether the stored `span` holds `value`.
    fn holds(&mut self, span: Span, value: &Value) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        serde_json::to_writer(&mut scratch, value).expect("a JSON value encodes");
        // The same bytes, or (a rare difference of spelling, like `-0.0`) the same value.
        let same = self.bytes(span) == scratch.as_slice() || self.value(span) == *value;
        self.scratch = scratch;
        same
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
        let Some(index) = self.live(key) else {
            self.check_swapped(key, seq, task)?;
            return Ok(None);
        };
        let entry = self.entries[index];
        self.entries[index].kind = Kind::Taken;
        let what = self.replayed(&entry);
        let Some(journaled) = entry.seq else {
            return Ok(Some(what));
        };
        let scope = scope_of(key);
        let Some(p) = self.positions.get_mut(scope) else {
            return Ok(Some(what));
        };
        // How many journaled steps of the scope come before this one.
        let rank = p.seqs.partition_point(|s| *s < journaled) as u32;
        if rank < p.passed {
            return Ok(Some(what));
        }
        let passed = std::mem::replace(&mut p.passed, rank + 1);
        if rank == passed {
            return Ok(Some(what));
        }
        // Passed over the journaled step of rank `passed`: find it (an error, so rare).
        let (skipped, what) = self
            .at_rank(scope, passed)
            .map(|(k, e)| (k.to_string(), self.replayed(&e).to_string()))
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
    fn at_rank(&self, scope: &str, rank: u32) -> Option<(&str, Entry)> {
        let seq = *self.positions.get(scope)?.seqs.get(rank as usize)?;
        self.entries
            .iter()
            .filter(|e| e.kind != Kind::Taken && e.seq == Some(seq))
            .map(|e| (self.key(e), *e))
            .find(|(k, _)| scope_of(k) == scope)
    }

    /// See [`ReplayMap::take`]: a new task where the journal's next step of the scope is a
    /// same-named task of another module at the same position.
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
        let journaled_task = match entry.kind {
            Kind::Started | Kind::Completed => self.string(entry.name),
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
                self.replayed(&entry),
                code()
            ),
        })
    }
}

/// Reads a journal event by event into a [`ReplayMap`], checking that the events could have
/// been written by one run: every key journaled once per kind, a step completed once and never
/// started again after it, effects resolved once, nothing after the run's end.
pub(crate) struct Builder<'a> {
    run_id: &'a str,
    map: ReplayMap,
    created: Option<(String, Value, String)>,
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
                ..
            } => {
                if self.created.is_some() || self.index != 0 {
                    return Err(self.corrupt("creates the run a second time".into()));
                }
                self.created = Some((process, input, fingerprint));
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
            end: self.end.map(|(_, e)| e),
        }
    }
}

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

mod build;
pub(crate) use build::read_stream;
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
    /// Open addressing over `entries`: a slot holds the high half of the key's hash and the
    /// entry's index + 1 (0: empty); at most half full. The hash half spares reading the
    /// entries of other keys while probing.
    table: Vec<u64>,
    /// Where the code's next key most likely is: after the entry taken last (a replay takes
    /// entries roughly in journal order), checked before the table.
    cursor: usize,
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
    /// For a child process, the `run_created` event's parent.
    pub(crate) parent: Option<crate::journal::ParentLink>,
    /// The event that ended the run, if one did.
    pub(crate) end: Option<Event>,
}

fn scope_of(key: &str) -> &str {
    key.rsplit_once('/').map(|(scope, _)| scope).unwrap_or("")
}

fn hash_key(key: &[u8]) -> u64 {
    let mut h = KeyHasher::default();
    h.write(key);
    // The multiplicative hash leaves the low bits (which the table uses) poorly mixed for
    // keys that differ in their last bytes (`…#123`, `…#124`): finish with a full avalanche
    // (MurmurHash3's 64-bit finalizer).
    let mut x = h.finish() ^ key.len() as u64;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
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
            cursor: 0,
            strings: Vec::new(),
            interned: HashMap::default(),
            positions: HashMap::default(),
            scratch: Vec::new(),
        }
    }

    /// Whether the journal has an effect requested and not resolved: only then can the run's
    /// inbox hold an answer for it.
    pub(crate) fn waits_for_effects(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.kind == Kind::Effect && !e.resolved)
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
        let hash = hash_key(key.as_bytes());
        let tag = hash >> 32;
        let mut slot = hash as usize & mask;
        loop {
            match self.table[slot] {
                0 => return None,
                held => {
                    let index = (held & 0xffff_ffff) as usize - 1;
                    if held >> 32 == tag && self.bytes(self.entries[index].key) == key.as_bytes() {
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
    fn place(table: &mut [u64], arena: &[u8], entries: &[Entry], index: usize) {
        let mask = table.len() - 1;
        let key = entries[index].key;
        let hash = hash_key(&arena[key.off as usize..(key.off + key.len) as usize]);
        let mut slot = hash as usize & mask;
        while table[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        table[slot] = (hash >> 32) << 32 | (index as u64 + 1);
    }

    /// Adds `entry`, whose key is new, growing the table as needed.
    fn add(&mut self, entry: Entry) {
        self.entries.push(entry);
        if self.entries.len() * 2 > self.table.len() {
            let size = (self.entries.len() * 2).next_power_of_two().max(64);
            let mut table = vec![0u64; size];
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
        let next = self
            .entries
            .get(self.cursor)
            .filter(|e| e.kind != Kind::Taken && self.bytes(e.key) == key.as_bytes())
            .map(|_| self.cursor);
        let Some(index) = next.or_else(|| self.live(key)) else {
            self.check_swapped(key, seq, task)?;
            return Ok(None);
        };
        self.cursor = index + 1;
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

#[cfg(test)]
mod tests {
    use super::build::Builder;
    use super::*;
    use serde_json::json;

    fn started(i: usize) -> Event {
        Event::StepStarted {
            key: format!("m::t#{i}"),
            task: "m::t".to_string(),
            location: "l:1".to_string(),
            args: json!([i, -0.0, "é"]),
            // No position: the order checks (tested with whole runs) stay out of the way.
            seq: None,
            node: None,
        }
    }

    fn completed(i: usize) -> Event {
        Event::StepCompleted {
            key: format!("m::t#{i}"),
            outcome: if i.is_multiple_of(3) {
                Outcome::Err(json!({"n": i}))
            } else {
                Outcome::Ok(json!(i))
            },
        }
    }

    fn build(events: Vec<Event>) -> Result<Journal, RunError> {
        let mut builder = Builder::new("r");
        for event in events {
            builder.push(event)?;
        }
        Ok(builder.finish())
    }

    /// Thousands of keys (the table grows many times), taken back in journal order (the
    /// cursor) and out of it (the table), each exactly once, with its values intact.
    #[test]
    fn every_entry_comes_back_once_with_its_values() {
        let n = 5_000;
        let mut events = vec![Event::RunCreated {
            run_id: "r".into(),
            process: "p".into(),
            input: json!(null),
            fingerprint: "f".into(),
            queue: None,
            priority: None,
            parent: None,
        }];
        for i in 0..n {
            events.push(started(i));
            if !i.is_multiple_of(7) {
                events.push(completed(i));
            }
        }
        // A step started again after a crash, with the same arguments (`-0.0` included).
        events.push(started(7));
        let mut map = build(events).unwrap().map;
        // Every other key in order, then the rest backwards.
        let order: Vec<usize> = (0..n)
            .step_by(2)
            .chain((0..n).filter(|i| !i.is_multiple_of(2)).rev())
            .collect();
        for i in order {
            let key = format!("m::t#{i}");
            let taken = map.take(&key, i as u32, None);
            match taken {
                Ok(Some(Replayed::Completed {
                    task,
                    location,
                    args,
                    outcome,
                })) => {
                    assert!(!i.is_multiple_of(7), "{key}");
                    assert_eq!((task.as_str(), location.as_str()), ("m::t", "l:1"));
                    assert_eq!(args, json!([i, -0.0, "é"]));
                    let Event::StepCompleted { outcome: want, .. } = completed(i) else {
                        unreachable!()
                    };
                    assert_eq!(outcome, want);
                }
                Ok(Some(Replayed::Started {
                    failed_attempts, ..
                })) => {
                    assert!(i.is_multiple_of(7), "{key}");
                    assert_eq!(failed_attempts, 0);
                }
                other => panic!("{key}: {other:?}"),
            }
            assert!(
                matches!(map.take(&key, i as u32, None), Ok(None)),
                "{key} twice"
            );
        }
        assert!(matches!(map.take("m::t#new", 0, None), Ok(None)));
    }

    #[test]
    fn a_key_journaled_twice_is_reported() {
        let created = Event::RunCreated {
            run_id: "r".into(),
            process: "p".into(),
            input: json!(null),
            fingerprint: "f".into(),
            queue: None,
            priority: None,
            parent: None,
        };
        let log = Event::Log {
            key: "m::t#1".into(),
            message: "hi".into(),
            seq: None,
            location: None,
            node: None,
        };
        let err = build(vec![created.clone(), started(1), log]).unwrap_err();
        assert!(
            err.to_string()
                .contains("event 3 of the journal journals `m::t#1` a second time"),
            "{err}"
        );
        // Started again with other arguments: the same error.
        let mut again = started(1);
        if let Event::StepStarted { args, .. } = &mut again {
            *args = json!([2]);
        }
        assert!(build(vec![created, started(1), again]).is_err());
    }
}

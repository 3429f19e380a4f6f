//! What a store keeps for workers: which runs are ready to be driven, and the claim a worker
//! makes on them ([`Store::claim`](super::Store::claim)).
//!
//! A run's readiness follows from its journal alone, so every store derives it the same way
//! ([`Readiness::of`]) and every writer (a worker, `run` in a terminal, `approve` / `post` on
//! the command line) keeps it current just by journaling:
//!
//! | the journal ends with | the run is |
//! |---|---|
//! | `run_completed` / `run_failed` / `run_cancelled` | ended: never claimed |
//! | `suspended` with a due time (a sleep, a breakpoint's timeout) | due at that time |
//! | `suspended` without one (waiting for a person or system) | parked until something is journaled (a decision, a posted result) |
//! | anything else (created, a step, a resolved effect) | ready now |
//!
//! A run that is ready but held by a writer (a live worker, a terminal) is not claimable; when
//! its writer dies without closing it (a crash, a `kill -9`), the lock or lease it held lapses
//! and the run is claimable again: that is how a worker picks up another's unfinished work.

use super::OpenRun;
use crate::journal::Event;
use std::time::Duration;

/// Whether a run can be driven now, later, or not until something happens to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// It has work to do now.
    Ready,
    /// It sleeps (or waits for a breakpoint with a timeout) until this time, in milliseconds
    /// since the epoch; earlier only when something is journaled for it.
    Due(u64),
    /// It waits for something only a person or another system can give (a decision, an
    /// external task's result).
    Parked,
    /// It has ended.
    Ended,
}

impl Readiness {
    /// The readiness of a run whose journal is `events`.
    pub fn of(events: &[Event]) -> Readiness {
        events
            .iter()
            .fold(Readiness::Ready, |_, event| Readiness::after(event))
    }

    /// The readiness of a run whose journal ends with `event`.
    pub fn after(event: &Event) -> Readiness {
        match event {
            Event::Suspended {
                due_ms: Some(due), ..
            } => Readiness::Due(*due),
            Event::Suspended { due_ms: None, .. } => Readiness::Parked,
            e if e.run_end().is_some() => Readiness::Ended,
            _ => Readiness::Ready,
        }
    }

    /// Whether a worker may claim the run at `now_ms` (milliseconds since the epoch).
    pub fn claimable_at(self, now_ms: u64) -> bool {
        match self {
            Readiness::Ready => true,
            Readiness::Due(due) => due <= now_ms,
            Readiness::Parked | Readiness::Ended => false,
        }
    }
}

/// What a worker asks a store for in [`Store::claim`](super::Store::claim).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// The worker's id (unique per worker process).
    pub worker: String,
    /// The processes the worker can drive, with the structure (graph fingerprint) its build
    /// has for each: runs of other processes, or recorded with another structure, are left for
    /// workers that have them.
    pub processes: Vec<(String, String)>,
    /// The queues to take runs from; empty: every queue.
    pub queues: Vec<String>,
    /// At most this many runs.
    pub max: usize,
    /// How long the claim holds without a heartbeat or a flush, for stores with leases. (The
    /// file store's claim is its run lock, held until the worker drops the run or dies.)
    pub lease: Duration,
}

impl ClaimRequest {
    /// A request by `worker` for at most `max` runs of `processes` (name, fingerprint) from
    /// any queue, with a 15-second lease.
    pub fn new(worker: impl Into<String>, processes: Vec<(String, String)>, max: usize) -> Self {
        ClaimRequest {
            worker: worker.into(),
            processes,
            queues: Vec::new(),
            max,
            lease: Duration::from_secs(15),
        }
    }

    /// Takes runs only from these queues.
    pub fn queues(mut self, queues: Vec<String>) -> Self {
        self.queues = queues;
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Whether a run of `process` with structure `fingerprint` in `queue` is for this worker.
    pub fn wants(&self, process: &str, fingerprint: &str, queue: &str) -> bool {
        self.processes
            .iter()
            .any(|(p, f)| p == process && f == fingerprint)
            && (self.queues.is_empty() || self.queues.iter().any(|q| q == queue))
    }
}

/// A run a worker claimed: it holds it as [`Store::open`](super::Store::open) would.
#[derive(Debug)]
#[non_exhaustive]
pub struct Claimed {
    /// The run id.
    pub run_id: String,
    /// The run's process.
    pub process: String,
    /// The run's journal so far and its log.
    pub open: OpenRun,
}

impl Claimed {
    /// A claimed run (for [`Store`](super::Store) implementations).
    pub fn new(run_id: String, process: String, open: OpenRun) -> Self {
        Claimed {
            run_id,
            process,
            open,
        }
    }
}

/// Ready runs a worker leaves for others ([`Store::left_for_others`](super::Store::left_for_others)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeftOut {
    /// Their process.
    pub process: String,
    /// The structure they were recorded with.
    pub fingerprint: String,
    /// How many.
    pub runs: u64,
}

impl LeftOut {
    /// Runs left out (for [`Store`](super::Store) implementations).
    pub fn new(process: String, fingerprint: String, runs: u64) -> Self {
        LeftOut {
            process,
            fingerprint,
            runs,
        }
    }
}

/// Limits on a queue, shared by every worker of a store ([`Store::set_queue`](super::Store::set_queue)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct QueueLimits {
    /// At most this many runs of the queue are held by workers at once, across all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most this many runs of the queue are claimed per period (a fixed window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// A rate limit: `max` claims per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Claims per period.
    pub max: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
}

impl QueueLimits {
    /// No limits.
    pub fn none() -> Self {
        Self::default()
    }

    /// At most `n` runs of the queue at once, across all workers.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// At most `max` runs of the queue started per `period`.
    pub fn rate(mut self, max: u32, period: Duration) -> Self {
        self.rate = Some(Rate {
            max,
            period_ms: period.as_millis().max(1) as u64,
        });
        self
    }
}

/// The process, fingerprint, queue and priority a run was created with (its first event).
pub(crate) fn created_facts(first: &Event) -> Option<(&str, &str, &str, i32)> {
    match first {
        Event::RunCreated {
            process,
            fingerprint,
            queue,
            priority,
            ..
        } => Some((
            process,
            fingerprint,
            queue.as_deref().unwrap_or(DEFAULT_QUEUE),
            priority.unwrap_or(0),
        )),
        _ => None,
    }
}

/// The queue of a run created without naming one.
pub const DEFAULT_QUEUE: &str = "default";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_last_event() {
        let created = Event::RunCreated {
            run_id: "r".into(),
            process: "p".into(),
            input: serde_json::Value::Null,
            fingerprint: "f".into(),
            queue: None,
            priority: None,
            parent: None,
        };
        let sleeping = Event::Suspended {
            waiting: vec!["s".into()],
            due_ms: Some(5),
        };
        let parked = Event::Suspended {
            waiting: vec!["b".into()],
            due_ms: None,
        };
        let resolved = Event::EffectResolved {
            key: "b".into(),
            outcome: crate::journal::Outcome::Ok(serde_json::Value::Null),
        };
        let done = Event::RunCompleted {
            output: serde_json::Value::Null,
        };
        assert_eq!(
            Readiness::of(std::slice::from_ref(&created)),
            Readiness::Ready
        );
        assert_eq!(
            Readiness::of(&[created.clone(), sleeping]),
            Readiness::Due(5)
        );
        assert!(!Readiness::Due(5).claimable_at(4));
        assert!(Readiness::Due(5).claimable_at(5));
        assert_eq!(
            Readiness::of(&[created.clone(), parked.clone()]),
            Readiness::Parked
        );
        assert_eq!(
            Readiness::of(&[created.clone(), parked, resolved]),
            Readiness::Ready
        );
        assert_eq!(Readiness::of(&[created, done]), Readiness::Ended);
        assert!(!Readiness::Ended.claimable_at(u64::MAX));
    }
}

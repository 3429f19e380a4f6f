//! Benchmark 3: resuming a run whose journal holds `n` completed steps and no run end, so the
//! resume replays every step from the file journal.
//!
//! The journal is made by a real run, so its keys and records are exactly what minder writes:
//! [`replay_steps`] runs on the in-memory store until its last step (the gate) has started,
//! and is dropped there; its events are then written to a file journal through the `Store`
//! API, once per copy (a resumed run finishes, so each measurement needs its own copy).

use crate::stats::median;
use crate::workflows::{gate_reached, open_gate, replay_steps};
use minder::journal::Event;
use minder::store::Store;
use minder::{FileStore, MemoryStore, Runner};
use std::time::Instant;

/// The figures of one replay size, medians of the repetitions.
#[derive(Debug, Clone)]
pub struct Replay {
    /// Completed steps in the journal.
    pub n: u64,
    /// Repetitions.
    pub reps: usize,
    /// Seconds to resume the run to its end.
    pub total_s: f64,
    /// Seconds to read and decode the journal alone (`Store::read`), part of `total_s`.
    pub decode_s: f64,
    /// Journal size in bytes.
    pub journal_bytes: u64,
    /// Seconds to resume the same run again once it completed (it returns its recorded
    /// output).
    pub completed_s: f64,
}

impl Replay {
    /// µs per replayed step.
    pub fn per_step_us(&self) -> f64 {
        self.total_s * 1e6 / self.n as f64
    }
}

/// The events of a [`replay_steps`] run of `n` steps, stopped at its gate.
pub async fn journal_events(n: u64) -> Vec<Event> {
    let store = MemoryStore::new();
    let runner = Runner::new(store.clone());
    let run_id = runner
        .create::<replay_steps>(&n)
        .await
        .expect("cannot create the replay run");
    tokio::select! {
        result = runner.resume::<replay_steps>(&run_id) => {
            panic!("the replay run ended before its gate: {:?}", result.map(|_| ()))
        }
        () = gate_reached() => {}
    }
    let events = store.read(&run_id).await.expect("the run exists");
    let completed = events
        .iter()
        .filter(|e| matches!(e, Event::StepCompleted { .. }))
        .count();
    assert_eq!(
        completed as u64, n,
        "every step before the gate is journaled"
    );
    events
}

/// Writes `events` as the journal of a new run `run_id` in `store`, durably.
pub async fn write_journal(store: &FileStore, run_id: &str, events: &[Event]) {
    let mut first = events[0].clone();
    if let Event::RunCreated { run_id: id, .. } = &mut first {
        *id = run_id.to_string();
    }
    let log = store
        .create(run_id, first)
        .await
        .expect("cannot create the journal copy");
    for event in &events[1..] {
        log.append(event.clone()).expect("cannot append");
    }
    log.flush().await.expect("cannot flush the journal copy");
}

/// Resumes `run_id` to its end (the gate must be open); returns the seconds it took.
pub async fn resume(store: &FileStore, run_id: &str, n: u64) -> f64 {
    let runner = Runner::new(store.clone());
    let start = Instant::now();
    let done = runner
        .resume::<replay_steps>(run_id)
        .await
        .expect("the resume failed");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done.output, (0..n).fold(0u64, u64::wrapping_add));
    secs
}

/// Measures the replay of `n` steps `reps` times, each on its own copy of the journal.
pub async fn measure(events: &[Event], n: u64, reps: usize, store: &FileStore) -> Replay {
    open_gate();
    let (mut total, mut decode, mut completed) = (Vec::new(), Vec::new(), Vec::new());
    let mut journal_bytes = 0;
    for rep in 0..reps {
        let run_id = format!("replay-{n}-{rep}");
        write_journal(store, &run_id, events).await;
        let path = store.journal_path(&run_id).expect("a valid run id");
        journal_bytes = std::fs::metadata(&path).expect("the journal exists").len();
        let start = Instant::now();
        let read = store.read(&run_id).await.expect("the journal reads back");
        decode.push(start.elapsed().as_secs_f64());
        assert_eq!(read.len(), events.len());
        drop(read);
        total.push(resume(store, &run_id, n).await);
        // Completed now: resuming it again returns its output.
        completed.push(resume(store, &run_id, n).await);
        // Each copy is resumed once: drop it, so a large one does not fill the disk.
        store.delete(&run_id).await.expect("cannot delete the copy");
    }
    Replay {
        n,
        reps,
        total_s: median(&mut total),
        decode_s: median(&mut decode),
        journal_bytes,
        completed_s: median(&mut completed),
    }
}

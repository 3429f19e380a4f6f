//! Shared helpers for the behaviour tests: a call log, gates that hold a task until a test
//! opens them (to stop a run at a known point), and waits on conditions.

#![allow(dead_code)]

pub mod inbox;
pub mod queues;

use minder::journal::Event;
use minder::prelude::*;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static OPEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Records that something ran.
pub fn record(what: String) {
    CALLS.lock().unwrap().push(what);
}

/// Everything recorded under `tag`, in order.
pub fn calls(tag: &str) -> Vec<String> {
    let prefix = format!("{tag}:");
    CALLS
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| c.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

pub fn count(tag: &str, what: &str) -> usize {
    calls(tag).iter().filter(|c| *c == what).count()
}

pub fn open_gate(tag: &str) {
    OPEN.lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(tag.to_string());
}

fn is_open(tag: &str) -> bool {
    OPEN.lock()
        .unwrap()
        .as_ref()
        .is_some_and(|s| s.contains(tag))
}

/// How long a test waits for a condition before it fails: generous, so a loaded machine does
/// not fail a test that would have passed. Measured on the real clock, so a test on tokio's
/// paused clock gets the same allowance.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `ready()` holds, checking every 2 ms (of tokio's clock, which a paused test
/// advances as it waits); fails with `what` after [`PATIENCE`].
pub async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `tag` has recorded `what` at least `n` times.
pub async fn wait_for(tag: &str, what: &str, n: usize) {
    let what_ran = format!("`{what}` to run {n} times under `{tag}`");
    wait_until(&what_ran, || count(tag, what) >= n).await;
}

/// A task that records its call and returns `name-result` after `delay_ms`.
#[task]
pub async fn step(tag: String, name: String, delay_ms: u64) -> Result<String, TaskError> {
    record(format!("{tag}:{name}"));
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Ok(format!("{name}-result"))
}

/// A task that fails with `name-failed`.
#[task]
pub async fn failing(tag: String, name: String, delay_ms: u64) -> Result<String, TaskError> {
    record(format!("{tag}:{name}"));
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    Err(TaskError::new(format!("{name}-failed")))
}

/// A task that waits until the test opens the gate `tag`; records its idempotency key.
#[task]
pub async fn gate(tag: String) -> Result<u32, TaskError> {
    record(format!("{tag}:gate"));
    record(format!(
        "{tag}:key={}",
        minder::idempotency_key().unwrap_or_default()
    ));
    while !is_open(&tag) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(7)
}

/// The step keys of a journal, with their task and arguments, in journal order.
pub fn started(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted {
                key, task, args, ..
            } => Some((
                key.clone(),
                task.rsplit("::").next().unwrap().to_string(),
                args.to_string(),
            )),
            _ => None,
        })
        .collect()
}

pub fn keys(events: &[Event]) -> Vec<String> {
    started(events).into_iter().map(|(k, _, _)| k).collect()
}

/// The keys of the steps that completed, in the order they completed (journal order).
pub fn completed(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepCompleted { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

//! Workers: programs that drive whatever run is ready on a store, so runs go on by themselves.
//!
//! A [`Worker`] claims ready runs ([`Store::claim`](crate::store::Store::claim)) of the
//! processes it has ([`Processes`]), drives each as [`Runner::resume`] would, and lets it go
//! when it ends or waits (for a person, a posted result, a sleep that is not due yet); it claims
//! again when a run of its own stops, when the store signals new work, and at least every
//! [`Worker::poll`]. Several workers can share a store: on the [`FileStore`](crate::FileStore)
//! (one machine) the run lock is the claim, so a run is driven by one worker at a time and a
//! worker that dies lets go of its runs with its locks; another worker then finishes them,
//! without running a completed step again.
//!
//! ```no_run
//! use minder::prelude::*;
//! use minder::worker::{Processes, Worker};
//!
//! #[task]
//! async fn shout(text: String) -> Result<String, TaskError> {
//!     Ok(text.to_uppercase())
//! }
//!
//! #[process]
//! async fn loud(_ctx: &Ctx, text: String) -> Result<String, ProcessError> {
//!     Ok(shout(text).await?)
//! }
//!
//! # #[tokio::main] async fn main() {
//! let runner = Runner::new(minder::FileStore::new(".minder/runs"));
//! let id = runner.submit::<loud>(&"hello".to_string()).await.unwrap();
//! // Elsewhere (another program, or several):
//! let worker = Worker::new(runner, Processes::new().process::<loud>()).concurrency(8);
//! worker.run_until(async { /* a shutdown signal */ }).await.unwrap();
//! # let _ = id; }
//! ```

use crate::run::{Process, Runner};
use crate::store::{ClaimRequest, Claimed, StoreError};
use crate::RunError;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How often an idle worker looks for ready runs it cannot take.
const LOOK_AROUND: Duration = Duration::from_secs(10);

type DriveFn = for<'a> fn(&'a Runner, Claimed) -> BoxFuture<'a, Result<(), RunError>>;

/// The processes a worker can drive.
#[derive(Default, Clone)]
pub struct Processes {
    entries: HashMap<&'static str, (String, DriveFn)>,
}

impl fmt::Debug for Processes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.entries.keys().collect();
        names.sort();
        f.debug_list().entries(names).finish()
    }
}

fn drive<P: Process>(runner: &Runner, claimed: Claimed) -> BoxFuture<'_, Result<(), RunError>> {
    Box::pin(async move { runner.resume_claimed::<P>(claimed).await.map(drop) })
}

impl Processes {
    /// No processes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds process `P`.
    pub fn process<P: Process>(mut self) -> Self {
        self.entries
            .insert(P::NAME, (P::graph().fingerprint(), drive::<P>));
        self
    }

    /// The (name, structure fingerprint) of each process, as a claim names them.
    pub fn fingerprints(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(name, (fingerprint, _))| (name.to_string(), fingerprint.clone()))
            .collect();
        all.sort();
        all
    }
}

/// How the runs a worker drove ended, counted over its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Runs that completed.
    pub completed: u64,
    /// Runs whose process failed.
    pub failed: u64,
    /// Runs that stopped to wait (for a person, a posted result, a sleep not yet due).
    pub suspended: u64,
    /// Runs that were cancelled.
    pub cancelled: u64,
    /// Runs another writer took over ([`StoreError::Fenced`]): this worker stopped driving
    /// them and wrote nothing more.
    pub lost: u64,
    /// Runs that stopped on another error (the journal, non-determinism, a version mismatch):
    /// each was logged with its run id.
    pub errors: u64,
    /// Runs still being driven when the grace period after shutdown ended: dropped (their
    /// unfinished steps run again when a worker next claims them).
    pub abandoned: u64,
}

/// Drives whatever run is ready on a store. See the [module documentation](self).
pub struct Worker {
    runner: Runner,
    processes: Arc<Processes>,
    id: String,
    concurrency: usize,
    queues: Vec<String>,
    poll: Duration,
    lease: Duration,
    grace: Duration,
    on_run: Option<OnRun>,
    on_notice: Option<OnNotice>,
}

type OnNotice = Arc<dyn Fn(&str) + Send + Sync>;
type OnRun = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("processes", &self.processes)
            .field("concurrency", &self.concurrency)
            .field("queues", &self.queues)
            .finish()
    }
}

impl Worker {
    /// A worker driving runs of `processes` on `runner`'s store (with its settings: artifacts,
    /// sleeps, notices), 16 at a time, from every queue.
    pub fn new(runner: Runner, processes: Processes) -> Self {
        Worker {
            // Child processes of its runs go to workers too (`Ctx::child`).
            runner: runner.for_worker(processes.fingerprints()),
            processes: Arc::new(processes),
            id: format!(
                "{}-{}-{}",
                crate::store::hostname(),
                std::process::id(),
                crate::run::new_run_id()
            ),
            concurrency: 16,
            queues: Vec::new(),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(15),
            grace: Duration::from_secs(30),
            on_run: None,
            on_notice: None,
        }
    }

    /// Calls `f` with what the worker has to say that is not about one of its runs: ready
    /// runs it leaves for other workers because it lacks their process or has another
    /// structure of it (said once per process and structure, again when their number grows).
    pub fn on_notice(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_notice = Some(Arc::new(f));
        self
    }

    /// Calls `f(run_id, outcome)` each time the worker lets a run go: `completed`, `failed`,
    /// `waiting`, `cancelled`, `lost` (taken over by another writer) or `error: ..`.
    pub fn on_run(mut self, f: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.on_run = Some(Arc::new(f));
        self
    }

    /// Drives at most `n` runs at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Takes runs only from these queues (empty: every queue).
    pub fn queues(mut self, queues: Vec<String>) -> Self {
        self.queues = queues;
        self
    }

    /// Looks for ready runs at least this often when the store gives no signal (1 s; the
    /// file store looks every 100 ms anyway, and PostgreSQL announces new work at once).
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The lease on a claimed run, for stores with leases (15 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long runs under way may go on after shutdown is asked before they are dropped
    /// (30 s).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The worker's id, unique per worker: host, pid and a ULID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until the store fails (see [`Worker::run_until`]).
    pub async fn run(self) -> Result<WorkerReport, StoreError> {
        self.run_until(std::future::pending()).await
    }

    /// Claims and drives ready runs until `shutdown` resolves; then claims nothing more, lets
    /// the runs under way go on for the grace period, drops what is left (each run's lock or
    /// lease is let go, its command tasks killed), and returns what happened to the runs it
    /// drove. A store that cannot be reached is retried with a growing pause (up to 5 s), not
    /// an error.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, StoreError> {
        let store = self.runner.store().clone();
        let mut report = WorkerReport::default();
        let mut running: JoinSet<(String, Result<(), RunError>)> = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = self.poll;
        // Ready runs this worker cannot take, as last said: (process, fingerprint) -> count.
        let mut told: HashMap<(String, String), u64> = HashMap::new();
        let mut last_look = tokio::time::Instant::now() - LOOK_AROUND;
        let _registration = store.register_worker(&self.id).await?;
        tracing::info!(worker = %self.id, concurrency = self.concurrency, "worker started");
        loop {
            let free = self.concurrency.saturating_sub(running.len());
            let mut pause = self.poll;
            if free > 0 {
                let request =
                    ClaimRequest::new(self.id.clone(), self.processes.fingerprints(), free)
                        .queues(self.queues.clone())
                        .lease(self.lease);
                match store.claim(&request).await {
                    Ok(claims) => {
                        backoff = self.poll;
                        let idle = claims.is_empty() && running.is_empty();
                        for claimed in claims {
                            self.start(&mut running, claimed);
                        }
                        if idle && last_look.elapsed() >= LOOK_AROUND {
                            last_look = tokio::time::Instant::now();
                            self.look_around(&request, &mut told).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(worker = %self.id, error = %e, "cannot claim runs; trying again");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        pause = backoff;
                    }
                }
            }
            let free = self.concurrency.saturating_sub(running.len());
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    self.record(&mut report, done);
                }
                () = store.wait_for_work(pause), if free > 0 => {}
            }
        }
        tracing::info!(worker = %self.id, runs = running.len(), "worker stopping");
        let grace = tokio::time::sleep(self.grace);
        tokio::pin!(grace);
        while !running.is_empty() {
            tokio::select! {
                Some(done) = running.join_next() => self.record(&mut report, done),
                () = &mut grace => {
                    report.abandoned += running.len() as u64;
                    running.shutdown().await;
                    break;
                }
            }
        }
        store.unregister_worker(&self.id).await;
        drop(_registration);
        tracing::info!(worker = %self.id, ?report, "worker stopped");
        Ok(report)
    }

    /// Says which ready runs it leaves for other workers (see [`Worker::on_notice`]).
    async fn look_around(&self, request: &ClaimRequest, told: &mut HashMap<(String, String), u64>) {
        let store = self.runner.store();
        let Ok(left) = store.left_for_others(request).await else {
            return;
        };
        for crate::store::LeftOut {
            process,
            fingerprint,
            runs: n,
            ..
        } in left
        {
            let key = (process.clone(), fingerprint.clone());
            if told.get(&key).is_some_and(|seen| *seen >= n) {
                continue;
            }
            told.insert(key, n);
            let have = self
                .processes
                .fingerprints()
                .into_iter()
                .find(|(p, _)| *p == process);
            let why = match have {
                Some((_, mine)) => format!(
                    "recorded with structure {fingerprint} of `{process}`, and this worker's build has {mine}"
                ),
                None => format!("of process `{process}`, which this worker does not have"),
            };
            let message =
                format!("{n} ready run(s) {why}: left for a worker with that build (none failed)");
            tracing::warn!(worker = %self.id, %process, %fingerprint, runs = n, "{message}");
            if let Some(f) = &self.on_notice {
                f(&message);
            }
        }
    }

    fn start(&self, running: &mut JoinSet<(String, Result<(), RunError>)>, claimed: Claimed) {
        let Some((_, drive)) = self.processes.entries.get(claimed.process.as_str()) else {
            // The store gave a run of a process this worker did not ask for: let it go.
            tracing::warn!(run_id = %claimed.run_id, process = %claimed.process, "claimed a run of an unknown process; left for another worker");
            return;
        };
        let drive = *drive;
        let runner = self.runner.clone();
        tracing::debug!(worker = %self.id, run_id = %claimed.run_id, process = %claimed.process, "claimed");
        running.spawn(async move {
            let run_id = claimed.run_id.clone();
            let result = drive(&runner, claimed).await;
            (run_id, result)
        });
    }

    fn record(
        &self,
        report: &mut WorkerReport,
        done: Result<(String, Result<(), RunError>), tokio::task::JoinError>,
    ) {
        let (run_id, result) = match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(worker = %self.id, error = %e, "a run's driver panicked");
                report.errors += 1;
                return;
            }
        };
        let outcome = match result {
            Ok(()) => {
                report.completed += 1;
                "completed".to_string()
            }
            Err(RunError::Failed { .. }) => {
                report.failed += 1;
                "failed".to_string()
            }
            Err(RunError::Suspended { .. }) => {
                report.suspended += 1;
                "waiting".to_string()
            }
            Err(RunError::Cancelled { .. }) => {
                report.cancelled += 1;
                "cancelled".to_string()
            }
            Err(RunError::Store(StoreError::Fenced(_))) => {
                tracing::warn!(worker = %self.id, %run_id, "run taken over by another worker; stopped driving it");
                report.lost += 1;
                "lost".to_string()
            }
            Err(e) => {
                tracing::error!(worker = %self.id, %run_id, error = %e, "run stopped on an error");
                report.errors += 1;
                format!("error: {e}")
            }
        };
        if let Some(f) = &self.on_run {
            f(&run_id, &outcome);
        }
    }
}

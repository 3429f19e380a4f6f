//! The PostgreSQL store: runs, their events and the workers' leases in one database, for
//! workers on many machines. Behind the `postgres` feature.
//!
//! # Tables
//!
//! ```text
//! minder_schema   (version)                    the schema version; a newer one is refused
//! minder_runs     one row a run: process, fingerprint, queue, priority, readiness (state +
//!                 wake_at, written when the run is let go), the holder (owner, epoch,
//!                 lease_until), cancel request
//! minder_events   one row a flush: (run_id, seq) primary key, the epoch that wrote it, body
//!                 (the flush's events, a JSON array; `[]` for a claim's row)
//! minder_inbox    answers posted while another writer holds the run
//! minder_queues   limits of queues: concurrency, rate
//! minder_workers  one row a live store instance (worker): host, pid, heartbeat
//! ```
//!
//! # Leases and fencing
//!
//! Opening or claiming a run takes it when nobody holds it or its holder's lease ran out: the
//! holder becomes this store instance (`owner`), the run's `epoch` goes up by one, the lease
//! runs for [`PgStore::lease`], and, in the same statement, the claim writes the run's next row
//! (number *n*: one past the last, no events). The holder numbers its flushes' rows *n* + 1,
//! *n* + 2, … itself: a flush is one `INSERT` of one row, the cheapest statement a commit can
//! carry. The fence is the `(run_id, seq)` primary key. A writer whose lease ran out while it
//! stalled (a pause, `SIGSTOP`, a partition) writes its next row at the number after its own
//! last one; a later claim wrote its row at exactly that number (or, if the stale row went in
//! first, after it, and that row is read by the claim as part of the run before it), so the
//! stale row is refused, the flush fails with [`StoreError::Fenced`], and nothing of the stale
//! writer lands after the claim. A flush of several rows is one statement or one transaction:
//! all or nothing. The rows of a run are numbered 1, 2, 3, … without a gap, their epochs never
//! go down. Rows are never taken out of a run while it exists; a writer stalled past the
//! deletion of its run (another writer finished it, then `prune` removed it) can leave rows
//! that no read returns (a run's rows are read only while its row exists).
//!
//! A heartbeat renews every lease the instance holds in one statement, every third of the
//! lease, and marks the runs missing from its answer as lost (their next flush fails at once,
//! and the runner drops the body).
//!
//! # Group commit
//!
//! Flushes go through one writer task with its own connection: the flushes of all runs that
//! arrive while a commit is under way are written together in one transaction (one row a run:
//! its flushes merged), so a fan-out of many steps, or many runs at once, shares commits. A
//! lone flush is one `INSERT` committed by itself.
//!
//! # Wake-ups
//!
//! A run let go in a state a worker can take (ready) is announced with `NOTIFY minder_work`;
//! workers `LISTEN` and claim at once, and otherwise wake for the next due time or their poll.

use super::claim::{created_facts, ClaimRequest, Claimed, Readiness};
use super::{now_ms, validate_run_id, InboxAnswer, InboxItem, OpenRun, RunLog, Store, StoreError};
use crate::journal::Event;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

mod background;
mod batch;
mod claims;
mod connect;
mod inbox;
mod schema;
mod writer;

use background::{heartbeat, listener};
use connect::{connect_client, db_error, mask, open_connection, split_root_cert};
use schema::migrate;
use writer::{writer, Pending, PgLog, Write};

/// A [`Store`] on PostgreSQL. Cloning shares the connections and the instance's identity
/// (one owner of leases). How it keeps runs, leases and wake-ups is in the README's "Workers"
/// section.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), minder::store::StoreError> {
/// let store = minder::store::PgStore::connect("postgres://minder@localhost/minder").await?;
/// let runner = minder::Runner::new(store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The URL with its password masked, for messages.
    pub(super) url: String,
    pub(super) config: Config,
    /// This instance's identity as a holder of runs.
    pub(super) owner: String,
    pub(super) lease: Duration,
    /// The connection for reads, claims and everything but flushes.
    pub(super) client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// The connection for the claims of queues with limits (a transaction each).
    pub(super) claims: tokio::sync::Mutex<Option<Client>>,
    /// The writer task's queue.
    pub(super) writes: mpsc::UnboundedSender<Write>,
    /// The writer's connection and statements, shared with lone flushes.
    pub(super) writer_conn: Arc<tokio::sync::Mutex<Option<(Client, batch::Prepared)>>>,
    /// The size of the writer's last batch (a lone flush writes itself only after small ones).
    pub(super) last_batch: std::sync::atomic::AtomicUsize,
    /// The runs this instance holds, with the epoch of its claim.
    pub(super) held: Mutex<HashMap<String, Arc<Hold>>>,
    /// Signalled by `NOTIFY minder_work`.
    pub(super) work: Arc<Notify>,
    /// Runs asked to be cancelled (`NOTIFY minder_cancel`, and the heartbeat's answer), so
    /// a writer looking for a request asks the database only when there is one.
    pub(super) cancels: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Runs whose inbox got an item (`NOTIFY minder_inbox`), so a writer waiting for one asks
    /// the database when one was announced (or, in case a notification was missed, every
    /// [`INBOX_LOOK`]).
    pub(super) inboxes: Arc<Mutex<std::collections::HashSet<String>>>,
    /// When each run's inbox was last read.
    pub(super) inbox_looks: Mutex<HashMap<String, std::time::Instant>>,
    /// Heartbeat statements sent so far.
    pub(super) heartbeats: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.inner.url)
            .field("owner", &self.inner.owner)
            .finish()
    }
}

/// One held run.
#[derive(Debug)]
struct Hold {
    pub(super) epoch: i64,
    /// Set when the heartbeat or a flush found the run taken over.
    pub(super) lost: AtomicBool,
    /// The sequence number of the run's next row (the one after the claim's row).
    pub(super) next_seq: AtomicI64,
    /// Set when a flush failed (or may have: the connection dropped before its answer):
    /// nothing more is written through this hold.
    pub(super) failed: Mutex<Option<String>>,
    /// The run's readiness after its last row committed: the run is let go in it (never in
    /// the readiness of events appended and not written). `None`: not known (the run's rows
    /// could not be read), the run's row keeps the state it has.
    pub(super) durable: Mutex<Option<Readiness>>,
}

impl Hold {
    fn new(epoch: i64, next_seq: i64, durable: Option<Readiness>) -> Hold {
        Hold {
            epoch,
            lost: AtomicBool::new(false),
            next_seq: AtomicI64::new(next_seq),
            failed: Mutex::new(None),
            durable: Mutex::new(durable),
        }
    }

    /// Whether writes through this hold may still be sent.
    fn takes_writes(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.failed.lock().unwrap().is_none()
    }
}

impl Inner {
    fn error(&self, doing: &str, e: tokio_postgres::Error) -> StoreError {
        db_error(&self.url, doing, e)
    }
}

/// How often an open asks again, 25 ms apart, for a run another writer holds.
const OPEN_TRIES: u32 = 20;

/// How often a writer reads the inbox of a run that waits while it holds it, when no
/// notification announced an item.
const INBOX_LOOK: Duration = Duration::from_secs(2);

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or
    /// `postgresql:///db?host=/run/postgresql` for a Unix socket), applies the schema if it is
    /// missing (idempotent, safe when several workers start at once), refuses a schema written
    /// by a newer minder, and starts the writer, heartbeat and listener tasks. Errors name the
    /// URL with its password masked.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Self::connect_with_lease(url, Duration::from_secs(15)).await
    }

    /// [`PgStore::connect`] with a lease other than 15 s on the runs this instance holds.
    pub async fn connect_with_lease(url: &str, lease: Duration) -> Result<PgStore, StoreError> {
        let masked = mask(url);
        let config: Config =
            split_root_cert(url)
                .0
                .parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    url: masked.clone(),
                    message: format!("not a PostgreSQL URL: {e}"),
                })?;
        let client = connect_client(&masked, &config).await?;
        migrate(&masked, &client).await?;
        let owner = format!(
            "{}-{}-{}",
            crate::store::hostname(),
            std::process::id(),
            crate::store::new_id()
        );
        let (writes, queue) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            url: masked,
            config,
            owner,
            lease,
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            claims: tokio::sync::Mutex::new(None),
            writes,
            writer_conn: Arc::new(tokio::sync::Mutex::new(None)),
            last_batch: std::sync::atomic::AtomicUsize::new(0),
            held: Mutex::new(HashMap::new()),
            work: Arc::new(Notify::new()),
            cancels: Arc::new(Mutex::new(std::collections::HashSet::new())),
            inboxes: Arc::new(Mutex::new(std::collections::HashSet::new())),
            inbox_looks: Mutex::new(HashMap::new()),
            heartbeats: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(writer(Arc::downgrade(&inner), queue));
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        tokio::spawn(listener(Arc::downgrade(&inner)));
        Ok(PgStore { inner })
    }

    /// The lease on the runs this instance holds.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// This instance's identity as the holder of runs (also its row in `minder_workers`).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How many heartbeat statements this instance has sent: one every third of the lease,
    /// however many runs it holds.
    pub fn heartbeat_statements(&self) -> u64 {
        self.inner.heartbeats.load(Ordering::Relaxed)
    }

    /// The URL, its password masked.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.inner.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(connect_client(&self.inner.url, &self.inner.config).await?);
        *slot = Some(client.clone());
        Ok(client)
    }

    fn lease_secs(&self) -> f64 {
        self.inner.lease.as_secs_f64()
    }

    /// Holds `run_id` at `epoch`, its next row numbered `next_seq`: the log a writer appends
    /// through.
    fn hold(&self, run_id: &str, epoch: i64, next_seq: i64, events: &[Event]) -> Arc<dyn RunLog> {
        let hold = Arc::new(Hold::new(epoch, next_seq, Some(Readiness::of(events))));
        self.inner
            .held
            .lock()
            .unwrap()
            .insert(run_id.to_string(), hold.clone());
        Arc::new(PgLog {
            run_id: run_id.to_string(),
            hold,
            writes: self.inner.writes.clone(),
            pending: Mutex::new(Pending {
                events: Vec::new(),
                readiness: Readiness::of(events),
            }),
            closed: AtomicBool::new(false),
            store: Arc::downgrade(&self.inner),
            queued: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// The events of a run, in order (none when the run does not exist: rows a writer that
    /// stalled past the run's deletion might still have added are not read).
    async fn events_of(&self, client: &Client, run_id: &str) -> Result<Vec<Event>, StoreError> {
        let rows = client
            .query(
                "SELECT seq, body FROM minder_events
                 WHERE run_id = $1 AND EXISTS (SELECT 1 FROM minder_runs WHERE run_id = $1)
                 ORDER BY seq",
                &[&run_id],
            )
            .await
            .map_err(|e| self.inner.error("cannot read events", e))?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.get(0);
            let body: &str = row.get(1);
            let decoded = if body.starts_with('[') {
                serde_json::from_str::<Vec<Event>>(body)
            } else {
                // A row of schema version 2: one event.
                serde_json::from_str::<Event>(body).map(|e| vec![e])
            };
            events.extend(decoded.map_err(|e| {
                StoreError::Corrupt(format!(
                    "row {seq} of run `{run_id}` in {} does not hold known events: {e}",
                    self.inner.url
                ))
            })?);
        }
        Ok(events)
    }

    async fn create_now(&self, run_id: &str, first: Event) -> Result<Arc<dyn RunLog>, StoreError> {
        validate_run_id(run_id)?;
        let Some((process, fingerprint, queue, priority)) = created_facts(&first) else {
            return Err(StoreError::Corrupt(format!(
                "run `{run_id}` must begin with its creation event"
            )));
        };
        let body =
            batch::row_body(&[serde_json::to_string(&first).expect("an event is plain data")]);
        let client = self.client().await?;
        let inserted = client
            .execute(
                "WITH r AS (
                     INSERT INTO minder_runs (run_id, process, fingerprint, queue, priority,
                         state, owner, epoch, lease_until)
                     VALUES ($1, $2, $3, $4, $5, 'ready', $6, 1,
                         now() + make_interval(secs => $7))
                     ON CONFLICT (run_id) DO NOTHING
                     RETURNING run_id)
                 INSERT INTO minder_events (run_id, seq, epoch, body)
                 SELECT run_id, 1, 1, $8::text FROM r",
                &[
                    &run_id,
                    &process,
                    &fingerprint,
                    &queue,
                    &priority,
                    &self.inner.owner,
                    &self.lease_secs(),
                    &body,
                ],
            )
            .await
            .map_err(|e| self.inner.error("cannot create the run", e))?;
        if inserted == 0 {
            return Err(StoreError::RunExists(run_id.to_string()));
        }
        Ok(self.hold(run_id, 1, 2, std::slice::from_ref(&first)))
    }
}

impl Store for PgStore {
    fn create<'a>(
        &'a self,
        run_id: &'a str,
        first: Event,
    ) -> BoxFuture<'a, Result<Arc<dyn RunLog>, StoreError>> {
        Box::pin(self.create_now(run_id, first))
    }

    fn open<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<OpenRun, StoreError>> {
        Box::pin(async move {
            // A writer that is letting the run go (a worker whose run just stopped to wait)
            // is waited for a moment, as the file store waits for a busy lock.
            for _ in 0..OPEN_TRIES {
                match self.open_now(run_id).await {
                    Err(StoreError::Locked(_)) => {
                        tokio::time::sleep(Duration::from_millis(25)).await
                    }
                    done => return done,
                }
            }
            self.open_now(run_id).await
        })
    }

    fn read<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        Box::pin(async move {
            validate_run_id(run_id)?;
            let client = self.client().await?;
            let events = self.events_of(&client, run_id).await?;
            if events.is_empty() {
                return Err(StoreError::UnknownRun(run_id.to_string()));
            }
            Ok(events)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query("SELECT run_id FROM minder_runs ORDER BY run_id", &[])
                .await
                .map_err(|e| self.inner.error("cannot list runs", e))?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            validate_run_id(run_id)?;
            let client = self.client().await?;
            let deleted = client
                .execute(
                    "WITH r AS (
                         DELETE FROM minder_runs
                         WHERE run_id = $1 AND (owner IS NULL OR lease_until < now())
                         RETURNING run_id),
                     e AS (DELETE FROM minder_events WHERE run_id IN (SELECT run_id FROM r))
                     SELECT 1 FROM r",
                    &[&run_id],
                )
                .await
                .map_err(|e| self.inner.error("cannot delete the run", e))?;
            if deleted == 0 {
                return Err(self.not_taken(&client, run_id).await);
            }
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<Claimed>, StoreError>> {
        Box::pin(self.claim_now(request))
    }

    fn left_for_others<'a>(
        &'a self,
        request: &'a ClaimRequest,
    ) -> BoxFuture<'a, Result<Vec<crate::store::LeftOut>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let wanted: Vec<String> = request
                .processes
                .iter()
                .map(|(p, f)| format!("{p}/{f}"))
                .collect();
            let rows = client
                .query(
                    "SELECT process, fingerprint, count(*) FROM minder_runs
                     WHERE (state = 'ready' OR (state = 'due' AND wake_at <= $1))
                       AND (owner IS NULL OR lease_until < now())
                       AND process || '/' || fingerprint <> ALL($2)
                       AND (cardinality($3::text[]) = 0 OR queue = ANY($3))
                     GROUP BY process, fingerprint ORDER BY process, fingerprint",
                    &[&(now_ms() as i64), &wanted, &request.queues],
                )
                .await
                .map_err(|e| self.inner.error("cannot count the runs left", e))?;
            Ok(rows
                .iter()
                .map(|r| crate::store::LeftOut::new(r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
                .collect())
        })
    }

    fn set_queue<'a>(
        &'a self,
        name: &'a str,
        limits: crate::store::QueueLimits,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.set_queue_now(name, limits)
    }

    fn queues(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(String, crate::store::QueueLimits)>, StoreError>> {
        self.queues_now()
    }

    fn register_worker<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<crate::store::WorkerGuard, StoreError>> {
        // The worker is known by this instance's identity, which its leases carry.
        let _ = id;
        Box::pin(self.register_worker_now())
    }

    fn unregister_worker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let _ = id;
        Box::pin(self.unregister_worker_now())
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<crate::store::WorkerInfo>, StoreError>> {
        Box::pin(self.workers_now())
    }

    fn last_write<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::time::SystemTime>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    // A run held under a live lease is being written now (its rows carry no
                    // time; the run's row is written when it is claimed and let go).
                    "SELECT (extract(epoch FROM CASE WHEN owner IS NOT NULL AND lease_until >= now()
                         THEN now() ELSE updated_at END) * 1000)::bigint
                     FROM minder_runs WHERE run_id = $1",
                    &[&run_id],
                )
                .await
                .map_err(|e| self.inner.error("cannot read the run", e))?;
            match row {
                None => Err(StoreError::UnknownRun(run_id.to_string())),
                Some(row) => Ok(Some(
                    std::time::UNIX_EPOCH + Duration::from_millis(row.get::<_, i64>(0) as u64),
                )),
            }
        })
    }

    fn wait_for_work(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The next due run wakes us at its time, not at the next poll. A held run keeps
            // the state it was claimed in until it is let go: it counts only once its lease
            // ran out.
            let mut wait = timeout;
            if let Ok(client) = self.client().await {
                if let Ok(Some(row)) = client
                    .query_opt(
                        "SELECT min(wake_at) FROM minder_runs
                         WHERE state = 'due' AND (owner IS NULL OR lease_until < now())",
                        &[],
                    )
                    .await
                {
                    if let Some(due) = row.get::<_, Option<i64>>(0) {
                        let until = (due as u64).saturating_sub(now_ms());
                        wait = wait.min(Duration::from_millis(until));
                    }
                }
            }
            let _ = tokio::time::timeout(wait, self.inner.work.notified()).await;
        })
    }

    fn request_cancel<'a>(
        &'a self,
        run_id: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            validate_run_id(run_id)?;
            let client = self.client().await?;
            let n = client
                .execute(
                    "WITH u AS (UPDATE minder_runs SET cancel_requested = true, cancel_reason = $2
                                WHERE run_id = $1 RETURNING run_id)
                     SELECT pg_notify('minder_cancel', run_id) FROM u",
                    &[&run_id, &reason],
                )
                .await
                .map_err(|e| self.inner.error("cannot request the cancel", e))?;
            if n == 0 {
                return Err(StoreError::UnknownRun(run_id.to_string()));
            }
            Ok(())
        })
    }

    fn cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        Box::pin(async move {
            // Asked often by every writer: the database only when a request was announced.
            if !self.inner.cancels.lock().unwrap().contains(run_id) {
                return None;
            }
            let client = self.client().await.ok()?;
            let row = client
                .query_opt(
                    "SELECT cancel_reason FROM minder_runs
                     WHERE run_id = $1 AND cancel_requested",
                    &[&run_id],
                )
                .await
                .ok()??;
            Some(row.get(0))
        })
    }

    fn clear_cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.inner.cancels.lock().unwrap().remove(run_id);
            if let Ok(client) = self.client().await {
                let _ = client
                    .execute(
                        "UPDATE minder_runs SET cancel_requested = false, cancel_reason = NULL
                         WHERE run_id = $1",
                        &[&run_id],
                    )
                    .await;
            }
        })
    }
    fn post_to_inbox<'a>(
        &'a self,
        run_id: &'a str,
        item: InboxItem,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.post_to_inbox_now(run_id, item))
    }

    fn inbox<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<InboxItem>, StoreError>> {
        Box::pin(self.inbox_now(run_id))
    }

    fn answer_inbox<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        answer: InboxAnswer,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.answer_inbox_now(run_id, id, answer))
    }

    fn take_inbox_answer<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        withdraw: bool,
    ) -> BoxFuture<'a, Result<Option<InboxAnswer>, StoreError>> {
        Box::pin(self.take_inbox_answer_now(run_id, id, withdraw))
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask("postgres://me:secret@db.example:5432/x?sslmode=require"),
            "postgres://me:***@db.example:5432/x?sslmode=require"
        );
        assert_eq!(mask("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(
            mask("postgresql:///x?host=/tmp"),
            "postgresql:///x?host=/tmp"
        );
    }
}

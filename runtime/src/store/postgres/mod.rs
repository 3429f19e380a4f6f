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
use tokio_postgres::{Client, Config, NoTls};

mod background;
mod claims;
mod schema;
mod writer;

use background::{heartbeat, listener};
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
    pub(super) writer_conn: Arc<tokio::sync::Mutex<Option<(Client, writer::Prepared)>>>,
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
}

impl Hold {
    fn new(epoch: i64, next_seq: i64) -> Hold {
        Hold {
            epoch,
            lost: AtomicBool::new(false),
            next_seq: AtomicI64::new(next_seq),
            failed: Mutex::new(None),
        }
    }

    /// Whether writes through this hold may still be sent.
    fn takes_writes(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.failed.lock().unwrap().is_none()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Inner {
    fn error(&self, doing: &str, e: tokio_postgres::Error) -> StoreError {
        db_error(&self.url, doing, e)
    }
}

fn db_error(url: &str, doing: &str, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    StoreError::Database {
        url: url.to_string(),
        message: format!("{doing}: {detail}"),
    }
}

/// How often an open asks again, 25 ms apart, for a run another writer holds.
const OPEN_TRIES: u32 = 20;

/// How often a claim is tried again when a writer whose lease ran out wrote the row it
/// numbered (see "Leases and fencing").
const CLAIM_TRIES: u32 = 5;

/// The row a claim writes: the run's next sequence number, the claim's epoch, no events. A
/// writer whose lease ran out tries to write its next row at this number (or one before it)
/// and is refused by the primary key: the fence. `u` is the claimed runs (`run_id`, `epoch`).
macro_rules! claim_row {
    () => {
        "INSERT INTO minder_events (run_id, seq, epoch, body)
         SELECT u.run_id,
             coalesce((SELECT max(e.seq) FROM minder_events e WHERE e.run_id = u.run_id), 0) + 1,
             u.epoch, '[]'
         FROM u
         RETURNING run_id, seq"
    };
}
pub(super) use claim_row;

/// Takes one run when nobody holds it or its holder's lease ran out, and writes the claim's row:
/// $1 the run, $2 the owner, $3 the lease (s). Answers the epoch and the claim row's number.
const OPEN: &str = concat!(
    "WITH u AS (
        UPDATE minder_runs SET owner = $2, epoch = epoch + 1,
            lease_until = now() + make_interval(secs => $3), updated_at = now()
        WHERE run_id = $1 AND (owner IS NULL OR lease_until < now())
        RETURNING run_id, epoch),
    m AS (",
    claim_row!(),
    ")
    SELECT u.epoch, m.seq FROM u JOIN m USING (run_id)"
);

/// How long connecting may take unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a writer reads the inbox of a run that waits while it holds it, when no
/// notification announced an item.
const INBOX_LOOK: Duration = Duration::from_secs(2);

/// How long one statement may take.
const STATEMENT_TIMEOUT: &str = "30s";

/// A connection's messages (notifications, and its end); polling them drives the connection.
pub(super) type Messages = futures::stream::BoxStream<
    'static,
    Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>,
>;

/// The URL's `sslrootcert=PATH` query parameter (libpq's; tokio-postgres does not know it),
/// and the URL without it.
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut root = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(path.to_string());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, root)
}

/// The TLS connector for `sslmode=require`: the server's certificate is verified against
/// Mozilla's roots and the certificates (PEM) in the URL's `sslrootcert=PATH` or, without
/// one, in `PGSSLROOTCERT`, and its name checked, as libpq's `verify-full` would.
fn tls(url: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |message: String| StoreError::Database {
        url: url.to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let root = match split_root_cert(url).1 {
        Some(path) => Some(("sslrootcert", std::path::PathBuf::from(path))),
        None => std::env::var_os("PGSSLROOTCERT").map(|p| ("PGSSLROOTCERT", p.into())),
    };
    if let Some((from, path)) = root {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                fail(format!(
                    "cannot read the CA certificates in {from}={}: {e}",
                    path.display()
                ))
            })?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| fail(format!("a certificate in {from}: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Opens a connection, with TLS when the URL asks for it (`sslmode=require`; `prefer`, the
/// default, and `disable` connect without).
pub(super) async fn open_connection(
    url: &str,
    config: &Config,
) -> Result<(Client, Messages), StoreError> {
    use futures::StreamExt;
    fn messages<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> Messages
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed()
    }
    let failed = |e| db_error(url, "cannot connect", e);
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        let (client, connection) = config.connect(tls(url)?).await.map_err(failed)?;
        Ok((client, messages(connection)))
    } else {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        Ok((client, messages(connection)))
    }
}

async fn connect_client(url: &str, config: &Config) -> Result<Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let connecting = open_connection(url, &config);
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StoreError::Database {
                    url: url.to_string(),
                    message: format!("cannot connect: no answer within {CONNECT_TIMEOUT:?}"),
                })
            }
        };
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(message) = connection.next().await {
            if let Err(e) = message {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
                break;
            }
        }
    });
    client
        .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        .await
        .map_err(|e| db_error(url, "cannot set the statement timeout", e))?;
    Ok(client)
}

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
        let hold = Arc::new(Hold::new(epoch, next_seq));
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

    /// Why `run_id` could not be taken: it does not exist, or another writer holds it.
    async fn not_taken(&self, client: &Client, run_id: &str) -> StoreError {
        match client
            .query_opt("SELECT 1 FROM minder_runs WHERE run_id = $1", &[&run_id])
            .await
        {
            Ok(Some(_)) => StoreError::Locked(run_id.to_string()),
            Ok(None) => StoreError::UnknownRun(run_id.to_string()),
            Err(e) => self.inner.error("cannot look up the run", e),
        }
    }

    async fn open_now(&self, run_id: &str) -> Result<OpenRun, StoreError> {
        validate_run_id(run_id)?;
        let client = self.client().await?;
        let mut tries = 0;
        let row = loop {
            let claimed = client
                .query_opt(OPEN, &[&run_id, &self.inner.owner, &self.lease_secs()])
                .await;
            match claimed {
                // A writer whose lease ran out was writing the row this claim numbered: its
                // row is in, so it is before the claim; number the claim's after it.
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && tries < CLAIM_TRIES => {
                    tries += 1
                }
                claimed => {
                    break claimed.map_err(|e| self.inner.error("cannot open the run", e))?
                }
            }
        };
        let Some(row) = row else {
            return Err(self.not_taken(&client, run_id).await);
        };
        let (epoch, seq): (i64, i64) = (row.get(0), row.get(1));
        let events = match self.events_of(&client, run_id).await {
            Ok(events) => events,
            Err(e) => {
                // Let it go at once rather than at the end of the lease.
                let _ = self.inner.writes.send(Write::Release {
                    run_id: run_id.to_string(),
                    hold: Arc::new(Hold::new(epoch, seq + 1)),
                    readiness: Readiness::Ready,
                    done: None,
                });
                return Err(e);
            }
        };
        let log = self.hold(run_id, epoch, seq + 1, &events);
        Ok(OpenRun::new(events, log))
    }

    async fn create_now(&self, run_id: &str, first: Event) -> Result<Arc<dyn RunLog>, StoreError> {
        validate_run_id(run_id)?;
        let Some((process, fingerprint, queue, priority)) = created_facts(&first) else {
            return Err(StoreError::Corrupt(format!(
                "run `{run_id}` must begin with its creation event"
            )));
        };
        let body =
            writer::row_body(&[serde_json::to_string(&first).expect("an event is plain data")]);
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
        Box::pin(async move {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO minder_workers (worker_id, host, pid, lease_ms)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now()",
                    &[
                        &self.inner.owner,
                        &crate::store::hostname(),
                        &(std::process::id() as i32),
                        &(self.inner.lease.as_millis() as i64),
                    ],
                )
                .await
                .map_err(|e| self.inner.error("cannot register the worker", e))?;
            Ok(crate::store::WorkerGuard::none())
        })
    }

    fn unregister_worker<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let _ = id;
        Box::pin(async move {
            if let Ok(client) = self.client().await {
                let _ = client
                    .execute(
                        "DELETE FROM minder_workers WHERE worker_id = $1",
                        &[&self.inner.owner],
                    )
                    .await;
            }
        })
    }

    fn workers(&self) -> BoxFuture<'_, Result<Vec<crate::store::WorkerInfo>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT w.worker_id, w.host, w.pid,
                         (extract(epoch FROM w.started_at) * 1000)::bigint,
                         (extract(epoch FROM w.heartbeat_at) * 1000)::bigint,
                         array(SELECT r.run_id FROM minder_runs r
                               WHERE r.owner = w.worker_id AND r.lease_until >= now()
                               ORDER BY r.run_id)
                     FROM minder_workers w
                     WHERE w.heartbeat_at > now() - make_interval(secs => w.lease_ms / 1000.0)
                     ORDER BY w.worker_id",
                    &[],
                )
                .await
                .map_err(|e| self.inner.error("cannot list workers", e))?;
            Ok(rows
                .iter()
                .map(|r| {
                    crate::store::WorkerInfo::new(
                        r.get(0),
                        r.get(1),
                        r.get::<_, i32>(2) as u32,
                        r.get::<_, i64>(3) as u64,
                    )
                    .heartbeat(r.get::<_, i64>(4) as u64)
                    .holding(r.get(5))
                })
                .collect())
        })
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
            // The next due run wakes us at its time, not at the next poll.
            let mut wait = timeout;
            if let Ok(client) = self.client().await {
                if let Ok(Some(row)) = client
                    .query_opt(
                        "SELECT min(wake_at) FROM minder_runs WHERE state = 'due'",
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
        Box::pin(async move {
            validate_run_id(run_id)?;
            let client = self.client().await?;
            let outcome = serde_json::to_string(&item.outcome).expect("an outcome is plain data");
            let n = client
                .execute(
                    "WITH i AS (INSERT INTO minder_inbox (run_id, id, key, outcome)
                                SELECT run_id, $2, $3, $4 FROM minder_runs WHERE run_id = $1
                                RETURNING run_id)
                     SELECT pg_notify('minder_inbox', run_id) FROM i",
                    &[&run_id, &item.id, &item.key, &outcome],
                )
                .await
                .map_err(|e| self.inner.error("cannot post to the run's inbox", e))?;
            if n == 0 {
                return Err(StoreError::UnknownRun(run_id.to_string()));
            }
            Ok(())
        })
    }

    fn inbox<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<InboxItem>, StoreError>> {
        Box::pin(async move {
            // Asked often while a held run waits: the database only when an item was
            // announced, or now and then in case a notification was missed.
            let announced = self.inner.inboxes.lock().unwrap().remove(run_id);
            {
                let mut looks = self.inner.inbox_looks.lock().unwrap();
                let now = std::time::Instant::now();
                let due = looks
                    .get(run_id)
                    .is_none_or(|last| now.duration_since(*last) >= INBOX_LOOK);
                if !announced && !due {
                    return Ok(Vec::new());
                }
                looks.insert(run_id.to_string(), now);
            }
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT id, key, outcome FROM minder_inbox
                     WHERE run_id = $1 AND answer IS NULL ORDER BY id",
                    &[&run_id],
                )
                .await
                .map_err(|e| self.inner.error("cannot read the run's inbox", e))?;
            rows.iter()
                .map(|row| {
                    let outcome: String = row.get(2);
                    Ok(InboxItem {
                        id: row.get(0),
                        key: row.get(1),
                        outcome: serde_json::from_str(&outcome).map_err(|e| {
                            StoreError::Corrupt(format!(
                                "an item in the inbox of run `{run_id}` does not decode: {e}"
                            ))
                        })?,
                    })
                })
                .collect()
        })
    }

    fn answer_inbox<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        answer: InboxAnswer,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let answer = serde_json::to_string(&answer).expect("an answer is plain data");
            client
                .execute(
                    "UPDATE minder_inbox SET answer = $3 WHERE run_id = $1 AND id = $2",
                    &[&run_id, &id, &answer],
                )
                .await
                .map_err(|e| self.inner.error("cannot answer an inbox item", e))?;
            Ok(())
        })
    }

    fn take_inbox_answer<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        withdraw: bool,
    ) -> BoxFuture<'a, Result<Option<InboxAnswer>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "DELETE FROM minder_inbox
                     WHERE run_id = $1 AND id = $2 AND ($3 OR answer IS NOT NULL)
                     RETURNING answer",
                    &[&run_id, &id, &withdraw],
                )
                .await
                .map_err(|e| self.inner.error("cannot take an inbox item", e))?;
            let answer: Option<String> = row.and_then(|row| row.get(0));
            Ok(answer.and_then(|a| serde_json::from_str(&a).ok()))
        })
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

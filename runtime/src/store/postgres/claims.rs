//! Claims (ready, due and lapsed runs; queues with limits claimed under their row's lock), the
//! queues' limits, and the workers' rows.

use super::*;

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

/// Whether a statement failed because a row number it wrote was taken: by a claim's row (a
/// writer's lease ran out), or, for a claim, by the row of a writer whose lease ran out.
pub(super) fn taken(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Runs a claim statement, again (up to [`CLAIM_TRIES`] times) while it finds the row it
/// numbered taken: a writer whose lease ran out was writing that row; its row is in, so it is
/// before the claim, and the claim numbers its own after it.
async fn claiming<T, F, Fut>(mut claim: F) -> Result<T, tokio_postgres::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut tries = 0;
    loop {
        match claim().await {
            Err(e) if taken(&e) && tries < CLAIM_TRIES => tries += 1,
            done => return done,
        }
    }
}

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

impl PgStore {
    /// Why `run_id` could not be taken: it does not exist, or another writer holds it.
    pub(super) async fn not_taken(&self, client: &Client, run_id: &str) -> StoreError {
        match client
            .query_opt("SELECT 1 FROM minder_runs WHERE run_id = $1", &[&run_id])
            .await
        {
            Ok(Some(_)) => StoreError::Locked(run_id.to_string()),
            Ok(None) => StoreError::UnknownRun(run_id.to_string()),
            Err(e) => self.inner.error("cannot look up the run", e),
        }
    }

    pub(super) async fn open_now(&self, run_id: &str) -> Result<OpenRun, StoreError> {
        validate_run_id(run_id)?;
        let client = self.client().await?;
        let row = claiming(|| async {
            let lease = self.lease_secs();
            client
                .query_opt(OPEN, &[&run_id, &self.inner.owner, &lease])
                .await
        })
        .await
        .map_err(|e| self.inner.error("cannot open the run", e))?;
        let Some(row) = row else {
            return Err(self.not_taken(&client, run_id).await);
        };
        let (epoch, seq): (i64, i64) = (row.get(0), row.get(1));
        let events = match self.events_of(&client, run_id).await {
            Ok(events) => events,
            Err(e) => {
                self.let_go_unread(run_id, epoch, seq, None);
                return Err(e);
            }
        };
        let log = self.hold(run_id, epoch, seq + 1, &events);
        Ok(OpenRun::new(events, log))
    }

    pub(super) async fn claim_now(
        &self,
        request: &ClaimRequest,
    ) -> Result<Vec<Claimed>, StoreError> {
        if request.max == 0 || request.processes.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let wanted: Vec<String> = request
            .processes
            .iter()
            .map(|(p, f)| format!("{p}/{f}"))
            .collect();
        // Queues with limits are claimed one by one under their row's lock; the rest at once.
        let limited: Vec<String> = client
            .query("SELECT name FROM minder_queues", &[])
            .await
            .map_err(|e| self.inner.error("cannot read the queues", e))?
            .iter()
            .map(|r| r.get(0))
            .filter(|q: &String| request.queues.is_empty() || request.queues.contains(q))
            .collect();
        let lease = request.lease.as_secs_f64();
        let now = now_ms() as i64;
        let max = request.max as i64;
        let mut rows = claiming(|| async {
            client
                .query(
                    CLAIM,
                    &[
                        &now,
                        &wanted,
                        &request.queues,
                        &max,
                        &self.inner.owner,
                        &lease,
                        &limited,
                    ],
                )
                .await
        })
        .await
        .map_err(|e| self.inner.error("cannot claim runs", e))?;
        for queue in &limited {
            let left = request.max.saturating_sub(rows.len());
            if left == 0 {
                break;
            }
            rows.extend(self.claim_limited(queue, &wanted, left, lease).await?);
        }
        let mut claimed = Vec::new();
        let mut unreadable = None;
        for row in rows {
            let run_id: String = row.get(0);
            let process: String = row.get(1);
            let epoch: i64 = row.get(2);
            let seq: i64 = row.get(3);
            match self.events_of(&client, &run_id).await {
                Ok(events) => {
                    let log = self.hold(&run_id, epoch, seq + 1, &events);
                    claimed.push(Claimed::new(run_id, process, OpenRun::new(events, log)));
                }
                // Let go at once, due again in one lease: a build that reads it (a newer
                // minder) takes it then, and no worker claims it over and over meanwhile. The
                // others claimed with it go on.
                Err(e) => {
                    tracing::warn!(%run_id, error = %e,
                        "cannot read a claimed run; let go, due again in one lease");
                    let again = now_ms() + request.lease.as_millis() as u64;
                    self.let_go_unread(&run_id, epoch, seq, Some(Readiness::Due(again)));
                    unreadable.get_or_insert(e);
                }
            }
        }
        match unreadable {
            Some(e) if claimed.is_empty() => Err(e),
            _ => Ok(claimed),
        }
    }

    /// Lets a run go that was taken but whose rows could not be read: at once rather than at
    /// the end of the lease, in `readiness` (`None`: the state its row has).
    fn let_go_unread(&self, run_id: &str, epoch: i64, seq: i64, readiness: Option<Readiness>) {
        let _ = self.inner.writes.send(Write::Release {
            run_id: run_id.to_string(),
            hold: Arc::new(Hold::new(epoch, seq + 1, readiness)),
            done: None,
        });
    }

    /// Claims up to `max` runs of a queue with limits: in one transaction that holds the
    /// queue's row, counts the queue's held runs and recent claims (new statements, so they
    /// see what the workers that held the row before committed), claims within the budget and
    /// counts the claims.
    async fn claim_limited(
        &self,
        queue: &str,
        wanted: &[String],
        max: usize,
        lease: f64,
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let mut slot = self.inner.claims.lock().await;
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(connect_client(&self.inner.url, &self.inner.config).await?);
        }
        let client = slot.as_mut().expect("connected above");
        let err = |e| self.inner.error("cannot claim runs", e);
        let tx = client.transaction().await.map_err(err)?;
        let Some(limits) = tx
            .query_opt(
                "SELECT concurrency, rate_max, window_count,
                     (window_start IS NULL OR rate_period_ms IS NULL OR
                      window_start + make_interval(secs => rate_period_ms / 1000.0) <= now())
                 FROM minder_queues WHERE name = $1 FOR UPDATE",
                &[&queue],
            )
            .await
            .map_err(err)?
        else {
            return Ok(Vec::new());
        };
        let concurrency: Option<i32> = limits.get(0);
        let rate_max: Option<i32> = limits.get(1);
        let window_count: i32 = limits.get(2);
        let new_window: bool = limits.get(3);
        let mut budget = max as i64;
        if let Some(c) = concurrency {
            let held: i64 = tx
                .query_one(
                    "SELECT count(*) FROM minder_runs
                     WHERE queue = $1 AND owner IS NOT NULL AND lease_until >= now()",
                    &[&queue],
                )
                .await
                .map_err(err)?
                .get(0);
            budget = budget.min(i64::from(c) - held);
        }
        if let Some(r) = rate_max {
            let used = if new_window { 0 } else { window_count };
            budget = budget.min(i64::from(r - used));
        }
        if budget <= 0 {
            tx.commit().await.map_err(err)?;
            return Ok(Vec::new());
        }
        let queues = vec![queue.to_string()];
        let none: Vec<String> = Vec::new();
        let rows = match tx
            .query(
                CLAIM,
                &[
                    &(now_ms() as i64),
                    &wanted,
                    &queues,
                    &budget,
                    &self.inner.owner,
                    &lease,
                    &none,
                ],
            )
            .await
        {
            // A writer whose lease ran out wrote the row a claim numbered (see `OPEN`): the
            // transaction is rolled back, the runs are claimed by a later look.
            Err(e) if taken(&e) => return Ok(Vec::new()),
            rows => rows.map_err(err)?,
        };
        if rate_max.is_some() && !rows.is_empty() {
            tx.execute(
                "UPDATE minder_queues SET
                     window_start = CASE WHEN $2 THEN now() ELSE window_start END,
                     window_count = CASE WHEN $2 THEN 0 ELSE window_count END + $3
                 WHERE name = $1",
                &[&queue, &new_window, &(rows.len() as i32)],
            )
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(rows)
    }

    pub(super) fn set_queue_now<'a>(
        &'a self,
        name: &'a str,
        limits: crate::store::QueueLimits,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            validate_run_id(name).map_err(|_| StoreError::InvalidRunId(name.to_string()))?;
            let client = self.client().await?;
            let result = if limits == crate::store::QueueLimits::none() {
                client
                    .execute("DELETE FROM minder_queues WHERE name = $1", &[&name])
                    .await
            } else {
                let concurrency = limits.concurrency.map(|c| c as i32);
                let rate_max = limits.rate.map(|r| r.max as i32);
                let period = limits.rate.map(|r| r.period_ms as i64);
                client
                    .execute(
                        "INSERT INTO minder_queues (name, concurrency, rate_max, rate_period_ms)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (name) DO UPDATE SET concurrency = $2, rate_max = $3,
                             rate_period_ms = $4",
                        &[&name, &concurrency, &rate_max, &period],
                    )
                    .await
            };
            result
                .map(drop)
                .map_err(|e| self.inner.error("cannot set the queue", e))
        })
    }

    pub(super) fn queues_now(
        &self,
    ) -> BoxFuture<'_, Result<Vec<(String, crate::store::QueueLimits)>, StoreError>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT name, concurrency, rate_max, rate_period_ms FROM minder_queues
                     ORDER BY name",
                    &[],
                )
                .await
                .map_err(|e| self.inner.error("cannot read the queues", e))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let mut limits = crate::store::QueueLimits::none();
                    if let Some(c) = r.get::<_, Option<i32>>(1) {
                        limits = limits.concurrency(c as u32);
                    }
                    if let (Some(max), Some(ms)) =
                        (r.get::<_, Option<i32>>(2), r.get::<_, Option<i64>>(3))
                    {
                        limits = limits.rate(max as u32, Duration::from_millis(ms as u64));
                    }
                    (r.get(0), limits)
                })
                .collect())
        })
    }
}

impl PgStore {
    pub(super) async fn register_worker_now(
        &self,
    ) -> Result<crate::store::WorkerGuard, StoreError> {
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
    }

    pub(super) async fn unregister_worker_now(&self) -> () {
        if let Ok(client) = self.client().await {
            let _ = client
                .execute(
                    "DELETE FROM minder_workers WHERE worker_id = $1",
                    &[&self.inner.owner],
                )
                .await;
        }
    }

    pub(super) async fn workers_now(&self) -> Result<Vec<crate::store::WorkerInfo>, StoreError> {
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
    }
}

/// Claims ready and due runs (and runs whose holder's lease lapsed) of the wanted processes
/// and queues, lowest priority value first, then oldest, skipping rows another claim holds:
/// $1 now (ms), $2 `process/fingerprint`s, $3 queues (empty: all), $4 how many, $5 the owner,
/// $6 the lease (s), $7 queues left out (those with limits, claimed on their own); writes each
/// claim's row. Answers the runs, their processes, epochs and claim rows' numbers.
pub(super) const CLAIM: &str = concat!(
    "WITH c AS (
        SELECT run_id FROM minder_runs
        WHERE (state = 'ready' OR (state = 'due' AND wake_at <= $1))
          AND (owner IS NULL OR lease_until < now())
          AND process || '/' || fingerprint = ANY($2)
          AND (cardinality($3::text[]) = 0 OR queue = ANY($3))
          AND queue <> ALL($7::text[])
        ORDER BY priority, created_at
        LIMIT $4
        FOR UPDATE SKIP LOCKED),
    u AS (
        UPDATE minder_runs r SET owner = $5, epoch = r.epoch + 1,
            lease_until = now() + make_interval(secs => $6), updated_at = now()
        FROM c WHERE r.run_id = c.run_id
        RETURNING r.run_id, r.process, r.epoch),
    m AS (",
    claim_row!(),
    ")
    SELECT u.run_id, u.process, u.epoch, m.seq FROM u JOIN m USING (run_id)"
);

//! The appends of held runs and the writer task that commits them: one transaction for the
//! flushes that arrive together, one row a run (its flushes' events, numbered by the run's next
//! sequence number: the fence). A lone flush (sequential steps) writes itself on the writer's
//! connection when it is free, without the hand-off to the writer task.

use super::*;

/// A job for the writer task.
pub(super) enum Write {
    /// Append `events` (JSON) as the run's next row. A flush without events writes nothing
    /// and is answered once the writes before it are.
    Flush {
        run_id: String,
        hold: Arc<Hold>,
        events: Vec<String>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Let the run go (after its last flush) in `readiness`; `done` hears when it was let go.
    Release {
        run_id: String,
        hold: Arc<Hold>,
        readiness: Readiness,
        done: Option<oneshot::Sender<()>>,
    },
}

/// The state column for a readiness, and its wake time.
pub(super) fn state_of(readiness: Readiness) -> (&'static str, Option<i64>) {
    match readiness {
        Readiness::Ready => ("ready", None),
        Readiness::Due(at) => ("due", Some(at as i64)),
        Readiness::Parked => ("parked", None),
        Readiness::Ended => ("ended", None),
    }
}

/// The appends of one held run.
#[derive(Debug)]
pub(super) struct PgLog {
    pub(super) run_id: String,
    pub(super) hold: Arc<Hold>,
    pub(super) writes: mpsc::UnboundedSender<Write>,
    pub(super) pending: Mutex<Pending>,
    /// Set by `close`: the run was let go already.
    pub(super) closed: AtomicBool,
    /// The store, for a lone flush that writes itself (see [`PgLog::flush`]).
    pub(super) store: Weak<Inner>,
    /// This run's flushes handed to the writer task and not yet answered.
    pub(super) queued: Arc<std::sync::atomic::AtomicUsize>,
}

#[derive(Debug)]
pub(super) struct Pending {
    /// Encoded events not yet handed to the writer.
    pub(super) events: Vec<String>,
    /// The run's readiness after the last event appended (written when the run is let go).
    pub(super) readiness: Readiness,
}

impl PgLog {
    /// Why nothing more can be written: the run was taken over, or a write failed.
    fn refused(&self) -> Option<StoreError> {
        refusal(&self.run_id, &self.hold)
    }

    /// Hands what is pending to the writer.
    fn send(
        &self,
        pending: &mut Pending,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (done, wait) = oneshot::channel();
        let events = std::mem::take(&mut pending.events);
        self.writes
            .send(Write::Flush {
                run_id: self.run_id.clone(),
                hold: self.hold.clone(),
                events,
                done,
            })
            .map_err(|_| StoreError::Io {
                context: format!("cannot flush run `{}`", self.run_id),
                source: std::io::Error::other("the PostgreSQL writer stopped"),
            })?;
        Ok(wait)
    }
}

impl RunLog for PgLog {
    fn is_lost(&self) -> bool {
        self.hold.lost.load(Ordering::SeqCst)
    }

    fn close(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let flushed = self.flush();
        let (done, released) = oneshot::channel();
        if !self.closed.swap(true, Ordering::SeqCst) {
            let readiness = self.pending.lock().unwrap().readiness;
            let _ = self.writes.send(Write::Release {
                run_id: self.run_id.clone(),
                hold: self.hold.clone(),
                readiness,
                done: Some(done),
            });
        }
        Box::pin(async move {
            let result = flushed.await;
            let _ = released.await;
            result
        })
    }

    fn append(&self, event: Event) -> Result<(), StoreError> {
        if let Some(refused) = self.refused() {
            return Err(refused);
        }
        let body = serde_json::to_string(&event).map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot encode an event of run `{}`: {e}",
                self.run_id
            ))
        })?;
        let mut pending = self.pending.lock().unwrap();
        pending.events.push(body);
        pending.readiness = Readiness::after(&event);
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(refused) = self.refused() {
            return Box::pin(std::future::ready(Err(refused)));
        }
        let mut pending = self.pending.lock().unwrap();
        // A lone flush (nothing of this run queued, the writer's last batch a single flush:
        // sequential steps, not a fan-out) writes itself on the writer's connection when it
        // is free, saving the hand-off to the writer task and back. Later flushes of the run
        // queue behind it on the connection's lock, so its appends stay in order.
        if let Some((store, conn)) = self.lone_writer() {
            let (done, wait) = oneshot::channel();
            let write = Write::Flush {
                run_id: self.run_id.clone(),
                hold: self.hold.clone(),
                events: std::mem::take(&mut pending.events),
                done,
            };
            drop(pending);
            let write = Box::pin(async move {
                // One statement, no transaction to begin: it is not given back.
                if let Err((back, _)) = write_batch(&store, conn, vec![write]).await {
                    fail_all(back, "cannot write to PostgreSQL");
                }
            });
            return Box::pin(LoneFlush {
                write: Some(write),
                wait,
                run_id: self.run_id.clone(),
                hold: self.hold.clone(),
            });
        }
        let sent = self.send(&mut pending);
        drop(pending);
        let sent = sent.inspect(|_| {
            self.queued.fetch_add(1, Ordering::SeqCst);
        });
        let (run_id, queued) = (self.run_id.clone(), self.queued.clone());
        Box::pin(async move {
            let answered = sent?.await;
            queued.fetch_sub(1, Ordering::SeqCst);
            match answered {
                Ok(result) => result,
                Err(_) => Err(StoreError::Io {
                    context: format!("cannot flush run `{run_id}`"),
                    source: std::io::Error::other("the PostgreSQL writer stopped"),
                }),
            }
        })
    }
}

impl PgLog {
    /// The store and the writer's connection, locked, when this flush may write itself.
    fn lone_writer(&self) -> Option<(Arc<Inner>, LoneConn)> {
        if self.queued.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let store = self.store.upgrade()?;
        if store.last_batch.load(Ordering::SeqCst) > 1 {
            return None;
        }
        let conn = store.writer_conn.clone().try_lock_owned().ok()?;
        match conn.as_ref() {
            Some((client, _)) if !client.is_closed() => Some((store, conn)),
            _ => None,
        }
    }
}

/// A lone flush's future: drives its write in the caller's task (no hand-off to another task
/// and back); dropped before the write finished, it hands the write to a task of its own, so
/// the write happens whole (the events taken include other branches' appends).
struct LoneFlush {
    write: Option<BoxFuture<'static, ()>>,
    wait: oneshot::Receiver<Result<(), StoreError>>,
    run_id: String,
    hold: Arc<Hold>,
}

impl std::future::Future for LoneFlush {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let Some(write) = self.write.as_mut() {
            if write.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            self.write = None;
        }
        std::pin::Pin::new(&mut self.wait).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::Io {
                    context: format!("cannot flush run `{}`", self.run_id),
                    source: std::io::Error::other("the flush was not answered"),
                })
            })
        })
    }
}

impl Drop for LoneFlush {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(write)),
                // No runtime to finish it on: the write is abandoned (it may have reached the
                // server or not), and the hold refuses every later write.
                Err(_) => poison(&self.hold, "a flush was dropped outside a tokio runtime"),
            }
        }
    }
}

/// The writer's connection, held by a lone flush.
type LoneConn = tokio::sync::OwnedMutexGuard<Option<(Client, Prepared)>>;

impl Drop for PgLog {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        if !pending.events.is_empty() && self.refused().is_none() {
            let _ = self.send(&mut pending);
        }
        let _ = self.writes.send(Write::Release {
            run_id: self.run_id.clone(),
            hold: self.hold.clone(),
            readiness: pending.readiness,
            done: None,
        });
    }
}

/// The writer task: takes every queued write, and writes them in one transaction (one
/// statement a run's flush), so flushes that arrive together share a commit.
pub(super) async fn writer(inner: Weak<Inner>, mut queue: mpsc::UnboundedReceiver<Write>) {
    // The size and duration of the last batch: when many flushes came together last time
    // (a fan-out), fewer now means the rest are on their way; waiting a little for them
    // (at most half a commit) saves a commit.
    let mut last = (0usize, Duration::ZERO);
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let patience = tokio::time::Instant::now() + (last.1 / 2).min(Duration::from_millis(2));
        loop {
            match queue.try_recv() {
                Ok(next) if batch.len() < 1024 => batch.push(next),
                Ok(next) => {
                    batch.push(next);
                    break;
                }
                Err(_) if last.0 >= 16 && batch.len() < last.0 / 2 => {
                    match tokio::time::timeout_at(patience, queue.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        _ => break,
                    }
                }
                Err(_) => break,
            }
        }
        let Some(store) = inner.upgrade() else {
            fail_all(batch, "the store was dropped");
            continue;
        };
        store.last_batch.store(batch.len(), Ordering::SeqCst);
        // The connection is shared with lone flushes (see `PgLog::flush`): one at a time.
        let mut conn = store.writer_conn.clone().lock_owned().await;
        let mut tries = 0;
        let mut batch = batch;
        loop {
            if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                *conn = match connect_writer(&store).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        fail_all(batch, &e.to_string());
                        break;
                    }
                };
            }
            let n = batch.len();
            let t = std::time::Instant::now();
            let written = write_batch(&store, conn, batch).await;
            last = (n, t.elapsed());
            // A batch whose transaction could not even begin (the connection was gone: a
            // server restart, a terminated backend) was not sent: once reconnected, try once
            // more.
            match written {
                Ok(()) => break,
                Err((back, again)) => {
                    conn = again;
                    *conn = None;
                    tries += 1;
                    if tries > 1 {
                        fail_all(back, "cannot begin a transaction");
                        break;
                    }
                    batch = back;
                }
            }
        }
    }
}

pub(super) async fn connect_writer(store: &Inner) -> Result<(Client, Prepared), StoreError> {
    let client = connect_client(&store.url, &store.config).await?;
    let prepared = prepare(&client)
        .await
        .map_err(|e| store.error("cannot prepare the writer's statements", e))?;
    Ok((client, prepared))
}

/// Answers every flush of `batch` with `why`; their runs take no more writes (see
/// [`poison`]).
pub(super) fn fail_all(batch: Vec<Write>, why: &str) {
    for write in batch {
        if let Write::Flush { hold, done, .. } = write {
            poison(&hold, why);
            let _ = done.send(Err(io_error("cannot write to PostgreSQL", why)));
        }
    }
}

fn io_error(context: &str, why: &str) -> StoreError {
    StoreError::Io {
        context: context.to_string(),
        source: std::io::Error::other(why.to_string()),
    }
}

/// Marks a held run as failed: a flush of it was not written (or may have been: the
/// connection dropped before the answer). Every later append and flush of this hold fails, so
/// no later event can land after a missing one; opening the run again reads what is there.
pub(super) fn poison(hold: &Hold, why: &str) {
    let mut failed = hold.failed.lock().unwrap();
    if failed.is_none() {
        *failed = Some(why.to_string());
    }
}

/// Why nothing more can be written to a held run: taken over, or an earlier write failed.
pub(super) fn refusal(run_id: &str, hold: &Hold) -> Option<StoreError> {
    if hold.lost.load(Ordering::SeqCst) {
        return Some(StoreError::Fenced(run_id.to_string()));
    }
    let failed = hold.failed.lock().unwrap();
    failed.as_ref().map(|why| {
        io_error(
            &format!("cannot write to run `{run_id}`: an earlier write of it failed"),
            why,
        )
    })
}

/// A flush's row: the run, its sequence number (the fence: see the module's "Leases and
/// fencing"), the epoch of the claim, the flush's events as one JSON array.
pub(super) const APPEND: &str =
    "INSERT INTO minder_events (run_id, seq, epoch, body) VALUES ($1, $2, $3, $4)";

/// Lets a run go in its readiness (fenced on the claim), and announces it when a worker can
/// take it.
pub(super) const RELEASE: &str = "WITH r AS (
        UPDATE minder_runs SET owner = NULL, lease_until = NULL, state = $4, wake_at = $5,
            updated_at = now()
        WHERE run_id = $1 AND epoch = $2 AND owner = $3
        RETURNING run_id, state)
    SELECT pg_notify('minder_work', run_id) FROM r WHERE state IN ('ready', 'due')";

/// The writer's statements, prepared once per connection.
pub(super) struct Prepared {
    pub(super) append: tokio_postgres::Statement,
    pub(super) release: tokio_postgres::Statement,
}

pub(super) async fn prepare(client: &Client) -> Result<Prepared, tokio_postgres::Error> {
    Ok(Prepared {
        append: client.prepare(APPEND).await?,
        release: client.prepare(RELEASE).await?,
    })
}

/// The events of a flush as the body of one row: a JSON array.
pub(super) fn row_body(events: &[String]) -> String {
    let mut body = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    body.push('[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event);
    }
    body.push(']');
    body
}

/// One statement of a batch: the flushes of one run merged (their events in order, one row),
/// or a release.
pub(super) enum Op {
    Append {
        run_id: String,
        hold: Arc<Hold>,
        events: Vec<String>,
        dones: Vec<oneshot::Sender<Result<(), StoreError>>>,
    },
    Release {
        run_id: String,
        hold: Arc<Hold>,
        readiness: Readiness,
        done: Option<oneshot::Sender<()>>,
    },
}

impl Op {
    /// Whether the op sends a statement (a flush without events does not).
    fn writes(&self) -> bool {
        match self {
            Op::Append { events, hold, .. } => !events.is_empty() && hold.takes_writes(),
            Op::Release { .. } => true,
        }
    }
}

/// Merges the flushes of each run (up to its next release) into one statement.
pub(super) fn merge(batch: Vec<Write>) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::with_capacity(batch.len());
    let mut open: HashMap<String, usize> = HashMap::new();
    for write in batch {
        match write {
            Write::Flush {
                run_id,
                hold,
                events,
                done,
            } => match open.get(&run_id).map(|&i| &mut ops[i]) {
                Some(Op::Append {
                    hold: h,
                    events: all,
                    dones,
                    ..
                }) if Arc::ptr_eq(h, &hold) => {
                    all.extend(events);
                    dones.push(done);
                }
                _ => {
                    open.insert(run_id.clone(), ops.len());
                    ops.push(Op::Append {
                        run_id,
                        hold,
                        events,
                        dones: vec![done],
                    });
                }
            },
            Write::Release {
                run_id,
                hold,
                readiness,
                done,
            } => {
                open.remove(&run_id);
                ops.push(Op::Release {
                    run_id,
                    hold,
                    readiness,
                    done,
                });
            }
        }
    }
    ops
}

/// How a statement of a batch went.
enum Outcome {
    /// Nothing to send (a flush without events, or of a run that takes no more writes).
    Nothing,
    Written,
    /// The row's sequence number was taken: another writer claimed the run.
    Fenced,
    Failed(String),
}

/// Writes a batch and answers its writers: one statement a run (its flushes merged into one
/// row), in one transaction when there are several (a lone one commits by itself: one round
/// trip). A run found taken over (its row's number taken) aborts the transaction: it is rolled
/// back, that run's flushes answered [`StoreError::Fenced`], and the rest written again without
/// it. Gives the batch back when the transaction could not begin (nothing was sent).
pub(super) async fn write_batch(
    store: &Inner,
    conn: LoneConn,
    batch: Vec<Write>,
) -> Result<(), (Vec<Write>, LoneConn)> {
    let mut ops = merge(batch);
    let (client, prepared) = conn.as_ref().expect("the writer's connection is open");
    loop {
        // Several statements share one transaction; a lone one commits by itself.
        let single = ops.iter().filter(|op| op.writes()).count() <= 1;
        if !single {
            if let Err(e) = client.batch_execute("BEGIN").await {
                tracing::debug!(error = %store.error("cannot begin", e), "reconnecting the writer");
                return Err((unmerge(ops), conn));
            }
        }
        let outcomes = send(store, client, prepared, &ops).await;
        let fenced = outcomes.iter().any(|o| matches!(o, Outcome::Fenced));
        if fenced && !single {
            let _ = client.batch_execute("ROLLBACK").await;
            // Answer the runs taken over; write the others again.
            let mut rest = Vec::with_capacity(ops.len());
            for (op, outcome) in ops.into_iter().zip(outcomes) {
                if matches!(outcome, Outcome::Fenced) {
                    settle(&op, &outcome, &Ok(()));
                    answer(store, op);
                } else {
                    rest.push(op);
                }
            }
            ops = rest;
            continue;
        }
        let failed = outcomes.iter().find_map(|o| match o {
            Outcome::Failed(why) => Some(why.clone()),
            _ => None,
        });
        let committed = match (failed, single) {
            (Some(why), false) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(why)
            }
            (Some(why), true) => Err(why),
            (None, false) => client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| store.error("cannot commit events", e).to_string()),
            (None, true) => Ok(()),
        };
        for (op, outcome) in ops.iter().zip(&outcomes) {
            settle(op, outcome, &committed);
        }
        break;
    }
    // The connection is let go before the writers hear: a writer woken by its answer finds it
    // free for its next (lone) flush.
    drop(conn);
    for op in ops {
        answer(store, op);
    }
    Ok(())
}

/// Sends the batch's statements, pipelined, in order; each op's outcome (a flush without
/// events, or of a run that takes no more writes, sends nothing).
async fn send(store: &Inner, client: &Client, prepared: &Prepared, ops: &[Op]) -> Vec<Outcome> {
    let owner = store.owner.as_str();
    let statements = ops.iter().map(|op| async move {
        match op {
            Op::Append {
                run_id,
                hold,
                events,
                ..
            } => {
                if !op.writes() {
                    return Outcome::Nothing;
                }
                let seq = hold.next_seq.load(Ordering::SeqCst);
                let body = row_body(events);
                match client
                    .execute(&prepared.append, &[run_id, &seq, &hold.epoch, &body])
                    .await
                {
                    Ok(_) => Outcome::Written,
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Outcome::Fenced,
                    Err(e) => Outcome::Failed(store.error("cannot write events", e).to_string()),
                }
            }
            Op::Release {
                run_id,
                hold,
                readiness,
                ..
            } => {
                let (state, wake_at) = state_of(*readiness);
                match client
                    .execute(
                        &prepared.release,
                        &[run_id, &hold.epoch, &owner, &state, &wake_at],
                    )
                    .await
                {
                    Ok(_) => Outcome::Written,
                    Err(e) => Outcome::Failed(store.error("cannot let the run go", e).to_string()),
                }
            }
        }
    });
    futures::future::join_all(statements).await
}

/// Records how an op's write went, before the writer's connection is let go: the run's next
/// row number, or the hold taken over or failed.
fn settle(op: &Op, outcome: &Outcome, committed: &Result<(), String>) {
    let Op::Append { hold, .. } = op else {
        return;
    };
    match (outcome, committed) {
        (Outcome::Fenced, _) => hold.lost.store(true, Ordering::SeqCst),
        // The row is in: the run's next one takes the next number.
        (Outcome::Written, Ok(())) => {
            hold.next_seq.fetch_add(1, Ordering::SeqCst);
        }
        (Outcome::Written | Outcome::Failed(_), Err(why)) => poison(hold, why),
        // A flush that sent nothing waited for the run's writes before it: the hold says how
        // they went.
        _ => {}
    }
}

/// Answers an op's writers (after [`settle`]).
fn answer(store: &Inner, op: Op) {
    match op {
        Op::Append {
            run_id,
            hold,
            dones,
            ..
        } => {
            let result = || match refusal(&run_id, &hold) {
                Some(refused) => Err(refused),
                None => Ok(()),
            };
            for done in dones {
                let _ = done.send(result());
            }
        }
        Op::Release {
            run_id, hold, done, ..
        } => {
            {
                let mut held = store.held.lock().unwrap();
                if held.get(&run_id).is_some_and(|h| Arc::ptr_eq(h, &hold)) {
                    held.remove(&run_id);
                }
            }
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }
}

/// A merged batch back as writes (to try again on a new connection).
pub(super) fn unmerge(ops: Vec<Op>) -> Vec<Write> {
    let mut batch = Vec::new();
    for op in ops {
        match op {
            Op::Append {
                run_id,
                hold,
                events,
                dones,
            } => {
                let mut dones = dones.into_iter();
                let first = dones.next().expect("a merged flush has a writer");
                batch.push(Write::Flush {
                    run_id: run_id.clone(),
                    hold: hold.clone(),
                    events,
                    done: first,
                });
                // The others wait for the same statement: empty flushes after it.
                for done in dones {
                    batch.push(Write::Flush {
                        run_id: run_id.clone(),
                        hold: hold.clone(),
                        events: Vec::new(),
                        done,
                    });
                }
            }
            Op::Release {
                run_id,
                hold,
                readiness,
                done,
            } => batch.push(Write::Release {
                run_id,
                hold,
                readiness,
                done,
            }),
        }
    }
    batch
}

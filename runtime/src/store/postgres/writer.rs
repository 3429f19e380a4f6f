//! The appends of held runs and the writer task that commits them: one transaction for the
//! flushes that arrive together, one statement a run. A lone flush (sequential steps) writes
//! itself on the writer's connection when it is free, without the hand-off to the writer task.

use super::*;

/// A job for the writer task.
pub(super) enum Write {
    /// Append `events` (JSON) fenced on the epoch, and set the run's readiness.
    Flush {
        run_id: String,
        hold: Arc<Hold>,
        events: Vec<String>,
        readiness: Readiness,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Let the run go (after its last flush); `done` hears when it was let go.
    Release {
        run_id: String,
        hold: Arc<Hold>,
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
    /// The run's readiness after the last event appended.
    pub(super) readiness: Readiness,
    /// Set once a flush failed: every later call fails the same way.
    pub(super) failure: Option<String>,
}

impl PgLog {
    fn fenced(&self) -> StoreError {
        StoreError::Fenced(self.run_id.clone())
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
                readiness: pending.readiness,
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
            let _ = self.writes.send(Write::Release {
                run_id: self.run_id.clone(),
                hold: self.hold.clone(),
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
        if self.hold.lost.load(Ordering::SeqCst) {
            return Err(self.fenced());
        }
        let body = serde_json::to_string(&event).map_err(|e| {
            StoreError::Corrupt(format!(
                "cannot encode an event of run `{}`: {e}",
                self.run_id
            ))
        })?;
        let mut pending = self.pending.lock().unwrap();
        if let Some(failure) = &pending.failure {
            return Err(StoreError::Corrupt(failure.clone()));
        }
        pending.events.push(body);
        pending.readiness = Readiness::after(&event);
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        if self.hold.lost.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(self.fenced())));
        }
        let mut pending = self.pending.lock().unwrap();
        if let Some(failure) = &pending.failure {
            return Box::pin(std::future::ready(Err(StoreError::Corrupt(
                failure.clone(),
            ))));
        }
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
                readiness: pending.readiness,
                done,
            };
            drop(pending);
            let run_id = self.run_id.clone();
            // Spawned, so the write happens whole even if the flush's future is dropped (the
            // events taken here include other branches' appends).
            tokio::spawn(async move {
                let (client, prepared) = conn.as_ref().expect("checked when locked");
                if let Some(back) = write_batch(&store, client, prepared, vec![write]).await {
                    fail_all(back, "cannot write to PostgreSQL");
                }
            });
            return Box::pin(async move {
                wait.await.unwrap_or_else(|_| {
                    Err(StoreError::Io {
                        context: format!("cannot flush run `{run_id}`"),
                        source: std::io::Error::other("the flush was not answered"),
                    })
                })
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

/// The writer's connection, held by a lone flush.
type LoneConn = tokio::sync::OwnedMutexGuard<Option<(Client, Prepared)>>;

impl Drop for PgLog {
    fn drop(&mut self) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let mut pending = self.pending.lock().unwrap();
        if !pending.events.is_empty() && pending.failure.is_none() {
            let _ = self.send(&mut pending);
        }
        let _ = self.writes.send(Write::Release {
            run_id: self.run_id.clone(),
            hold: self.hold.clone(),
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
        let mut pending = Some(batch);
        while let Some(batch) = pending.take() {
            if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                *conn = match connect_writer(&store).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        fail_all(batch, &e.to_string());
                        break;
                    }
                };
            }
            let (client, prepared) = conn.as_mut().expect("connected above");
            let n = batch.len();
            let t = std::time::Instant::now();
            let back = write_batch(&store, client, prepared, batch).await;
            last = (n, t.elapsed());
            // A batch whose transaction could not even begin (the connection was gone: a
            // server restart, a terminated backend) was not sent: once reconnected, try once
            // more.
            if let Some(batch) = back {
                *conn = None;
                tries += 1;
                if tries > 1 {
                    fail_all(batch, "cannot begin a transaction");
                } else {
                    pending = Some(batch);
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

pub(super) fn fail_all(batch: Vec<Write>, why: &str) {
    for write in batch {
        if let Write::Flush { done, .. } = write {
            let _ = done.send(Err(StoreError::Io {
                context: "cannot write to PostgreSQL".to_string(),
                source: std::io::Error::other(why.to_string()),
            }));
        }
    }
}

pub(super) const APPEND: &str = "WITH f AS (
        UPDATE minder_runs SET next_seq = next_seq + $3,
            lease_until = now() + make_interval(secs => $4),
            state = $5, wake_at = $6, updated_at = now()
        WHERE run_id = $1 AND epoch = $2 AND owner = $7
        RETURNING next_seq - $3 AS base)
    INSERT INTO minder_events (run_id, seq, epoch, body)
    SELECT $1, f.base + o.i, $2, o.b
    FROM f, unnest($8::text[]) WITH ORDINALITY AS o(b, i)";

/// A flush with no events still renews the lease and checks the fence.
pub(super) const TOUCH: &str =
    "UPDATE minder_runs SET lease_until = now() + make_interval(secs => $3),
        state = $4, wake_at = $5, updated_at = now()
    WHERE run_id = $1 AND epoch = $2 AND owner = $6";

pub(super) const RELEASE: &str = "WITH r AS (
        UPDATE minder_runs SET owner = NULL, lease_until = NULL, updated_at = now()
        WHERE run_id = $1 AND epoch = $2 AND owner = $3
        RETURNING run_id, state)
    SELECT pg_notify('minder_work', run_id) FROM r WHERE state IN ('ready', 'due')";

/// The writer's statements, prepared once per connection.
pub(super) struct Prepared {
    pub(super) append: tokio_postgres::Statement,
    pub(super) touch: tokio_postgres::Statement,
    pub(super) release: tokio_postgres::Statement,
}

pub(super) async fn prepare(client: &Client) -> Result<Prepared, tokio_postgres::Error> {
    Ok(Prepared {
        append: client.prepare(APPEND).await?,
        touch: client.prepare(TOUCH).await?,
        release: client.prepare(RELEASE).await?,
    })
}

/// One statement of a batch: the flushes of one run merged (their events in order, the
/// readiness after the last), or a release.
pub(super) enum Op {
    Append {
        run_id: String,
        hold: Arc<Hold>,
        events: Vec<String>,
        readiness: Readiness,
        dones: Vec<oneshot::Sender<Result<(), StoreError>>>,
    },
    Release {
        run_id: String,
        hold: Arc<Hold>,
        done: Option<oneshot::Sender<()>>,
    },
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
                readiness,
                done,
            } => match open.get(&run_id).map(|&i| &mut ops[i]) {
                Some(Op::Append {
                    hold: h,
                    events: all,
                    readiness: r,
                    dones,
                    ..
                }) if Arc::ptr_eq(h, &hold) => {
                    all.extend(events);
                    *r = readiness;
                    dones.push(done);
                }
                _ => {
                    open.insert(run_id.clone(), ops.len());
                    ops.push(Op::Append {
                        run_id,
                        hold,
                        events,
                        readiness,
                        dones: vec![done],
                    });
                }
            },
            Write::Release { run_id, hold, done } => {
                open.remove(&run_id);
                ops.push(Op::Release { run_id, hold, done });
            }
        }
    }
    ops
}

/// Writes a batch and answers its writers: one statement a run (its flushes merged), in one
/// transaction when there are several (a lone one commits by itself: one round trip). Gives
/// the batch back when the transaction could not begin (nothing was sent).
pub(super) async fn write_batch(
    store: &Inner,
    client: &Client,
    prepared: &Prepared,
    batch: Vec<Write>,
) -> Option<Vec<Write>> {
    let lease = store.lease.as_secs_f64();
    let owner = store.owner.as_str();
    let ops = merge(batch);
    // Several statements share one transaction; a lone one commits by itself.
    let single = ops.len() == 1;
    if !single {
        if let Err(e) = client.batch_execute("BEGIN").await {
            tracing::debug!(error = %store.error("cannot begin", e), "reconnecting the writer");
            return Some(unmerge(ops));
        }
    }
    // The statements go out pipelined, in order; each answers how many rows it wrote.
    let mut statements = Vec::with_capacity(ops.len());
    for op in &ops {
        statements.push(async {
            match op {
                Op::Append {
                    run_id,
                    hold,
                    events,
                    readiness,
                    ..
                } => {
                    let (state, wake_at) = state_of(*readiness);
                    let written = if events.is_empty() {
                        client
                            .execute(
                                &prepared.touch,
                                &[run_id, &hold.epoch, &lease, &state, &wake_at, &owner],
                            )
                            .await
                            .map(|n| n > 0)
                    } else {
                        client
                            .execute(
                                &prepared.append,
                                &[
                                    run_id,
                                    &hold.epoch,
                                    &(events.len() as i64),
                                    &lease,
                                    &state,
                                    &wake_at,
                                    &owner,
                                    events,
                                ],
                            )
                            .await
                            .map(|n| n == events.len() as u64)
                    };
                    written.map_err(|e| store.error("cannot write events", e).to_string())
                }
                Op::Release { run_id, hold, .. } => client
                    .execute(&prepared.release, &[run_id, &hold.epoch, &owner])
                    .await
                    .map(|_| true)
                    .map_err(|e| store.error("cannot let the run go", e).to_string()),
            }
        });
    }
    let results = futures::future::join_all(statements).await;
    let failed = results.iter().find_map(|r| r.as_ref().err()).cloned();
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
    for (op, written) in ops.into_iter().zip(results) {
        match op {
            Op::Append {
                run_id,
                hold,
                dones,
                ..
            } => {
                let result = || match (&committed, &written) {
                    (Err(why), _) => Err(StoreError::Io {
                        context: format!("cannot flush run `{run_id}`"),
                        source: std::io::Error::other(why.clone()),
                    }),
                    (Ok(()), Ok(true)) => Ok(()),
                    (Ok(()), _) => {
                        hold.lost.store(true, Ordering::SeqCst);
                        Err(StoreError::Fenced(run_id.clone()))
                    }
                };
                for done in dones {
                    let _ = done.send(result());
                }
            }
            Op::Release { run_id, hold, done } => {
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
    None
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
                readiness,
                dones,
            } => {
                let mut dones = dones.into_iter();
                let first = dones.next().expect("a merged flush has a writer");
                batch.push(Write::Flush {
                    run_id: run_id.clone(),
                    hold: hold.clone(),
                    events,
                    readiness,
                    done: first,
                });
                // The others wait for the same statement: empty flushes after it.
                for done in dones {
                    batch.push(Write::Flush {
                        run_id: run_id.clone(),
                        hold: hold.clone(),
                        events: Vec::new(),
                        readiness,
                        done,
                    });
                }
            }
            Op::Release { run_id, hold, done } => batch.push(Write::Release { run_id, hold, done }),
        }
    }
    batch
}

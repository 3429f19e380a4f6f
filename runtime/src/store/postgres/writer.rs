//! The appends of held runs and the writer task that commits them: one transaction for the
//! flushes that arrive together, one row a run (its flushes' events, numbered by the run's next
//! sequence number: the fence). A lone flush (sequential steps) writes itself on the writer's
//! connection when it is free, without the hand-off to the writer task.

use super::batch::{fail_all, io_error, poison, prepare, refusal, write_batch, Prepared};
use super::*;

/// A job for the writer task.
pub(super) enum Write {
    /// Append `events` (JSON) as the run's next row. A flush without events writes nothing
    /// and is answered once the writes before it are.
    Flush {
        run_id: String,
        hold: Arc<Hold>,
        events: Vec<String>,
        /// The run's readiness after these events.
        readiness: Readiness,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Let the run go (after its last flush) in the readiness of what of it is written;
    /// `done` hears when it was let go.
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
                readiness: pending.readiness,
                done,
            })
            .map_err(|_| {
                io_error(
                    &format!("cannot flush run `{}`", self.run_id),
                    "the PostgreSQL writer stopped",
                )
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
                readiness: pending.readiness,
                done,
            };
            drop(pending);
            let write = Box::pin(async move {
                // One statement, no transaction to begin: it is not given back.
                if let Err((back, _)) = write_batch(&store, conn, vec![write]).await {
                    fail_all(Some(&store), back, "cannot write to PostgreSQL");
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
                Err(_) => Err(io_error(
                    &format!("cannot flush run `{run_id}`"),
                    "the PostgreSQL writer stopped",
                )),
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
                Err(io_error(
                    &format!("cannot flush run `{}`", self.run_id),
                    "the flush was not answered",
                ))
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
pub(super) type LoneConn = tokio::sync::OwnedMutexGuard<Option<(Client, Prepared)>>;

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
            fail_all(None, batch, "the store was dropped");
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
                        fail_all(Some(&store), batch, &e.to_string());
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
                        fail_all(Some(&store), back, "cannot begin a transaction");
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

//! A batch of writes: the flushes of each run merged into one row, the statements sent
//! pipelined in one transaction (a lone one by itself), a run found taken over rolled back and
//! the rest written again, the writers answered.

use super::writer::{state_of, LoneConn, Write};
use super::*;

/// Answers every flush of `batch` with `why`; their runs take no more writes (see
/// [`poison`]). A run whose release could not be sent is no longer held by this instance
/// (`store`): the heartbeat stops renewing its lease, and it is taken again once the lease ran
/// out.
pub(super) fn fail_all(store: Option<&Inner>, batch: Vec<Write>, why: &str) {
    for write in batch {
        match write {
            Write::Flush { hold, done, .. } => {
                poison(&hold, why);
                let _ = done.send(Err(io_error("cannot write to PostgreSQL", why)));
            }
            Write::Release { run_id, hold, .. } => {
                if let Some(store) = store {
                    forget(store, &run_id, &hold);
                }
            }
        }
    }
}

/// Takes `hold` out of the runs this instance holds (if it is still the hold of `run_id`).
fn forget(store: &Inner, run_id: &str, hold: &Arc<Hold>) {
    let mut held = store.held.lock().unwrap();
    if held.get(run_id).is_some_and(|h| Arc::ptr_eq(h, hold)) {
        held.remove(run_id);
    }
}

pub(super) fn io_error(context: &str, why: &str) -> StoreError {
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

/// Lets a run go in the readiness of what of it is written (fenced on the claim; `$4` null:
/// in the state its row has), and announces it when a worker can take it.
pub(super) const RELEASE: &str = "WITH r AS (
        UPDATE minder_runs SET owner = NULL, lease_until = NULL,
            state = coalesce($4, state),
            wake_at = CASE WHEN $4::text IS NULL THEN wake_at ELSE $5 END, updated_at = now()
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
        /// The run's readiness after the events.
        readiness: Readiness,
        dones: Vec<oneshot::Sender<Result<(), StoreError>>>,
    },
    Release {
        run_id: String,
        hold: Arc<Hold>,
        /// The readiness of the run's row written just before, in this batch (committed with
        /// the release or not at all).
        after: Option<Readiness>,
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
                let after = match open.remove(&run_id).map(|i| &ops[i]) {
                    Some(Op::Append {
                        hold: h,
                        readiness,
                        events,
                        ..
                    }) if Arc::ptr_eq(h, &hold) && !events.is_empty() => Some(*readiness),
                    _ => None,
                };
                ops.push(Op::Release {
                    run_id,
                    hold,
                    after,
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
                    Err(e) if super::claims::taken(&e) => Outcome::Fenced,
                    Err(e) => Outcome::Failed(store.error("cannot write events", e).to_string()),
                }
            }
            Op::Release {
                run_id,
                hold,
                after,
                ..
            } => {
                // The readiness of what is written of the run: its row in this transaction
                // (if it is written: the hold still takes writes), else its last row committed.
                let readiness = after
                    .filter(|_| hold.takes_writes())
                    .or_else(|| *hold.durable.lock().unwrap());
                let (state, wake_at) = match readiness.map(state_of) {
                    Some((state, wake_at)) => (Some(state), wake_at),
                    None => (None, None),
                };
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
    let Op::Append {
        hold, readiness, ..
    } = op
    else {
        return;
    };
    match (outcome, committed) {
        (Outcome::Fenced, _) => hold.lost.store(true, Ordering::SeqCst),
        // The row is in: the run's next one takes the next number, and the run is let go in
        // the readiness its rows give.
        (Outcome::Written, Ok(())) => {
            hold.next_seq.fetch_add(1, Ordering::SeqCst);
            *hold.durable.lock().unwrap() = Some(*readiness);
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
            forget(store, &run_id, &hold);
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
            Op::Release {
                run_id, hold, done, ..
            } => batch.push(Write::Release { run_id, hold, done }),
        }
    }
    batch
}

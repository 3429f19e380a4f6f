//! The instance's background tasks: the heartbeat that renews every lease, and the listener
//! for `NOTIFY`.

use super::*;
use std::future::Future as _;

/// Renews every lease this instance holds, in one statement, every third of the lease; runs
/// missing from the answer were taken over and are marked lost.
pub(super) async fn heartbeat(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(store) => store.lease / 3,
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(store) = inner.upgrade() else {
            return;
        };
        let pg = PgStore {
            inner: store.clone(),
        };
        let Ok(client) = pg.client().await else {
            continue;
        };
        store.heartbeats.fetch_add(1, Ordering::Relaxed);
        // The runs held now: only these are renewed (a run whose release could not be sent
        // is not, and lapses), and only these can be found lost by this answer (a run claimed
        // while the statement was under way is renewed by the next one). A lease that ran out
        // while this heartbeat was late is renewed as long as nobody took the run (its row
        // still names this instance): a claim and this statement take the row in turn, and
        // whichever comes second sees what the first did.
        let held: Vec<(String, Arc<Hold>)> = store
            .held
            .lock()
            .unwrap()
            .iter()
            .map(|(id, hold)| (id.clone(), hold.clone()))
            .collect();
        let ids: Vec<&str> = held.iter().map(|(id, _)| id.as_str()).collect();
        let renewed = client
            .query(
                "WITH w AS (UPDATE minder_workers SET heartbeat_at = now() WHERE worker_id = $1)
                 UPDATE minder_runs SET lease_until = now() + make_interval(secs => $2)
                 WHERE owner = $1 AND run_id = ANY($3)
                 RETURNING run_id, epoch, cancel_requested",
                &[&store.owner, &store.lease.as_secs_f64(), &ids],
            )
            .await;
        let Ok(rows) = renewed else {
            continue;
        };
        let kept: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        {
            let mut cancels = store.cancels.lock().unwrap();
            for row in rows.iter().filter(|r| r.get::<_, bool>(2)) {
                cancels.insert(row.get(0));
            }
        }
        for (run_id, hold) in &held {
            if kept.get(run_id) != Some(&hold.epoch) && !hold.lost.swap(true, Ordering::SeqCst) {
                tracing::warn!(%run_id, "lost the lease on a run: another writer took it");
            }
        }
    }
}

/// Listens for `NOTIFY minder_work` on a connection of its own, reconnecting when it drops.
pub(super) async fn listener(inner: Weak<Inner>) {
    loop {
        let Some(store) = inner.upgrade() else {
            return;
        };
        let (url, config, work, cancels, inboxes) = (
            store.url.clone(),
            store.config.clone(),
            store.work.clone(),
            store.cancels.clone(),
            store.inboxes.clone(),
        );
        drop(store);
        let connected = open_connection(&url, &config).await;
        let Ok((client, mut connection)) = connected else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let listen =
            client.batch_execute("LISTEN minder_work; LISTEN minder_cancel; LISTEN minder_inbox");
        let mut listen = std::pin::pin!(listen);
        let mut listening = false;
        loop {
            let message = std::future::poll_fn(|cx| {
                if !listening {
                    if let std::task::Poll::Ready(r) = listen.as_mut().poll(cx) {
                        listening = true;
                        if let Err(e) = r {
                            tracing::debug!(url, error = %e, "cannot LISTEN");
                        }
                    }
                }
                futures::Stream::poll_next(connection.as_mut(), cx)
            })
            .await;
            match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    if n.channel() == "minder_cancel" {
                        cancels.lock().unwrap().insert(n.payload().to_string());
                    } else if n.channel() == "minder_inbox" {
                        inboxes.lock().unwrap().insert(n.payload().to_string());
                    } else {
                        work.notify_one();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
            if inner.strong_count() == 0 {
                return;
            }
        }
        // Whatever was announced while the connection was down is found by the next claim.
        work.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Queue limits under several workers, the same test on every store: a queue limited to 2
//! runs at once never has more, and a rate-limited queue spreads its starts out.

use minder::prelude::*;
use minder::store::Store;
use minder::worker::{Processes, Worker};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Runs of `counted` executing now, and the most seen at once, by tag.
static RUNNING: std::sync::Mutex<Option<HashMap<String, Counts>>> = std::sync::Mutex::new(None);

/// Runs executing now, the most at once, and their start times.
type Counts = (usize, usize, Vec<std::time::Instant>);

#[task]
async fn counted(tag: String) -> Result<u32, TaskError> {
    {
        let mut all = RUNNING.lock().unwrap();
        let entry = all
            .get_or_insert_with(HashMap::new)
            .entry(tag.clone())
            .or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        entry.2.push(std::time::Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    RUNNING
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .get_mut(&tag)
        .unwrap()
        .0 -= 1;
    Ok(1)
}

#[process]
async fn limited(_ctx: &Ctx, tag: String) -> Result<u32, ProcessError> {
    Ok(counted(tag).await?)
}

/// The most runs of `tag` seen at once, and their start times.
fn seen(tag: &str) -> (usize, Vec<std::time::Instant>) {
    let all = RUNNING.lock().unwrap();
    let (_, max, starts) = all.as_ref().unwrap().get(tag).unwrap();
    (*max, starts.clone())
}

/// Three workers of 4 each on `store`: queue `two` (concurrency 2) never runs more than 2 at
/// once, and queue `slow` (3 per second) starts its 7 runs over at least 1.5 s.
pub async fn queue_limits_hold(store: Arc<dyn Store>, tag: &str) {
    use minder::store::QueueLimits;
    store
        .set_queue(&format!("two{tag}"), QueueLimits::none().concurrency(2))
        .await
        .unwrap();
    store
        .set_queue(
            &format!("slow{tag}"),
            QueueLimits::none().rate(3, Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let listed = store.queues().await.unwrap();
    assert!(listed
        .iter()
        .any(|(q, l)| *q == format!("two{tag}") && l.concurrency == Some(2)));
    let submitter = Runner::from_store(store.clone());
    let mut ids = Vec::new();
    // 7 runs on the rate-limited queue, 10 on the one limited to 2 at once (each run's task
    // counts itself under its queue's name).
    for i in 0..17 {
        let queue = if i < 7 {
            format!("slow{tag}")
        } else {
            format!("two{tag}")
        };
        ids.push(
            submitter
                .submit_with::<limited>(&queue, minder::Submit::default().queue(queue.clone()))
                .await
                .unwrap(),
        );
    }
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = Worker::new(
            Runner::from_store(store.clone()),
            Processes::new().process::<limited>(),
        )
        .concurrency(4)
        .poll(Duration::from_millis(20));
        handles.push(tokio::spawn(worker.run_until(async {
            let _ = stopped.await;
        })));
        stops.push(stop);
    }
    wait_all_ended(store.as_ref(), &ids).await;
    for stop in stops {
        stop.send(()).unwrap();
    }
    let mut completed = 0;
    for h in handles {
        completed += h.await.unwrap().unwrap().completed;
    }
    assert_eq!(completed, 17);
    let (max_two, starts_two) = seen(&format!("two{tag}"));
    println!(
        "queue two{tag}: at most {max_two} at once over {} runs",
        starts_two.len()
    );
    assert!(max_two <= 2, "queue limit exceeded: {max_two} at once");
    assert_eq!(starts_two.len(), 10);
    let (_, mut starts) = seen(&format!("slow{tag}"));
    starts.sort();
    let spread = starts[6] - starts[0];
    println!("queue slow{tag}: 7 runs started over {spread:?}");
    assert!(spread >= Duration::from_millis(1500), "{spread:?}");
}

async fn wait_all_ended(store: &dyn Store, ids: &[String]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    'wait: loop {
        assert!(std::time::Instant::now() < deadline, "runs did not end");
        for id in ids {
            let events = store.read(id).await.unwrap();
            if !events.iter().any(|e| e.run_end().is_some()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'wait;
            }
        }
        return;
    }
}

//! Answers to a held run, the same test on every store: while a writer drives a run whose one
//! branch waits for an external result (or a decision) and the other runs on, `post` and
//! `decide` from another store instance go through the run's inbox: the holder checks them as
//! `post` would (a value of the wrong type is refused, nothing written), journals them while it
//! still holds the run, and the waiting branch goes on without the run being let go.

use super::PATIENCE;
use minder::journal::Event;
use minder::prelude::*;
use minder::store::{Store, StoreError};
use minder::{EffectProblem, RunError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[data]
pub struct Review {
    pub score: u32,
}

#[data]
pub struct Gated {
    /// `long_build` waits until this file exists.
    pub gate: String,
}

#[task]
async fn long_build(gate: String) -> Result<u32, TaskError> {
    while !Path::new(&gate).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(100)
}

#[process]
pub async fn reviewed_build(ctx: &Ctx, job: Gated) -> Result<u32, ProcessError> {
    let (review, built) = parallel!(
        async { ctx.external::<Review>("review", "build 7").await },
        long_build(job.gate.clone()),
    )?;
    Ok(review.score + built)
}

#[process]
pub async fn approved_build(ctx: &Ctx, job: Gated) -> Result<String, ProcessError> {
    let (decision, built) = parallel!(
        async { Ok::<_, TaskError>(ctx.breakpoint("ship", "build 7").await) },
        long_build(job.gate.clone()),
    )?;
    Ok(format!("{built} {}", decision.is_approved()))
}

/// Waits until the run asks for the effect `name`, and returns its key.
async fn requested(store: &Arc<dyn Store>, run_id: &str, name: &str) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let events = store.read(run_id).await.unwrap_or_default();
        let key = events.iter().find_map(|e| match e {
            Event::EffectRequested { key, name: n, .. } if n == name => Some(key.clone()),
            _ => None,
        });
        if let Some(key) = key {
            return key;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for run {run_id} to ask for `{name}`"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn resolved(key: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| matches!(e, Event::EffectResolved { key: k, .. } if k == key)
}

/// `holder` drives the runs; `poster` is another instance of the same store (another
/// process, as far as the run's lock is concerned).
pub async fn answers_reach_a_held_run(holder: Arc<dyn Store>, poster: Arc<dyn Store>, dir: &Path) {
    // An external result.
    let gate = dir.join("gate-review");
    let job = Gated {
        gate: gate.display().to_string(),
    };
    let runner = Runner::from_store(holder.clone());
    let run_id = runner.create::<reviewed_build>(&job).await.unwrap();
    let driving = {
        let (runner, run_id) = (runner.clone(), run_id.clone());
        tokio::spawn(async move { runner.resume::<reviewed_build>(&run_id).await })
    };
    let key = &requested(&holder, &run_id, "review").await;
    let posting = Runner::from_store(poster.clone());
    // Held: the poster cannot open the run itself.
    assert!(matches!(
        poster.open(&run_id).await,
        Err(StoreError::Locked(_))
    ));
    // A value of the wrong type: the holder refuses it, nothing is written.
    let wrong = posting
        .post::<reviewed_build>(&run_id, key, Ok(serde_json::json!({ "score": "high" })))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &wrong,
            RunError::Effect {
                problem: EffectProblem::InvalidValue { .. },
                ..
            }
        ),
        "{wrong}"
    );
    assert!(wrong.to_string().contains("does not fit"), "{wrong}");
    assert!(!poster
        .read(&run_id)
        .await
        .unwrap()
        .iter()
        .any(resolved(key)));
    // The right type: journaled by the holder, which still holds the run (the build goes on).
    let started = std::time::Instant::now();
    posting
        .post::<reviewed_build>(&run_id, key, Ok(serde_json::json!({ "score": 7 })))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(poster
        .read(&run_id)
        .await
        .unwrap()
        .iter()
        .any(resolved(key)));
    assert!(matches!(
        poster.open(&run_id).await,
        Err(StoreError::Locked(_))
    ));
    assert!(!driving.is_finished());
    // Answered twice: refused.
    let again = posting
        .post::<reviewed_build>(&run_id, key, Ok(serde_json::json!({ "score": 8 })))
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already resolved"), "{again}");
    std::fs::write(&gate, "").unwrap();
    let finished = tokio::time::timeout(PATIENCE, driving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.unwrap().output, 107);
    let events = poster.read(&run_id).await.unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Suspended { .. })),
        "the run was let go: {events:?}"
    );
    println!("post through the inbox took {took:?}");

    // A decision.
    let gate = dir.join("gate-ship");
    let job = Gated {
        gate: gate.display().to_string(),
    };
    let run_id = runner.create::<approved_build>(&job).await.unwrap();
    let driving = {
        let (runner, run_id) = (runner.clone(), run_id.clone());
        tokio::spawn(async move { runner.resume::<approved_build>(&run_id).await })
    };
    let key = &requested(&holder, &run_id, "ship").await;
    posting
        .decide(&run_id, key, minder::Decision::Approved { feedback: None })
        .await
        .unwrap();
    assert!(poster
        .read(&run_id)
        .await
        .unwrap()
        .iter()
        .any(resolved(key)));
    std::fs::write(&gate, "").unwrap();
    let finished = tokio::time::timeout(PATIENCE, driving)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.unwrap().output, "100 true");
}

/// A holder that never looks at the inbox (a writer stuck in a long step, or one that does not
/// know inboxes): `post` gives up after its wait with [`EffectProblem::InInbox`], nothing is
/// journaled meanwhile, and the answer stays in the inbox until the next writer to drive the
/// run checks and journals it.
pub async fn a_silent_holder_leaves_the_answer_for_the_next_driver(
    store: Arc<dyn Store>,
    poster: Arc<dyn Store>,
    dir: &Path,
) {
    let gate = dir.join("gate-silent");
    std::fs::write(&gate, "").unwrap();
    let job = Gated {
        gate: gate.display().to_string(),
    };
    let runner = Runner::from_store(store.clone());
    let run_id = runner.create::<reviewed_build>(&job).await.unwrap();
    // Driven until it waits for the review, then let go.
    let waiting = runner.resume::<reviewed_build>(&run_id).await.unwrap_err();
    assert!(matches!(waiting, RunError::Suspended { .. }), "{waiting}");
    let key = &requested(&store, &run_id, "review").await;
    // A writer takes the run and sits on it.
    let held = store.open(&run_id).await.unwrap();
    let started = std::time::Instant::now();
    let e = Runner::from_store(poster.clone())
        .post::<reviewed_build>(&run_id, key, Ok(serde_json::json!({ "score": 5 })))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    match &e {
        RunError::Effect {
            problem: EffectProblem::InInbox { waited: w },
            ..
        } => assert_eq!(*w, minder::CANCEL_WAIT),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("stays in the run's inbox"), "{e}");
    assert!(waited >= minder::CANCEL_WAIT, "{waited:?}");
    assert!(!poster
        .read(&run_id)
        .await
        .unwrap()
        .iter()
        .any(resolved(key)));
    // The silent writer lets go; the next writer to drive the run finds the answer.
    held.log.close().await.unwrap();
    drop(held);
    let done = runner.resume::<reviewed_build>(&run_id).await.unwrap();
    assert_eq!(done.output, 105);
    let resolutions = poster
        .read(&run_id)
        .await
        .unwrap()
        .iter()
        .filter(|e| resolved(key)(e))
        .count();
    assert_eq!(resolutions, 1);
    println!("post gave up after {waited:?}");
}

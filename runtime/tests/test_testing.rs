//! Testing support: mocked tasks, breakpoints and external tasks answered by the test, a
//! virtual clock, and replaying a saved journal against changed code.

use minder::journal::Event;
use minder::prelude::*;
use minder::testing::{replay_journal, Replay};
use minder::{MemoryStore, RunError};
use std::time::{Duration, UNIX_EPOCH};

#[task]
async fn charge(customer: String, cents: u64) -> Result<String, TaskError> {
    unreachable!("a test mocks this: {customer} {cents}")
}

#[data]
struct Answer {
    ok: bool,
}

#[process]
async fn billing(ctx: &Ctx, customer: String) -> Result<String, ProcessError> {
    let started = ctx.now();
    let receipt = charge(customer.clone(), 1200).await?;
    ctx.sleep(Duration::from_secs(24 * 3600)).await;
    let approval = ctx.breakpoint("refund?", &receipt).await;
    let fraud = ctx.external::<Answer>("fraud-check", &customer).await?;
    let waited = ctx.now().duration_since(started).unwrap().as_secs();
    Ok(format!(
        "{receipt} waited={waited}s approved={} fraud_ok={}",
        approval.is_approved(),
        fraud.ok
    ))
}

fn test_runner(store: MemoryStore) -> Runner {
    Runner::new(store)
        .mock("charge", |(customer, cents): (String, u64)| {
            Ok::<_, TaskError>(format!("receipt:{customer}:{cents}"))
        })
        .decide_breakpoints(|name, _| Decision::Approved {
            feedback: Some(format!("ok {name}")),
        })
        .answer_external(|name, input| {
            (name == "fraud-check").then(|| Ok(serde_json::json!({ "ok": input == "alice" })))
        })
        .virtual_clock(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

#[tokio::test(start_paused = true)]
async fn mocks_answers_and_a_virtual_clock() {
    let started = tokio::time::Instant::now();
    let store = MemoryStore::new();
    let done = test_runner(store.clone())
        .run::<billing>("alice".into())
        .await
        .unwrap();
    assert_eq!(
        done.output,
        "receipt:alice:1200 waited=86400s approved=true fraud_ok=true"
    );
    // The day passed on tokio's paused clock, which the run's clock follows.
    assert!(
        started.elapsed() >= Duration::from_secs(24 * 3600),
        "the day-long sleep did not wait on tokio's clock: {:?}",
        started.elapsed()
    );
    // Mocked steps and answers are journaled like real ones.
    let events = store.events(&done.run_id).unwrap();
    let resolved = events
        .iter()
        .filter(|e| matches!(e, Event::EffectResolved { .. }))
        .count();
    assert_eq!(resolved, 2);
    let recorded_now = events.iter().find_map(|e| match e {
        Event::Recorded { key, value, .. } if key == "now#0" => value.as_u64(),
        _ => None,
    });
    assert_eq!(recorded_now, Some(1_700_000_000_000));
}

#[process(name = "billing")]
async fn billing_other_amount(ctx: &Ctx, customer: String) -> Result<String, ProcessError> {
    let started = ctx.now();
    let receipt = charge(customer.clone(), 1500).await?;
    ctx.sleep(Duration::from_secs(24 * 3600)).await;
    let approval = ctx.breakpoint("refund?", &receipt).await;
    let fraud = ctx.external::<Answer>("fraud-check", &customer).await?;
    let waited = ctx.now().duration_since(started).unwrap().as_secs();
    Ok(format!(
        "{receipt} waited={waited}s approved={} fraud_ok={}",
        approval.is_approved(),
        fraud.ok
    ))
}

#[process(name = "billing")]
async fn billing_other_output(ctx: &Ctx, customer: String) -> Result<String, ProcessError> {
    let out = billing(ctx, customer).await?;
    Ok(out.to_uppercase())
}

#[process(name = "billing")]
async fn billing_extra_step(ctx: &Ctx, customer: String) -> Result<String, ProcessError> {
    let out = billing(ctx, customer.clone()).await?;
    let again = charge(customer, 1).await?;
    Ok(format!("{out} {again}"))
}

#[tokio::test(start_paused = true)]
async fn a_saved_journal_replays_against_the_current_code() {
    let store = MemoryStore::new();
    let done = test_runner(store.clone())
        .run::<billing>("bob".into())
        .await
        .unwrap();
    let journal = store.events(&done.run_id).unwrap();
    // Saved as JSON (what `events --json` prints) and read back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.json");
    std::fs::write(&path, serde_json::to_string(&journal).unwrap()).unwrap();
    let journal = minder::testing::load_journal(&path).unwrap();

    assert_eq!(
        replay_journal::<billing>(journal.clone()).await.unwrap(),
        Replay::Completed
    );

    let err = replay_journal::<billing_other_amount>(journal.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::NonDeterminism { key, .. } if key == "charge#0"),
        "{err}"
    );
    assert!(
        err.to_string().contains("1200") && err.to_string().contains("1500"),
        "{err}"
    );

    let err = replay_journal::<billing_other_output>(journal.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the code now returns \"RECEIPT:BOB"),
        "{err}"
    );

    let err = replay_journal::<billing_extra_step>(journal.clone())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs steps it does not have"),
        "{err}"
    );

    // A journal that stops early (the run was waiting) replays as far as it goes.
    let cut: Vec<Event> = journal
        .iter()
        .take_while(|e| !matches!(e, Event::EffectRequested { .. }))
        .cloned()
        .collect();
    assert_eq!(
        replay_journal::<billing>(cut).await.unwrap(),
        Replay::Incomplete
    );
}

/// A mock whose value is not the task's type, and a journal file that is not there: `Decode`
/// errors that say which value, with serde's (or the file system's) message.
#[tokio::test(start_paused = true)]
async fn decode_errors_name_the_value() {
    use minder::DecodeProblem;
    let err = test_runner(MemoryStore::new())
        .mock("charge", |(_customer, _cents): (String, u64)| {
            Ok::<_, TaskError>(42u32)
        })
        .run::<billing>("carol".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RunError::Decode { problem: DecodeProblem::MockOutput { task }, message }
            if task == "charge" && message.contains("expected a string")),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the mock of `charge` returned a value of another type: "),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let err = minder::testing::load_journal(&missing).unwrap_err();
    assert!(
        matches!(&err, RunError::Decode { problem: DecodeProblem::UnreadableJournal { path }, .. }
            if *path == missing),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read `{}`: ", missing.display())),
        "{err}"
    );
}

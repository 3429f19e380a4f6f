//! Task state: `#[state]` parameters get the value registered on the runner, are not
//! journaled, and a missing registration is an error naming the type.

use minder::journal::Event;
use minder::prelude::*;
use minder::worker::{Processes, Worker};
use minder::{MemoryStore, RunError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A resource: counts the calls it served, keeps what it was sent.
#[derive(Default)]
struct Counter {
    calls: AtomicUsize,
    seen: Mutex<Vec<String>>,
}

/// A resource behind a trait, so a test can register a fake.
trait Greeter: Send + Sync {
    fn greet(&self, name: &str) -> String;
}

struct English;

impl Greeter for English {
    fn greet(&self, name: &str) -> String {
        format!("hello {name}")
    }
}

struct Fake;

impl Greeter for Fake {
    fn greet(&self, name: &str) -> String {
        format!("fake {name}")
    }
}

#[task]
async fn record(#[state] counter: &Counter, word: String) -> Result<usize, TaskError> {
    counter.seen.lock().unwrap().push(word);
    Ok(counter.calls.fetch_add(1, Ordering::SeqCst) + 1)
}

#[task]
async fn greet(
    name: String,
    #[state] greeter: &Arc<dyn Greeter>,
    #[state] suffix: &String,
) -> Result<String, TaskError> {
    Ok(format!("{}{suffix}", greeter.greet(&name)))
}

/// Calls a task with state from its own body (not a step of its own).
#[task]
async fn nested(word: String) -> Result<usize, TaskError> {
    record(word).await
}

#[process]
async fn words(_ctx: &Ctx, input: Vec<String>) -> Result<usize, ProcessError> {
    let mut last = 0;
    for word in input {
        last = record(word).await?;
    }
    Ok(last)
}

#[process]
async fn welcome(_ctx: &Ctx, name: String) -> Result<String, ProcessError> {
    let (a, b) = parallel!(greet(name.clone()), greet(format!("{name}!")))?;
    Ok(format!("{a} / {b}"))
}

#[process]
async fn nesting(_ctx: &Ctx, word: String) -> Result<usize, ProcessError> {
    Ok(nested(word).await?)
}

fn step_args(events: &[Event]) -> Vec<serde_json::Value> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { args, .. } => Some(args.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_task_gets_the_runner_s_state_which_is_not_journaled() {
    let store = MemoryStore::new();
    let counter = Counter::default();
    let runner = Runner::new(store.clone()).state(counter);
    let done = runner
        .run::<words>(vec!["a".into(), "b".into(), "c".into()])
        .await
        .unwrap();
    assert_eq!(done.output, 3);
    // Only the journaled argument is in the journal.
    let events = store.events(&done.run_id).unwrap();
    assert_eq!(
        step_args(&events),
        vec![
            serde_json::json!(["a"]),
            serde_json::json!(["b"]),
            serde_json::json!(["c"])
        ]
    );
    // A second run of the same runner shares the value.
    let again = runner.run::<words>(vec!["d".into()]).await.unwrap();
    assert_eq!(again.output, 4);
}

#[tokio::test]
async fn a_state_of_a_trait_object_type_takes_a_fake_in_tests() {
    let real = Runner::in_memory()
        .state::<Arc<dyn Greeter>>(Arc::new(English))
        .state(String::from("."));
    let done = real.run::<welcome>("ada".into()).await.unwrap();
    assert_eq!(done.output, "hello ada. / hello ada!.");
    let test = Runner::in_memory()
        .state::<Arc<dyn Greeter>>(Arc::new(Fake))
        .state(String::from("?"));
    let done = test.run::<welcome>("ada".into()).await.unwrap();
    assert_eq!(done.output, "fake ada? / fake ada!?");
}

#[tokio::test]
async fn a_missing_state_stops_the_run_naming_the_type_and_a_resume_with_it_finishes() {
    let store = MemoryStore::new();
    let without = Runner::new(store.clone()).state::<Arc<dyn Greeter>>(Arc::new(English));
    let id = without.create::<welcome>(&"ada".into()).await.unwrap();
    let err = without.resume::<welcome>(&id).await.unwrap_err();
    let RunError::MissingState { task, type_name } = &err else {
        panic!("expected MissingState, got {err:?}");
    };
    assert!(task.ends_with("::greet"), "{task}");
    assert_eq!(type_name, "alloc::string::String");
    assert!(
        err.to_string()
            .contains("takes state of type `alloc::string::String`"),
        "{err}"
    );
    // The run is not failed: the runner that has the state finishes it.
    let with = Runner::new(store.clone())
        .state::<Arc<dyn Greeter>>(Arc::new(English))
        .state(String::from("."));
    let done = with.resume::<welcome>(&id).await.unwrap();
    assert_eq!(done.output, "hello ada. / hello ada!.");
}

#[tokio::test]
async fn a_mocked_task_needs_no_state() {
    let runner =
        Runner::in_memory().mock("record", |(w,): (String,)| Ok::<_, TaskError>(w.len() * 10));
    let done = runner.run::<words>(vec!["abc".into()]).await.unwrap();
    assert_eq!(done.output, 30);
}

#[tokio::test]
async fn a_task_called_in_a_task_body_gets_the_run_s_state() {
    let runner = Runner::in_memory().state(Counter::default());
    let done = runner.run::<nesting>("x".into()).await.unwrap();
    assert_eq!(done.output, 1);
}

#[tokio::test]
async fn a_task_with_state_called_outside_a_run_fails_naming_the_type() {
    let err = record("x".into()).await.unwrap_err();
    assert!(
        err.message
            .contains("takes state of type `test_state::Counter`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hands_its_runner_s_state_to_tasks() {
    let store = MemoryStore::new();
    let counter = Arc::new(Counter::default());
    // The state can be an `Arc` the program keeps a handle to.
    let runner = Runner::new(store.clone()).state(counter.clone());
    let id = runner
        .submit::<shared_words>(&vec!["p".into(), "q".into()])
        .await
        .unwrap();
    let worker = Worker::new(runner, Processes::new().process::<shared_words>())
        .poll(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        worker
            .run_until(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !store
        .events(&id)
        .unwrap()
        .iter()
        .any(|e| matches!(e, Event::RunCompleted { .. }))
    {
        assert!(tokio::time::Instant::now() < deadline, "run not completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(());
    handle.await.unwrap();
    assert_eq!(*counter.seen.lock().unwrap(), ["p", "q"]);
}

#[task]
async fn record_shared(#[state] counter: &Arc<Counter>, word: String) -> Result<(), TaskError> {
    counter.seen.lock().unwrap().push(word);
    Ok(())
}

#[process]
async fn shared_words(_ctx: &Ctx, input: Vec<String>) -> Result<(), ProcessError> {
    for word in input {
        record_shared(word).await?;
    }
    Ok(())
}

//! A run's `tracing` output: a `run` span (run id, process) with a `step` span per task step
//! (key, task, attempt, replayed) under it, and events for each change of state (issue 12,
//! item 2). A small capturing layer records every event with the spans it sits in.

use minder::prelude::*;
use minder::{MemoryStore, RunError};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span's or an event's fields, as text.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// One event: its level, message and fields, and the spans it sits in, outermost first.
#[derive(Debug, Clone)]
struct Seen {
    level: tracing::Level,
    message: String,
    fields: BTreeMap<String, String>,
    spans: Vec<(&'static str, BTreeMap<String, String>)>,
}

impl Seen {
    fn span(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.spans.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(ext.get_mut::<Fields>().unwrap());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|s| {
                        let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name(), f.0)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            message,
            fields: fields.0,
            spans,
        });
    }
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails its first attempt.
#[task(retries = 1, backoff = "1ms")]
async fn flaky(n: u32) -> Result<u32, TaskError> {
    if FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(TaskError::new("not yet"));
    }
    Ok(n + 1)
}

#[task]
async fn double(n: u32) -> Result<u32, TaskError> {
    tracing::info!(n, "doubling");
    Ok(n * 2)
}

#[process]
async fn traced_flow(ctx: &Ctx, n: u32) -> Result<u32, ProcessError> {
    let a = flaky(n).await?;
    if !ctx.breakpoint("go-on", a).await.is_approved() {
        return Err(ProcessError::msg("rejected"));
    }
    Ok(double(a).await?)
}

/// The captured events as one line each, `spans: message fields`, as a reader would see them.
fn render(seen: &[Seen]) -> String {
    let mut out = String::new();
    for s in seen {
        for (name, fields) in &s.spans {
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(out, "{name}{{{}}}:", fields.join(" "));
        }
        let fields: Vec<String> = s.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, " {} {} {}", s.level, s.message, fields.join(" "));
    }
    out
}

#[test]
fn a_run_is_a_span_with_a_span_per_step_and_events_for_each_change() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let runner = Runner::new(store);
    let id = rt.block_on(async {
        let id = runner.create::<traced_flow>(&20).await.unwrap();
        let err = runner.resume::<traced_flow>(&id).await.unwrap_err();
        assert!(matches!(err, RunError::Suspended { .. }), "{err}");
        let approve = Decision::Approved { feedback: None };
        runner.decide(&id, "go-on#0", approve).await.unwrap();
        let done = runner.resume::<traced_flow>(&id).await.unwrap();
        assert_eq!(done.output, 42);
        id
    });
    let seen = capture.0.lock().unwrap().clone();
    let text = render(&seen);
    eprintln!("{text}");

    // Every event sits in the run's span, with its id and process.
    for s in &seen {
        let run = s
            .span("run")
            .unwrap_or_else(|| panic!("outside a run: {s:?}"));
        assert_eq!(run["run_id"], id);
        assert_eq!(run["process"], "traced-flow");
    }
    let find =
        |message: &str| -> Vec<&Seen> { seen.iter().filter(|s| s.message == message).collect() };
    let messages: Vec<&str> = seen
        .iter()
        .filter(|s| s.span("step").is_none())
        .map(|s| s.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "run started",
            "run suspended",
            "run resumed",
            "run completed"
        ]
    );
    assert_eq!(find("run suspended")[0].fields["waiting"], "[\"go-on#0\"]");

    // The first step: attempt 0 fails and is retried, attempt 1 completes.
    let flaky_key = "flaky#0";
    let flaky_events: Vec<(&str, &str, &str)> = seen
        .iter()
        .filter(|s| s.span("step").is_some_and(|f| f["key"] == flaky_key))
        .map(|s| {
            let step = s.span("step").unwrap();
            let attempt = step.get("attempt").map_or("-", String::as_str);
            (s.message.as_str(), attempt, step["replayed"].as_str())
        })
        .collect();
    assert_eq!(
        flaky_events,
        [
            ("step started", "0", "false"),
            ("step attempt failed, retrying", "0", "false"),
            ("step started", "1", "false"),
            ("step completed", "1", "false"),
            // On resume: replayed, not run (no attempt).
            ("step replayed", "-", "true"),
        ]
    );
    let retry = &find("step attempt failed, retrying")[0];
    assert_eq!(retry.level, tracing::Level::WARN);
    assert_eq!(
        retry.fields["error"],
        "{\"kind\":\"failed\",\"message\":\"not yet\"}"
    );
    assert_eq!(retry.fields["retry_in"], "1ms");
    let step = retry.span("step").unwrap();
    assert_eq!(step["task"], "test_tracing::flaky");

    // The task body's own event sits in its step's span, under the run's.
    let doubling = &find("doubling")[0];
    let names: Vec<&str> = doubling.spans.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["run", "step"]);
    assert_eq!(doubling.span("step").unwrap()["key"], "double#0");
    assert_eq!(doubling.fields["n"], "21");
}

#[test]
fn a_failed_step_and_a_failed_run_are_warnings() {
    #[task]
    async fn refuse(why: String) -> Result<(), TaskError> {
        Err(TaskError::new(why))
    }
    #[process]
    async fn refusing(_ctx: &Ctx, why: String) -> Result<(), ProcessError> {
        Ok(refuse(why).await?)
    }
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(Runner::in_memory().run::<refusing>("no".into()))
        .unwrap_err();
    assert!(matches!(err, RunError::Failed { .. }), "{err}");
    let seen = capture.0.lock().unwrap().clone();
    let summary: Vec<(tracing::Level, &str)> =
        seen.iter().map(|s| (s.level, s.message.as_str())).collect();
    assert_eq!(
        summary,
        [
            (tracing::Level::INFO, "run started"),
            (tracing::Level::DEBUG, "step started"),
            (tracing::Level::WARN, "step failed"),
            (tracing::Level::WARN, "run failed"),
        ]
    );
    assert!(seen[3].fields["error"].contains("no"), "{:?}", seen[3]);
}

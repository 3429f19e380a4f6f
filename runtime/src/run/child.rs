//! Child processes: `ctx.child::<P>(input)` runs another process as a journaled step of the
//! parent, in a run (and journal) of its own.
//!
//! - *The child's id* is made from the parent's run id and the step key (`<parent>-<hash>`),
//!   so a replay, or a crash between starting the child and journaling it, finds the same child.
//!   The parent journals the request (an `effect_requested` of kind `child`, its input the
//!   child's run id and input) before the child is created, and the child's end (an
//!   `effect_resolved`: its output, or a [`TaskError`]) when it ends. The child's
//!   `run_created` names the parent and the step ([`ParentLink`]).
//! - *On a plain runner* ([`Runner::run`], [`Runner::resume`]) the step drives the child
//!   inline, in the same runner, to its end; if the child stops to wait, the step waits for it
//!   ([`WaitKind::Child`]) and the parent suspends too; resuming the parent resumes the child
//!   first.
//! - *On a worker* the child is created ready for workers and the step waits for it: the parent
//!   parks. A child that ends tells its parent: it journals its end into the parent's step when
//!   the parent is not held (before its own end is durable, and again after if the parent was
//!   held then); a parent that was held when its child ended finds the end in the child's
//!   journal, which its waiting step reads every [`CANCEL_CHECK`], and which the runner looks
//!   at once more right after it let the suspended parent go. One interleaving is left: the
//!   child's first try finds the parent held, the parent lets go and looks before the child's
//!   end is durable, and the child's runner dies before its second try; the parent then stays
//!   parked until it is resumed (which finds the end) or the child is (an ended child that is
//!   resumed tells its parent again).
//! - *Cancelling* a parent cancels its children that have not ended ([`Runner::cancel`]). A
//!   child whose step the parent's body drops (a `select` loser, a fail-fast sibling) is
//!   cancelled as well; one whose parent stops (to wait, or because its program goes) is not.

use super::{created, pending_effect, Finished, Process, Runner, Submit, CANCEL_CHECK};
use crate::ctx::Ctx;
use crate::engine::{RunState, Stopped};
use crate::error::{DecodeProblem, RunError, TaskError, TaskErrorKind, Waiting};
use crate::inspect::WaitKind;
use crate::journal::{Event, Outcome, ParentLink};
use crate::replay::Replayed;
use crate::store::StoreError;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::future::Future;

/// How a runner drives a run's child processes, and whether the run tells its parent when it
/// ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// On workers (the parent parks) rather than inline.
    pub(crate) worker: bool,
    /// The run journals its end into its parent's step (not when the parent drives it inline:
    /// that step journals it).
    pub(crate) tell_parent: bool,
}

impl Mode {
    /// [`Runner::run`] / [`Runner::resume`]: children inline.
    pub(crate) const INLINE: Mode = Mode {
        worker: false,
        tell_parent: true,
    };
    /// A worker's run: children on workers.
    pub(crate) const WORKER: Mode = Mode {
        worker: true,
        tell_parent: true,
    };
    /// A child driven inline by its parent's step.
    const AS_CHILD: Mode = Mode {
        worker: false,
        tell_parent: false,
    };
}

/// What a run's steps need to start its children: the runner driving it, and how.
pub(crate) struct Driver {
    runner: Runner,
    mode: Mode,
}

impl Driver {
    pub(crate) fn new(runner: Runner, mode: Mode) -> Self {
        Driver { runner, mode }
    }
}

/// The run id of the child that step `key` of run `parent` starts: the parent's id (its first
/// 26 characters when it is long, as a child's child's can get) and a hash of both.
pub(crate) fn child_run_id(parent: &str, key: &str) -> String {
    // FNV-1a, 64 bits: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parent.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Run ids are ASCII (`validate_run_id`), so any byte is a boundary.
    let prefix = if parent.len() > 100 {
        parent.get(..26).unwrap_or(parent)
    } else {
        parent
    };
    format!("{prefix}-{hash:016x}")
}

/// The error a parent's step gets from a child that failed.
pub(super) fn failed(process: &str, run_id: &str, message: &str) -> Outcome {
    let e = TaskError::new(format!(
        "child process `{process}` (run {run_id}) failed: {message}"
    ));
    Outcome::Err(serde_json::to_value(e).expect("an error is plain data"))
}

/// The error a parent's step gets from a child that was cancelled.
fn cancelled(process: &str, run_id: &str, reason: Option<&str>) -> Outcome {
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    let e = TaskError::with_kind(
        TaskErrorKind::Cancelled,
        format!("child process `{process}` (run {run_id}) was cancelled{why}"),
    );
    Outcome::Err(serde_json::to_value(e).expect("an error is plain data"))
}

/// How a child whose journal is `events` ended, as its parent's step journals it; `None`
/// while it has not ended.
fn outcome_of(events: &[Event]) -> Option<Outcome> {
    let (run_id, process) = match events.first() {
        Some(Event::RunCreated {
            run_id, process, ..
        }) => (run_id.as_str(), process.as_str()),
        _ => ("", ""),
    };
    ended_with(process, run_id, events.last()?)
}

/// The outcome of child run `run_id` of `process` that ended with `end`.
fn ended_with(process: &str, run_id: &str, end: &Event) -> Option<Outcome> {
    match end {
        Event::RunCompleted { output } => Some(Outcome::Ok(output.clone())),
        Event::RunFailed { error } => Some(failed(process, run_id, error)),
        Event::RunCancelled { reason } => Some(cancelled(process, run_id, reason.as_deref())),
        _ => None,
    }
}

/// The child run ids a journal requested and has no end for, with their step keys.
fn unfinished_children(events: &[Event]) -> Vec<(String, String)> {
    let mut open: Vec<(String, String)> = Vec::new();
    for e in events {
        match e {
            Event::EffectRequested {
                key, kind, input, ..
            } if kind == WaitKind::Child.as_str() => {
                if let Some(id) = input.get("run_id").and_then(Value::as_str) {
                    open.push((key.clone(), id.to_string()));
                }
            }
            Event::EffectResolved { key, .. } => open.retain(|(k, _)| k != key),
            _ => {}
        }
    }
    open
}

/// The children (step key, run id) a run that stopped with `result` waits for.
pub(super) fn waited_children<T>(result: &Result<T, RunError>) -> Vec<(String, String)> {
    let Err(RunError::Suspended { waiting, .. }) = result else {
        return Vec::new();
    };
    waiting
        .iter()
        .filter(|w| w.kind == WaitKind::Child)
        .filter_map(|w| {
            let child = w.input.get("run_id").and_then(Value::as_str)?;
            Some((w.key.clone(), child.to_string()))
        })
        .collect()
}

impl Ctx {
    /// Runs process `P` as a child of this run, and returns its output. The child has a run
    /// (and a journal) of its own, whose status names this run and step as its parent; this
    /// run journals the child's id when it starts it and the child's end when it ends, so a
    /// replay never starts it again. A child that fails or is cancelled is a [`TaskError`]
    /// (kind [`Failed`](TaskErrorKind::Failed) or [`Cancelled`](TaskErrorKind::Cancelled))
    /// the parent can handle.
    ///
    /// On [`Runner::run`] / [`Runner::resume`] the child is driven in the same runner to its
    /// end; when it stops to wait (for a person, a posted result, a long sleep), this run waits
    /// for it ([`WaitKind::Child`]) and stops too, and resuming this run resumes the child
    /// first. Under workers (`minder::worker`) the child is a run of its own that a worker
    /// takes; this run lets go meanwhile and is ready again when the child ends.
    /// Cancelling this run cancels the children that have not ended; so does dropping the
    /// step's future (the losing branch of a [`Ctx::select`], a failed fail-fast sibling).
    ///
    /// ```
    /// use minder::prelude::*;
    ///
    /// #[task]
    /// async fn measure(text: String) -> Result<usize, TaskError> {
    ///     Ok(text.split_whitespace().count())
    /// }
    ///
    /// #[process]
    /// async fn count_words(_ctx: &Ctx, text: String) -> Result<usize, ProcessError> {
    ///     Ok(measure(text).await?)
    /// }
    ///
    /// #[process]
    /// async fn report(ctx: &Ctx, texts: Vec<String>) -> Result<Vec<usize>, ProcessError> {
    ///     let mut counts = Vec::new();
    ///     for text in texts {
    ///         // A run of `count_words` of its own, started once, whatever the replays.
    ///         counts.push(ctx.child::<count_words>(text).await?);
    ///     }
    ///     Ok(counts)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = Runner::in_memory();
    /// let done = runner.run::<report>(vec!["a b".into(), "c".into()]).await.unwrap();
    /// assert_eq!(done.output, [2, 1]);
    /// // Three runs: the parent and its two children.
    /// assert_eq!(runner.store().list().await.unwrap().len(), 3);
    /// # }
    /// ```
    #[track_caller]
    pub fn child<P: Process>(
        &self,
        input: P::Input,
    ) -> impl Future<Output = Result<P::Output, TaskError>> + Send + '_ {
        let site = self.site();
        async move { child_step::<P>(self, input, site).await }
    }
}

async fn child_step<P: Process>(
    ctx: &Ctx,
    input: P::Input,
    (location, node): (String, Option<u32>),
) -> Result<P::Output, TaskError> {
    let scope = ctx.scope();
    let mut step = scope.next_key(P::NAME);
    let key = step.key.clone();
    let run = scope.run.clone();
    let child_id = child_run_id(&run.run_id, &key);
    let parent = ParentLink {
        run_id: run.run_id.clone(),
        key: key.clone(),
    };
    // The child's first event, made now: the input is not held across an await.
    let first = created::<P>(&child_id, &input, &Submit::default(), Some(parent));
    drop(input);
    let (request, first) = match first {
        Ok(first) => {
            let input = match &first {
                Event::RunCreated { input, .. } => input.clone(),
                _ => Value::Null,
            };
            (json!({ "run_id": child_id, "input": input }), first)
        }
        Err(e) => {
            let message = match e {
                RunError::Decode { message, .. } => message,
                e => e.to_string(),
            };
            run.fail(RunError::Decode {
                problem: DecodeProblem::EffectInput { key },
                message,
            });
            return std::future::pending().await;
        }
    };
    let code = || {
        format!(
            "starts child process `{}` with input {request} at {location}",
            P::NAME
        )
    };
    match run.replayed(&mut step) {
        Err(Stopped) => return std::future::pending().await,
        Ok(Some(Replayed::Effect {
            kind,
            name,
            input: journaled,
            resolved,
            location: was,
        })) => {
            if kind != WaitKind::Child.as_str() || name != P::NAME || journaled != request {
                let journal = Replayed::Effect {
                    kind,
                    name,
                    input: journaled,
                    resolved,
                    location: was,
                };
                run.diverged(&step, &journal, code());
                return std::future::pending().await;
            }
            if let Some(outcome) = resolved {
                let problem = DecodeProblem::EffectResult { key };
                return crate::effects::resolve(&run, problem, &outcome).await;
            }
        }
        Ok(Some(other)) => {
            run.diverged(&step, &other, code());
            return std::future::pending().await;
        }
        Ok(None) => run.append(Event::EffectRequested {
            key: key.clone(),
            kind: WaitKind::Child.as_str().to_string(),
            name: P::NAME.to_string(),
            input: request.clone(),
            due_ms: None,
            seq: Some(step.seq),
            location: Some(location.clone()),
            node,
        }),
    }
    if run.posting.is_some() {
        // Replayed to check a posted result or a saved journal: nothing starts.
        return std::future::pending().await;
    }
    // A test's stand-in for the child (`Runner::mock_child`): no run of it is made.
    let mocked = run
        .hooks
        .answer(WaitKind::Child, P::NAME, &request["input"]);
    let driver = run
        .driver
        .clone()
        .and_then(|d| d.downcast::<Driver>().ok())
        .expect("a run is driven by a runner");
    let outcome = match mocked {
        Some(outcome) => outcome,
        None => match driver
            .outcome::<P>(&run, &key, &child_id, first, &request)
            .await
        {
            Some(outcome) => outcome,
            None => return std::future::pending().await,
        },
    };
    {
        let _active = run.active();
        run.append(Event::EffectResolved {
            key: key.clone(),
            outcome: outcome.clone(),
        });
        if let Err(e) = run.flush().await {
            run.fail(RunError::Store(e));
            return std::future::pending().await;
        }
    }
    crate::effects::resolve(&run, DecodeProblem::EffectResult { key }, &outcome).await
}

impl Driver {
    /// Starts (or finds) the child and waits for its end; `None` when the parent stopped on an
    /// error meanwhile.
    async fn outcome<P: Process>(
        &self,
        run: &RunState,
        key: &str,
        child_id: &str,
        first: Event,
        request: &Value,
    ) -> Option<Outcome> {
        let runner = &self.runner;
        let stop = |error: RunError| child_failed(run, key, child_id, error);
        {
            let _active = run.active();
            // The request is durable before the child exists: a parent that crashes in
            // between finds the child's id in its journal (and the child by it).
            if let Err(e) = run.flush().await {
                run.fail(RunError::Store(e));
                return None;
            }
            if let Err(e) = runner.create_child(child_id, first).await {
                stop(e);
                return None;
            }
        }
        let abandoned = Abandoned {
            run,
            key,
            child_id: Some(child_id),
            runner,
        };
        let outcome = self.follow::<P>(run, key, child_id, request).await;
        abandoned.disarm();
        outcome
    }

    /// Drives the child inline, or waits for it to end on a worker: its outcome, or `None`
    /// when the parent stopped on an error meanwhile.
    async fn follow<P: Process>(
        &self,
        run: &RunState,
        key: &str,
        child_id: &str,
        request: &Value,
    ) -> Option<Outcome> {
        let runner = &self.runner;
        let stop = |error: RunError| child_failed(run, key, child_id, error);
        if self.mode.worker {
            let fingerprint = P::graph().fingerprint();
            let known = runner
                .registry
                .as_ref()
                .is_none_or(|r| r.iter().any(|(n, f)| n == P::NAME && *f == fingerprint));
            if !known {
                tracing::warn!(
                    run_id = %run.run_id, key, child = child_id, process = P::NAME,
                    "child process `{}` is not among this worker's processes \
                     (`Processes::process::<{}>()`, or another structure of it): its run {child_id} \
                     waits for a worker that has it",
                    P::NAME, P::NAME
                );
            }
        } else {
            let driven = {
                let _active = run.active();
                runner.resume_in::<P>(child_id, None, Mode::AS_CHILD).await
            };
            match driven {
                Ok(Finished { output, .. }) => match serde_json::to_value(&output) {
                    Ok(v) => return Some(Outcome::Ok(v)),
                    Err(e) => {
                        stop(RunError::Decode {
                            problem: DecodeProblem::RunOutput,
                            message: e.to_string(),
                        });
                        return None;
                    }
                },
                Err(RunError::Failed { message, .. }) => {
                    return Some(failed(P::NAME, child_id, &message))
                }
                Err(RunError::Cancelled { reason, .. }) => {
                    return Some(cancelled(P::NAME, child_id, reason.as_deref()))
                }
                // It waits (this run waits for it), or another writer drives it: wait for its
                // end below.
                Err(RunError::Suspended { .. } | RunError::Store(StoreError::Locked(_))) => {}
                Err(e) => {
                    stop(e);
                    return None;
                }
            }
        }
        // Waiting, not progressing: if nothing else of this run can progress, the run stops
        // (this future is dropped) and is woken when the child ends.
        let _waiting = run.wait_for(Waiting {
            key: key.to_string(),
            kind: WaitKind::Child,
            name: P::NAME.to_string(),
            input: request.clone(),
            due_ms: None,
        });
        loop {
            match runner.store.read(child_id).await {
                Ok(events) => {
                    if let Some(outcome) = outcome_of(&events) {
                        return Some(outcome);
                    }
                }
                Err(e) => {
                    tracing::warn!(run_id = %run.run_id, key, child = child_id, error = %e, "cannot read the child's journal")
                }
            }
            tokio::time::sleep(CANCEL_CHECK).await;
        }
    }
}

/// Cancels a child whose step's future the parent's own body dropped before the child ended
/// (the step lost a `select`, or a fail-fast sibling failed): as a task's command is killed
/// then. Not when the parent stops (it waits, it is cancelled, its runner goes): the body is
/// dropped outside a poll then.
struct Abandoned<'a> {
    run: &'a RunState,
    key: &'a str,
    child_id: Option<&'a str>,
    runner: &'a Runner,
}

impl Abandoned<'_> {
    fn disarm(mut self) {
        self.child_id = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        let Some(child) = self.child_id.take() else {
            return;
        };
        if !self.run.polling.load(std::sync::atomic::Ordering::SeqCst) || self.run.stopped() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (runner, child) = (self.runner.clone(), child.to_string());
        let reason = format!(
            "abandoned by its parent run {} at step {}",
            self.run.run_id, self.key
        );
        tracing::debug!(run_id = %self.run.run_id, key = self.key, child, "child abandoned: cancelling it");
        handle.spawn(async move {
            match runner.cancel(&child, Some(reason)).await {
                Ok(()) | Err(RunError::NotCancelled { .. }) => {}
                Err(e) => tracing::warn!(child, error = %e, "cannot cancel an abandoned child"),
            }
        });
    }
}

impl Runner {
    /// Creates child run `child_id` (its first event `first`, naming its process and parent),
    /// ready to be driven; one made before (by the same step, before a crash) is the same child.
    async fn create_child(&self, child_id: &str, first: Event) -> Result<(), RunError> {
        let same = |other: &Event| match (other, &first) {
            (
                Event::RunCreated {
                    process: a,
                    parent: pa,
                    ..
                },
                Event::RunCreated {
                    process: b,
                    parent: pb,
                    ..
                },
            ) => a == b && pa == pb,
            _ => false,
        };
        match self.store.create(child_id, first.clone()).await {
            Ok(log) => Ok(log.close().await?),
            Err(StoreError::RunExists(_)) => match self.store.read(child_id).await?.first() {
                Some(made) if same(made) => Ok(()),
                _ => Err(StoreError::RunExists(child_id.to_string()).into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Journals the end of child run `child_id` (`outcome`) into its parent's step, if the
    /// parent still waits for it and nobody holds the parent. Returns whether the parent has
    /// been told, or needs not be (no parent, it ended, it does not wait); `false` when it
    /// is held (its own step then finds the end in the child's journal).
    pub(super) async fn tell_parent(
        &self,
        parent: Option<&ParentLink>,
        child_id: &str,
        outcome: &Outcome,
    ) -> bool {
        let Some(parent) = parent else {
            return true;
        };
        let open = match self.store.open(&parent.run_id).await {
            Ok(open) => open,
            Err(StoreError::Locked(_)) => return false,
            Err(StoreError::UnknownRun(_)) => return true,
            Err(e) => {
                tracing::warn!(run_id = child_id, parent = %parent.run_id, error = %e, "cannot tell the parent run that its child ended");
                return false;
            }
        };
        let waits = pending_effect(&open.events, &parent.run_id, &parent.key, WaitKind::Child)
            .is_ok()
            && unfinished_children(&open.events)
                .iter()
                .any(|(k, id)| *k == parent.key && id == child_id);
        let mut told = true;
        if waits {
            let event = Event::EffectResolved {
                key: parent.key.clone(),
                outcome: outcome.clone(),
            };
            if let Err(e) = open.log.append(event) {
                tracing::warn!(run_id = child_id, parent = %parent.run_id, error = %e, "cannot tell the parent run that its child ended");
                told = false;
            }
        }
        if let Err(e) = open.log.close().await {
            tracing::warn!(run_id = child_id, parent = %parent.run_id, error = %e, "cannot tell the parent run that its child ended");
            told = false;
        }
        told
    }

    /// A child resumed after it ended (`end`) tells its parent again, for a runner that died
    /// before it could (the parent still waiting for it, not held).
    pub(super) async fn remind_parent(
        &self,
        parent: Option<&ParentLink>,
        process: &str,
        run_id: &str,
        end: &Event,
    ) {
        if let (Some(parent), Some(outcome)) = (parent, ended_with(process, run_id, end)) {
            self.tell_parent(Some(parent), run_id, &outcome).await;
        }
    }

    /// After run `run_id` stopped to wait and was let go: the children it waits for (from
    /// [`waited_children`]) that ended meanwhile, while it was held so they could not tell it,
    /// are journaled into it.
    pub(super) async fn settle_children(&self, run_id: &str, children: Vec<(String, String)>) {
        for (key, child) in children {
            let Ok(events) = self.store.read(&child).await else {
                continue;
            };
            if let Some(outcome) = outcome_of(&events) {
                let parent = ParentLink {
                    run_id: run_id.to_string(),
                    key,
                };
                self.tell_parent(Some(&parent), &child, &outcome).await;
            }
        }
    }

    /// After run `run_id` was cancelled: cancels its children that have not ended (and theirs),
    /// and, with `tell_parent`, tells its parent.
    pub(super) async fn cancelled(&self, run_id: &str, reason: Option<String>, tell_parent: bool) {
        let Ok(events) = self.store.read(run_id).await else {
            return;
        };
        for (_, child) in unfinished_children(&events) {
            match self.cancel_tree(&child, reason.clone()).await {
                Ok(())
                | Err(RunError::Store(StoreError::UnknownRun(_)))
                | Err(RunError::NotCancelled {
                    problem:
                        crate::CancelProblem::AlreadyEnded { .. }
                        | crate::CancelProblem::EndedFirst { .. },
                    ..
                }) => {}
                Err(e) => {
                    tracing::warn!(run_id, child, error = %e, "cannot cancel the run's child")
                }
            }
        }
        if let (
            true,
            Some(Event::RunCreated {
                parent, process, ..
            }),
        ) = (tell_parent, events.first())
        {
            let outcome = cancelled(process, run_id, reason.as_deref());
            self.tell_parent(parent.as_ref(), run_id, &outcome).await;
        }
    }

    /// [`Runner::cancel`], boxed: it cancels children, which cancel theirs.
    pub(super) fn cancel_tree<'a>(
        &'a self,
        run_id: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), RunError>> {
        Box::pin(async move {
            self.cancel_one(run_id, reason.clone()).await?;
            self.cancelled(run_id, reason, true).await;
            Ok(())
        })
    }
}

/// Stops the parent `run` with `error` of its child `child_id` (the step `key`).
fn child_failed(run: &RunState, key: &str, child_id: &str, error: RunError) {
    run.fail(RunError::Child {
        run_id: child_id.to_string(),
        key: key.to_string(),
        error: Box::new(error),
    })
}

#[cfg(test)]
mod tests {
    use super::child_run_id;

    #[test]
    fn child_ids_are_stable_distinct_and_valid() {
        let a = child_run_id("01JABCDEFGHJKMNPQRSTVWXYZ0", "deploy#0");
        assert_eq!(a, child_run_id("01JABCDEFGHJKMNPQRSTVWXYZ0", "deploy#0"));
        assert_ne!(a, child_run_id("01JABCDEFGHJKMNPQRSTVWXYZ0", "deploy#1"));
        assert_ne!(a, child_run_id("01JABCDEFGHJKMNPQRSTVWXYZ1", "deploy#0"));
        assert!(a.starts_with("01JABCDEFGHJKMNPQRSTVWXYZ0-"));
        // Nested children stay valid run ids, however deep.
        let mut id = a;
        for _ in 0..20 {
            id = child_run_id(&id, "p#0");
            crate::store::validate_run_id(&id).unwrap();
        }
    }
}

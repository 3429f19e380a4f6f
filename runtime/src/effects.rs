//! Effects done outside the program: breakpoints that wait for a person's decision, and
//! external tasks whose result an agent, a person or another system posts later.
//!
//! A run that reaches one journals the request; when nothing else can progress it stops as
//! waiting ([`RunError::Suspended`]). `approve` / `reject` /
//! `post` journal the result, and the next resume continues from there.

use crate::ctx::Ctx;
use crate::engine::Stopped;
use crate::error::{DecodeProblem, EffectProblem, RunError, TaskError, Waiting};
use crate::inspect::WaitKind;
use crate::journal::{Event, Outcome};
use crate::replay::Replayed;
use crate::store::InboxRefusal;
use crate::Journaled;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;

/// A person's decision at a breakpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Go on.
    Approved {
        /// What the person said.
        feedback: Option<String>,
    },
    /// Do not go on (the process decides what that means).
    Rejected {
        /// What the person said.
        feedback: Option<String>,
    },
    /// Nobody decided before the deadline of [`Ctx::breakpoint_with_timeout`].
    TimedOut,
}

impl Decision {
    /// Whether it is an approval.
    pub fn is_approved(&self) -> bool {
        matches!(self, Decision::Approved { .. })
    }

    /// The feedback, if any.
    pub fn feedback(&self) -> Option<&str> {
        match self {
            Decision::Approved { feedback } | Decision::Rejected { feedback } => {
                feedback.as_deref()
            }
            Decision::TimedOut => None,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        format!("{at}: {}", e.into_inner())
    })
}

/// Reads a journaled effect result: `T` for a success, a `TaskError` for a failure. The error
/// names the expected type and the field that does not fit.
fn decode_outcome<T: serde::de::DeserializeOwned>(
    outcome: &Outcome,
) -> Result<Result<T, TaskError>, String> {
    match outcome {
        Outcome::Ok(v) => decode::<T>(v)
            .map(Ok)
            .map_err(|why| format!("`{}`{why}", std::any::type_name::<T>())),
        Outcome::Err(v) => decode::<TaskError>(v).map(Err).map_err(|why| {
            format!("`TaskError` (`{{\"kind\": \"failed\", \"message\": \"..\"}}`){why}")
        }),
    }
}

/// The result of a resolved effect, or a fatal error for the run when it does not fit
/// (`problem` says whose result it was).
pub(crate) async fn resolve<T: Journaled>(
    run: &crate::engine::RunState,
    problem: DecodeProblem,
    outcome: &Outcome,
) -> Result<T, TaskError> {
    match decode_outcome::<T>(outcome) {
        Ok(r) => r,
        Err(message) => {
            run.fail(RunError::Decode { problem, message });
            std::future::pending().await
        }
    }
}

impl Ctx {
    /// Waits for a person to approve or reject. `input` is what they are shown (`tasks
    /// --pending` prints it). The run stops as waiting until `approve` / `reject` and a resume.
    ///
    /// ```
    /// use minder::inspect::WaitKind;
    /// use minder::prelude::*;
    /// use minder::RunError;
    ///
    /// #[process]
    /// async fn release(ctx: &Ctx, version: String) -> Result<String, ProcessError> {
    ///     let decision = ctx.breakpoint("approve", format!("release {version}?")).await;
    ///     if !decision.is_approved() {
    ///         return Err(ProcessError::msg("not approved"));
    ///     }
    ///     Ok(format!("released {version}"))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = Runner::in_memory();
    /// // The run stops at the breakpoint, saved as waiting.
    /// let Err(RunError::Suspended { run_id, waiting }) = runner.run::<release>("1.2".into()).await
    /// else {
    ///     panic!("the run did not wait")
    /// };
    /// assert_eq!((waiting[0].kind, waiting[0].key.as_str()), (WaitKind::Breakpoint, "approve#0"));
    /// // A person decides (`approve <run> approve#0` on the command line); the run goes on.
    /// let yes = Decision::Approved { feedback: None };
    /// runner.decide(&run_id, "approve#0", yes).await.unwrap();
    /// let done = runner.resume::<release>(&run_id).await.unwrap();
    /// assert_eq!(done.output, "released 1.2");
    /// # }
    /// ```
    #[track_caller]
    pub fn breakpoint(
        &self,
        name: &str,
        input: impl Serialize,
    ) -> impl Future<Output = Decision> + Send + '_ {
        let (name, input, site) = (name.to_string(), serde_json::to_value(input), self.site());
        async move { self.decision(name, input, None, site).await }
    }

    /// Like [`Ctx::breakpoint`], but if nobody decides within `timeout` the decision is
    /// [`Decision::TimedOut`]. The deadline is journaled: a run resumed after it gets
    /// `TimedOut` at once; `resume --wait` wakes up for it; a decision that comes after it is
    /// refused.
    #[track_caller]
    pub fn breakpoint_with_timeout(
        &self,
        name: &str,
        input: impl Serialize,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Decision> + Send + '_ {
        let (name, input, site) = (name.to_string(), serde_json::to_value(input), self.site());
        async move {
            let deadline = self.deadline_after(timeout, site.0.clone());
            self.decision(name, input, Some(deadline), site).await
        }
    }

    async fn decision(
        &self,
        name: String,
        input: serde_json::Result<Value>,
        deadline: Option<u64>,
        site: (String, Option<u32>),
    ) -> Decision {
        let outcome = self
            .effect::<Decision>(WaitKind::Breakpoint, name, input, deadline, site)
            .await;
        match outcome {
            Ok(d) => d,
            Err(e) => Decision::Rejected {
                feedback: Some(e.message),
            },
        }
    }

    /// Waits for the result of a task done outside the program (an agent, a person, another
    /// system), typed `T`. The run stops as waiting until `post` and a resume; `post` checks the
    /// value against `T`.
    ///
    /// ```
    /// use minder::prelude::*;
    /// use minder::RunError;
    ///
    /// #[data]
    /// struct Review {
    ///     score: u32,
    /// }
    ///
    /// #[process]
    /// async fn reviewed(ctx: &Ctx, draft: String) -> Result<u32, ProcessError> {
    ///     let review: Review = ctx.external("review", &draft).await?;
    ///     Ok(review.score)
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let runner = Runner::in_memory();
    /// let Err(RunError::Suspended { run_id, waiting }) = runner.run::<reviewed>("v1".into()).await
    /// else {
    ///     panic!("the run did not wait")
    /// };
    /// // Whoever did the review posts its result (`post <run> review#0 --value '{..}'`).
    /// let result = serde_json::json!({ "score": 9 });
    /// runner.post::<reviewed>(&run_id, &waiting[0].key, Ok(result)).await.unwrap();
    /// assert_eq!(runner.resume::<reviewed>(&run_id).await.unwrap().output, 9);
    /// # }
    /// ```
    #[track_caller]
    pub fn external<T: Journaled>(
        &self,
        name: &str,
        input: impl Serialize,
    ) -> impl Future<Output = Result<T, TaskError>> + Send + '_ {
        let (name, input, site) = (name.to_string(), serde_json::to_value(input), self.site());
        async move {
            self.effect::<T>(WaitKind::External, name, input, None, site)
                .await
        }
    }

    async fn effect<T: Journaled>(
        &self,
        kind: WaitKind,
        name: String,
        input: serde_json::Result<Value>,
        deadline: Option<u64>,
        (location, node): (String, Option<u32>),
    ) -> Result<T, TaskError> {
        let scope = self.scope();
        let mut step = scope.next_key(&name);
        let key = step.key.clone();
        let run = scope.run.clone();
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                run.fail(RunError::Decode {
                    problem: DecodeProblem::EffectInput { key },
                    message: e.to_string(),
                });
                return std::future::pending().await;
            }
        };
        let code = || format!("asks for {kind} `{name}` with input {input} at {location}");
        let mut requested_now = false;
        match run.replayed(&mut step) {
            Err(Stopped) => return std::future::pending().await,
            Ok(Some(Replayed::Effect {
                kind: k,
                name: n,
                input: journaled,
                resolved,
                location: was,
            })) => {
                if k != kind.as_str() || n != name || journaled != input {
                    let journal = Replayed::Effect {
                        kind: k,
                        name: n,
                        input: journaled,
                        resolved,
                        location: was,
                    };
                    run.diverged(&step, &journal, code());
                    return std::future::pending().await;
                }
                if let Some(outcome) = resolved {
                    let problem = DecodeProblem::EffectResult { key };
                    return resolve(&run, problem, &outcome).await;
                }
            }
            Ok(Some(other)) => {
                run.diverged(&step, &other, code());
                return std::future::pending().await;
            }
            Ok(None) => requested_now = true,
        }
        if requested_now {
            run.append(Event::EffectRequested {
                key: key.clone(),
                kind: kind.as_str().to_string(),
                name: name.to_string(),
                input: input.clone(),
                due_ms: deadline,
                seq: Some(step.seq),
                location: Some(location.clone()),
                node,
            });
        }
        if run.posting.is_none() {
            let now = crate::engine::unix_millis(run.hooks.now());
            let timed_out = deadline
                .filter(|d| now >= *d)
                .map(|_| Outcome::Ok(serde_json::json!({ "decision": "timed_out" })));
            if let Some(outcome) = timed_out.or_else(|| run.hooks.answer(kind, &name, &input)) {
                let _active = run.active();
                run.append(Event::EffectResolved {
                    key: key.clone(),
                    outcome: outcome.clone(),
                });
                if let Err(e) = run.flush().await {
                    run.fail(RunError::Store(e));
                    return std::future::pending().await;
                }
                return resolve(&run, DecodeProblem::TestAnswer { key }, &outcome).await;
            }
        }
        if let Some(posting) = run.posting.as_ref().filter(|p| p.key == key) {
            let checked = decode_outcome::<T>(&posting.outcome)
                .map(drop)
                .map_err(|detail| RunError::Effect {
                    run_id: run.run_id.clone(),
                    key: key.clone(),
                    problem: EffectProblem::InvalidValue { detail },
                });
            // Counted as progressing while the result is written, so the run is not taken
            // for idle in the meantime.
            let _active = run.active();
            let written = match checked {
                Ok(()) => {
                    let event = Event::EffectResolved {
                        key: key.clone(),
                        outcome: posting.outcome.clone(),
                    };
                    match run.log().append(event) {
                        Ok(()) => run.log().flush().await.map_err(RunError::Store),
                        Err(e) => Err(RunError::Store(e)),
                    }
                }
                Err(why) => Err(why),
            };
            *posting.result.lock().unwrap() = Some(written);
            // Stops the replay: the runner reads the result from the posting.
            run.fail(RunError::Effect {
                run_id: run.run_id.clone(),
                key: key.clone(),
                problem: EffectProblem::NotReached,
            });
            return std::future::pending().await;
        }
        if requested_now && run.posting.is_none() {
            // Durable before it waits: whoever answers finds the request in the journal, even
            // while this writer goes on with other branches.
            let _active = run.active();
            if let Err(e) = run.flush().await {
                run.fail(RunError::Store(e));
                return std::future::pending().await;
            }
        }
        let waiting = run.wait_for(Waiting {
            key: key.clone(),
            kind,
            name: name.to_string(),
            input,
            due_ms: deadline,
        });
        // Nothing here resolves it, but an answer may come through the run's inbox while
        // this writer holds the run (see `store::InboxItem`): checked as `post` and `decide`
        // check, journaled, and the verdict left for the poster.
        loop {
            let item = std::future::poll_fn(|cx| run.poll_inbox(&key, cx)).await;
            let now = crate::engine::unix_millis(run.hooks.now());
            let refused = match deadline.filter(|due| now >= *due) {
                Some(due_ms) => Some(InboxRefusal::TimedOut { due_ms }),
                None => decode_outcome::<T>(&item.outcome)
                    .err()
                    .map(|detail| InboxRefusal::InvalidValue { detail }),
            };
            if let Some(why) = refused {
                run.answer_inbox(&item, Err(why)).await;
                continue;
            }
            let _active = run.active();
            drop(waiting);
            run.append(Event::EffectResolved {
                key: key.clone(),
                outcome: item.outcome.clone(),
            });
            if let Err(e) = run.flush().await {
                run.fail(RunError::Store(e));
                return std::future::pending().await;
            }
            run.answer_inbox(&item, Ok(())).await;
            for other in run.take_inbox_rest(&key) {
                run.answer_inbox(&other, Err(InboxRefusal::AlreadyResolved))
                    .await;
            }
            return resolve(&run, DecodeProblem::EffectResult { key }, &item.outcome).await;
        }
    }
}

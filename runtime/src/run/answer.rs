//! Answers to a run from outside: a posted result (`post`), a decision on a breakpoint
//! (`decide`), a cancel request (`cancel`), and the check that an effect is pending.

use super::*;

impl Runner {
    /// Posts the result of a pending external task. The run is replayed (nothing runs, nothing
    /// else is written) up to the effect, which checks `value` against the task's output type:
    /// a value that does not fit is an error naming the type and the field, and nothing is
    /// written. `Err(value)` posts a failure (a `TaskError`). Then [`Runner::resume`] continues.
    ///
    /// While another writer holds the run (a worker driving its other branches), the result
    /// goes to the run's inbox: the holder checks it the same way and journals it, and this
    /// waits for its verdict (see [`crate::store::InboxItem`]).
    pub async fn post<P: Process>(
        &self,
        run_id: &str,
        effect: &str,
        result: Result<Value, Value>,
    ) -> Result<(), RunError> {
        pending_effect(
            &self.store.read(run_id).await?,
            run_id,
            effect,
            WaitKind::External,
        )?;
        let outcome = match result {
            Ok(v) => Outcome::Ok(v),
            Err(e) => Outcome::Err(e),
        };
        self.answer_effect(run_id, effect, outcome.clone(), || {
            self.post_now::<P>(run_id, effect, outcome.clone())
        })
        .await
    }

    /// [`Runner::post`] on a run nobody else holds.
    async fn post_now<P: Process>(
        &self,
        run_id: &str,
        effect: &str,
        outcome: Outcome,
    ) -> Result<(), RunError> {
        let posting = Arc::new(Posting {
            check: false,
            key: effect.to_string(),
            outcome,
            result: Mutex::new(None),
        });
        let replayed = self.resume_with::<P>(run_id, Some(posting.clone())).await;
        let checked = posting.result.lock().unwrap().take();
        match checked {
            Some(checked) => checked,
            None => Err(replayed.err().unwrap_or_else(|| RunError::Effect {
                run_id: run_id.to_string(),
                key: effect.to_string(),
                problem: EffectProblem::NotReached,
            })),
        }
    }

    /// Approves or rejects a pending breakpoint. Then [`Runner::resume`] continues. While
    /// another writer holds the run, the decision goes to the run's inbox, as with
    /// [`Runner::post`].
    pub async fn decide(
        &self,
        run_id: &str,
        breakpoint: &str,
        decision: crate::effects::Decision,
    ) -> Result<(), RunError> {
        // Checked on the journal as it is (again once the run is opened, or by its holder).
        let events = self.store.read(run_id).await?;
        self.decidable(&events, run_id, breakpoint)?;
        let value = serde_json::to_value(&decision).expect("a decision is plain data");
        let outcome = Outcome::Ok(value);
        self.answer_effect(run_id, breakpoint, outcome.clone(), || {
            self.decide_now(run_id, breakpoint, outcome.clone())
        })
        .await
    }

    /// [`Runner::decide`] on a run nobody else holds.
    async fn decide_now(
        &self,
        run_id: &str,
        breakpoint: &str,
        outcome: Outcome,
    ) -> Result<(), RunError> {
        let OpenRun { events, log, .. } = self.store.open(run_id).await?;
        self.decidable(&events, run_id, breakpoint)?;
        log.append(Event::EffectResolved {
            key: breakpoint.to_string(),
            outcome,
        })?;
        log.close().await?;
        Ok(())
    }

    /// Whether the journal `events` waits for a decision on `breakpoint`, before its deadline.
    fn decidable(&self, events: &[Event], run_id: &str, breakpoint: &str) -> Result<(), RunError> {
        let due = pending_effect(events, run_id, breakpoint, WaitKind::Breakpoint)?;
        let now = unix_millis(self.hooks.now());
        match due.filter(|due| now >= *due) {
            Some(due_ms) => Err(RunError::Effect {
                run_id: run_id.to_string(),
                key: breakpoint.to_string(),
                problem: EffectProblem::TimedOut { due_ms },
            }),
            None => Ok(()),
        }
    }

    /// Cancels a run: it is journaled as cancelled and never runs again. A run that another
    /// writer is driving (another process, or another task of this one) is asked to stop: that
    /// writer drops the process body (unfinished steps are journaled as cancelled, command
    /// tasks killed), journals the cancellation and returns [`RunError::Cancelled`]; this call
    /// waits for that, up to [`CANCEL_WAIT`].
    ///
    /// The run's child processes ([`Ctx::child`]) that have not ended are cancelled too (and
    /// theirs, with the same reason); a child that is cancelled on its own ends its parent's
    /// step with a [`TaskErrorKind::Cancelled`](crate::TaskErrorKind::Cancelled) error.
    pub async fn cancel(&self, run_id: &str, reason: Option<String>) -> Result<(), RunError> {
        self.cancel_tree(run_id, reason).await
    }

    /// [`Runner::cancel`] for `run_id` alone (not its children).
    pub(super) async fn cancel_one(
        &self,
        run_id: &str,
        reason: Option<String>,
    ) -> Result<(), RunError> {
        let ended = |events: &[Event]| events.iter().rev().find_map(Event::run_end);
        let refused = |problem| RunError::NotCancelled {
            run_id: run_id.to_string(),
            problem,
        };
        let end_of = |end: &str| match end {
            "completed" => End::Completed,
            "failed" => End::Failed,
            _ => End::Cancelled,
        };
        // `Some(since)` once the writer holding the run was asked to cancel it.
        let mut asked: Option<tokio::time::Instant> = None;
        loop {
            // Whoever holds the run (now us) decides: journal the cancellation, or say how it
            // ended. A request left for another writer is spent either way.
            let end = match self.store.open(run_id).await {
                Ok(OpenRun { events, log, .. }) => {
                    self.store.clear_cancel_request(run_id).await;
                    match ended(&events) {
                        None => {
                            // Programs a crashed runner left running die with the run.
                            crate::command::kill_orphans(&events).await;
                            log.append(Event::RunCancelled { reason })?;
                            log.close().await?;
                            return Ok(());
                        }
                        end => end,
                    }
                }
                Err(StoreError::Locked(_)) => ended(&self.store.read(run_id).await?),
                Err(e) => return Err(e.into()),
            };
            match (end, asked) {
                // The writer that was asked stopped the run itself.
                (Some("cancelled"), Some(_)) => return Ok(()),
                (Some(ended), Some(_)) => {
                    self.store.clear_cancel_request(run_id).await;
                    let end = end_of(ended);
                    return Err(refused(CancelProblem::EndedFirst { end }));
                }
                (Some(ended), None) => {
                    let end = end_of(ended);
                    return Err(refused(CancelProblem::AlreadyEnded { end }));
                }
                (None, None) => {
                    // Another writer is driving it: ask it to stop.
                    self.store.request_cancel(run_id, reason.clone()).await?;
                    asked = Some(tokio::time::Instant::now());
                }
                (None, Some(since)) if since.elapsed() > CANCEL_WAIT => {
                    let waited = CANCEL_WAIT;
                    return Err(refused(CancelProblem::NotStopped { waited }));
                }
                (None, Some(_)) => {}
            }
            tokio::time::sleep(CANCEL_CHECK / 4).await;
        }
    }
}

/// Checks that `key` is a pending effect of kind `kind` in a journal; returns its deadline
/// (a breakpoint with a timeout), if it has one.
///
/// An effect is pending when it was requested, has no result, and the run still waits for
/// it: a run that suspended since it was requested lists it among what it waits for (an
/// effect whose future was dropped, a `select` loser, is not waited for any more).
pub(crate) fn pending_effect(
    events: &[Event],
    run_id: &str,
    key: &str,
    kind: WaitKind,
) -> Result<Option<u64>, RunError> {
    let mut found = None;
    let mut resolved = false;
    let mut abandoned = false;
    let mut ended = false;
    let mut is_step = false;
    let mut pending: Vec<&str> = Vec::new();
    for e in events {
        match e {
            Event::EffectRequested {
                key: k,
                kind: kd,
                due_ms,
                ..
            } => {
                if k == key {
                    found = Some((kd.as_str(), *due_ms));
                    abandoned = false;
                }
                pending.push(k);
            }
            Event::EffectResolved { key: k, .. } => {
                if k == key {
                    resolved = true;
                }
                pending.retain(|p| p != k);
            }
            Event::Suspended { waiting, .. } => {
                pending.retain(|p| waiting.iter().any(|w| w == p));
                if found.is_some() && !resolved && !waiting.iter().any(|w| w == key) {
                    abandoned = true;
                }
            }
            Event::StepStarted { key: k, .. } if k == key => is_step = true,
            e if e.run_end().is_some() => ended = true,
            _ => {}
        }
    }
    let pending = || pending.iter().map(|p| p.to_string()).collect();
    let err = |problem| {
        Err(RunError::Effect {
            run_id: run_id.to_string(),
            key: key.to_string(),
            problem,
        })
    };
    match found {
        None if is_step => err(EffectProblem::NotAnEffect { pending: pending() }),
        None => err(EffectProblem::Unknown { pending: pending() }),
        Some(_) if resolved => err(EffectProblem::AlreadyResolved),
        Some(_) if ended => err(EffectProblem::RunEnded),
        Some((k, _)) if WaitKind::of_effect(k) != kind => err(EffectProblem::WrongKind {
            actual: WaitKind::of_effect(k),
        }),
        Some(_) if abandoned => err(EffectProblem::Abandoned { pending: pending() }),
        Some((_, due)) => Ok(due),
    }
}

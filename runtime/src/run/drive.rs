//! Driving a run: its body polled with the watches beside it (cancel requests, a lost lease,
//! the inbox while an effect waits), and how it stopped journaled.

use super::*;

impl Runner {
    /// Drives run `run_id` of `P` on `log` from its replay map: delivers answers its inbox
    /// holds, polls the body while looking for cancel requests (and, when another writer could
    /// post one, inbox items) every [`CANCEL_CHECK`] and for a lost lease, and journals how it
    /// stopped: completed, failed, cancelled or suspended.
    pub(super) async fn drive<P: Process>(
        &self,
        run_id: String,
        log: Arc<dyn RunLog>,
        replay: ReplayMap,
        input: P::Input,
        posting: Option<Arc<Posting>>,
        (mode, parent): (Mode, Option<crate::journal::ParentLink>),
    ) -> Result<Finished<P::Output>, RunError> {
        // The parent of a child process driven inline is told by its own step.
        let parent = parent.filter(|_| mode.tell_parent);
        let waits_for_effects = replay.waits_for_effects();
        let state = Arc::new(RunState {
            run_id: run_id.clone(),
            log,
            replay: Mutex::new(replay),
            fatal: Mutex::new(None),
            failed: std::sync::atomic::AtomicBool::new(false),
            waker: futures::task::AtomicWaker::new(),
            observer: self.observer.clone(),
            active: AtomicUsize::new(0),
            waiting: Mutex::new(BTreeMap::new()),
            posting,
            artifacts: self
                .artifacts
                .as_ref()
                .map(|root| root.join(&run_id).join("artifacts")),
            suspend_sleeps_over: self.suspend_sleeps_over,
            hooks: self.hooks.clone(),
            states: self.states.clone(),
            graph: P::graph(),
            driver: Some(Arc::new(child::Driver::new(self.clone(), mode))),
            polling: std::sync::atomic::AtomicBool::new(false),
            store: self.store.clone(),
            inbox: Mutex::new(Default::default()),
        });
        // Answers left in the run's inbox while another writer held it, and not taken (only
        // a run that waits for an effect can have one: no look on the way of every other run).
        if state.posting.is_none() && waits_for_effects {
            if let Ok(items) = self.store.inbox(&run_id).await {
                state.deliver(items);
            }
        }
        let root = Scope::root(state.clone());
        let ctx = Ctx::new(root.clone());
        // What the run waited for when it stopped, taken before the body is dropped (a long
        // sleep leaves the list when its future goes).
        let mut waited_for: Vec<Waiting> = Vec::new();
        // A cancel request from another writer ([`Runner::cancel`]) is looked for every
        // `CANCEL_CHECK` (not on virtual time, where the checks would be all the time there is,
        // nor while a posted result is validated).
        let watch_cancel = state.posting.is_none() && !self.hooks.virtual_time();
        let mut cancel_check = std::pin::pin!(tokio::time::sleep(CANCEL_CHECK));
        let mut cancelled: Option<Option<String>> = None;
        let stop = {
            // A look for a cancel request (and, while an effect waits, for answers in the
            // inbox) under way: the store answers asynchronously.
            let mut looking: Option<BoxFuture<'static, Look>> = None;
            // Whether the look before stopping was made since the body last made progress.
            let mut looked_before_stopping = false;
            let mut body = std::pin::pin!(in_scope(Some(root), P::run(&ctx, input)));
            std::future::poll_fn(|cx| {
                state.waker.register(cx.waker());
                if let Some(fatal) = state.take_fatal() {
                    return Poll::Ready(Err(fatal));
                }
                if watch_cancel {
                    loop {
                        if let Some(look) = looking.as_mut() {
                            let Poll::Ready((found, items)) = look.as_mut().poll(cx) else {
                                break;
                            };
                            looking = None;
                            if let Some(reason) = found {
                                cancelled = Some(reason);
                                return Poll::Ready(Ok(None));
                            }
                            state.deliver(items);
                            let next = tokio::time::Instant::now() + CANCEL_CHECK;
                            cancel_check.as_mut().reset(next);
                        }
                        if cancel_check.as_mut().poll(cx).is_pending() {
                            break;
                        }
                        if state.log().is_lost() {
                            // Another writer took the run: stop now, write nothing more.
                            return Poll::Ready(Err(RunError::Store(StoreError::Fenced(
                                run_id.clone(),
                            ))));
                        }
                        looking = Some(look(&self.store, &run_id, state.waits_for_answers()));
                    }
                }
                state.polling.store(true, Ordering::SeqCst);
                let polled = body.as_mut().poll(cx);
                state.polling.store(false, Ordering::SeqCst);
                if let Some(fatal) = state.take_fatal() {
                    return Poll::Ready(Err(fatal));
                }
                match polled {
                    Poll::Ready(result) => Poll::Ready(Ok(Some(result))),
                    // Only effects nobody here can resolve are left: stop and say so.
                    Poll::Pending
                        if state.active.load(Ordering::SeqCst) == 0
                            && (state.posting.is_some()
                                || !state.waiting.lock().unwrap().is_empty()) =>
                    {
                        if watch_cancel {
                            // One last look (an answer may be in the inbox, a cancel asked)
                            // before letting the run go; a look under way decides.
                            if looking.is_some() {
                                return Poll::Pending;
                            }
                            if !looked_before_stopping {
                                looked_before_stopping = true;
                                looking = Some(look(&self.store, &run_id, true));
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
                        }
                        waited_for = state.waiting.lock().unwrap().values().cloned().collect();
                        Poll::Ready(Ok(None))
                    }
                    Poll::Pending => {
                        looked_before_stopping = false;
                        Poll::Pending
                    }
                }
            })
            .await
        };
        // The body is gone: answers no effect took are for effects it no longer waits for.
        for item in state.take_inbox_left() {
            let abandoned = Err(crate::store::InboxRefusal::Abandoned);
            state.answer_inbox(&item, abandoned).await;
        }
        let stop = match stop {
            Err(fatal) => {
                // What was journaled before the error stays: make it durable.
                let _ = state.flush().await;
                return Err(fatal);
            }
            Ok(stop) => stop,
        };
        if let Some(reason) = cancelled {
            // The body is gone (its unfinished steps journaled as cancelled): say why it ended.
            state.append(Event::RunCancelled {
                reason: reason.clone(),
            });
            state.flush().await?;
            self.store.clear_cancel_request(&run_id).await;
            drop(state);
            self.cancelled(&run_id, reason.clone(), parent.is_some())
                .await;
            return Err(RunError::Cancelled { run_id, reason });
        }
        if let Some(posting) = &state.posting {
            if posting.check {
                // Replaying a saved journal: the body's end, or `Effect` when it got stuck.
                return match stop {
                    Some(Ok(output)) => Ok(Finished { run_id, output }),
                    Some(Err(e)) => Err(RunError::Failed {
                        process: P::NAME.to_string(),
                        message: e.to_string(),
                    }),
                    None => Err(RunError::Effect {
                        run_id,
                        key: String::new(),
                        problem: EffectProblem::NotReached,
                    }),
                };
            }
            let _ = state.flush().await;
            return Err(RunError::Effect {
                run_id,
                key: posting.key.clone(),
                problem: EffectProblem::NotReached,
            });
        }
        let result = match stop {
            Some(result) => result,
            None => {
                let waiting = waited_for;
                state.append(Event::Suspended {
                    waiting: waiting.iter().map(|w| w.key.clone()).collect(),
                    due_ms: waiting.iter().filter_map(|w| w.due_ms).min(),
                });
                state.flush().await?;
                return Err(RunError::Suspended { run_id, waiting });
            }
        };
        match result {
            Ok(output) => {
                let value = serde_json::to_value(&output).map_err(|e| RunError::Decode {
                    problem: DecodeProblem::RunOutput,
                    message: e.to_string(),
                })?;
                // A child process tells its parent before its end is durable and, if the
                // parent could not be told then (it was held), after (see `run::child`).
                let outcome = Outcome::Ok(value.clone());
                let told = self.tell_parent(parent.as_ref(), &run_id, &outcome).await;
                state.append(Event::RunCompleted { output: value });
                state.flush().await?;
                if !told {
                    self.tell_parent(parent.as_ref(), &run_id, &outcome).await;
                }
                Ok(Finished { run_id, output })
            }
            Err(e) => {
                let message = e.to_string();
                let outcome = child::failed(P::NAME, &run_id, &message);
                let told = self.tell_parent(parent.as_ref(), &run_id, &outcome).await;
                state.append(Event::RunFailed {
                    error: message.clone(),
                });
                state.flush().await?;
                if !told {
                    self.tell_parent(parent.as_ref(), &run_id, &outcome).await;
                }
                Err(RunError::Failed {
                    process: P::NAME.to_string(),
                    message,
                })
            }
        }
    }
}

/// What a look at the store found: a cancel request (with its reason), and inbox items.
type Look = (Option<Option<String>>, Vec<crate::store::InboxItem>);

/// Looks for a cancel request of `run_id` and, when `inbox`, for items in its inbox.
fn look(store: &Arc<dyn Store>, run_id: &str, inbox: bool) -> BoxFuture<'static, Look> {
    let (store, run_id) = (store.clone(), run_id.to_string());
    Box::pin(async move {
        let cancel = store.cancel_request(&run_id).await;
        let items = match inbox {
            true => store.inbox(&run_id).await.unwrap_or_default(),
            false => Vec::new(),
        };
        (cancel, items)
    })
}

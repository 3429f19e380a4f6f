//! Answers to a run's waiting effects (`post`, `approve`, `reject`) while another writer holds
//! the run: left in the run's inbox, for the holder to check and journal, and its verdict
//! waited for. A run that is let go meanwhile is answered here, as when it was not held.

use crate::error::{EffectProblem, RunError};
use crate::journal::{Event, Outcome};
use crate::run::{Runner, CANCEL_WAIT};
use crate::store::{InboxAnswer, InboxItem, InboxRefusal, StoreError};
use std::future::Future;
use std::time::Duration;

/// How often a poster looks again: for the holder's verdict, or whether the run was let go.
const LOOK_AGAIN: Duration = Duration::from_millis(50);

/// Every how many looks for the verdict the poster also tries to open the run.
const TRY_AGAIN_EVERY: u32 = 10;

impl Runner {
    /// Answers the effect `key` of `run_id` with `outcome`: `direct` does it on the run when
    /// nobody holds it (it fails with [`StoreError::Locked`] when somebody does); otherwise
    /// the answer goes to the run's inbox, and this waits for the holder's verdict (up to
    /// [`CANCEL_WAIT`]) or for the run to be let go.
    pub(crate) async fn answer_effect<F, Fut>(
        &self,
        run_id: &str,
        key: &str,
        outcome: Outcome,
        mut direct: F,
    ) -> Result<(), RunError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), RunError>>,
    {
        let store = self.store().clone();
        let mut posted: Option<(InboxItem, tokio::time::Instant)> = None;
        let mut looks = 0u32;
        loop {
            if let Some((item, _)) = &posted {
                if let Some(answer) = store.take_inbox_answer(run_id, &item.id, false).await? {
                    return verdict(run_id, key, answer);
                }
                // Whether the run was let go is asked less often (opening a held run may
                // take a while: a store retries a busy lock).
                looks += 1;
                if !looks.is_multiple_of(TRY_AGAIN_EVERY) {
                    tokio::time::sleep(LOOK_AGAIN).await;
                    continue;
                }
            }
            let tried = direct().await;
            if !matches!(tried, Err(RunError::Store(StoreError::Locked(_)))) {
                // Nobody holds the run now: answered here, or refused as the run stands.
                let Some((item, _)) = posted else {
                    return tried;
                };
                if let Some(answer) = store.take_inbox_answer(run_id, &item.id, true).await? {
                    return verdict(run_id, key, answer);
                }
                return match tried {
                    // The holder journaled this very answer, then stopped before its verdict.
                    Err(RunError::Effect {
                        problem: EffectProblem::AlreadyResolved,
                        ..
                    }) if resolved_with(&store.read(run_id).await?, key, &outcome) => Ok(()),
                    other => other,
                };
            }
            match &posted {
                None => {
                    let item = InboxItem::new(key, outcome.clone());
                    store.post_to_inbox(run_id, item.clone()).await?;
                    posted = Some((item, tokio::time::Instant::now()));
                }
                Some((_, since)) if since.elapsed() > CANCEL_WAIT => {
                    return Err(RunError::Effect {
                        run_id: run_id.to_string(),
                        key: key.to_string(),
                        problem: EffectProblem::InInbox {
                            waited: CANCEL_WAIT,
                        },
                    });
                }
                Some(_) => {}
            }
            tokio::time::sleep(LOOK_AGAIN).await;
        }
    }
}

/// The holder's verdict as the error `post` or `decide` would have returned.
fn verdict(run_id: &str, key: &str, answer: InboxAnswer) -> Result<(), RunError> {
    let problem = match answer {
        Ok(()) => return Ok(()),
        Err(InboxRefusal::InvalidValue { detail }) => EffectProblem::InvalidValue { detail },
        Err(InboxRefusal::TimedOut { due_ms }) => EffectProblem::TimedOut { due_ms },
        Err(InboxRefusal::AlreadyResolved) => EffectProblem::AlreadyResolved,
        Err(InboxRefusal::Abandoned) => EffectProblem::Abandoned {
            pending: Vec::new(),
        },
    };
    Err(RunError::Effect {
        run_id: run_id.to_string(),
        key: key.to_string(),
        problem,
    })
}

/// Whether the journal resolved `key` with `outcome`.
fn resolved_with(events: &[Event], key: &str, outcome: &Outcome) -> bool {
    events.iter().any(
        |e| matches!(e, Event::EffectResolved { key: k, outcome: o } if k == key && o == outcome),
    )
}

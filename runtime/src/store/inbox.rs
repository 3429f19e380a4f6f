//! The inbox: a result or decision for a waiting effect of a run that another writer holds.
//!
//! A run waiting for a person is let go, so `post`, `approve` and `reject` open it and journal
//! the answer themselves. A run can also wait while its writer still holds it: one branch of a
//! `parallel!` waits for an external result while another runs a long task. The answer then goes
//! to the run's inbox: the holder looks there while the run waits (and when it opens the run),
//! checks the answer as `post` would (the effect's output type, a breakpoint's deadline),
//! journals it or refuses it, and leaves its verdict for the poster, which waits for it.

use crate::journal::Outcome;
use serde::{Deserialize, Serialize};

/// A result or decision left in a run's inbox for the writer that holds the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// The item's id (unique in the store; a ULID).
    pub id: String,
    /// The key of the waiting effect it answers.
    pub key: String,
    /// The answer: a posted result, a posted failure, or a breakpoint's decision.
    pub outcome: Outcome,
}

impl InboxItem {
    /// A new item for the effect `key`.
    pub fn new(key: impl Into<String>, outcome: Outcome) -> Self {
        InboxItem {
            id: super::new_id(),
            key: key.into(),
            outcome,
        }
    }
}

/// The holder's verdict on an inbox item: journaled, or refused with why.
pub type InboxAnswer = Result<(), InboxRefusal>;

/// Why the holder of a run refused an inbox item (what `post`, `approve` or `reject` would
/// have said had the run not been held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
#[non_exhaustive]
pub enum InboxRefusal {
    /// The value does not fit the effect's output type.
    InvalidValue {
        /// The type, the field and serde's message.
        detail: String,
    },
    /// The breakpoint's deadline had passed.
    TimedOut {
        /// The deadline, in milliseconds since the epoch.
        due_ms: u64,
    },
    /// Another item answered the effect first.
    AlreadyResolved,
    /// The run no longer waits for the effect (another branch went on without it, or the run
    /// ended).
    Abandoned,
}

/// The inbox of a store that keeps runs in memory.
#[derive(Debug, Default)]
pub(super) struct MemoryInbox {
    /// Per run: its items, each with the holder's answer once given.
    items: std::collections::HashMap<String, Vec<(InboxItem, Option<InboxAnswer>)>>,
}

impl MemoryInbox {
    pub(super) fn post(&mut self, run_id: &str, item: InboxItem) {
        self.items
            .entry(run_id.to_string())
            .or_default()
            .push((item, None));
    }

    pub(super) fn unanswered(&self, run_id: &str) -> Vec<InboxItem> {
        let items = self
            .items
            .get(run_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        items
            .iter()
            .filter(|(_, answer)| answer.is_none())
            .map(|(item, _)| item.clone())
            .collect()
    }

    pub(super) fn answer(&mut self, run_id: &str, id: &str, answer: InboxAnswer) {
        let items = self.items.get_mut(run_id).into_iter().flatten();
        if let Some(entry) = items.into_iter().find(|(item, _)| item.id == id) {
            entry.1 = Some(answer);
        }
    }

    pub(super) fn take_answer(
        &mut self,
        run_id: &str,
        id: &str,
        withdraw: bool,
    ) -> Option<InboxAnswer> {
        let items = self.items.get_mut(run_id)?;
        let at = items.iter().position(|(item, _)| item.id == id)?;
        if items[at].1.is_none() && !withdraw {
            return None;
        }
        let (_, answer) = items.remove(at);
        if items.is_empty() {
            self.items.remove(run_id);
        }
        answer
    }

    pub(super) fn forget(&mut self, run_id: &str) {
        self.items.remove(run_id);
    }
}

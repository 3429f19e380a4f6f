//! Task state: the shared resources (a database pool, an HTTP client, a configuration) a
//! runner hands to the tasks of its runs, one value per type. Never journaled: a task takes
//! it as a `#[state]` parameter, which is not one of its journaled arguments and not part of
//! its step key; the generated code looks the value up at each call.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A value a task can take as `#[state]`: shared between every run and every task running at
/// once, so `Send + Sync + 'static` (and sized: a trait object is registered behind an `Arc`).
#[diagnostic::on_unimplemented(
    message = "task state must be `Send + Sync + 'static`, and `{Self}` is not",
    label = "not shareable between the tasks running at once",
    note = "state is shared by every task of every run of a runner: wrap what is not `Sync` in a `Mutex` (`&std::sync::Mutex<..>`), and own it (`'static`)"
)]
pub trait TaskState: Send + Sync + 'static {}

impl<T: Send + Sync + 'static> TaskState for T {}

/// One registered value and its type's name (for the error when it is missing).
#[derive(Clone)]
struct Entry {
    value: Arc<dyn Any + Send + Sync>,
    name: &'static str,
}

/// The values a runner hands to its tasks, by type. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct StateMap(Arc<HashMap<TypeId, Entry>>);

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.0.values().map(|e| e.name).collect();
        names.sort_unstable();
        f.debug_set().entries(names).finish()
    }
}

/// A `#[state]` parameter's type has no value in the runner's [`StateMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingState {
    /// The type's name (`std::any::type_name`).
    pub type_name: &'static str,
}

impl StateMap {
    /// Registers `value` as the state of type `T`, replacing the one registered before.
    pub(crate) fn insert<T: TaskState>(&mut self, value: T) {
        Arc::make_mut(&mut self.0).insert(
            TypeId::of::<T>(),
            Entry {
                value: Arc::new(value),
                name: std::any::type_name::<T>(),
            },
        );
    }

    /// Adds every value of `other`, replacing those of the same types.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn extend(&mut self, other: &StateMap) {
        if other.0.is_empty() {
            return;
        }
        let mine = Arc::make_mut(&mut self.0);
        for (id, entry) in other.0.iter() {
            mine.insert(*id, entry.clone());
        }
    }

    /// The state of type `T`.
    pub fn get<T: TaskState>(&self) -> Result<Arc<T>, MissingState> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|e| e.value.clone().downcast::<T>().ok())
            .ok_or(MissingState {
                type_name: std::any::type_name::<T>(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type_and_replaced() {
        let mut map = StateMap::default();
        map.insert(5u32);
        map.insert(String::from("a"));
        let copy = map.clone();
        map.insert(7u32);
        assert_eq!(*map.get::<u32>().unwrap(), 7);
        assert_eq!(
            *copy.get::<u32>().unwrap(),
            5,
            "a clone keeps its own values"
        );
        assert_eq!(
            map.get::<u64>().unwrap_err(),
            MissingState { type_name: "u64" }
        );
        let mut other = StateMap::default();
        other.insert(9u32);
        map.extend(&other);
        assert_eq!(*map.get::<u32>().unwrap(), 9);
        assert_eq!(map.get::<String>().unwrap().as_str(), "a");
    }
}

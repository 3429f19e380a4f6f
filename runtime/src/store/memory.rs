//! [`MemoryStore`]: every journal in memory (tests, benchmarks, embedding).

use super::*;

/// Keeps every journal in memory. Cloning shares the same runs.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    runs: Arc<Mutex<HashMap<String, Arc<MemoryLog>>>>,
    cancels: Arc<Mutex<HashMap<String, Option<String>>>>,
    inbox: Arc<Mutex<inbox::MemoryInbox>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events of a run, for inspection in tests.
    pub fn events(&self, run_id: &str) -> Option<Vec<Event>> {
        let runs = self.runs.lock().unwrap();
        runs.get(run_id)
            .map(|log| log.events.lock().unwrap().clone())
    }

    /// Replaces a run's journal (for tests that edit or truncate a journal).
    pub fn set_events(&self, run_id: &str, events: Vec<Event>) {
        let mut runs = self.runs.lock().unwrap();
        runs.insert(
            run_id.to_string(),
            Arc::new(MemoryLog {
                events: Mutex::new(events),
                held: Mutex::new(false),
                written: Mutex::new(SystemTime::now()),
            }),
        );
    }
}

#[derive(Debug)]
struct MemoryLog {
    events: Mutex<Vec<Event>>,
    held: Mutex<bool>,
    written: Mutex<SystemTime>,
}

#[derive(Debug)]
struct MemoryWriter {
    log: Arc<MemoryLog>,
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        *self.log.held.lock().unwrap() = false;
    }
}

impl RunLog for MemoryWriter {
    fn append(&self, event: Event) -> Result<(), StoreError> {
        self.log.events.lock().unwrap().push(event);
        *self.log.written.lock().unwrap() = SystemTime::now();
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

fn hold(run_id: &str, log: &Arc<MemoryLog>) -> Result<Arc<dyn RunLog>, StoreError> {
    let mut held = log.held.lock().unwrap();
    if *held {
        return Err(StoreError::Locked(run_id.to_string()));
    }
    *held = true;
    Ok(Arc::new(MemoryWriter { log: log.clone() }))
}

impl MemoryStore {
    fn open_now(&self, run_id: &str) -> Result<OpenRun, StoreError> {
        validate_run_id(run_id)?;
        let log = self
            .runs
            .lock()
            .unwrap()
            .get(run_id)
            .cloned()
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
        let writer = hold(run_id, &log)?;
        let events = log.events.lock().unwrap().clone();
        Ok(OpenRun::new(events, writer))
    }

    fn create_now(&self, run_id: &str, first: Event) -> Result<Arc<dyn RunLog>, StoreError> {
        validate_run_id(run_id)?;
        let mut runs = self.runs.lock().unwrap();
        if runs.contains_key(run_id) {
            return Err(StoreError::RunExists(run_id.to_string()));
        }
        let log = Arc::new(MemoryLog {
            events: Mutex::new(vec![first]),
            held: Mutex::new(false),
            written: Mutex::new(SystemTime::now()),
        });
        runs.insert(run_id.to_string(), log.clone());
        hold(run_id, &log)
    }

    fn delete_now(&self, run_id: &str) -> Result<(), StoreError> {
        validate_run_id(run_id)?;
        let mut runs = self.runs.lock().unwrap();
        let log = runs
            .get(run_id)
            .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))?;
        if *log.held.lock().unwrap() {
            return Err(StoreError::Locked(run_id.to_string()));
        }
        runs.remove(run_id);
        self.cancels.lock().unwrap().remove(run_id);
        self.inbox.lock().unwrap().forget(run_id);
        Ok(())
    }
}

impl Store for MemoryStore {
    fn create<'a>(
        &'a self,
        run_id: &'a str,
        first: Event,
    ) -> BoxFuture<'a, Result<Arc<dyn RunLog>, StoreError>> {
        Box::pin(std::future::ready(self.create_now(run_id, first)))
    }

    fn open<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<OpenRun, StoreError>> {
        Box::pin(std::future::ready(self.open_now(run_id)))
    }

    fn read<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<Event>, StoreError>> {
        let read = validate_run_id(run_id).and_then(|()| {
            self.events(run_id)
                .ok_or_else(|| StoreError::UnknownRun(run_id.to_string()))
        });
        Box::pin(std::future::ready(read))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let mut ids: Vec<String> = self.runs.lock().unwrap().keys().cloned().collect();
        ids.sort();
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn delete<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(self.delete_now(run_id)))
    }

    fn last_write<'a>(
        &'a self,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SystemTime>, StoreError>> {
        let runs = self.runs.lock().unwrap();
        let written = match runs.get(run_id) {
            Some(log) => Ok(Some(*log.written.lock().unwrap())),
            None => Err(StoreError::UnknownRun(run_id.to_string())),
        };
        Box::pin(std::future::ready(written))
    }

    fn request_cancel<'a>(
        &'a self,
        run_id: &'a str,
        reason: Option<String>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let requested = if self.runs.lock().unwrap().contains_key(run_id) {
            self.cancels
                .lock()
                .unwrap()
                .insert(run_id.to_string(), reason);
            Ok(())
        } else {
            Err(StoreError::UnknownRun(run_id.to_string()))
        };
        Box::pin(std::future::ready(requested))
    }

    fn cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Option<Option<String>>> {
        let request = self.cancels.lock().unwrap().get(run_id).cloned();
        Box::pin(std::future::ready(request))
    }

    fn clear_cancel_request<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, ()> {
        self.cancels.lock().unwrap().remove(run_id);
        Box::pin(std::future::ready(()))
    }

    fn post_to_inbox<'a>(
        &'a self,
        run_id: &'a str,
        item: InboxItem,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let posted = if self.runs.lock().unwrap().contains_key(run_id) {
            self.inbox.lock().unwrap().post(run_id, item);
            Ok(())
        } else {
            Err(StoreError::UnknownRun(run_id.to_string()))
        };
        Box::pin(std::future::ready(posted))
    }

    fn inbox<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Vec<InboxItem>, StoreError>> {
        let items = self.inbox.lock().unwrap().unanswered(run_id);
        Box::pin(std::future::ready(Ok(items)))
    }

    fn answer_inbox<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        answer: InboxAnswer,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inbox.lock().unwrap().answer(run_id, id, answer);
        Box::pin(std::future::ready(Ok(())))
    }

    fn take_inbox_answer<'a>(
        &'a self,
        run_id: &'a str,
        id: &'a str,
        withdraw: bool,
    ) -> BoxFuture<'a, Result<Option<InboxAnswer>, StoreError>> {
        let answer = self.inbox.lock().unwrap().take_answer(run_id, id, withdraw);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

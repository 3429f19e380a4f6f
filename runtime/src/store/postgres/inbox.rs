//! The inbox: answers posted to a run another writer holds, and the holder's verdicts
//! (`minder_inbox`, announced with `NOTIFY minder_inbox`).

use super::*;

impl PgStore {
    pub(super) async fn post_to_inbox_now(
        &self,
        run_id: &str,
        item: InboxItem,
    ) -> Result<(), StoreError> {
        validate_run_id(run_id)?;
        let client = self.client().await?;
        let outcome = serde_json::to_string(&item.outcome).expect("an outcome is plain data");
        let n = client
            .execute(
                "WITH i AS (INSERT INTO minder_inbox (run_id, id, key, outcome)
                            SELECT run_id, $2, $3, $4 FROM minder_runs WHERE run_id = $1
                            RETURNING run_id)
                 SELECT pg_notify('minder_inbox', run_id) FROM i",
                &[&run_id, &item.id, &item.key, &outcome],
            )
            .await
            .map_err(|e| self.inner.error("cannot post to the run's inbox", e))?;
        if n == 0 {
            return Err(StoreError::UnknownRun(run_id.to_string()));
        }
        Ok(())
    }

    pub(super) async fn inbox_now(&self, run_id: &str) -> Result<Vec<InboxItem>, StoreError> {
        // Asked often while a held run waits: the database only when an item was
        // announced, or now and then in case a notification was missed.
        let announced = self.inner.inboxes.lock().unwrap().remove(run_id);
        {
            let mut looks = self.inner.inbox_looks.lock().unwrap();
            let now = std::time::Instant::now();
            let due = looks
                .get(run_id)
                .is_none_or(|last| now.duration_since(*last) >= INBOX_LOOK);
            if !announced && !due {
                return Ok(Vec::new());
            }
            looks.insert(run_id.to_string(), now);
        }
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, key, outcome FROM minder_inbox
                 WHERE run_id = $1 AND answer IS NULL ORDER BY id",
                &[&run_id],
            )
            .await
            .map_err(|e| self.inner.error("cannot read the run's inbox", e))?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.get(2);
                Ok(InboxItem {
                    id: row.get(0),
                    key: row.get(1),
                    outcome: serde_json::from_str(&outcome).map_err(|e| {
                        StoreError::Corrupt(format!(
                            "an item in the inbox of run `{run_id}` does not decode: {e}"
                        ))
                    })?,
                })
            })
            .collect()
    }

    pub(super) async fn answer_inbox_now(
        &self,
        run_id: &str,
        id: &str,
        answer: InboxAnswer,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let answer = serde_json::to_string(&answer).expect("an answer is plain data");
        client
            .execute(
                "UPDATE minder_inbox SET answer = $3 WHERE run_id = $1 AND id = $2",
                &[&run_id, &id, &answer],
            )
            .await
            .map_err(|e| self.inner.error("cannot answer an inbox item", e))?;
        Ok(())
    }

    pub(super) async fn take_inbox_answer_now(
        &self,
        run_id: &str,
        id: &str,
        withdraw: bool,
    ) -> Result<Option<InboxAnswer>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM minder_inbox
                 WHERE run_id = $1 AND id = $2 AND ($3 OR answer IS NOT NULL)
                 RETURNING answer",
                &[&run_id, &id, &withdraw],
            )
            .await
            .map_err(|e| self.inner.error("cannot take an inbox item", e))?;
        let answer: Option<String> = row.and_then(|row| row.get(0));
        Ok(answer.and_then(|a| serde_json::from_str(&a).ok()))
    }
}

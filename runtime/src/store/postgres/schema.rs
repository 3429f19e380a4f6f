//! The schema and its migration.

use super::*;

/// The schema version this build writes and reads.
pub(super) const SCHEMA_VERSION: i32 = 3;

/// From version 1: event bodies were `jsonb`, parsed by the server on every append and never
/// queried there; `text` keeps the same JSON and costs a step less (see BENCHMARKS.md).
const FROM_1: &str = "ALTER TABLE minder_events ALTER COLUMN body TYPE text USING body::text;
    UPDATE minder_schema SET version = 2;";

/// From version 2: a row held one event and every flush also updated the run's row (its
/// `next_seq`, the fence and the lease), and each event row was checked against the run's row
/// by a foreign key. Since version 3 a row holds the events of one flush (a JSON array; a row
/// of version 2 holds one event object, read as it is), the fence is the row's sequence number
/// (see the module's "Leases and fencing"), the lease is the heartbeat's: a step is one row
/// inserted. The rows already there keep their numbers.
const FROM_2: &str =
    "ALTER TABLE minder_events DROP CONSTRAINT IF EXISTS minder_events_run_id_fkey;
    ALTER TABLE minder_runs DROP COLUMN IF EXISTS next_seq;
    UPDATE minder_schema SET version = 3;";

/// The schema, applied in one transaction under an advisory lock (so concurrent first starts
/// do not race); every statement is idempotent.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS minder_schema (version int NOT NULL);
CREATE TABLE IF NOT EXISTS minder_runs (
    run_id text PRIMARY KEY,
    process text NOT NULL,
    fingerprint text NOT NULL,
    queue text NOT NULL,
    priority int NOT NULL DEFAULT 0,
    state text NOT NULL,
    wake_at bigint,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    lease_until timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    cancel_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS minder_events (
    run_id text NOT NULL,
    seq bigint NOT NULL,
    epoch bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS minder_workers (
    worker_id text PRIMARY KEY,
    host text NOT NULL,
    pid int NOT NULL,
    lease_ms bigint NOT NULL DEFAULT 15000,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS minder_queues (
    name text PRIMARY KEY,
    concurrency int,
    rate_max int,
    rate_period_ms bigint,
    window_start timestamptz,
    window_count int NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS minder_inbox (
    run_id text NOT NULL REFERENCES minder_runs (run_id) ON DELETE CASCADE,
    id text NOT NULL,
    key text NOT NULL,
    outcome text NOT NULL,
    answer text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, id)
);
CREATE INDEX IF NOT EXISTS minder_runs_ready
    ON minder_runs (queue, priority, created_at) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS minder_runs_due ON minder_runs (wake_at) WHERE state = 'due';
CREATE INDEX IF NOT EXISTS minder_runs_held ON minder_runs (owner) WHERE owner IS NOT NULL;
"#;

pub(super) async fn migrate(url: &str, client: &Client) -> Result<(), StoreError> {
    let err = |doing: &str| {
        let doing = doing.to_string();
        move |e| db_error(url, &doing, e)
    };
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7262846373);")
        .await
        .map_err(err("cannot lock the schema"))?;
    let applied = async {
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(err("cannot apply the schema"))?;
        let version: Option<i32> = client
            .query_opt("SELECT max(version) FROM minder_schema", &[])
            .await
            .map_err(err("cannot read the schema version"))?
            .and_then(|row| row.get(0));
        match version {
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::Database {
                url: url.to_string(),
                message: format!(
                    "the database holds the schema of a newer minder (version {v}; this build \
                     knows version {SCHEMA_VERSION}): upgrade minder"
                ),
            }),
            Some(1) => {
                client
                    .batch_execute(FROM_1)
                    .await
                    .map_err(err("cannot migrate the schema from version 1"))?;
                client
                    .batch_execute(FROM_2)
                    .await
                    .map_err(err("cannot migrate the schema from version 2"))
            }
            Some(2) => client
                .batch_execute(FROM_2)
                .await
                .map_err(err("cannot migrate the schema from version 2")),
            Some(_) => Ok(()),
            None => client
                .execute(
                    "INSERT INTO minder_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map(drop)
                .map_err(err("cannot record the schema version")),
        }
    }
    .await;
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = client.batch_execute(end).await;
    applied?;
    ended.map_err(err("cannot commit the schema"))
}

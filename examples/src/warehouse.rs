//! **Task state: a warehouse shared by every run.**
//!
//! The tasks of `fulfil-order` reserve stock in a [`Warehouse`]: a store kept in files (a
//! ledger of stock movements, one JSON line each, and a shipment file per order), opened once
//! and registered on the runner as *task state* ([`Runner::state`], or `Registry::state` for
//! the command line). A task takes it as a `#[state]` parameter, `#[state] warehouse:
//! &Warehouse`, which is neither journaled nor part of the step's arguments: the call is
//! `reserve(line)`, and a resumed run gets the warehouse of the runner that resumes it.
//!
//! The process reserves every line of an order at once (a `ctx.map`: the tasks share one
//! warehouse, which serializes its changes), and then either writes the shipment or, when a
//! line is out of stock, releases what it reserved and reports the order rejected.
//!
//! Every change is recorded under the step's idempotency key ([`minder::idempotency_key`]), so
//! an attempt that runs again after a crash (the step was in flight) changes nothing twice.
//!
//! Quick start: the command line takes the warehouse directory from `MINDER_WAREHOUSE`
//! (default `.minder/warehouse`); `examples/data/warehouse` has a stocked one, to copy (a run
//! changes the stock): `cp -r examples/data/warehouse /tmp/warehouse`, then
//! `MINDER_WAREHOUSE=/tmp/warehouse cargo run -p minder-examples -- run fulfil-order --input
//! examples/data/order-input.json`.

use minder::prelude::*;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The environment variable the command line reads the warehouse directory from.
pub const WAREHOUSE_ENV: &str = "MINDER_WAREHOUSE";

/// The ledger file inside a warehouse directory.
pub const LEDGER: &str = "ledger.jsonl";

/// One change of stock: `delta` units of `sku`, recorded once under `key`.
#[data]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// What made it (a step's idempotency key, or the restocking's own).
    pub key: String,
    /// The item.
    pub sku: String,
    /// Units added (negative: taken).
    pub delta: i64,
}

/// A store of stock levels in a directory: the ledger of [`Movement`]s (the stock of an item is
/// the sum of its movements) and `shipments/<order>.json`. Shared by every task of every run
/// of a runner; one change at a time.
#[derive(Debug)]
pub struct Warehouse {
    dir: PathBuf,
    /// A change reads the ledger, checks it and appends to it: one at a time.
    lock: tokio::sync::Mutex<()>,
}

/// Why a reservation failed.
#[data]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveError {
    /// Not enough units of the item.
    OutOfStock {
        /// The item.
        sku: String,
        /// Units asked for.
        wanted: u64,
        /// Units there were.
        available: u64,
    },
    /// The warehouse could not be read or written (or the task failed otherwise).
    Failed(String),
}

impl std::fmt::Display for ReserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReserveError::OutOfStock {
                sku,
                wanted,
                available,
            } => write!(f, "{sku}: {wanted} wanted, {available} in stock"),
            ReserveError::Failed(message) => f.write_str(message),
        }
    }
}

impl From<TaskError> for ReserveError {
    fn from(e: TaskError) -> Self {
        ReserveError::Failed(e.message)
    }
}

impl From<std::io::Error> for ReserveError {
    fn from(e: std::io::Error) -> Self {
        ReserveError::Failed(e.to_string())
    }
}

impl Warehouse {
    /// The warehouse in `dir` (created on the first change). Nothing is read yet.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Warehouse {
            dir: dir.into(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The warehouse the command line uses: `$MINDER_WAREHOUSE`, else `.minder/warehouse`.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os(WAREHOUSE_ENV).unwrap_or_else(|| ".minder/warehouse".into()))
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every movement, in order.
    pub async fn movements(&self) -> std::io::Result<Vec<Movement>> {
        Ok(self.read_ledger().await?.0)
    }

    /// The movements, and the length of the ledger's complete lines. A last line without its
    /// newline is a write a crash cut short (a kill can land between the pages of one
    /// `write`): it did not happen, and its step runs again under the same key.
    async fn read_ledger(&self) -> std::io::Result<(Vec<Movement>, u64)> {
        let text = match tokio::fs::read_to_string(self.dir.join(LEDGER)).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let movements = complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect::<std::io::Result<_>>()?;
        Ok((movements, complete.len() as u64))
    }

    /// The stock of every item.
    pub async fn stock(&self) -> std::io::Result<BTreeMap<String, u64>> {
        let mut stock = BTreeMap::<String, i64>::new();
        for m in self.movements().await? {
            *stock.entry(m.sku).or_default() += m.delta;
        }
        Ok(stock
            .into_iter()
            .map(|(sku, n)| (sku, n.max(0) as u64))
            .collect())
    }

    /// Adds `delta` units of `sku` under `key`, unless a movement with that key was recorded
    /// already; with a negative `delta`, only when there are enough units. Returns the units
    /// left.
    pub async fn apply(&self, key: &str, sku: &str, delta: i64) -> Result<u64, ReserveError> {
        let _one_at_a_time = self.lock.lock().await;
        let (movements, complete) = self.read_ledger().await?;
        let level = |movements: &[Movement]| -> i64 {
            movements
                .iter()
                .filter(|m| m.sku == sku)
                .map(|m| m.delta)
                .sum()
        };
        let available = level(&movements);
        if movements.iter().any(|m| m.key == key) {
            // Done before (an attempt that ran again after a crash): not twice.
            return Ok(available.max(0) as u64);
        }
        if available + delta < 0 {
            return Err(ReserveError::OutOfStock {
                sku: sku.to_string(),
                wanted: delta.unsigned_abs(),
                available: available.max(0) as u64,
            });
        }
        let movement = Movement {
            key: key.to_string(),
            sku: sku.to_string(),
            delta,
        };
        let mut line = serde_json::to_string(&movement).map_err(std::io::Error::other)?;
        line.push('\n');
        let dir = self.dir.clone();
        // One `write` of a whole line in append mode, then synced. A crash can still cut it
        // (between its pages): the next change cuts the half line off first.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(LEDGER))?;
            if file.metadata()?.len() > complete {
                file.set_len(complete)?;
            }
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok((available + delta) as u64)
    }
}

/// One line of an order.
#[data]
#[derive(Debug, Clone)]
pub struct Line {
    /// The item.
    pub sku: String,
    /// Units.
    pub qty: u64,
}

/// An order.
#[data]
#[derive(Debug, Clone)]
pub struct Order {
    /// Its id (letters, digits, `-`, `_`): the shipment file's name.
    pub id: String,
    /// What it asks for.
    pub lines: Vec<Line>,
}

/// A reservation made: what [`reserve`] returns.
#[data]
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The movement's key (to release it).
    pub key: String,
    /// The item.
    pub sku: String,
    /// Units taken.
    pub qty: u64,
    /// Units left after it.
    pub left: u64,
}

/// How an order went.
#[data]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfilment {
    /// Every line reserved; the shipment file is written.
    Shipped {
        /// The shipment file.
        shipment: String,
        /// Units left of each item of the order.
        left: BTreeMap<String, u64>,
    },
    /// A line could not be reserved; what was reserved was released.
    Rejected {
        /// Why (the items out of stock).
        reason: String,
    },
}

/// Takes a line's units from the warehouse, once per step (the movement's key is the step's
/// idempotency key).
#[task(retries = 2, backoff = "50ms")]
pub async fn reserve(#[state] warehouse: &Warehouse, line: Line) -> Result<Reserved, ReserveError> {
    let key = minder::idempotency_key().unwrap_or_else(|| format!("reserve/{}", line.sku));
    let qty = i64::try_from(line.qty).map_err(|_| ReserveError::Failed("too many".into()))?;
    let left = warehouse.apply(&key, &line.sku, -qty).await?;
    Ok(Reserved {
        key,
        sku: line.sku,
        qty: line.qty,
        left,
    })
}

/// Gives back what a reservation took (once: the movement's key is the reservation's).
#[task(retries = 2, backoff = "50ms")]
pub async fn release(
    #[state] warehouse: &Warehouse,
    reserved: Reserved,
) -> Result<u64, ReserveError> {
    let key = format!("release/{}", reserved.key);
    let qty = i64::try_from(reserved.qty).map_err(|_| ReserveError::Failed("too many".into()))?;
    warehouse.apply(&key, &reserved.sku, qty).await
}

/// Writes the order's shipment file, `shipments/<order>.json`, in the warehouse.
#[task]
pub async fn ship(
    #[state] warehouse: &Warehouse,
    order: String,
    reserved: Vec<Reserved>,
) -> Result<String, TaskError> {
    let dir = warehouse.dir().join("shipments");
    tokio::fs::create_dir_all(&dir).await?;
    let path = dir.join(format!("{order}.json"));
    let body = serde_json::json!({
        "order": order,
        "items": reserved.iter().map(|r| serde_json::json!({"sku": r.sku, "qty": r.qty})).collect::<Vec<_>>(),
    });
    // Staged, then renamed into place: a reader never sees half a shipment.
    let staged = dir.join(format!(".{order}.json.tmp"));
    tokio::fs::write(&staged, serde_json::to_vec_pretty(&body)?).await?;
    tokio::fs::rename(&staged, &path).await?;
    Ok(path.to_string_lossy().into_owned())
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Reserves every line of an order at once; ships it, or releases what it took and rejects it.
#[process(name = "fulfil-order")]
pub async fn fulfil_order(ctx: &Ctx, order: Order) -> Result<Fulfilment, ProcessError> {
    if !valid_id(&order.id) {
        return Err(ProcessError::msg(format!(
            "invalid order id `{}`: use letters, digits, `-`, `_`",
            order.id
        )));
    }
    let reservations = ctx.map("reserve", order.lines, reserve).settle().await;
    let mut reserved = Vec::new();
    let mut short = Vec::new();
    for r in reservations {
        match r {
            Ok(r) => reserved.push(r),
            Err(e @ ReserveError::OutOfStock { .. }) => short.push(e.to_string()),
            Err(ReserveError::Failed(message)) => return Err(ProcessError::msg(message)),
        }
    }
    if !short.is_empty() {
        ctx.log(format!(
            "order {} rejected; releasing {} reservations",
            order.id,
            reserved.len()
        ));
        ctx.map("release", reserved, release)
            .await
            .map_err(|e| ProcessError::msg(format!("releasing the reservations: {e}")))?;
        return Ok(Fulfilment::Rejected {
            reason: short.join("; "),
        });
    }
    // Reservations of one item ran at once: the least left is the last one's.
    let mut left = BTreeMap::new();
    for r in &reserved {
        let units = left.entry(r.sku.clone()).or_insert(r.left);
        *units = (*units).min(r.left);
    }
    let shipment = ship(order.id.clone(), reserved).await?;
    Ok(Fulfilment::Shipped { shipment, left })
}

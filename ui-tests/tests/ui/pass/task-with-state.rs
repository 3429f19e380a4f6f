// Tasks with state (`#[state]` parameters, not journaled), in a crate that denies every
// warning: the call takes the journaled arguments only.
#![deny(warnings)]

use minder::prelude::*;
use std::sync::{Arc, Mutex};

struct Pool {
    rows: Mutex<Vec<String>>,
}

trait Mailer: Send + Sync {
    fn send(&self, to: &str) -> bool;
}

struct Config {
    prefix: String,
}

#[task(retries = 2)]
async fn insert(#[state] pool: &Pool, row: String) -> Result<usize, TaskError> {
    let mut rows = pool.rows.lock().unwrap();
    rows.push(row);
    Ok(rows.len())
}

#[task]
async fn notify(
    to: String,
    #[state] mailer: &Arc<dyn Mailer>,
    #[state] Config { prefix }: &Config,
    times: u32,
) -> Result<bool, TaskError> {
    let mut sent = true;
    for _ in 0..times {
        sent &= mailer.send(&format!("{prefix}{to}"));
    }
    Ok(sent)
}

#[task]
async fn only_state(#[state] _config: &Config) -> Result<(), TaskError> { Ok(()) }

#[process]
async fn signup(_ctx: &Ctx, email: String) -> Result<bool, ProcessError> {
    only_state().await?;
    let (n, sent) = parallel!(insert(email.clone()), notify(email.clone(), 1))?;
    Ok(n > 0 && sent)
}

struct Log;

impl Mailer for Log {
    fn send(&self, _to: &str) -> bool {
        true
    }
}

fn main() {
    let runner = Runner::in_memory()
        .state(Pool { rows: Mutex::new(Vec::new()) })
        .state::<Arc<dyn Mailer>>(Arc::new(Log))
        .state(Config { prefix: "to:".into() });
    let _ = runner.run::<signup>("a@example.org".into());
}

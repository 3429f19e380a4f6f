//! **Seed Example 3 (chunked parallel processing) and pitfall 5 (too many parallel tasks).**
//!
//! The JavaScript guide limits concurrency by slicing the items into chunks and running one
//! `ctx.parallel.map` per chunk, logging after each. [`process_in_chunks()`] does exactly that, so
//! the translation is plain to see: a `for` loop over `chunks(batch_size)`, a `ctx.map` per
//! chunk, a `ctx.log` after it.
//!
//! Chunking has a cost: every chunk waits for its slowest item before the next chunk starts.
//! [`process_with_limit()`] shows the minder way: one `ctx.map(..).limit(batch_size)` keeps
//! `batch_size` items in flight all the time, with results in input order and a progress notice
//! per finished item — no hand-written chunking.
//!
//! The work per item is real: factorizing a number by trial division. Each result carries the
//! microseconds its task started and finished, so the difference between the two shapes can be
//! seen (and is checked by the tests).
//!
//! Quick start: `examples/data/chunked-input.json` with either process.

use minder::prelude::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// The numbers to factorize.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NumbersInput {
    /// The items.
    pub numbers: Vec<u64>,
    /// The chunk size ([`process_in_chunks()`]) or the concurrency limit
    /// ([`process_with_limit()`]); at least 1.
    pub batch_size: usize,
}

/// The factorization of one number.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Factorization {
    /// The number.
    pub n: u64,
    /// Its prime factors, ascending, with repetition (empty for 0 and 1).
    pub factors: Vec<u64>,
    /// Whether `n` is prime.
    pub prime: bool,
    /// When the task started, microseconds since the Unix epoch.
    pub started_us: u64,
    /// When it finished.
    pub finished_us: u64,
}

/// The result of either process.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct FactorReport {
    /// Numbers processed.
    pub total: usize,
    /// How many of them are prime.
    pub primes: usize,
    /// Waves the work ran in: the number of chunks, or 1 for a limited map.
    pub waves: usize,
    /// One result per number, in input order.
    pub results: Vec<Factorization>,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Factorizes `n` by trial division.
#[task(timeout = "60s")]
pub async fn factorize(n: u64) -> Result<Factorization, TaskError> {
    let started_us = micros_now();
    let mut factors = Vec::new();
    let mut rest = n;
    if n >= 2 {
        let mut d = 2u64;
        while d.saturating_mul(d) <= rest {
            while rest.is_multiple_of(d) {
                factors.push(d);
                rest /= d;
            }
            d += if d == 2 { 1 } else { 2 };
        }
        if rest > 1 {
            factors.push(rest);
        }
    }
    Ok(Factorization {
        n,
        prime: factors.len() == 1,
        factors,
        started_us,
        finished_us: micros_now(),
    })
}

fn check_batch(input: &NumbersInput) -> Result<(), ProcessError> {
    if input.batch_size == 0 {
        return Err(ProcessError::msg("`batch_size` must be at least 1"));
    }
    Ok(())
}

/// The seed's Example 3, line for line: one `ctx.map` per chunk, a log line after each.
#[process(name = "process-in-chunks")]
pub async fn process_in_chunks(
    ctx: &Ctx,
    input: NumbersInput,
) -> Result<FactorReport, ProcessError> {
    check_batch(&input)?;
    let total = input.numbers.len();
    let mut results = Vec::with_capacity(total);
    let mut waves = 0;
    for chunk in input.numbers.chunks(input.batch_size) {
        // Every item of the chunk at once; the next chunk starts when all of these are done.
        let done = ctx.map("chunk", chunk.to_vec(), factorize).await?;
        results.extend(done);
        waves += 1;
        ctx.log(format!("Processed {}/{total} items", results.len()));
    }
    Ok(FactorReport {
        total,
        primes: results.iter().filter(|r| r.prime).count(),
        waves,
        results,
    })
}

/// The same work without chunks: `limit` keeps `batch_size` items in flight at all times.
#[process(name = "process-with-limit")]
pub async fn process_with_limit(
    ctx: &Ctx,
    input: NumbersInput,
) -> Result<FactorReport, ProcessError> {
    check_batch(&input)?;
    let total = input.numbers.len();
    let results = ctx
        .map("numbers", input.numbers.clone(), factorize)
        .limit(input.batch_size)
        .await?;
    ctx.log(format!("Processed {total}/{total} items"));
    Ok(FactorReport {
        total,
        primes: results.iter().filter(|r| r.prime).count(),
        waves: 1,
        results,
    })
}

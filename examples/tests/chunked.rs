//! `process-in-chunks` and `process-with-limit`: the same factorizations, checked here; the
//! chunked run waits for each chunk, the limited one never has more than `batch_size` running.

mod common;

use common::{failure, logging_runner};
use minder::prelude::*;
use minder_examples::chunked::{
    process_in_chunks, process_with_limit, Factorization, NumbersInput,
};

fn numbers() -> Vec<u64> {
    let mut n: Vec<u64> = (0..=16).collect();
    n.extend([
        97,
        1_000_000_007,
        600_851_475_143,
        999_999_999_989,
        2u64.pow(40),
        3 * 5 * 7 * 11 * 13 * 17 * 19 * 23,
    ]);
    n
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn check(results: &[Factorization], numbers: &[u64]) {
    assert_eq!(results.len(), numbers.len());
    for (r, &n) in results.iter().zip(numbers) {
        assert_eq!(r.n, n, "results are in input order");
        if n < 2 {
            assert!(r.factors.is_empty());
        } else {
            assert_eq!(r.factors.iter().product::<u64>(), n);
        }
        assert!(r.factors.windows(2).all(|w| w[0] <= w[1]));
        assert!(r.factors.iter().all(|&f| is_prime(f)), "{r:?}");
        assert_eq!(r.prime, is_prime(n), "{n}");
        assert!(r.started_us <= r.finished_us);
    }
}

/// The most items whose run time covers one instant.
fn max_overlap(results: &[Factorization]) -> usize {
    results
        .iter()
        .map(|a| {
            results
                .iter()
                .filter(|b| b.started_us <= a.started_us && a.started_us < b.finished_us)
                .count()
                .max(1)
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_run_one_after_another() {
    let numbers = numbers();
    let (runner, logs) = logging_runner();
    let report = runner
        .run::<process_in_chunks>(NumbersInput {
            numbers: numbers.clone(),
            batch_size: 5,
        })
        .await
        .unwrap()
        .output;
    check(&report.results, &numbers);
    assert_eq!(report.total, 23);
    assert_eq!(report.waves, 5);
    // 2 3 5 7 11 13 97 1e9+7 999999999989
    assert_eq!(report.primes, 9);
    assert_eq!(
        report.primes,
        numbers.iter().filter(|n| is_prime(**n)).count()
    );
    let big = report
        .results
        .iter()
        .find(|r| r.n == 600_851_475_143)
        .unwrap();
    assert_eq!(big.factors, [71, 839, 1471, 6857]);
    // Every chunk finished before the next one started.
    let chunks: Vec<&[Factorization]> = report.results.chunks(5).collect();
    for pair in chunks.windows(2) {
        let last_end = pair[0].iter().map(|r| r.finished_us).max().unwrap();
        let next_start = pair[1].iter().map(|r| r.started_us).min().unwrap();
        assert!(last_end <= next_start);
    }
    assert_eq!(
        logs.lock().unwrap().clone(),
        [
            "Processed 5/23 items",
            "Processed 10/23 items",
            "Processed 15/23 items",
            "Processed 20/23 items",
            "Processed 23/23 items"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_replaces_the_chunks() {
    let numbers = numbers();
    let progress = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = progress.clone();
    let runner = Runner::in_memory().on_notice(move |_, notice| {
        if let minder::Notice::Progress { done, total, .. } = notice {
            sink.lock().unwrap().push((*done, *total));
        }
    });
    let input = NumbersInput {
        numbers: numbers.clone(),
        batch_size: 3,
    };
    let limited = runner
        .run::<process_with_limit>(input.clone())
        .await
        .unwrap()
        .output;
    check(&limited.results, &numbers);
    assert!(max_overlap(&limited.results) <= 3);
    assert_eq!(limited.waves, 1);
    // One progress notice per finished item, no hand-written logging needed.
    let progress = progress.lock().unwrap().clone();
    assert_eq!(progress, (1..=23).map(|d| (d, 23)).collect::<Vec<_>>());

    // Same answers as the chunked version.
    let chunked = runner.run::<process_in_chunks>(input).await.unwrap().output;
    let strip = |r: &Factorization| (r.n, r.factors.clone(), r.prime);
    assert_eq!(
        limited.results.iter().map(strip).collect::<Vec<_>>(),
        chunked.results.iter().map(strip).collect::<Vec<_>>()
    );
    assert_eq!(limited.primes, chunked.primes);
}

#[tokio::test]
async fn a_zero_batch_size_is_a_clear_error() {
    let input = NumbersInput {
        numbers: vec![1, 2, 3],
        batch_size: 0,
    };
    let runner = Runner::in_memory();
    let message = failure(runner.run::<process_in_chunks>(input.clone()).await);
    assert!(
        message.contains("`batch_size` must be at least 1"),
        "{message}"
    );
    let message = failure(runner.run::<process_with_limit>(input).await);
    assert!(
        message.contains("`batch_size` must be at least 1"),
        "{message}"
    );
}

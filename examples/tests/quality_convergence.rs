//! `quality-convergence`: the loop fixes a real file until its measured score reaches the
//! target, in exactly the number of iterations the violations call for.

mod common;

use common::logging_runner;
use minder::prelude::*;
use minder_examples::quality_convergence::{quality_convergence, ConvergenceInput, Iteration};
use std::path::Path;

/// Seven lines, four of them offending: a tab (2), trailing spaces (3), too long for 40
/// columns (5), and no final newline (7).
const MESSY: &str = "The quick brown fox\n\tindented with a tab\ntrailing spaces   \nclean line\nalpha beta gamma delta epsilon zeta eta theta iota kappa\nanother clean line\nno newline at the end";

const CLEAN: &str = "The quick brown fox\n    indented with a tab\ntrailing spaces\nclean line\nalpha beta gamma delta epsilon zeta eta\ntheta iota kappa\nanother clean line\nno newline at the end\n";

fn input(file: &Path, target: u32, max_iterations: u32, fixes: usize) -> ConvergenceInput {
    ConvergenceInput {
        file: file.to_string_lossy().into_owned(),
        target_score: target,
        max_iterations,
        fixes_per_iteration: fixes,
        max_width: 40,
        external_review: false,
    }
}

fn history(pairs: &[(usize, u32)]) -> Vec<Iteration> {
    pairs
        .iter()
        .map(|&(fixed, score)| Iteration { fixed, score })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fix_per_iteration_converges_in_four() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, MESSY).unwrap();
    let (runner, logs) = logging_runner();
    let report = runner
        .run::<quality_convergence>(input(&file, 100, 10, 1))
        .await
        .unwrap()
        .output;
    // 3/7 clean → fix line 2: 4/7 = 57, line 3: 5/7 = 71, wrap line 5 into two: 7/8 = 87,
    // final newline: 8/8 = 100.
    assert_eq!(report.iterations, 4);
    assert_eq!(report.score, 100);
    assert!(report.converged);
    assert_eq!(
        report.history,
        history(&[(1, 57), (1, 71), (1, 87), (1, 100)])
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLEAN);
    let logs = logs.lock().unwrap();
    assert_eq!(logs.len(), 4);
    assert_eq!(
        logs[2],
        "iteration 3: fixed 1 lines, score 87 (1 of 8 lines still offend)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fixes_per_iteration_converge_sooner() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, MESSY).unwrap();
    let report = Runner::in_memory()
        .run::<quality_convergence>(input(&file, 100, 10, 2))
        .await
        .unwrap()
        .output;
    assert_eq!(report.history, history(&[(2, 71), (2, 100)]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLEAN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_at_a_lower_target_or_at_max_iterations() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a.txt");
    std::fs::write(&file, MESSY).unwrap();
    let runner = Runner::in_memory();
    let report = runner
        .run::<quality_convergence>(input(&file, 80, 10, 1))
        .await
        .unwrap()
        .output;
    assert_eq!(
        (report.iterations, report.score, report.converged),
        (3, 87, true)
    );
    // The final newline is still missing: the loop stopped before fixing it.
    assert!(!std::fs::read_to_string(&file).unwrap().ends_with('\n'));

    let other = tmp.path().join("b.txt");
    std::fs::write(&other, MESSY).unwrap();
    let report = runner
        .run::<quality_convergence>(input(&other, 100, 2, 1))
        .await
        .unwrap()
        .output;
    assert_eq!(
        (report.iterations, report.score, report.converged),
        (2, 71, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_file_takes_one_measuring_iteration() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("clean.txt");
    std::fs::write(&file, CLEAN).unwrap();
    let report = Runner::in_memory()
        .run::<quality_convergence>(input(&file, 100, 5, 3))
        .await
        .unwrap()
        .output;
    assert_eq!(report.history, history(&[(0, 100)]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), CLEAN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbreakable_words_are_cut_to_the_width() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("long.txt");
    let word = "x".repeat(95);
    std::fs::write(&file, format!("  {word} end\n")).unwrap();
    let report = Runner::in_memory()
        .run::<quality_convergence>(input(&file, 100, 5, 1))
        .await
        .unwrap()
        .output;
    assert_eq!((report.iterations, report.score), (1, 100));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
    assert_eq!(lines.concat().replace(' ', ""), format!("{word}end"));
}

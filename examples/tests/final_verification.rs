//! `final-verification`: a real tiny project is compiled and tested with `rustc --test`, its
//! function coverage and manifest are checked in parallel, and the review combines them.

mod common;

use common::{fnv, write};
use minder::prelude::*;
use minder_examples::final_verification::{final_verification, VerifyInput};
use std::path::Path;

const LIB: &str = r#"pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

pub fn mul(a: i64, b: i64) -> i64 {
    a * b
}

pub fn neg(a: i64) -> i64 {
    -a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(2, 3), 5);
    }

    #[test]
    fn multiplies() {
        assert_eq!(mul(2, 3), 6);
    }
}
"#;

/// A project with a manifest of its files, written with checksums computed here.
fn project(dir: &Path, lib: &str) {
    write(dir, "src/lib.rs", lib);
    write(dir, "README.md", "# calc\n\nAdds, multiplies, negates.\n");
    let manifest: String = ["README.md", "src/lib.rs"]
        .iter()
        .map(|f| format!("{}  {f}\n", fnv(&std::fs::read(dir.join(f)).unwrap())))
        .collect();
    write(dir, "MANIFEST.txt", manifest);
}

fn input(dir: &Path, min_coverage: u32) -> VerifyInput {
    VerifyInput {
        project_dir: dir.to_string_lossy().into_owned(),
        lib_file: "src/lib.rs".into(),
        manifest: "MANIFEST.txt".into(),
        min_coverage,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_tests_coverage_and_manifest_together() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), LIB);
    let runner = Runner::in_memory();

    let report = runner
        .run::<final_verification>(input(tmp.path(), 80))
        .await
        .unwrap()
        .output;
    assert!(
        report.tests.compiled && report.tests.passed,
        "{:#?}",
        report.tests
    );
    assert_eq!(
        (report.tests.passed_count, report.tests.failed_count),
        (2, 0)
    );
    assert!(report.tests.excerpt.contains("test result: ok. 2 passed"));
    assert_eq!(report.coverage.functions, ["add", "mul", "neg"]);
    assert_eq!(report.coverage.covered, ["add", "mul"]);
    assert_eq!(report.coverage.uncovered, ["neg"]);
    assert_eq!(report.coverage.percent, 66);
    assert!(report.integrity.passed);
    assert_eq!((report.integrity.listed, report.integrity.verified), (2, 2));
    // Coverage 66% < 80%: not approved, and the note names the untested function.
    assert!(!report.review.approved);
    assert_eq!(
        report.review.notes,
        ["coverage 66% is below 80%: no test calls neg"]
    );
    assert_eq!(report.review.score, 40 + 19 + 30);

    // With a lower bar it passes; the test binary under target/ is not a release file.
    let report = runner
        .run::<final_verification>(input(tmp.path(), 60))
        .await
        .unwrap()
        .output;
    assert!(tmp.path().join("target/minder-final/unit-tests").is_file());
    assert!(report.integrity.passed, "{:?}", report.integrity);
    assert!(report.review.approved, "{:?}", report.review);
    assert!(report.review.notes.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_tests_and_a_stale_manifest_block_approval() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), LIB);
    // After the manifest was written: a failing test, and a file nobody listed.
    let broken = LIB.replace("assert_eq!(mul(2, 3), 6)", "assert_eq!(mul(2, 3), 7)");
    write(tmp.path(), "src/lib.rs", broken);
    write(tmp.path(), "NOTES.txt", "todo");
    let report = Runner::in_memory()
        .run::<final_verification>(input(tmp.path(), 50))
        .await
        .unwrap()
        .output;
    assert!(report.tests.compiled && !report.tests.passed);
    assert_eq!(
        (report.tests.passed_count, report.tests.failed_count),
        (1, 1)
    );
    assert!(
        report.tests.excerpt.contains("multiplies"),
        "{}",
        report.tests.excerpt
    );
    assert!(!report.integrity.passed);
    assert_eq!(report.integrity.changed, ["src/lib.rs"]);
    assert_eq!(report.integrity.unlisted, ["NOTES.txt"]);
    assert!(report.integrity.missing.is_empty());
    assert!(!report.review.approved);
    assert_eq!(
        report.review.notes,
        [
            "1 test(s) failed",
            "src/lib.rs changed since the manifest was written",
            "NOTES.txt is not in the manifest"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_does_not_compile_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path(), "pub fn oops() -> u32 { \"not a number\" }\n");
    let report = Runner::in_memory()
        .run::<final_verification>(input(tmp.path(), 0))
        .await
        .unwrap()
        .output;
    assert!(!report.tests.compiled && !report.tests.passed);
    assert!(
        report.tests.excerpt.contains("mismatched types"),
        "{}",
        report.tests.excerpt
    );
    assert_eq!(report.review.notes, ["the tests do not compile"]);
}

//! **Seed Example 4: parallel final verification.**
//!
//! After the implementation phases, the JavaScript guide runs the final tests, a coverage check
//! and an integration test in parallel, then hands all three results to a final review. Here,
//! on a small Rust project directory:
//!
//! * `run_tests` compiles the library's unit tests with `rustc --test` and runs the test
//!   binary (real programs, no shell), counting passed and failed tests;
//! * `coverage_check` finds the `pub fn`s of the library and which of them the tests call;
//! * `integrity_check` verifies the release manifest (`MANIFEST.txt`, lines of
//!   `<fnv1a64>  <path>`): every file listed, unchanged, and nothing unlisted;
//!
//! and `final_review` combines the three into a verdict with a score and notes.
//!
//! Quick start: `examples/data/final-verification-input.json` verifies the sample project in
//! `examples/data/project` (the test binary goes to its git-ignored `target/`).

use crate::support::{excerpt, fnv1a64, millis, path, run_command, walk_files};
use minder::prelude::*;
use std::collections::BTreeMap;

fn default_lib() -> String {
    "src/lib.rs".into()
}
fn default_manifest() -> String {
    "MANIFEST.txt".into()
}
fn default_min_coverage() -> u32 {
    80
}

/// The project to verify.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VerifyInput {
    /// The project directory.
    pub project_dir: String,
    /// The library file, relative to the project (default `src/lib.rs`).
    #[serde(default = "default_lib")]
    pub lib_file: String,
    /// The manifest, relative to the project (default `MANIFEST.txt`).
    #[serde(default = "default_manifest")]
    pub manifest: String,
    /// The least function coverage, in percent, for approval (default 80).
    #[serde(default = "default_min_coverage")]
    pub min_coverage: u32,
}

/// What the test run did.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct TestRun {
    /// Whether the tests compiled.
    pub compiled: bool,
    /// Whether they compiled and all passed.
    pub passed: bool,
    /// Tests passed.
    pub passed_count: u32,
    /// Tests failed.
    pub failed_count: u32,
    /// Compile plus run time.
    pub duration_ms: u64,
    /// The end of the compiler's or the test binary's output.
    pub excerpt: String,
}

/// Which public functions the tests call.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Public functions of the library, in source order.
    pub functions: Vec<String>,
    /// Those the tests call.
    pub covered: Vec<String>,
    /// Those they do not.
    pub uncovered: Vec<String>,
    /// `covered` as a percentage of `functions`, rounded down (100 when there are none).
    pub percent: u32,
}

/// The manifest against the files.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Integrity {
    /// Whether every file is listed and unchanged.
    pub passed: bool,
    /// Files the manifest lists.
    pub listed: usize,
    /// Listed files whose checksum matches.
    pub verified: usize,
    /// Listed but absent.
    pub missing: Vec<String>,
    /// Listed with another checksum.
    pub changed: Vec<String>,
    /// Present but not listed.
    pub unlisted: Vec<String>,
}

/// The final verdict.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// Whether the work is approved: tests pass, coverage is enough, the manifest holds.
    pub approved: bool,
    /// 0–100: 40 for tests, 30 for coverage, 30 for integrity, each in proportion.
    pub score: u32,
    /// What holds the work back, one note each.
    pub notes: Vec<String>,
}

/// Everything the verification found.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// The test run.
    pub tests: TestRun,
    /// The coverage.
    pub coverage: Coverage,
    /// The manifest check.
    pub integrity: Integrity,
    /// The verdict.
    pub review: Review,
}

/// Reads `test result: ok. 3 passed; 1 failed; ...` lines of a libtest binary.
fn count_results(output: &str) -> (u32, u32) {
    let mut counts = (0, 0);
    for line in output.lines().filter(|l| l.starts_with("test result:")) {
        for part in line.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let n: u32 = n.parse().unwrap_or(0);
            match what {
                "passed" => counts.0 += n,
                "failed" => counts.1 += n,
                _ => {}
            }
        }
    }
    counts
}

/// Compiles the library's unit tests with `rustc --test` into `<project>/target/minder-final`
/// and runs them.
#[task(timeout = "5m")]
pub async fn run_tests(project_dir: String, lib_file: String) -> Result<TestRun, TaskError> {
    let dir = path(&project_dir);
    let out_dir = dir.join("target").join("minder-final");
    std::fs::create_dir_all(&out_dir)?;
    let binary = out_dir.join("unit-tests");
    let binary_arg = binary.to_string_lossy().into_owned();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let compile = run_command(
        &rustc,
        &["--edition", "2021", "--test", &lib_file, "-o", &binary_arg],
        &dir,
        &[],
    )
    .await?;
    if !compile.success {
        return Ok(TestRun {
            compiled: false,
            passed: false,
            passed_count: 0,
            failed_count: 0,
            duration_ms: millis(compile.duration),
            excerpt: excerpt(&compile.stderr, 15),
        });
    }
    let run = run_command(&binary_arg, &["--color", "never"], &dir, &[]).await?;
    let (passed_count, failed_count) = count_results(&run.stdout);
    Ok(TestRun {
        compiled: true,
        passed: run.success && failed_count == 0,
        passed_count,
        failed_count,
        duration_ms: millis(compile.duration + run.duration),
        excerpt: excerpt(&run.combined(), 15),
    })
}

/// The name of a `pub fn` declared on `line`, if any.
fn pub_fn_name(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("pub ")?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("const ")
        .or_else(|| rest.strip_prefix("async "))
        .unwrap_or(rest);
    let rest = rest.trim_start().strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Which `pub fn`s of the library (the code before its `#[cfg(test)]`) are called from its
/// tests (the code after it, plus every file under `tests/`).
#[task(timeout = "1m")]
pub async fn coverage_check(project_dir: String, lib_file: String) -> Result<Coverage, TaskError> {
    let dir = path(&project_dir);
    let source = std::fs::read_to_string(dir.join(&lib_file))
        .map_err(|e| TaskError::new(format!("cannot read `{lib_file}`: {e}")))?;
    let (library, mut tests) = match source.find("#[cfg(test)]") {
        Some(at) => (source[..at].to_string(), source[at..].to_string()),
        None => (source.clone(), String::new()),
    };
    let tests_dir = dir.join("tests");
    if tests_dir.is_dir() {
        for file in walk_files(&tests_dir)? {
            if file.ends_with(".rs") {
                tests.push_str(&std::fs::read_to_string(tests_dir.join(file))?);
            }
        }
    }
    let functions: Vec<String> = library.lines().filter_map(pub_fn_name).collect();
    let calls = |name: &str| {
        tests.match_indices(name).any(|(at, _)| {
            let before = tests[..at].chars().next_back();
            let after = tests[at + name.len()..].trim_start().chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && after == Some('(')
        })
    };
    let (covered, uncovered): (Vec<String>, Vec<String>) =
        functions.iter().cloned().partition(|f| calls(f));
    let percent = if functions.is_empty() {
        100
    } else {
        (100 * covered.len() / functions.len()) as u32
    };
    Ok(Coverage {
        functions,
        covered,
        uncovered,
        percent,
    })
}

/// Checks the manifest: each line `<fnv1a64>  <path>`; `target/` and the manifest itself are
/// not release files.
#[task(timeout = "1m")]
pub async fn integrity_check(
    project_dir: String,
    manifest: String,
) -> Result<Integrity, TaskError> {
    let dir = path(&project_dir);
    let text = std::fs::read_to_string(dir.join(&manifest))
        .map_err(|e| TaskError::new(format!("cannot read the manifest `{manifest}`: {e}")))?;
    let mut listed = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (sum, file) = line.split_once(char::is_whitespace).ok_or_else(|| {
            TaskError::new(format!(
                "{manifest}:{}: expected `<checksum>  <path>`",
                i + 1
            ))
        })?;
        listed.insert(file.trim().to_string(), sum.to_string());
    }
    let present: Vec<String> = walk_files(&dir)?
        .into_iter()
        .filter(|f| !f.starts_with("target/") && *f != manifest)
        .collect();
    let mut report = Integrity {
        passed: false,
        listed: listed.len(),
        verified: 0,
        missing: Vec::new(),
        changed: Vec::new(),
        unlisted: Vec::new(),
    };
    for (file, sum) in &listed {
        match std::fs::read(dir.join(file)) {
            Ok(bytes) if fnv1a64(&bytes) == *sum => report.verified += 1,
            Ok(_) => report.changed.push(file.clone()),
            Err(_) => report.missing.push(file.clone()),
        }
    }
    report.unlisted = present
        .into_iter()
        .filter(|f| !listed.contains_key(f))
        .collect();
    report.passed =
        report.missing.is_empty() && report.changed.is_empty() && report.unlisted.is_empty();
    Ok(report)
}

/// Combines the three results into a verdict.
#[task]
pub async fn final_review(
    tests: TestRun,
    coverage: Coverage,
    integrity: Integrity,
    min_coverage: u32,
) -> Result<Review, TaskError> {
    let mut notes = Vec::new();
    if !tests.compiled {
        notes.push("the tests do not compile".to_string());
    } else if !tests.passed {
        notes.push(format!("{} test(s) failed", tests.failed_count));
    }
    if coverage.percent < min_coverage {
        notes.push(format!(
            "coverage {}% is below {min_coverage}%: no test calls {}",
            coverage.percent,
            coverage.uncovered.join(", ")
        ));
    }
    for file in &integrity.missing {
        notes.push(format!("{file} is in the manifest but missing"));
    }
    for file in &integrity.changed {
        notes.push(format!("{file} changed since the manifest was written"));
    }
    for file in &integrity.unlisted {
        notes.push(format!("{file} is not in the manifest"));
    }
    let run = tests.passed_count + tests.failed_count;
    let test_points = (40 * tests.passed_count).checked_div(run).unwrap_or(0);
    let integrity_points = (30 * integrity.verified)
        .checked_div(integrity.listed + integrity.unlisted.len())
        .map_or(0, |p| p as u32);
    let score = test_points + 30 * coverage.percent.min(100) / 100 + integrity_points;
    Ok(Review {
        approved: notes.is_empty(),
        score,
        notes,
    })
}

/// The final verification: three independent checks at once, then the review of all three.
#[process(name = "final-verification")]
pub async fn final_verification(
    ctx: &Ctx,
    input: VerifyInput,
) -> Result<VerifyReport, ProcessError> {
    let dir = input.project_dir.clone();
    let (tests, coverage, integrity) = parallel!(
        run_tests(dir.clone(), input.lib_file.clone()),
        coverage_check(dir.clone(), input.lib_file.clone()),
        integrity_check(dir.clone(), input.manifest.clone()),
    )?;
    ctx.log(format!(
        "tests: {} passed, {} failed; coverage {}%; manifest {}/{} verified",
        tests.passed_count,
        tests.failed_count,
        coverage.percent,
        integrity.verified,
        integrity.listed
    ));

    // Sequential: the review needs all three results.
    let review = final_review(
        tests.clone(),
        coverage.clone(),
        integrity.clone(),
        input.min_coverage,
    )
    .await?;
    Ok(VerifyReport {
        tests,
        coverage,
        integrity,
        review,
    })
}

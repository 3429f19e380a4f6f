//! **Seed Scenario 1: parallel quality checks.**
//!
//! The JavaScript guide runs coverage, lint, type-check and security checks at once after an
//! implementation step. Here the subject is a real Rust crate:
//!
//! 1. `inspect_crate` (sequential) reads its `Cargo.toml` and finds its source and test files;
//! 2. four checks run **in parallel**, each a real program or a real analysis:
//!    * `fmt_check` — `cargo fmt --check`;
//!    * `lint_check` — `cargo clippy --all-targets -- -D warnings` (or `cargo check
//!      --all-targets` where clippy is not installed);
//!    * `test_check` — `cargo test`;
//!    * `dependency_audit` — an offline audit of `Cargo.toml` and `Cargo.lock`: wildcard
//!      versions, git and path dependencies, crates locked at several versions.
//!
//! Each cargo check builds into its own directory under `target_dir` (default
//! `<crate_dir>/target/minder-checks`), so the checks do not wait on each other's build lock nor
//! on the lock of a cargo command that started this workflow. Every check reports whether it
//! passed, how long it took and an excerpt of its output; a check that *fails* is a result, not
//! an error — only a program that cannot be started fails the task.
//!
//! Quick start: `examples/data/quality-checks-input.json` checks the tiny sample crate in
//! `examples/data/tiny-crate` (any crate directory works, this one included).

use crate::support::{excerpt, millis, path, run_command, walk_files, CommandOutput};
use minder::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The crate to check.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QualityInput {
    /// The crate's directory (the one with its `Cargo.toml`).
    pub crate_dir: String,
    /// Where the cargo checks build (default `<crate_dir>/target/minder-checks`).
    #[serde(default)]
    pub target_dir: Option<String>,
    /// Pass `--offline` to cargo (no registry access).
    #[serde(default)]
    pub offline: bool,
    /// Who signs the change off. With a reviewer, the run also waits, *while the checks run*,
    /// for their decision on the breakpoint `sign-off` (`approve` / `reject`); the report
    /// passes only when they approved. A decision made while a worker runs the checks goes
    /// through the run's inbox: the worker takes it without stopping the checks.
    #[serde(default)]
    pub reviewer: Option<String>,
}

/// What `inspect_crate` found.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct CrateInfo {
    /// The package name.
    pub name: String,
    /// The package version.
    pub version: String,
    /// `.rs` files under `src/` (relative to the crate).
    pub source_files: Vec<String>,
    /// Files with tests: everything under `tests/`, and source files with `#[test]`.
    pub test_files: Vec<String>,
    /// Lines of Rust in all of them.
    pub lines: usize,
}

/// The result of one check.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    /// The check, e.g. `cargo fmt --check`.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// How long it took.
    pub duration_ms: u64,
    /// A one-line summary.
    pub summary: String,
    /// The end of its output.
    pub excerpt: String,
}

/// One finding of the dependency audit.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `error` (fails the audit) or `warning`.
    pub severity: String,
    /// What was found.
    pub message: String,
}

/// The dependency audit.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// The check's result (passed when there is no `error` finding).
    pub result: CheckResult,
    /// Dependencies declared (all sections).
    pub dependencies: usize,
    /// Packages in `Cargo.lock` (0 without one).
    pub locked_packages: usize,
    /// What was found.
    pub findings: Vec<Finding>,
}

/// All checks of the crate.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// What was checked.
    pub info: CrateInfo,
    /// `cargo fmt --check`.
    pub fmt: CheckResult,
    /// `cargo clippy` or `cargo check`.
    pub lint: CheckResult,
    /// `cargo test`.
    pub test: CheckResult,
    /// The dependency audit.
    pub audit: Audit,
    /// The reviewer's decision, when the input named one: `approved by <reviewer>: <feedback>`
    /// or `rejected by ..`.
    #[serde(default)]
    pub sign_off: Option<String>,
    /// Whether every check passed (and the reviewer, if any, approved).
    pub passed: bool,
}

/// Reads the crate's manifest and lists its source and test files.
#[task(timeout = "1m")]
pub async fn inspect_crate(crate_dir: String) -> Result<CrateInfo, TaskError> {
    let dir = path(&crate_dir);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|e| TaskError::new(format!("`{crate_dir}` is not a crate: {e}")))?;
    let manifest: toml::Table = manifest
        .parse()
        .map_err(|e| TaskError::new(format!("{crate_dir}/Cargo.toml: {e}")))?;
    let package = manifest
        .get("package")
        .and_then(|p| p.as_table())
        .ok_or_else(|| TaskError::new(format!("{crate_dir}/Cargo.toml has no [package]")))?;
    let field = |key: &str| {
        package
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("(inherited)")
            .to_string()
    };
    let mut info = CrateInfo {
        name: field("name"),
        version: field("version"),
        source_files: Vec::new(),
        test_files: Vec::new(),
        lines: 0,
    };
    for (sub, is_tests) in [("src", false), ("tests", true)] {
        let root = dir.join(sub);
        if !root.is_dir() {
            continue;
        }
        for file in walk_files(&root)?
            .into_iter()
            .filter(|f| f.ends_with(".rs"))
        {
            let text = std::fs::read_to_string(root.join(&file))?;
            let rel = format!("{sub}/{file}");
            info.lines += text.lines().count();
            if is_tests || text.contains("#[test]") {
                info.test_files.push(rel.clone());
            }
            if !is_tests {
                info.source_files.push(rel);
            }
        }
    }
    Ok(info)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo <args>` in the crate with its own target directory `target_dir/<sub>`.
async fn cargo_in(
    crate_dir: &str,
    target_dir: &str,
    sub: &str,
    args: &[&str],
) -> Result<CommandOutput, TaskError> {
    let target = Path::new(target_dir).join(sub);
    let target = target.to_string_lossy();
    run_command(
        &cargo(),
        args,
        &path(crate_dir),
        &[
            ("CARGO_TARGET_DIR", target.as_ref()),
            ("CARGO_TERM_COLOR", "never"),
        ],
    )
    .await
}

fn with_offline<'a>(args: &[&'a str], offline: bool) -> Vec<&'a str> {
    let mut all = args.to_vec();
    if offline {
        // Before a `--` separator, if there is one.
        let at = all.iter().position(|a| *a == "--").unwrap_or(all.len());
        all.insert(at, "--offline");
    }
    all
}

fn result(check: &str, out: &CommandOutput, summary: String) -> CheckResult {
    CheckResult {
        check: check.to_string(),
        passed: out.success,
        duration_ms: millis(out.duration),
        summary,
        excerpt: excerpt(&out.combined(), 12),
    }
}

/// `cargo fmt --check`: passes when every file is formatted.
#[task(timeout = "2m", reads = [CrateDir])]
pub async fn fmt_check(crate_dir: String, target_dir: String) -> Result<CheckResult, TaskError> {
    let out = cargo_in(&crate_dir, &target_dir, "fmt", &["fmt", "--check"]).await?;
    let unformatted = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("Diff in "))
        .map(|l| {
            l.trim_start_matches("Diff in ")
                .split(':')
                .next()
                .unwrap_or(l)
        })
        .collect::<std::collections::BTreeSet<_>>();
    let summary = if out.success {
        "formatted".to_string()
    } else if unformatted.is_empty() {
        "cargo fmt failed".to_string()
    } else {
        format!("{} file(s) need formatting", unformatted.len())
    };
    Ok(result("cargo fmt --check", &out, summary))
}

/// `cargo clippy --all-targets -- -D warnings`, or `cargo check --all-targets` when clippy is
/// not installed.
#[task(timeout = "10m", reads = [CrateDir])]
pub async fn lint_check(
    crate_dir: String,
    target_dir: String,
    offline: bool,
) -> Result<CheckResult, TaskError> {
    let clippy = with_offline(
        &["clippy", "--all-targets", "--", "-D", "warnings"],
        offline,
    );
    let mut out = cargo_in(&crate_dir, &target_dir, "lint", &clippy).await?;
    let mut check = "cargo clippy -D warnings";
    if !out.success && out.stderr.contains("no such command") {
        let args = with_offline(&["check", "--all-targets"], offline);
        out = cargo_in(&crate_dir, &target_dir, "lint", &args).await?;
        check = "cargo check";
    }
    let warnings = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning"))
        .count();
    let errors = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .count();
    let summary = if out.success {
        format!("clean ({warnings} warning lines)")
    } else {
        format!("{errors} error lines")
    };
    Ok(result(check, &out, summary))
}

/// `cargo test`: passes when everything compiles and every test passes.
#[task(timeout = "10m", reads = [CrateDir])]
pub async fn test_check(
    crate_dir: String,
    target_dir: String,
    offline: bool,
) -> Result<CheckResult, TaskError> {
    let args = with_offline(&["test", "--color", "never"], offline);
    let out = cargo_in(&crate_dir, &target_dir, "test", &args).await?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in out.stdout.lines().filter(|l| l.starts_with("test result:")) {
        for part in line.split(';') {
            let words: Vec<&str> = part.split_whitespace().collect();
            if let [.., n, what] = words.as_slice() {
                let n: u64 = n.parse().unwrap_or(0);
                match *what {
                    "passed" => passed += n,
                    "failed" => failed += n,
                    _ => {}
                }
            }
        }
    }
    let summary = if out.success {
        format!("{passed} passed")
    } else if passed + failed > 0 {
        format!("{passed} passed, {failed} failed")
    } else {
        "did not compile or run".to_string()
    };
    Ok(result("cargo test", &out, summary))
}

/// Where a dependency comes from, from its `Cargo.toml` entry.
fn audit_dependency(section: &str, name: &str, spec: &toml::Value, findings: &mut Vec<Finding>) {
    let mut find = |severity: &str, message: String| {
        findings.push(Finding {
            severity: severity.into(),
            message: format!("[{section}] {name}: {message}"),
        })
    };
    let version = match spec {
        toml::Value::String(v) => Some(v.as_str()),
        toml::Value::Table(t) => {
            if let Some(url) = t.get("git").and_then(|g| g.as_str()) {
                let pinned = t.contains_key("rev") || t.contains_key("tag");
                if pinned {
                    find("warning", format!("git dependency on {url}"));
                } else {
                    find(
                        "error",
                        format!("git dependency on {url} without `rev` or `tag`"),
                    );
                }
            }
            if let Some(p) = t.get("path").and_then(|p| p.as_str()) {
                find("warning", format!("path dependency on {p}"));
            }
            t.get("version").and_then(|v| v.as_str())
        }
        _ => None,
    };
    if let Some(v) = version.map(str::trim) {
        if v == "*" {
            find("error", "wildcard version `*` accepts any release".into());
        } else if v.contains('*') {
            find("warning", format!("wildcard in version `{v}`"));
        }
    }
}

/// The offline dependency audit of the crate's `Cargo.toml` and (if present) `Cargo.lock`.
#[task(timeout = "1m", reads = [CrateDir])]
pub async fn dependency_audit(crate_dir: String) -> Result<Audit, TaskError> {
    let started = Instant::now();
    let dir = path(&crate_dir);
    let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))?
        .parse()
        .map_err(|e| TaskError::new(format!("Cargo.toml: {e}")))?;
    let mut findings = Vec::new();
    let mut dependencies = 0;
    let mut sections: Vec<(String, &toml::Table)> = Vec::new();
    for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = manifest.get(kind).and_then(|t| t.as_table()) {
            sections.push((kind.to_string(), t));
        }
        if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
            for (cfg, target) in targets {
                if let Some(t) = target.get(kind).and_then(|t| t.as_table()) {
                    sections.push((format!("target.{cfg}.{kind}"), t));
                }
            }
        }
    }
    for (section, table) in &sections {
        for (name, spec) in table.iter() {
            dependencies += 1;
            audit_dependency(section, name, spec, &mut findings);
        }
    }

    let mut locked_packages = 0;
    if let Ok(lock) = std::fs::read_to_string(dir.join("Cargo.lock")) {
        let lock: toml::Table = lock
            .parse()
            .map_err(|e| TaskError::new(format!("Cargo.lock: {e}")))?;
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(packages) = lock.get("package").and_then(|p| p.as_array()) {
            locked_packages = packages.len();
            for p in packages {
                let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                let version = p.get("version").and_then(|n| n.as_str()).unwrap_or("?");
                versions
                    .entry(name.to_string())
                    .or_default()
                    .push(version.to_string());
                if let Some(source) = p.get("source").and_then(|s| s.as_str()) {
                    if source.starts_with("git+") {
                        findings.push(Finding {
                            severity: "warning".into(),
                            message: format!("Cargo.lock: {name} {version} comes from {source}"),
                        });
                    }
                }
            }
        }
        for (name, vs) in versions.iter().filter(|(_, vs)| vs.len() > 1) {
            findings.push(Finding {
                severity: "warning".into(),
                message: format!(
                    "Cargo.lock: {name} is locked at {} versions: {}",
                    vs.len(),
                    vs.join(", ")
                ),
            });
        }
    }

    let errors = findings.iter().filter(|f| f.severity == "error").count();
    let warnings = findings.len() - errors;
    let summary = format!(
        "{dependencies} dependencies, {locked_packages} locked packages: {errors} errors, {warnings} warnings"
    );
    let text: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}", f.severity, f.message))
        .collect();
    Ok(Audit {
        result: CheckResult {
            check: "dependency audit".into(),
            passed: errors == 0,
            duration_ms: millis(started.elapsed()),
            summary,
            excerpt: excerpt(&text.join("\n"), 12),
        },
        dependencies,
        locked_packages,
        findings,
    })
}

/// Inspects the crate, then runs fmt, lint, tests and the dependency audit at once.
#[process(name = "quality-checks")]
pub async fn quality_checks(ctx: &Ctx, input: QualityInput) -> Result<QualityReport, ProcessError> {
    // Sequential: know what we are checking first.
    let info = inspect_crate(input.crate_dir.clone()).await?;
    ctx.log(format!(
        "checking {} {}: {} source files, {} with tests",
        info.name,
        info.version,
        info.source_files.len(),
        info.test_files.len()
    ));

    let dir = input.crate_dir.clone();
    let target = input
        .target_dir
        .clone()
        .unwrap_or_else(|| format!("{dir}/target/minder-checks"));

    // Parallel: the four checks only read the crate and build into separate directories; a
    // reviewer, if there is one, signs off meanwhile.
    let question = format!("sign off {} {}?", info.name, info.version);
    let (fmt, lint, test, audit, sign_off) = parallel!(
        fmt_check(dir.clone(), target.clone()),
        lint_check(dir.clone(), target.clone(), input.offline),
        test_check(dir.clone(), target.clone(), input.offline),
        dependency_audit(dir.clone()),
        async {
            let Some(reviewer) = &input.reviewer else {
                return Ok::<_, TaskError>(None);
            };
            let decision = ctx.breakpoint("sign-off", &question).await;
            let verdict = if decision.is_approved() {
                "approved"
            } else {
                "rejected"
            };
            let feedback = decision.feedback().unwrap_or("no feedback");
            Ok(Some((
                decision.is_approved(),
                format!("{verdict} by {reviewer}: {feedback}"),
            )))
        },
    )?;

    let signed = sign_off.as_ref().is_none_or(|(approved, _)| *approved);
    let passed = fmt.passed && lint.passed && test.passed && audit.result.passed && signed;
    if let Some((_, said)) = &sign_off {
        ctx.log(format!("sign-off: {said}"));
    }
    for check in [&fmt, &lint, &test, &audit.result] {
        let verdict = if check.passed { "passed" } else { "FAILED" };
        ctx.log(format!(
            "{}: {verdict} in {} ms — {}",
            check.check, check.duration_ms, check.summary
        ));
    }
    Ok(QualityReport {
        info,
        fmt,
        lint,
        test,
        audit,
        sign_off: sign_off.map(|(_, said)| said),
        passed,
    })
}

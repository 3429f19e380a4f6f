//! `quality-checks`: real `cargo fmt`, `cargo clippy` and `cargo test` runs on a tiny crate
//! created in a temp dir (no dependencies, offline), and the dependency audit on crafted
//! manifests.

mod common;

use common::{logging_runner, write};
use minder::prelude::*;
use minder_examples::quality_checks::{dependency_audit, quality_checks, QualityInput};
use std::path::Path;

const MANIFEST: &str = r#"[package]
name = "tiny"
version = "0.1.0"
edition = "2021"

[dependencies]

[workspace]
"#;

const LIB: &str = r#"//! A tiny crate.

/// Adds two numbers.
pub fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(2, 2), 4);
    }
}
"#;

fn tiny_crate(dir: &Path, lib: &str) {
    write(dir, "Cargo.toml", MANIFEST);
    write(dir, "src/lib.rs", lib);
}

fn input(crate_dir: &Path, target: &Path) -> QualityInput {
    QualityInput {
        crate_dir: crate_dir.to_string_lossy().into_owned(),
        target_dir: Some(target.to_string_lossy().into_owned()),
        offline: true,
        reviewer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_crate_passes_every_check() {
    let krate = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    tiny_crate(krate.path(), LIB);
    let (runner, logs) = logging_runner();
    let report = runner
        .run::<quality_checks>(input(krate.path(), target.path()))
        .await
        .unwrap()
        .output;

    assert_eq!(
        (report.info.name.as_str(), report.info.version.as_str()),
        ("tiny", "0.1.0")
    );
    assert_eq!(report.info.source_files, ["src/lib.rs"]);
    assert_eq!(report.info.test_files, ["src/lib.rs"]);
    assert_eq!(report.info.lines, LIB.lines().count());

    assert!(report.fmt.passed, "{:#?}", report.fmt);
    assert_eq!(report.fmt.summary, "formatted");
    assert!(report.lint.passed, "{:#?}", report.lint);
    assert!(report.test.passed, "{:#?}", report.test);
    assert_eq!(report.test.summary, "1 passed");
    assert!(report.test.excerpt.contains("test result: ok. 1 passed"));
    assert!(report.audit.result.passed);
    assert_eq!(report.audit.dependencies, 0);
    assert!(report.audit.findings.is_empty());
    assert!(report.passed);

    // Each cargo check built in its own directory under the given target dir.
    assert!(target.path().join("test/debug").is_dir());
    assert!(target.path().join("lint/debug").is_dir());
    let logs = logs.lock().unwrap();
    assert_eq!(logs.len(), 5);
    assert!(logs[0].starts_with("checking tiny 0.1.0: 1 source files, 1 with tests"));
    assert!(logs[3].starts_with("cargo test: passed in "), "{}", logs[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unformatted_code_and_a_failing_test_are_reported() {
    let krate = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let broken = LIB
        .replace(
            "pub fn add(a: u32, b: u32) -> u32 {",
            "pub fn add(a:u32,b:u32)->u32{",
        )
        .replace("assert_eq!(add(2, 2), 4)", "assert_eq!(add(2, 2), 5)");
    tiny_crate(krate.path(), &broken);
    write(
        krate.path(),
        "tests/api.rs",
        "#[test]\nfn works() {\n    assert_eq!(tiny::add(1, 1), 2);\n}\n",
    );
    let report = Runner::in_memory()
        .run::<quality_checks>(input(krate.path(), target.path()))
        .await
        .unwrap()
        .output;
    assert_eq!(report.info.test_files, ["src/lib.rs", "tests/api.rs"]);
    assert!(!report.fmt.passed);
    assert_eq!(report.fmt.summary, "1 file(s) need formatting");
    assert!(
        report.fmt.excerpt.contains("pub fn add"),
        "{}",
        report.fmt.excerpt
    );
    assert!(report.lint.passed, "{:#?}", report.lint);
    assert!(!report.test.passed);
    // The unit test fails, so cargo stops before the integration test.
    assert_eq!(report.test.summary, "0 passed, 1 failed");
    assert!(
        report.test.excerpt.contains("adds"),
        "{}",
        report.test.excerpt
    );
    assert!(!report.passed);
}

#[tokio::test]
async fn the_audit_flags_wildcards_git_path_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Cargo.toml",
        r#"[package]
name = "audited"
version = "0.1.0"

[dependencies]
serde = "*"
regex = "1.10"
pinned = { git = "https://example.invalid/pinned.git", rev = "abc123" }
floating = { git = "https://example.invalid/floating.git" }
local = { path = "../local" }

[dev-dependencies]
approx = "0.5.*"

[target.'cfg(unix)'.dependencies]
libc = { version = "*" }
"#,
    );
    write(
        dir.path(),
        "Cargo.lock",
        r#"version = 3

[[package]]
name = "audited"
version = "0.1.0"

[[package]]
name = "syn"
version = "1.0.109"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "syn"
version = "2.0.50"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "floating"
version = "0.3.0"
source = "git+https://example.invalid/floating.git#0123abcd"
"#,
    );
    // A task called outside a process just runs its body.
    let audit = dependency_audit(dir.path().to_string_lossy().into_owned())
        .await
        .unwrap();
    let findings: Vec<String> = audit
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.severity, f.message))
        .collect();
    assert_eq!(
        findings,
        [
            "error: [dependencies] floating: git dependency on https://example.invalid/floating.git without `rev` or `tag`",
            "warning: [dependencies] local: path dependency on ../local",
            "warning: [dependencies] pinned: git dependency on https://example.invalid/pinned.git",
            "error: [dependencies] serde: wildcard version `*` accepts any release",
            "error: [target.cfg(unix).dependencies] libc: wildcard version `*` accepts any release",
            "warning: [dev-dependencies] approx: wildcard in version `0.5.*`",
            "warning: Cargo.lock: floating 0.3.0 comes from git+https://example.invalid/floating.git#0123abcd",
            "warning: Cargo.lock: syn is locked at 2 versions: 1.0.109, 2.0.50",
        ],
        "{findings:#?}"
    );
    assert_eq!(audit.dependencies, 7);
    assert_eq!(audit.locked_packages, 4);
    assert!(!audit.result.passed);
    assert_eq!(
        audit.result.summary,
        "7 dependencies, 4 locked packages: 3 errors, 5 warnings"
    );
}

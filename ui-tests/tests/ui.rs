//! Compile-fail and pass cases for the macros: every diagnostic of the brief's §3, and
//! legal code that looks like a mistake. Regenerate `.stderr` with
//! `TRYBUILD=overwrite cargo test -p minder-ui-tests` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}

/// Cases that `cargo check` alone must reject (trybuild checks rather than builds when a set
/// has no pass case): declared resource conflicts, found without monomorphization, so also in
/// processes that nothing runs and by rust-analyzer.
#[test]
fn rejected_by_cargo_check() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/check/*.rs");
}

//! Compile-time tests of minder's macros, run by `tests/ui.rs` with trybuild: `tests/ui/fail`
//! holds one case per diagnostic with its expected `.stderr`, `tests/ui/pass` holds legal code
//! that looks like a mistake. This crate has no code of its own.

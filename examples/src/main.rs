//! The examples binary: the minder command line over every example process.
//!
//! `cargo run -p minder-examples -- run batch-files --input examples/data/batch-input.json`

use minder_examples::*;

fn main() -> std::process::ExitCode {
    minder::cli::main(registry())
}

/// Every example process.
fn registry() -> minder::cli::Registry {
    minder::cli::Registry::new().process::<batch_files::batch_files>()
}

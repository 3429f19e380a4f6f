//! The examples binary: the minder command line over every example process.
//!
//! `cargo run -p minder-examples -- run batch-files --input examples/data/batch-input.json`

fn main() -> std::process::ExitCode {
    minder::cli::main(minder_examples::registry())
}

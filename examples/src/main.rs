//! The examples binary: the minder command line over every example process.
//!
//! `cargo run -p minder-examples -- run batch-files --input examples/data/batch-input.json`

use minder_examples::*;

fn main() -> std::process::ExitCode {
    minder::cli::main(registry())
}

/// Every example process.
fn registry() -> minder::cli::Registry {
    minder::cli::Registry::new()
        .process::<batch_files::batch_files>()
        .process::<quality_checks::quality_checks>()
        .process::<deploy::deploy_services>()
        .process::<build_test_deploy::build_test_deploy>()
        .process::<quality_convergence::quality_convergence>()
        .process::<chunked::process_in_chunks>()
        .process::<chunked::process_with_limit>()
        .process::<final_verification::final_verification>()
        .process::<pipeline::command_pipeline>()
}

//! # minder examples
//!
//! The scenarios and examples of the parallel-execution guide
//! (`shared/seeds/parallel-execution.md`), each as a real minder workflow that does real work
//! on real files and real programs:
//!
//! | module | seed | process |
//! |---|---|---|
//! | [`quality_checks`] | Scenario 1: parallel quality checks | `quality-checks` |
//! | [`batch_files`] | Scenario 2 + Example 2: batch file processing with error handling; several directories, a child process each | `batch-files`, `batch-dirs` |
//! | [`deploy`] | Scenario 3: multi-service deployment | `deploy-services` |
//! | [`build_test_deploy`] | Scenario 4: mixed sequential and parallel | `build-test-deploy` |
//! | [`quality_convergence`] | Example 1: parallel checks inside a convergence loop | `quality-convergence` |
//! | [`chunked`] | Example 3 + pitfall 5: chunked processing, and `limit` instead | `process-in-chunks`, `process-with-limit` |
//! | [`final_verification`] | Example 4: parallel final verification | `final-verification` |
//! | [`pipeline`] | a CI job of programs run in order (command tasks, secrets) | `command-pipeline` |
//! | [`warehouse`] | task state: a file-backed store shared by the tasks of every run | `fulfil-order` |
//!
//! Every input and output is a `#[data]` struct, so runs are journaled and resumable. All I/O
//! happens inside `#[task]`s; the process bodies only decide what runs when.
#![warn(missing_docs)]

pub mod batch_files;
pub mod build_test_deploy;
pub mod chunked;
pub mod deploy;
pub mod final_verification;
pub mod pipeline;
pub mod quality_checks;
pub mod quality_convergence;
pub mod support;
pub mod warehouse;

/// Every example process, for the command line; `--version` names the examples binary. The
/// task state: the [`warehouse::Warehouse`] of `$MINDER_WAREHOUSE`.
pub fn registry() -> minder::cli::Registry {
    minder::cli::Registry::new()
        .binary(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .process::<batch_files::batch_files>()
        .process::<batch_files::batch_dirs>()
        .process::<quality_checks::quality_checks>()
        .process::<deploy::deploy_services>()
        .process::<build_test_deploy::build_test_deploy>()
        .process::<quality_convergence::quality_convergence>()
        .process::<chunked::process_in_chunks>()
        .process::<chunked::process_with_limit>()
        .process::<final_verification::final_verification>()
        .process::<pipeline::command_pipeline>()
        .process::<warehouse::fulfil_order>()
        .state(warehouse::Warehouse::from_env())
}

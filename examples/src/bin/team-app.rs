//! A team's own command line, with the minder command line mounted as its `flows` subcommand,
//! running in the team's own tokio runtime:
//!
//! ```text
//! cargo run -p minder-examples --bin team-app -- hello Ada
//! cargo run -p minder-examples --bin team-app -- flows run batch-files --input examples/data/batch-input.json
//! cargo run -p minder-examples --bin team-app -- flows list --state failed
//! ```

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A team's service, with its workflows under `flows`.
#[derive(Parser, Debug)]
#[command(name = "team-app", version)]
struct App {
    #[command(subcommand)]
    command: AppCommand,
}

#[derive(Subcommand, Debug)]
enum AppCommand {
    /// Greets someone: the team's own command.
    Hello {
        /// Who.
        name: String,
    },
    /// The workflows: minder's command line (run, resume, status, list, prune, ...).
    Flows(minder::cli::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    match App::parse().command {
        AppCommand::Hello { name } => {
            println!("hello {name}");
            ExitCode::SUCCESS
        }
        AppCommand::Flows(args) => {
            let registry =
                minder_examples::registry().binary("team-app", env!("CARGO_PKG_VERSION"));
            minder::cli::run_args(&registry, args).await
        }
    }
}

//! **A command pipeline**: the programs of a small CI job, run one after another in a working
//! directory until one fails, each as a `minder::command` task.
//!
//! Every program runs without a shell, in a process group of its own: a timeout, a cancel or
//! the end of the runner kills it *and* whatever it started; after a `kill -9` of the runner,
//! `resume` kills what the program left running before it runs the step again. Secrets reach
//! the programs by name (`"secrets": {"DEPLOY_TOKEN": "CI_DEPLOY_TOKEN"}` gives each program
//! `DEPLOY_TOKEN` with the value of the runner's `CI_DEPLOY_TOKEN`): the journal, and
//! `events`, have the names, never the value.
//!
//! Quick start: `examples/data/pipeline-input.json` counts the lines of the sample project's
//! sources and checks its manifest lists them.

use minder::command::{command, Cmd};
use minder::prelude::*;
use std::collections::BTreeMap;

/// The job.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineInput {
    /// The working directory of every program.
    pub dir: String,
    /// The programs, run in this order.
    pub steps: Vec<PipelineStep>,
    /// Secret environment variables of every program: its variable → the runner's variable
    /// that holds the value.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Each program is killed (with everything it started) after this many seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// One program of the job.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineStep {
    /// What the step is called in the report.
    pub name: String,
    /// The program.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// What one program did.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Whether it exited with 0.
    pub success: bool,
    /// Its exit code (`None`: killed by a signal).
    pub status: Option<i32>,
    /// The last lines of its standard output.
    pub output: String,
    /// How long it ran.
    pub duration_ms: u64,
}

/// The job's result.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineReport {
    /// Every program that ran, in order (the job stops at the first that fails).
    pub steps: Vec<StepReport>,
    /// Whether all of them succeeded.
    pub passed: bool,
}

/// Runs `input.steps` in order until one fails.
#[process(name = "command-pipeline")]
pub async fn command_pipeline(
    ctx: &Ctx,
    input: PipelineInput,
) -> Result<PipelineReport, ProcessError> {
    let mut report = PipelineReport {
        steps: Vec::new(),
        passed: true,
    };
    for step in &input.steps {
        let mut cmd = Cmd::new(step.program.clone())
            .args(step.args.iter().cloned())
            .current_dir(input.dir.clone());
        for (key, runner_var) in &input.secrets {
            cmd = cmd.env_secret_from(key.clone(), runner_var.clone());
        }
        if let Some(secs) = input.timeout_secs {
            cmd = cmd.timeout_secs(secs);
        }
        let out = command(cmd).await?;
        ctx.log(format!(
            "{}: {} in {} ms",
            step.name,
            if out.success { "passed" } else { "failed" },
            out.duration_ms
        ));
        report.steps.push(StepReport {
            name: step.name.clone(),
            success: out.success,
            status: out.status,
            output: crate::support::excerpt(&out.stdout, 10),
            duration_ms: out.duration_ms,
        });
        if !out.success {
            report.passed = false;
            break;
        }
    }
    Ok(report)
}

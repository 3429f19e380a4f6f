//! `command-pipeline`: the shipped sample job on the sample project, and a job that stops at
//! its first failing program.

mod common;

use common::{data_dir, logging_runner};
use minder_examples::pipeline::{command_pipeline, PipelineInput, PipelineStep};

fn step(name: &str, program: &str, args: &[&str]) -> PipelineStep {
    PipelineStep {
        name: name.into(),
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

#[tokio::test]
async fn the_sample_job_passes_on_the_sample_project() {
    let text = std::fs::read_to_string(data_dir("pipeline-input.json")).unwrap();
    let mut input: PipelineInput = serde_json::from_str(&text).unwrap();
    // The sample's directory is relative to the repository root.
    input.dir = data_dir("project").display().to_string();
    let lib_lines = std::fs::read_to_string(data_dir("project").join("src/lib.rs"))
        .unwrap()
        .lines()
        .count();
    let (runner, logs) = logging_runner();
    let report = runner.run::<command_pipeline>(input).await.unwrap().output;
    assert!(report.passed, "{report:?}");
    assert_eq!(report.steps.len(), 3);
    assert_eq!(report.steps[0].output, "src/lib.rs");
    assert!(
        report.steps[1]
            .output
            .contains(&format!("{lib_lines} src/lib.rs")),
        "{report:?}"
    );
    assert_eq!(logs.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_job_stops_at_the_first_failing_program() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "alpha\n").unwrap();
    let input = PipelineInput {
        dir: dir.path().display().to_string(),
        steps: vec![
            step("read", "cat", &["a.txt"]),
            step("missing", "cat", &["no-such-file"]),
            step("never", "touch", &["never-ran"]),
        ],
        secrets: Default::default(),
        timeout_secs: Some(60),
    };
    let (runner, _) = logging_runner();
    let report = runner.run::<command_pipeline>(input).await.unwrap().output;
    assert!(!report.passed);
    let ran: Vec<(&str, bool)> = report
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.success))
        .collect();
    assert_eq!(ran, [("read", true), ("missing", false)]);
    assert_eq!(report.steps[0].output, "alpha");
    assert_eq!(report.steps[1].status, Some(1));
    assert!(!dir.path().join("never-ran").exists());
}

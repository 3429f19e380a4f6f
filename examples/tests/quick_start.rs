//! The shipped quick-start inputs (`examples/data/*-input.json`) parse into their processes'
//! inputs, and the shipped sample data gives the documented results (run on copies in temp
//! dirs, so the source tree is not written to).

mod common;

use common::data_dir;
use minder::prelude::*;
use minder_examples::*;
use std::path::Path;

fn read_input<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = data_dir(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            if path.file_name().unwrap() != "target" {
                std::fs::create_dir_all(&target).unwrap();
                copy_tree(&path, &target);
            }
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn every_quick_start_input_parses() {
    let batch: batch_files::BatchInput = read_input("batch-input.json");
    assert_eq!(batch.dir, "examples/data/batch");
    let _: quality_checks::QualityInput = read_input("quality-checks-input.json");
    let deploy: deploy::DeployInput = read_input("deploy-input.json");
    assert_eq!(deploy.services, ["api", "web", "worker"]);
    let _: build_test_deploy::PipelineInput = read_input("build-test-deploy-input.json");
    let _: quality_convergence::ConvergenceInput = read_input("quality-convergence-input.json");
    let _: chunked::NumbersInput = read_input("chunked-input.json");
    let _: final_verification::VerifyInput = read_input("final-verification-input.json");
    // Unknown fields are rejected, not ignored.
    let typo = serde_json::from_str::<batch_files::BatchInput>(r#"{"dir": ".", "limt": 3}"#);
    assert!(typo
        .unwrap_err()
        .to_string()
        .contains("unknown field `limt`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_site_deploys() {
    let out = tempfile::tempdir().unwrap();
    let input = build_test_deploy::PipelineInput {
        src_dir: data_dir("site").to_string_lossy().into_owned(),
        out_dir: out.path().to_string_lossy().into_owned(),
    };
    let report = Runner::in_memory()
        .run::<build_test_deploy::build_test_deploy>(input)
        .await
        .unwrap()
        .output;
    assert!(report.deployed, "{report:#?}");
    assert_eq!(report.pages, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_project_is_approved() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&data_dir("project"), tmp.path());
    let mut input: final_verification::VerifyInput = read_input("final-verification-input.json");
    input.project_dir = tmp.path().to_string_lossy().into_owned();
    let report = Runner::in_memory()
        .run::<final_verification::final_verification>(input)
        .await
        .unwrap()
        .output;
    assert_eq!(report.tests.passed_count, 3);
    assert_eq!(report.coverage.percent, 100);
    assert!(report.integrity.passed, "{:?}", report.integrity);
    assert!(report.review.approved, "{:?}", report.review);
    assert_eq!(report.review.score, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_messy_file_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("messy.txt");
    std::fs::copy(data_dir("messy.txt"), &file).unwrap();
    let mut input: quality_convergence::ConvergenceInput =
        read_input("quality-convergence-input.json");
    input.file = file.to_string_lossy().into_owned();
    let report = Runner::in_memory()
        .run::<quality_convergence::quality_convergence>(input)
        .await
        .unwrap()
        .output;
    // Five offending lines (tab, spaces, too long, trailing tab, no final newline), two fixes
    // per iteration: three iterations.
    assert_eq!((report.iterations, report.score), (3, 100));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n') && !text.contains('\t'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_numbers_factorize() {
    let input: chunked::NumbersInput = read_input("chunked-input.json");
    let report = Runner::in_memory()
        .run::<chunked::process_with_limit>(input.clone())
        .await
        .unwrap()
        .output;
    assert_eq!(report.total, input.numbers.len());
    let fermat = report
        .results
        .iter()
        .find(|r| r.n == 4_294_967_297)
        .unwrap();
    assert_eq!(fermat.factors, [641, 6_700_417]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_crate_passes_its_checks() {
    let target = tempfile::tempdir().unwrap();
    let input = quality_checks::QualityInput {
        crate_dir: data_dir("tiny-crate").to_string_lossy().into_owned(),
        target_dir: Some(target.path().to_string_lossy().into_owned()),
        offline: true,
        reviewer: None,
    };
    let report = Runner::in_memory()
        .run::<quality_checks::quality_checks>(input)
        .await
        .unwrap()
        .output;
    assert!(report.passed, "{report:#?}");
    assert_eq!(report.info.name, "tiny-crate");
    assert_eq!(report.test.summary, "1 passed");
}

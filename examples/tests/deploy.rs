//! `deploy-services`: builds and deploys the shipped sample services into a temp dir and checks
//! the deployed files byte for byte; a broken service and a tampered deployment are caught.

mod common;

use common::{data_dir, failure, fnv, write};
use minder::prelude::*;
use minder_examples::deploy::{deploy_services, health_check, DeployInput, Manifest, MANIFEST};
use std::path::Path;

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for rel in files_under(from) {
        write(to, &rel, std::fs::read(from.join(&rel)).unwrap());
    }
}

fn input(src: &Path, out: &Path, env: &str) -> DeployInput {
    DeployInput {
        src_dir: src.to_string_lossy().into_owned(),
        out_dir: out.to_string_lossy().into_owned(),
        env: env.into(),
        services: vec!["api".into(), "web".into(), "worker".into()],
        not_before: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_every_sample_service_intact() {
    let src = data_dir("services");
    let out = tempfile::tempdir().unwrap();
    let done = Runner::in_memory()
        .run::<deploy_services>(input(&src, out.path(), "staging"))
        .await
        .unwrap();
    let report = done.output;
    assert!(report.success, "{report:#?}");
    assert_eq!(report.env, "staging");
    let names: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["api", "web", "worker"]);

    for result in &report.services {
        assert!(
            result.built && result.deployed && result.healthy,
            "{result:?}"
        );
        assert!(result.problems.is_empty());
        let source = src.join(&result.service);
        let deployed = out.path().join("staging").join(&result.service);
        let source_files = files_under(&source);
        assert_eq!(result.files, source_files.len());
        // Exactly the source files plus the manifest, byte for byte.
        let mut expected = source_files.clone();
        expected.push(MANIFEST.to_string());
        expected.sort();
        assert_eq!(files_under(&deployed), expected);
        for rel in &source_files {
            assert_eq!(
                std::fs::read(source.join(rel)).unwrap(),
                std::fs::read(deployed.join(rel)).unwrap(),
                "{rel}"
            );
        }
        // The manifest's checksums, recomputed here.
        let manifest: Manifest =
            serde_json::from_str(&std::fs::read_to_string(deployed.join(MANIFEST)).unwrap())
                .unwrap();
        assert_eq!(Some(&manifest.version), result.version.as_ref());
        for file in &manifest.files {
            let bytes = std::fs::read(source.join(&file.path)).unwrap();
            assert_eq!(file.fnv1a64, fnv(&bytes));
            assert_eq!(file.bytes, bytes.len() as u64);
        }
        // The build is there too, and no staging directory is left behind.
        assert!(out
            .path()
            .join("build")
            .join(&result.service)
            .join(MANIFEST)
            .is_file());
        assert!(!out
            .path()
            .join("staging")
            .join(format!(".{}.staging", result.service))
            .exists());
    }
    assert!(out.path().join("staging/web/static/app.css").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_service_does_not_stop_the_others() {
    let src = tempfile::tempdir().unwrap();
    copy_tree(&data_dir("services"), src.path());
    write(src.path(), "web/service.json", "{ \"name\": \"web\", ");
    let out = tempfile::tempdir().unwrap();
    // `prod` stops at the approval breakpoint; the test answers it.
    let report = Runner::in_memory()
        .decide_breakpoints(|name, _| {
            assert_eq!(name, "approve-production");
            Decision::Approved {
                feedback: Some("from the test".into()),
            }
        })
        .run::<deploy_services>(input(src.path(), out.path(), "prod"))
        .await
        .unwrap()
        .output;
    assert_eq!(report.approval.as_deref(), Some("approved: from the test"));
    assert!(!report.success);
    let web = &report.services[1];
    assert_eq!(web.service, "web");
    assert!(!web.built && !web.deployed && !web.healthy);
    assert!(
        web.problems[0].contains("service.json is not valid JSON"),
        "{:?}",
        web.problems
    );
    assert!(!out.path().join("prod/web").exists());
    for ok in [&report.services[0], &report.services[2]] {
        assert!(ok.healthy, "{ok:?}");
        assert!(out
            .path()
            .join("prod")
            .join(&ok.service)
            .join(MANIFEST)
            .is_file());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_catches_a_tampered_deployment() {
    let out = tempfile::tempdir().unwrap();
    let report = Runner::in_memory()
        .run::<deploy_services>(input(&data_dir("services"), out.path(), "qa"))
        .await
        .unwrap()
        .output;
    assert!(report.success);
    let deployed = out.path().join("qa/api");
    write(&deployed, "routes.txt", "GET / -> hacked\n");
    write(&deployed, "extra.txt", "not shipped");
    // A task called outside any process just runs its body.
    let health = health_check(minder_examples::deploy::Deployment {
        service: "api".into(),
        env: "qa".into(),
        path: deployed.to_string_lossy().into_owned(),
        version: report.services[0].version.clone().unwrap(),
    })
    .await
    .unwrap();
    assert!(!health.healthy);
    assert_eq!(
        health.problems,
        [
            "routes.txt: content differs from the manifest",
            "extra.txt: not in the manifest"
        ]
    );
}

#[tokio::test]
async fn bad_inputs_are_clear_errors() {
    let out = tempfile::tempdir().unwrap();
    let runner = Runner::in_memory();
    let message = failure(
        runner
            .run::<deploy_services>(input(&data_dir("services"), out.path(), "../etc"))
            .await,
    );
    assert!(message.contains("invalid env"), "{message}");
    let mut twice = input(&data_dir("services"), out.path(), "prod");
    twice.services.push("api".into());
    let message = failure(runner.run::<deploy_services>(twice).await);
    assert!(message.contains("`api` is listed twice"), "{message}");
}

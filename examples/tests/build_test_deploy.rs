//! `build-test-deploy`: a small site is built, checked in parallel and deployed only when the
//! checks pass.

mod common;

use common::{failure, logging_runner, write};
use minder::prelude::*;
use minder_examples::build_test_deploy::{build_test_deploy, PipelineInput};
use std::path::Path;

fn input(src: &Path, out: &Path) -> PipelineInput {
    PipelineInput {
        src_dir: src.to_string_lossy().into_owned(),
        out_dir: out.to_string_lossy().into_owned(),
    }
}

fn good_site(src: &Path) {
    write(
        src,
        "index.md",
        "# Home\n\nWelcome! Read [About us](about.md) or the [guide](guide.md).\n",
    );
    write(
        src,
        "about.md",
        "# About\n\nWe write <workflows> & tests.\n\n[Back](index.md)\n",
    );
    write(
        src,
        "guide.md",
        "# Guide\n\n## Steps\n\n- build\n- [test](about.md#testing)\n- deploy\n\nAn [external link](https://example.invalid/x) is not crawled.\n",
    );
    write(src, "notes.txt", "not a page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_site_is_built_checked_and_deployed() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    good_site(src.path());
    let (runner, logs) = logging_runner();
    let report = runner
        .run::<build_test_deploy>(input(src.path(), out.path()))
        .await
        .unwrap()
        .output;

    assert_eq!(report.pages, 3);
    assert!(report.unit.passed && report.e2e.passed, "{report:#?}");
    assert_eq!((report.unit.checked, report.e2e.checked), (3, 3));
    assert!(report.deployed);
    assert_eq!(report.reason, None);
    assert_eq!(
        report.deployed_files,
        ["about.html", "guide.html", "index.html"]
    );

    // The live site is exactly the build.
    for page in &report.deployed_files {
        let built = std::fs::read(out.path().join("build").join(page)).unwrap();
        let live = std::fs::read(out.path().join("live").join(page)).unwrap();
        assert_eq!(built, live, "{page}");
    }
    let index = std::fs::read_to_string(out.path().join("live/index.html")).unwrap();
    assert!(index.contains("<title>Home</title>"));
    assert!(index.contains("<a href=\"about.html\">About us</a>"));
    let about = std::fs::read_to_string(out.path().join("live/about.html")).unwrap();
    assert!(about.contains("We write &lt;workflows&gt; &amp; tests."));
    let guide = std::fs::read_to_string(out.path().join("live/guide.html")).unwrap();
    assert!(
        guide.contains("<ul>\n<li>build</li>\n<li><a href=\"about.html#testing\">test</a></li>")
    );

    // The docs branch wrote a sitemap.
    let sitemap = std::fs::read_to_string(&report.docs.sitemap).unwrap();
    assert!(sitemap.contains("- [Home](index.html) → about.html, guide.html"));
    assert_eq!(report.docs.pages, 3);

    assert_eq!(
        logs.lock().unwrap().clone(),
        ["built 3 pages", "deployed 3 files"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_checks_keep_the_site_undeployed() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "index.md",
        "# Home\n\nSee [missing](missing.md).\n",
    );
    write(src.path(), "orphan.md", "# Orphan\n\nNobody links here.\n");
    write(
        src.path(),
        "untitled.md",
        "No heading here.\n\n[home](index.md)\n",
    );
    write(src.path(), "zz.md", "# Linked\n\n[untitled](untitled.md)\n");
    // index links nowhere valid, so zz and untitled are unreachable as well.
    let report = Runner::in_memory()
        .run::<build_test_deploy>(input(src.path(), out.path()))
        .await
        .unwrap()
        .output;

    assert!(!report.deployed);
    assert!(report.deployed_files.is_empty());
    assert!(!out.path().join("live").exists());
    assert!(!report.unit.passed);
    assert_eq!(
        report.unit.failures,
        [
            "untitled.html: empty <title> (the page needs a `# ` heading)",
            "untitled.html: 0 <h1> headings, expected 1"
        ]
    );
    assert!(!report.e2e.passed);
    assert_eq!(
        report.e2e.failures,
        [
            "index.html: broken link `missing.html`",
            "orphan.html: not reachable from index.html",
            "untitled.html: not reachable from index.html",
            "zz.html: not reachable from index.html"
        ]
    );
    let reason = report.reason.unwrap();
    assert!(
        reason.starts_with("checks failed: untitled.html"),
        "{reason}"
    );
    assert!(reason.contains("broken link `missing.html`"), "{reason}");
    // The docs branch still ran: parallel branches are independent.
    assert!(Path::new(&report.docs.sitemap).is_file());
}

#[tokio::test]
async fn no_index_fails_the_build() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write(src.path(), "about.md", "# About\n");
    let message = failure(
        Runner::in_memory()
            .run::<build_test_deploy>(input(src.path(), out.path()))
            .await,
    );
    assert!(message.contains("has no index.md"), "{message}");
}

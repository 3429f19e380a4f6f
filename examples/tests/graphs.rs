//! The static graph of every example process: printed, and checked for its key nodes.

use minder::Process;
use minder_examples::*;

fn show<P: Process>() -> String {
    let graph = P::graph();
    let text = graph.to_string();
    println!("{text}");
    assert!(graph.to_mermaid().starts_with("flowchart TD"));
    assert!(graph.to_dot().contains(P::NAME));
    assert_eq!(graph.process, P::NAME);
    text
}

fn has_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing in\n{text}");
    }
}

#[test]
fn quality_checks_graph() {
    let text = show::<quality_checks::quality_checks>();
    has_all(
        &text,
        &[
            "process quality-checks",
            "task inspect_crate",
            "parallel fmt_check+lint_check+test_check+dependency_audit+seq (fail-fast)",
            "branch 3",
            "task dependency_audit",
            "branch 4",
            "ctx.breakpoint",
        ],
    );
}

#[test]
fn batch_files_graph() {
    let text = show::<batch_files::batch_files>();
    has_all(
        &text,
        &[
            "process batch-files",
            "task list_files",
            "map files",
            "task summarize_file",
        ],
    );
}

#[test]
fn deploy_graph() {
    let text = show::<deploy::deploy_services>();
    has_all(
        &text,
        &[
            "process deploy-services",
            "map build",
            "task build_service",
            "map deploy",
            "task deploy_service",
            "task health_check",
        ],
    );
}

#[test]
fn build_test_deploy_graph() {
    let text = show::<build_test_deploy::build_test_deploy>();
    has_all(
        &text,
        &[
            "task build_site",
            "parallel unit_tests+e2e_check+generate_docs (fail-fast)",
            "if",
            "task deploy_site",
        ],
    );
    // Build comes before the parallel block, deploy after it.
    let build = text.find("task build_site").unwrap();
    let par = text.find("parallel ").unwrap();
    let deploy = text.find("task deploy_site").unwrap();
    assert!(build < par && par < deploy);
}

#[test]
fn quality_convergence_graph() {
    let text = show::<quality_convergence::quality_convergence>();
    has_all(
        &text,
        &[
            "while loop",
            "task fix_violations",
            "parallel check_trailing_whitespace+check_tabs+check_line_length+check_final_newline (fail-fast)",
            "task score_file",
        ],
    );
}

#[test]
fn chunked_graphs() {
    let chunks = show::<chunked::process_in_chunks>();
    has_all(&chunks, &["for loop", "map chunk", "task factorize"]);
    let limited = show::<chunked::process_with_limit>();
    has_all(&limited, &["map numbers", "task factorize"]);
    assert!(!limited.contains("for loop"));
}

#[test]
fn final_verification_graph() {
    let text = show::<final_verification::final_verification>();
    has_all(
        &text,
        &[
            "parallel run_tests+coverage_check+integrity_check (fail-fast)",
            "task final_review",
        ],
    );
}

#[test]
fn pipeline_graph() {
    let text = show::<pipeline::command_pipeline>();
    has_all(&text, &["process command-pipeline", "task command"]);
}

#[test]
fn warehouse_graph() {
    let text = show::<warehouse::fulfil_order>();
    has_all(
        &text,
        &[
            "process fulfil-order",
            "map reserve",
            "task reserve",
            "task release",
            "task ship",
        ],
    );
}

//! The static graph `#[process]` reads from the body, its drawings, and the structural
//! fingerprint (formatting and comments do not change it; a new step does).

use minder::prelude::*;
use minder::Process;

#[task]
async fn fetch(url: String) -> Result<String, TaskError> {
    Ok(url)
}

#[task]
async fn store(page: String) -> Result<usize, TaskError> {
    Ok(page.len())
}

#[process]
async fn crawl(ctx: &Ctx, urls: Vec<String>) -> Result<usize, ProcessError> {
    for url in &urls {
        if url.is_empty() {
            return Err(ProcessError::msg("empty url"));
        }
    }
    let pages = ctx
        .map("pages", urls, |u| {
            let u = u.trim().to_string();
            fetch(u)
        })
        .limit(4)
        .await?;
    let (a, b) = parallel!(store(pages.concat()), async {
        let first = fetch("x".into()).await?;
        store(first).await
    })?;
    if a > 10 {
        ctx.log("big");
    }
    ctx.sleep(std::time::Duration::from_millis(1)).await;
    Ok(a + b)
}

#[process(name = "crawl")]
async fn crawl_reformatted(ctx: &Ctx, urls: Vec<String>) -> Result<usize, ProcessError> {
    // Same structure, other formatting and comments.
    for url in &urls {
        if url.is_empty() {
            return Err(ProcessError::msg("no"));
        }
    }
    let pages = ctx
        .map("pages", urls, |u| {
            let u = u.trim().to_string();
            fetch(u)
        })
        .limit(4)
        .await?;
    let (a, b) = parallel!(store(pages.concat()), async {
        let first = fetch("y".into()).await?;
        store(first).await
    },)?;
    if a > 10 {
        ctx.log("large");
    }
    ctx.sleep(std::time::Duration::from_millis(2)).await;
    Ok(a + b)
}

#[process(name = "crawl")]
async fn crawl_with_a_new_step(ctx: &Ctx, urls: Vec<String>) -> Result<usize, ProcessError> {
    let n = crawl(ctx, urls).await?;
    Ok(n + store("extra".into()).await?)
}

#[test]
fn the_graph_is_read_from_the_body() {
    let tree = <crawl as Process>::graph().to_string();
    let expected = "process crawl
  map pages
    task fetch
  parallel store+seq (fail-fast)
    branch 0
      task store
    branch 1
      task fetch
      task store
  if
    arm 0
      ctx.log
    arm 1
  ctx.sleep
";
    assert_eq!(tree, expected, "the `for` loop without steps is left out");
    let mermaid = <crawl as Process>::graph().to_mermaid();
    assert!(mermaid.starts_with("flowchart TD\n"));
    assert!(mermaid.contains("[\"fetch\"]") && mermaid.contains("{\"parallel store+seq\"}"));
    let dot = <crawl as Process>::graph().to_dot();
    assert!(dot.starts_with("digraph \"crawl\" {") && dot.contains("shape=diamond"));
}

#[test]
fn the_fingerprint_is_structural() {
    let a = <crawl as Process>::graph().fingerprint();
    assert_eq!(a, <crawl_reformatted as Process>::graph().fingerprint());
    assert_ne!(a, <crawl_with_a_new_step as Process>::graph().fingerprint());
}

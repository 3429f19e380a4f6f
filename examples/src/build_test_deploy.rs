//! **Seed Scenario 4: mixed sequential and parallel.**
//!
//! Build must finish before anything can check it; the checks are independent of each other;
//! deployment depends on the checks passing. The workflow here builds a small static site:
//!
//! 1. **build** (sequential): render every `*.md` page of `src_dir` into
//!    `out_dir/build/<page>.html` (headings, paragraphs, lists, links to other pages);
//! 2. **in parallel** on the build output:
//!    * `unit_tests` — every page is well-formed HTML with a title and exactly one `<h1>`;
//!    * `e2e_check` — crawl from `index.html`: every local link resolves, every page is
//!      reachable (the seed's end-to-end test against a preview URL);
//!    * `generate_docs` — write `out_dir/docs/SITEMAP.md`;
//! 3. **deploy** (conditional): only when unit tests and the e2e check pass, copy the build to
//!    `out_dir/live`; otherwise report why not and leave `live` untouched.
//!
//! The tasks declare what they touch (`reads = [BuildDir]`, `writes = [DocsDir]`), so putting a
//! task that writes the build directory into that `parallel!` would not compile.
//!
//! Quick start: `examples/data/build-test-deploy-input.json` builds the sample site of
//! `examples/data/site` into `/tmp/minder-site`.

use crate::support::{path, replace_dir_with_copy};
use minder::prelude::*;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

/// What to build and where.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineInput {
    /// A directory of Markdown pages; `index.md` is required.
    pub src_dir: String,
    /// Output root: `build/`, `docs/` and `live/` are created under it.
    pub out_dir: String,
}

/// One rendered page.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The HTML file name, e.g. `about.html`.
    pub file: String,
    /// The text of the page's first `# ` heading (empty if it has none).
    pub title: String,
    /// The `href`s the page links to, in order.
    pub links: Vec<String>,
}

/// What the build produced.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// The directory holding the HTML files.
    pub build_dir: String,
    /// The pages, sorted by file name.
    pub pages: Vec<Page>,
}

/// The verdict of one check.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Whether the check passed.
    pub passed: bool,
    /// Pages examined.
    pub checked: usize,
    /// What failed, one line each.
    pub failures: Vec<String>,
}

/// The generated documentation.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Docs {
    /// The sitemap file.
    pub sitemap: String,
    /// Pages listed in it.
    pub pages: usize,
}

/// The result of the pipeline.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineReport {
    /// Pages built.
    pub pages: usize,
    /// The unit tests.
    pub unit: Check,
    /// The end-to-end check.
    pub e2e: Check,
    /// The docs.
    pub docs: Docs,
    /// Whether the build was deployed to `out_dir/live`.
    pub deployed: bool,
    /// The deployed files, when deployed.
    pub deployed_files: Vec<String>,
    /// Why it was not deployed.
    pub reason: Option<String>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders inline text: escapes it and turns `[text](target)` into links (`.md` targets become
/// `.html`). Returns the HTML and the link targets.
fn inline(text: &str, links: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find("](") else { break };
        let Some(end) = after[close + 2..].find(')') else {
            break;
        };
        let label = &after[..close];
        let target = after[close + 2..close + 2 + end].to_string();
        let (page, fragment) = match target.split_once('#') {
            Some((page, fragment)) => (page, format!("#{fragment}")),
            None => (target.as_str(), String::new()),
        };
        let target = match page.strip_suffix(".md") {
            Some(stem) if !page.contains("://") => format!("{stem}.html{fragment}"),
            _ => target.clone(),
        };
        out.push_str(&escape(&rest[..open]));
        out.push_str(&format!(
            "<a href=\"{}\">{}</a>",
            escape(&target),
            escape(label)
        ));
        links.push(target);
        rest = &after[close + 2 + end + 1..];
    }
    out.push_str(&escape(rest));
    out
}

/// Renders a Markdown page (headings, lists, paragraphs, links) to a full HTML document.
fn render(markdown: &str) -> (String, String, Vec<String>) {
    let mut body = String::new();
    let mut links = Vec::new();
    let mut title = String::new();
    for block in markdown.split("\n\n") {
        let lines: Vec<&str> = block
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        if lines.iter().all(|l| l.starts_with("- ")) {
            body.push_str("<ul>\n");
            for l in &lines {
                body.push_str(&format!("<li>{}</li>\n", inline(&l[2..], &mut links)));
            }
            body.push_str("</ul>\n");
            continue;
        }
        let mut paragraph = Vec::new();
        for l in lines {
            if let Some(h) = l.strip_prefix("# ") {
                if title.is_empty() {
                    title = h.trim().to_string();
                }
                body.push_str(&format!("<h1>{}</h1>\n", inline(h.trim(), &mut links)));
            } else if let Some(h) = l.strip_prefix("## ") {
                body.push_str(&format!("<h2>{}</h2>\n", inline(h.trim(), &mut links)));
            } else {
                paragraph.push(l.trim());
            }
        }
        if !paragraph.is_empty() {
            body.push_str(&format!(
                "<p>{}</p>\n",
                inline(&paragraph.join(" "), &mut links)
            ));
        }
    }
    let html = format!(
        "<!doctype html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body>\n{body}</body>\n</html>\n",
        escape(&title)
    );
    (html, title, links)
}

/// Renders every `*.md` file of `src_dir` into `out_dir/build` (replacing an older build).
/// Fails when there is no `index.md`.
#[task(timeout = "1m", writes = [BuildDir])]
pub async fn build_site(src_dir: String, out_dir: String) -> Result<Build, TaskError> {
    let src = path(&src_dir);
    let mut sources: Vec<String> = std::fs::read_dir(&src)
        .map_err(|e| TaskError::new(format!("cannot read sources `{src_dir}`: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    sources.sort();
    if !sources.iter().any(|s| s == "index.md") {
        return Err(TaskError::new(format!("`{src_dir}` has no index.md")));
    }
    let build_dir = path(&out_dir).join("build");
    if build_dir.exists() {
        std::fs::remove_dir_all(&build_dir)?;
    }
    std::fs::create_dir_all(&build_dir)?;
    let mut pages = Vec::new();
    for source in sources {
        let markdown = std::fs::read_to_string(src.join(&source))?;
        let (html, title, links) = render(&markdown);
        let file = format!("{}.html", source.trim_end_matches(".md"));
        std::fs::write(build_dir.join(&file), html)?;
        pages.push(Page { file, title, links });
    }
    Ok(Build {
        build_dir: build_dir.to_string_lossy().into_owned(),
        pages,
    })
}

/// Checks that the tags of an HTML document nest properly; returns the first problem.
fn tag_problem(html: &str) -> Option<String> {
    const VOID: &[&str] = &["meta", "link", "br", "img", "hr", "input"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            return Some("a `<` is never closed".into());
        };
        let tag = &rest[start + 1..start + len];
        rest = &rest[start + len + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => return Some(format!("`</{name}>` closes `<{open}>`")),
                None => return Some(format!("`</{name}>` closes nothing")),
            }
        } else {
            let name = tag
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            if !VOID.contains(&name.as_str()) {
                stack.push(name);
            }
        }
    }
    stack
        .pop()
        .map(|open| format!("`<{open}>` is never closed"))
}

/// Unit tests of the built pages: well-formed tags, a non-empty `<title>`, exactly one `<h1>`.
#[task(timeout = "1m", reads = [BuildDir])]
pub async fn unit_tests(build: Build) -> Result<Check, TaskError> {
    let mut failures = Vec::new();
    for page in &build.pages {
        let html = std::fs::read_to_string(path(&build.build_dir).join(&page.file))?;
        if let Some(problem) = tag_problem(&html) {
            failures.push(format!("{}: {problem}", page.file));
        }
        if html.contains("<title></title>") {
            failures.push(format!(
                "{}: empty <title> (the page needs a `# ` heading)",
                page.file
            ));
        }
        let h1 = html.matches("<h1>").count();
        if h1 != 1 {
            failures.push(format!("{}: {h1} <h1> headings, expected 1", page.file));
        }
    }
    Ok(Check {
        passed: failures.is_empty(),
        checked: build.pages.len(),
        failures,
    })
}

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

/// End-to-end check: crawls the built site from `index.html` like a visitor would; every local
/// link must resolve and every page must be reachable.
#[task(timeout = "1m", reads = [BuildDir])]
pub async fn e2e_check(build_dir: String) -> Result<Check, TaskError> {
    let dir = path(&build_dir);
    let mut failures = Vec::new();
    let mut seen = BTreeSet::from(["index.html".to_string()]);
    let mut queue = VecDeque::from(["index.html".to_string()]);
    while let Some(page) = queue.pop_front() {
        let html = std::fs::read_to_string(dir.join(&page))?;
        for href in hrefs(&html) {
            if href.contains("://") || href.starts_with("mailto:") || href.starts_with('#') {
                continue;
            }
            let target = href.split('#').next().unwrap_or_default().to_string();
            if !is_local_page(&dir, &target) {
                failures.push(format!("{page}: broken link `{href}`"));
            } else if seen.insert(target.clone()) {
                queue.push_back(target);
            }
        }
    }
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".html") {
            all.push(name);
        }
    }
    all.sort();
    for page in &all {
        if !seen.contains(page) {
            failures.push(format!("{page}: not reachable from index.html"));
        }
    }
    Ok(Check {
        passed: failures.is_empty(),
        checked: seen.len(),
        failures,
    })
}

fn is_local_page(dir: &Path, target: &str) -> bool {
    !target.is_empty()
        && !target.contains("..")
        && !target.starts_with('/')
        && dir.join(target).is_file()
}

/// Writes `out_dir/docs/SITEMAP.md`: every page with its title and outgoing links.
#[task(timeout = "1m", reads = [BuildDir], writes = [DocsDir])]
pub async fn generate_docs(build: Build, out_dir: String) -> Result<Docs, TaskError> {
    let docs = path(&out_dir).join("docs");
    std::fs::create_dir_all(&docs)?;
    let mut text = String::from("# Sitemap\n\n");
    for page in &build.pages {
        let title = if page.title.is_empty() {
            "(untitled)"
        } else {
            &page.title
        };
        text.push_str(&format!("- [{title}]({})", page.file));
        if !page.links.is_empty() {
            text.push_str(&format!(" → {}", page.links.join(", ")));
        }
        text.push('\n');
    }
    let sitemap = docs.join("SITEMAP.md");
    std::fs::write(&sitemap, text)?;
    Ok(Docs {
        sitemap: sitemap.to_string_lossy().into_owned(),
        pages: build.pages.len(),
    })
}

/// Copies the build to `out_dir/live`, replacing what was live before.
#[task(timeout = "1m", reads = [BuildDir], writes = [LiveDir])]
pub async fn deploy_site(build_dir: String, out_dir: String) -> Result<Vec<String>, TaskError> {
    Ok(replace_dir_with_copy(
        &path(&build_dir),
        &path(&out_dir).join("live"),
    )?)
}

/// Build, then unit tests / e2e check / docs in parallel, then deploy only if the checks pass.
#[process(name = "build-test-deploy")]
pub async fn build_test_deploy(
    ctx: &Ctx,
    input: PipelineInput,
) -> Result<PipelineReport, ProcessError> {
    // Sequential: everything after this needs the build.
    let build = build_site(input.src_dir.clone(), input.out_dir.clone()).await?;
    ctx.log(format!("built {} pages", build.pages.len()));

    // Parallel: three independent looks at the same build output.
    let (unit, e2e, docs) = parallel!(
        unit_tests(build.clone()),
        e2e_check(build.build_dir.clone()),
        generate_docs(build.clone(), input.out_dir.clone()),
    )?;

    // Sequential and conditional: deploy only what passed.
    let mut report = PipelineReport {
        pages: build.pages.len(),
        unit,
        e2e,
        docs,
        deployed: false,
        deployed_files: Vec::new(),
        reason: None,
    };
    if report.unit.passed && report.e2e.passed {
        report.deployed_files = deploy_site(build.build_dir.clone(), input.out_dir.clone()).await?;
        report.deployed = true;
        ctx.log(format!("deployed {} files", report.deployed_files.len()));
    } else {
        let failures: Vec<String> = report
            .unit
            .failures
            .iter()
            .chain(&report.e2e.failures)
            .cloned()
            .collect();
        ctx.log(format!("not deployed: {} failures", failures.len()));
        report.reason = Some(format!("checks failed: {}", failures.join("; ")));
    }
    Ok(report)
}

//! **Seed Example 1: parallel quality checks in a convergence loop.**
//!
//! The JavaScript guide loops `while (iteration < maxIterations && quality < targetQuality)`:
//! sequential work first, then independent quality checks in parallel, then a scoring step that
//! needs all of them. Here the "work" is real: each iteration
//!
//! 1. `fix_violations` rewrites the text file in place, fixing at most `fixes_per_iteration`
//!    offending lines (tabs, trailing whitespace, lines over `max_width`, a missing final
//!    newline) — a bounded step, like one implementation pass;
//! 2. four checks measure the file **in parallel**: trailing whitespace, tabs, line length,
//!    final newline;
//! 3. `score_file` turns their findings into a score: the percentage of clean lines.
//!
//! The loop stops when the score reaches `target_score` or after `max_iterations`. Every
//! iteration's steps have their own journal keys, so a resumed run skips finished iterations.
//!
//! Quick start: the file is rewritten in place, so copy the sample first —
//! `cp examples/data/messy.txt /tmp/minder-messy.txt` — then run with
//! `examples/data/quality-convergence-input.json` (three iterations of two fixes each).

use crate::support::path;
use minder::prelude::*;
use std::collections::BTreeSet;

fn default_target() -> u32 {
    100
}
fn default_max_iterations() -> u32 {
    5
}
fn default_fixes() -> usize {
    3
}
fn default_width() -> usize {
    80
}

/// The file to improve and when to stop.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConvergenceInput {
    /// The text or source file to improve (rewritten in place).
    pub file: String,
    /// Stop once the score reaches this (0–100, default 100).
    #[serde(default = "default_target")]
    pub target_score: u32,
    /// Stop after this many iterations (default 5).
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// Offending lines fixed per iteration (default 3).
    #[serde(default = "default_fixes")]
    pub fixes_per_iteration: usize,
    /// The longest allowed line, in characters (default 80).
    #[serde(default = "default_width")]
    pub max_width: usize,
    /// Ask an external reviewer (an agent or a person) for the score of each iteration: the
    /// run waits until the review is posted (`post <run> <effect> --value
    /// '{"score": 90, "comments": ".."}'`), then `resume` goes on.
    #[serde(default)]
    pub external_review: bool,
}

/// What the external reviewer is given.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewRequest {
    /// The file under review.
    pub file: String,
    /// The iteration.
    pub iteration: u32,
    /// The measured score.
    pub measured_score: u32,
    /// Lines that still offend.
    pub violating_lines: usize,
}

/// The external reviewer's verdict: the score that decides whether the loop goes on.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// The score, 0–100.
    pub score: u32,
    /// What the reviewer says.
    #[serde(default)]
    pub comments: String,
}

/// What one check found.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Violations {
    /// The rule checked.
    pub rule: String,
    /// Lines in the file.
    pub total_lines: usize,
    /// The offending lines, 1-based.
    pub lines: Vec<usize>,
}

/// What one fixing pass did.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Fixes {
    /// The lines fixed (1-based, as numbered before the pass).
    pub lines: Vec<usize>,
}

/// The score of the file.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Percentage of clean lines, rounded down.
    pub score: u32,
    /// Lines with at least one violation.
    pub violating_lines: usize,
    /// Lines in the file.
    pub total_lines: usize,
}

/// One iteration of the loop.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct Iteration {
    /// Lines fixed in this iteration.
    pub fixed: usize,
    /// The score measured after it.
    pub score: u32,
}

/// The result of the loop.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceReport {
    /// The last score.
    pub score: u32,
    /// Iterations run.
    pub iterations: u32,
    /// Whether the score reached the target.
    pub converged: bool,
    /// Every iteration, in order.
    pub history: Vec<Iteration>,
}

/// Reads `file` as lines; the flag says whether it ends with a newline.
fn read_lines(file: &str) -> Result<(Vec<String>, bool), TaskError> {
    let text = std::fs::read_to_string(path(file))
        .map_err(|e| TaskError::new(format!("cannot read `{file}`: {e}")))?;
    let final_newline = text.is_empty() || text.ends_with('\n');
    Ok((text.lines().map(String::from).collect(), final_newline))
}

fn too_long(line: &str, width: usize) -> bool {
    line.chars().count() > width
}

fn has_trailing_whitespace(line: &str) -> bool {
    line.ends_with([' ', '\t'])
}

/// Splits an overlong line at word boundaries (words longer than the room are cut), keeping its
/// indentation on every piece.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let indent_len = line.len() - line.trim_start().len();
    let mut indent = line[..indent_len].to_string();
    if indent.chars().count() * 2 >= width {
        indent.clear();
    }
    let room = (width - indent.chars().count()).max(1);
    let mut out = Vec::new();
    let mut current = String::new();
    for word in line.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        for piece in chars.chunks(room) {
            let piece: String = piece.iter().collect();
            let len = current.chars().count();
            if len > 0 && len + 1 + piece.chars().count() > room {
                out.push(format!("{indent}{current}"));
                current.clear();
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&piece);
        }
    }
    if !current.is_empty() || out.is_empty() {
        out.push(format!("{indent}{current}"));
    }
    out
}

/// Fixes at most `max_fixes` offending lines of `file`, first ones first: expands tabs to four
/// spaces, strips trailing whitespace, wraps lines over `max_width`; a missing final newline
/// counts against the last line.
#[task(timeout = "30s", writes = [TargetFile])]
pub async fn fix_violations(
    file: String,
    max_fixes: usize,
    max_width: usize,
) -> Result<Fixes, TaskError> {
    let (lines, final_newline) = read_lines(&file)?;
    let last = lines.len();
    let mut fixed = Vec::new();
    let mut out = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        let number = i + 1;
        let offending = line.contains('\t')
            || has_trailing_whitespace(&line)
            || too_long(&line, max_width)
            || (number == last && !final_newline);
        if !offending || fixed.len() >= max_fixes {
            out.push(line);
            continue;
        }
        fixed.push(number);
        let clean = line.replace('\t', "    ").trim_end().to_string();
        if too_long(&clean, max_width) {
            out.extend(wrap(&clean, max_width));
        } else {
            out.push(clean);
        }
    }
    let mut text = out.join("\n");
    let last_fixed = fixed.last() == Some(&last);
    if !text.is_empty() && (final_newline || last_fixed) {
        text.push('\n');
    }
    std::fs::write(path(&file), text)?;
    Ok(Fixes { lines: fixed })
}

fn check(file: &str, rule: &str, offends: impl Fn(&str) -> bool) -> Result<Violations, TaskError> {
    let (lines, _) = read_lines(file)?;
    Ok(Violations {
        rule: rule.to_string(),
        total_lines: lines.len(),
        lines: (1..=lines.len())
            .filter(|&n| offends(&lines[n - 1]))
            .collect(),
    })
}

/// Lines ending in spaces or tabs.
#[task(timeout = "30s", reads = [TargetFile])]
pub async fn check_trailing_whitespace(file: String) -> Result<Violations, TaskError> {
    check(&file, "trailing-whitespace", has_trailing_whitespace)
}

/// Lines containing a tab.
#[task(timeout = "30s", reads = [TargetFile])]
pub async fn check_tabs(file: String) -> Result<Violations, TaskError> {
    check(&file, "tabs", |l| l.contains('\t'))
}

/// Lines longer than `max_width` characters.
#[task(timeout = "30s", reads = [TargetFile])]
pub async fn check_line_length(file: String, max_width: usize) -> Result<Violations, TaskError> {
    check(&file, "line-length", |l| too_long(l, max_width))
}

/// The last line, when the file does not end with a newline.
#[task(timeout = "30s", reads = [TargetFile])]
pub async fn check_final_newline(file: String) -> Result<Violations, TaskError> {
    let (lines, final_newline) = read_lines(&file)?;
    Ok(Violations {
        rule: "final-newline".into(),
        total_lines: lines.len(),
        lines: if final_newline {
            vec![]
        } else {
            vec![lines.len()]
        },
    })
}

/// The percentage of lines that no check flagged (an empty file scores 100).
#[task]
pub async fn score_file(checks: Vec<Violations>) -> Result<Score, TaskError> {
    let total_lines = checks.iter().map(|c| c.total_lines).max().unwrap_or(0);
    let violating: BTreeSet<usize> = checks.iter().flat_map(|c| c.lines.clone()).collect();
    // An empty file has nothing to fix: it scores 100.
    let score = (100 * (total_lines - violating.len()))
        .checked_div(total_lines)
        .map_or(100, |s| s as u32);
    Ok(Score {
        score,
        violating_lines: violating.len(),
        total_lines,
    })
}

/// Improves `input.file` until its score reaches the target or the iterations run out.
#[process(name = "quality-convergence")]
pub async fn quality_convergence(
    ctx: &Ctx,
    input: ConvergenceInput,
) -> Result<ConvergenceReport, ProcessError> {
    if input.fixes_per_iteration == 0 || input.max_width == 0 {
        return Err(ProcessError::msg(
            "`fixes_per_iteration` and `max_width` must be at least 1",
        ));
    }
    let file = input.file.clone();
    let mut iteration = 0;
    let mut score = 0;
    let mut history = Vec::new();

    while iteration < input.max_iterations && score < input.target_score {
        iteration += 1;

        // Sequential: the improvement comes first.
        let fixes =
            fix_violations(file.clone(), input.fixes_per_iteration, input.max_width).await?;

        // Parallel: the checks only read the file and do not depend on each other.
        let (spaces, tabs, long, newline) = parallel!(
            check_trailing_whitespace(file.clone()),
            check_tabs(file.clone()),
            check_line_length(file.clone(), input.max_width),
            check_final_newline(file.clone()),
        )?;

        // Sequential: the score needs every check.
        let measured = score_file(vec![spaces, tabs, long, newline]).await?;
        score = measured.score;
        if input.external_review {
            // The reviewer sees the measurement and decides the score.
            let request = ReviewRequest {
                file: file.clone(),
                iteration,
                measured_score: measured.score,
                violating_lines: measured.violating_lines,
            };
            let review = ctx.external::<Review>("review", request).await?;
            ctx.log(format!(
                "iteration {iteration}: reviewer says {} ({})",
                review.score, review.comments
            ));
            score = review.score.min(100);
        }
        ctx.log(format!(
            "iteration {iteration}: fixed {} lines, score {score} ({} of {} lines still offend)",
            fixes.lines.len(),
            measured.violating_lines,
            measured.total_lines
        ));
        history.push(Iteration {
            fixed: fixes.lines.len(),
            score,
        });
    }

    Ok(ConvergenceReport {
        score,
        iterations: iteration,
        converged: score >= input.target_score,
        history,
    })
}

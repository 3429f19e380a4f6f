//! **Seed Scenario 2 (batch file processing) and Example 2 (parallel file processing with
//! error handling).**
//!
//! The JavaScript guide maps a task over a list of files with `ctx.parallel.map` and wraps each
//! call in `try`/`catch` so that one bad file does not lose the others. Here:
//!
//! * listing the directory is a task (I/O never happens in the process body);
//! * `ctx.map("files", files, |f| summarize_file(..)).limit(input.limit)` runs at most `limit`
//!   files at once (seed pitfall 5 without hand-written chunks) and returns results in input
//!   order (pitfall 4 cannot happen);
//! * `.settle()` gives one `Result` per file (pitfall 3): an unreadable or non-UTF-8 file
//!   becomes a failed entry with its error, every other file is still summarized.
//!
//! Quick start: `examples/data/batch-input.json`, `{"dir": "examples/data/batch", "limit": 4}` —
//! the sample directory has a dozen small text files, one of them Latin-1 encoded (not UTF-8).
//!
//! `batch-dirs` does several directories, each as a **child process**: `ctx.child::<batch_files>`
//! starts a `batch-files` run of its own per directory (two at a time, in a `ctx.map`), and
//! adds their totals up; a directory whose run fails is reported beside the others.
//! `examples/data/batch-dirs-input.json` does three sample directories.

use crate::support::{fnv1a64, path};
use minder::prelude::*;

/// What to process.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// The directory whose regular files are processed (not recursively).
    pub dir: String,
    /// At most this many files are processed at once; must be at least 1.
    pub limit: usize,
}

/// The summary of one file.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    /// The file name (relative to the input directory).
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Number of lines (a last line without a newline counts).
    pub lines: u64,
    /// Number of whitespace-separated words.
    pub words: u64,
    /// FNV-1a 64-bit checksum of the content, 16 hex digits.
    pub fnv1a64: String,
    /// Whether the content is plain ASCII (every summarized file is valid UTF-8: one that is
    /// not becomes a [`FailedFile`]).
    pub ascii: bool,
}

/// A file that could not be summarized.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct FailedFile {
    /// The file name.
    pub file: String,
    /// Why it failed.
    pub error: String,
}

/// Sums over the successfully summarized files.
#[data]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Files summarized.
    pub files: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Lines in them.
    pub lines: u64,
    /// Words in them.
    pub words: u64,
}

/// The result of the batch.
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// Files found and processed (successful + failed).
    pub processed: usize,
    /// The files summarized, in directory (name) order.
    pub successful: Vec<FileSummary>,
    /// The files that failed, in directory order.
    pub failed: Vec<FailedFile>,
    /// Sums over `successful`.
    pub totals: Totals,
}

/// Lists the regular files directly inside `dir`, sorted by name. Subdirectories, symlinks
/// to directories and other special files are skipped.
#[task(timeout = "30s")]
pub async fn list_files(dir: String) -> Result<Vec<String>, TaskError> {
    let mut entries = tokio::fs::read_dir(&dir)
        .await
        .map_err(|e| TaskError::new(format!("cannot read directory `{dir}`: {e}")))?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        // `metadata` follows symlinks: a link to a regular file counts as one.
        let is_file = tokio::fs::metadata(entry.path())
            .await
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}

/// Reads `dir/file` and counts bytes, lines and words and computes its checksum. Fails for a
/// file that cannot be read or is not valid UTF-8.
#[task(timeout = "30s")]
pub async fn summarize_file(dir: String, file: String) -> Result<FileSummary, TaskError> {
    let bytes = tokio::fs::read(path(&dir).join(&file))
        .await
        .map_err(|e| TaskError::new(format!("cannot read `{file}`: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        TaskError::new(format!(
            "`{file}` is not UTF-8: invalid byte 0x{:02x} at offset {}",
            bytes[e.valid_up_to()],
            e.valid_up_to()
        ))
    })?;
    Ok(FileSummary {
        file,
        bytes: bytes.len() as u64,
        lines: text.lines().count() as u64,
        words: text.split_whitespace().count() as u64,
        fnv1a64: fnv1a64(&bytes),
        ascii: text.is_ascii(),
    })
}

/// Summarizes every regular file of `input.dir`, at most `input.limit` at once; a file that
/// fails is reported and does not stop the others.
#[process(name = "batch-files")]
pub async fn batch_files(ctx: &Ctx, input: BatchInput) -> Result<BatchReport, ProcessError> {
    if input.limit == 0 {
        return Err(ProcessError::msg(
            "`limit` must be at least 1 (it is how many files are processed at once)",
        ));
    }
    let files = list_files(input.dir.clone())
        .await
        .map_err(|e| ProcessError::msg(format!("no files to process: {e}")))?;
    ctx.log(format!(
        "found {} files in {}, processing {} at a time",
        files.len(),
        input.dir,
        input.limit
    ));

    // One `Result` per file, in the order of `files`, whatever order they finish in.
    let dir = input.dir.clone();
    let results = ctx
        .map("files", files.clone(), |f| summarize_file(dir.clone(), f))
        .limit(input.limit)
        .settle()
        .await;

    let mut report = BatchReport {
        processed: files.len(),
        successful: Vec::new(),
        failed: Vec::new(),
        totals: Totals::default(),
    };
    for (file, result) in files.into_iter().zip(results) {
        match result {
            Ok(summary) => {
                report.totals.files += 1;
                report.totals.bytes += summary.bytes;
                report.totals.lines += summary.lines;
                report.totals.words += summary.words;
                report.successful.push(summary);
            }
            Err(e) => {
                ctx.log(format!("skipped {file}: {e}"));
                report.failed.push(FailedFile {
                    file,
                    error: e.message,
                });
            }
        }
    }
    ctx.log(format!(
        "processed {}/{} files ({} failed)",
        report.successful.len(),
        report.processed,
        report.failed.len()
    ));
    Ok(report)
}

/// Several directories to process, each by a `batch-files` run of its own.
#[data]
#[derive(Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirsInput {
    /// The directories; each is summarized as [`batch_files`] does it.
    pub dirs: Vec<String>,
    /// Files processed at once inside each directory; must be at least 1.
    pub limit: usize,
    /// Directories processed at once (default 2).
    #[serde(default = "two")]
    pub at_once: usize,
}

fn two() -> usize {
    2
}

/// One directory of a [`DirsReport`].
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct DirOutcome {
    /// The directory.
    pub dir: String,
    /// Its report, when its run completed.
    pub report: Option<BatchReport>,
    /// Why its run failed, otherwise.
    pub error: Option<String>,
}

/// The result of [`batch_dirs`].
#[data]
#[derive(Debug, Clone, PartialEq)]
pub struct DirsReport {
    /// Each directory, in input order.
    pub dirs: Vec<DirOutcome>,
    /// Sums over every file summarized in every directory.
    pub totals: Totals,
}

/// Summarizes every directory of `input.dirs`, each as a **child process**: a `batch-files`
/// run of its own (its own journal, `status` and `events`; `status` names this run as its
/// parent), `input.at_once` directories at a time. A directory whose run fails (it does not
/// exist, say) is reported and does not stop the others. A resumed `batch-dirs` run never
/// starts a child again: the children that ended give their journaled reports back, the
/// others are resumed. Under workers each child runs on a worker of its own.
#[process(name = "batch-dirs")]
pub async fn batch_dirs(ctx: &Ctx, input: DirsInput) -> Result<DirsReport, ProcessError> {
    let limit = input.limit;
    let results = ctx
        .map("dirs", input.dirs.clone(), |dir| {
            ctx.child::<batch_files>(BatchInput { dir, limit })
        })
        .limit(input.at_once.max(1))
        .settle()
        .await;
    let mut out = DirsReport {
        dirs: Vec::new(),
        totals: Totals::default(),
    };
    for (dir, result) in input.dirs.into_iter().zip(results) {
        match result {
            Ok(report) => {
                out.totals.files += report.totals.files;
                out.totals.bytes += report.totals.bytes;
                out.totals.lines += report.totals.lines;
                out.totals.words += report.totals.words;
                out.dirs.push(DirOutcome {
                    dir,
                    report: Some(report),
                    error: None,
                });
            }
            Err(e) => {
                ctx.log(format!("{dir}: {e}"));
                out.dirs.push(DirOutcome {
                    dir,
                    report: None,
                    error: Some(e.message),
                });
            }
        }
    }
    Ok(out)
}

//! Small helpers the example tasks share: a checksum, running a program, walking and copying
//! directories. They are ordinary functions called from inside `#[task]` bodies — none of them
//! is a workflow step by itself.

use minder::TaskError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// FNV-1a, 64 bits, of `bytes`, as 16 lowercase hex digits.
///
/// ```
/// assert_eq!(minder_examples::support::fnv1a64(b""), "cbf29ce484222325");
/// assert_eq!(minder_examples::support::fnv1a64(b"a"), "af63dc4c8601ec8c");
/// ```
pub fn fnv1a64(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// What a finished program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
    /// How long it ran.
    pub duration: Duration,
}

impl CommandOutput {
    /// Standard output and standard error together, for reports.
    pub fn combined(&self) -> String {
        match (self.stdout.trim().is_empty(), self.stderr.trim().is_empty()) {
            (_, true) => self.stdout.clone(),
            (true, false) => self.stderr.clone(),
            (false, false) => format!("{}\n{}", self.stdout.trim_end(), self.stderr),
        }
    }
}

/// Runs `program` with `args` in `dir` — directly, never through a shell — with extra
/// environment variables `envs`, and captures its output.
///
/// The child is killed when the returned future is dropped, so a `parallel!` sibling's failure
/// or a task timeout does not leave it running. A program that cannot be started is a
/// [`TaskError`]; a program that runs and fails is a `CommandOutput` with `success: false`.
pub async fn run_command(
    program: &str,
    args: &[&str],
    dir: &Path,
    envs: &[(&str, &str)],
) -> Result<CommandOutput, TaskError> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().await.map_err(|e| {
        TaskError::new(format!(
            "cannot run `{program} {}` in {}: {e}",
            args.join(" "),
            dir.display()
        ))
    })?;
    Ok(CommandOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        duration: started.elapsed(),
    })
}

/// The last `max_lines` non-empty lines of `text` (where tools print their verdict), joined.
pub fn excerpt(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

/// Every regular file under `root` (recursively, not following symlinked directories), as
/// paths relative to `root` with `/` separators, sorted.
pub fn walk_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    walk_into(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk_into(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk_into(root, &path, out)?;
        } else if kind.is_file() {
            out.push(relative(root, &path));
        }
    }
    Ok(())
}

/// `path` relative to `root`, with `/` separators.
pub fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Copies every regular file under `from` into `to` (created; its old content is removed
/// first), returning the copied files relative to `to`, sorted.
pub fn replace_dir_with_copy(from: &Path, to: &Path) -> std::io::Result<Vec<String>> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    let files = walk_files(from)?;
    for file in &files {
        let target = to.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(file), &target)?;
    }
    Ok(files)
}

/// A path given as a string in a process input, for use inside a task.
pub fn path(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Milliseconds in `d`, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

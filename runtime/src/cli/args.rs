//! The command line's arguments, as clap types.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(about = "Run and inspect durable minder workflows")]
pub(super) struct Cli {
    /// Directory that holds the run journals.
    #[arg(long, global = true, default_value = ".minder/runs")]
    pub(super) runs_dir: PathBuf,
    /// Where the runs are kept instead of `--runs-dir`: a PostgreSQL URL
    /// (`postgres://user:password@host/db`; `postgresql:///db?host=/run/postgresql` for a Unix
    /// socket), or a runs directory.
    #[arg(long, global = true, env = "MINDER_STORE", hide_env_values = true)]
    pub(super) store: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(super) json: bool,
    /// A durable sleep with more than this left suspends the run (saved as waiting) instead
    /// of keeping the program up: `500ms`, `30s`, `5m`, `2h`.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    pub(super) suspend_sleeps_over: std::time::Duration,
    #[command(subcommand)]
    pub(super) command: Command,
}

/// `500ms`, `30s`, `5m`, `2h`, `1h30m`, `1.5d`: humantime's grammar, the one
/// `#[task(timeout = "..")]` reads (minder-macros' `options::parse_duration`).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use humantime::DurationError as E;
    let from = |at: usize| text.get(at..).unwrap_or("").trim();
    let why = match humantime::parse_duration(text) {
        Ok(d) => return Ok(d),
        Err(E::Empty) => "it is empty".to_string(),
        Err(E::NumberExpected(at)) => format!("expected a number at `{}`", from(at)),
        Err(E::InvalidCharacter(at)) => format!("unexpected character at `{}`", from(at)),
        Err(E::UnknownUnit { unit, value, .. }) if unit.is_empty() => {
            format!("`{value}` has no unit")
        }
        Err(E::UnknownUnit { unit, .. }) => format!("unknown unit `{unit}`"),
        Err(E::NumberOverflow) => "the duration is too long".to_string(),
    };
    Err(format!(
        "{why}: write a number and a unit (ms, s, m, h, d), like `500ms`, `30s`, `5m` or `1h30m`"
    ))
}

/// `10/1m`: a count and a period.
fn parse_rate(text: &str) -> Result<(u32, std::time::Duration), String> {
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}`: write a count and a period, like `10/1m`"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{count}` is not a count of runs: write one like `10/1m`"))?;
    let period = parse_duration(period)?;
    if count == 0 || period.is_zero() {
        return Err(format!(
            "`{text}`: the count and the period must be more than zero"
        ));
    }
    Ok((count, period))
}

#[derive(Subcommand, Debug, Clone)]
pub(super) enum Command {
    /// Start a run of a process and drive it to its end.
    Run {
        /// The process name.
        process: String,
        /// The input JSON: a file, or `-` for standard input.
        #[arg(long)]
        input: String,
        /// Only create the run and print its id: a worker (`worker`) drives it.
        #[arg(long)]
        detach: bool,
        /// The queue workers take it from (default: the process's).
        #[arg(long)]
        queue: Option<String>,
        /// Lower runs first among the ready runs of its queue (default 0).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i32>,
    },
    /// Drive every run that is ready (new, resolved, due, or left by a worker that died), of
    /// this binary's processes, until SIGTERM or Ctrl-C; then let the runs under way finish
    /// for the grace period.
    Worker {
        /// Only runs of these queues (comma-separated; default: every queue).
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// At most this many runs at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// How long runs under way may go on after a stop signal.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// The lease on a claimed run (PostgreSQL): a worker silent for this long loses its
        /// runs to others.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        lease: std::time::Duration,
        /// Look for ready runs at least this often (new work is announced sooner on
        /// PostgreSQL).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        poll: std::time::Duration,
    },
    /// The live workers, and the runs each holds.
    Workers,
    /// The queues' limits, or set one queue's (the limits given replace the queue's).
    Queue {
        /// The queue to set; none: list the queues with limits.
        name: Option<String>,
        /// At most this many of its runs at once, across every worker.
        #[arg(long, requires = "name")]
        concurrency: Option<u32>,
        /// At most this many of its runs started per period: `10/1m`, `100/1h`.
        #[arg(long, requires = "name", value_parser = parse_rate)]
        rate: Option<(u32, std::time::Duration)>,
        /// Remove the queue's limits.
        #[arg(long, requires = "name", conflicts_with_all = ["concurrency", "rate"])]
        unlimited: bool,
    },
    /// Continue a run: journaled steps are replayed, the rest runs.
    Resume {
        /// The run id.
        run_id: String,
        /// Worker mode: when the run stops to wait, wait for its results to be posted (by
        /// `post`, `approve` or `reject` from another shell) and continue, until it ends.
        #[arg(long)]
        wait: bool,
        /// Continue even though the process's structure changed since the run started.
        #[arg(long)]
        allow_version_change: bool,
    },
    /// One run's steps, or every run when no id is given.
    Status {
        /// The run id.
        run_id: Option<String>,
    },
    /// Every run in the runs directory, or those that match every filter given.
    List {
        /// Only runs of this process.
        #[arg(long)]
        process: Option<String>,
        /// Only runs in this state (repeat it, or separate with commas).
        #[arg(
            long,
            value_delimiter = ',',
            value_parser = ["completed", "failed", "cancelled", "waiting", "incomplete"]
        )]
        state: Vec<String>,
        /// Only runs whose last event is more recent than this: `1h`, `7d`.
        #[arg(long, value_parser = parse_duration)]
        since: Option<std::time::Duration>,
        /// Only runs of this queue (`default` for a run that names none).
        #[arg(long)]
        queue: Option<String>,
    },
    /// A run's journal, event by event.
    Events {
        /// The run id.
        run_id: String,
    },
    /// The breakpoints and external tasks of a run.
    Tasks {
        /// The run id.
        run_id: String,
        /// Only those still waiting for a result.
        #[arg(long)]
        pending: bool,
    },
    /// Post the result of a pending external task (checked against its type); then `resume`.
    Post {
        /// The run id.
        run_id: String,
        /// The effect id (from `tasks --pending`).
        effect: String,
        /// The result, as JSON.
        #[arg(long, conflicts_with = "error", required_unless_present = "error")]
        value: Option<String>,
        /// Post a failure with this message instead.
        #[arg(long)]
        error: Option<String>,
    },
    /// Approve a pending breakpoint; then `resume`.
    Approve {
        /// The run id.
        run_id: String,
        /// The breakpoint's effect id.
        breakpoint: String,
        /// What to tell the process.
        #[arg(long)]
        feedback: Option<String>,
    },
    /// Reject a pending breakpoint; then `resume`.
    Reject {
        /// The run id.
        run_id: String,
        /// The breakpoint's effect id.
        breakpoint: String,
        /// What to tell the process.
        #[arg(long)]
        feedback: Option<String>,
    },
    /// Cancel a run: it never runs again. A run another process is driving is asked to stop
    /// (its unfinished steps are cancelled, command tasks killed); this waits until it has.
    Cancel {
        /// The run id.
        run_id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete old finished runs, or runs named by id.
    ///
    /// With `--older-than`: the completed, failed and cancelled runs whose last event (the
    /// last write of their journal) is older than that. A run that is running, interrupted or
    /// waiting is deleted only when named by id; one a writer holds is never deleted.
    Prune {
        /// Delete these runs, whatever their state.
        #[arg(
            conflicts_with_all = ["older_than", "state"],
            required_unless_present = "older_than"
        )]
        run_ids: Vec<String>,
        /// Delete the completed, failed and cancelled runs whose last event is older than
        /// this: `30d`, `12h`, `1h30m`.
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Only runs that ended this way (repeat it, or separate with commas).
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<Ended>,
        /// Say what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script.
    ///
    /// For bash: `source <(my-app completions bash)`; for zsh, put the script in a file
    /// named `_my-app` on your `$fpath`; for fish, in `~/.config/fish/completions/my-app.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Draw a process's static graph (`--json`: its nodes as JSON); with `--run`, a run on it.
    ///
    /// `#[process]` compiles the body into this state machine, and every journaled step
    /// records the node it came from: with `--run`, each node the run reached is marked
    /// done, running, waiting, failed or cancelled (Mermaid classes, DOT colours, the tree's
    /// `[..]` marks, `--json`'s `state` and `counts`), with how often when it ran more than
    /// once (a loop, a map).
    Graph {
        /// The process name.
        process: String,
        /// The drawing format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
        /// Draw this run (of the process) on the graph.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
    },
}

/// How a finished run ended: what `prune --state` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Ended {
    Completed,
    Failed,
    Cancelled,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum GraphFormat {
    Mermaid,
    Dot,
    Tree,
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_on_the_command_line() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("10 parsecs")
            .unwrap_err()
            .contains("unknown unit `parsecs`"));
        assert!(parse_duration("s")
            .unwrap_err()
            .contains("expected a number at `s`"));
        assert!(parse_duration("99999999999999999999h")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn durations_read_as_the_macros_read_them() {
        // The grammar of `#[task(timeout = "..")]`: compound, spaced, longer units, fractions.
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2 minutes"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("")
            .unwrap_err()
            .starts_with("it is empty: write"));
    }
}

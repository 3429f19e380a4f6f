//! `minder-bench`: minder measured against its floors, in one run (machines are noisy, so every
//! figure is a ratio against a floor measured alongside it).
//!
//! ```sh
//! cargo run --release -p minder-bench
//! ```
//!
//! 1. fan-out of 1,000 / 10,000 / 100,000 no-op tasks through `ctx.map(..).limit(256)`, against
//!    plain `futures` + `tokio`, on the in-memory and on the file journal;
//! 2. 1,000 sequential durable tasks against appends + `sync_data` of the same size;
//! 3. replay of 10,000, 100,000 and 1,000,000 journaled steps, and the resume of the same runs
//!    once completed;
//! 4. peak resident memory of the 100,000-task fan-out and the 1,000,000-step replay;
//! 5. `cargo check` and `cargo build` of 50 processes × 10 tasks with the macros, against the
//!    same by hand.
//!
//! Options: `--dir DIR` (where journals go; default a new temporary directory),
//! `--compile-target DIR` (the generated crates' target directory; default
//! `$TMPDIR/minder-bench-target`, kept so later runs skip the dependency build),
//! `--skip-compile`, `--only fan-out,sequential,replay,memory,compile` (run only these),
//! `--quick` (smaller and fewer runs, for a smoke test), `--keep` (keep the journals and the
//! generated crates, and print where), `--instructions` (also count the two crates' `rustc`
//! checks in instructions with valgrind's cachegrind: about two minutes more).
//!
//! `--store postgres [--only sequential] [--rounds N] [--quick]` runs the PostgreSQL section
//! instead (see `postgres.rs`): the server is `MINDER_BENCH_POSTGRES_URL`, else a throwaway
//! cluster.

mod compile;
mod fanout;
mod machine;
mod memory;
mod postgres;
mod replay;
mod report;
mod sequential;
mod stats;
mod workflows;

use minder::FileStore;
use report::Results;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The runtime every measurement uses: tokio's multi-threaded scheduler, one worker per core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime")
}

/// The sections `--only` can name.
const SECTIONS: [&str; 5] = ["fan-out", "sequential", "replay", "memory", "compile"];

/// Command-line options.
#[derive(Debug, Default)]
struct Options {
    dir: Option<PathBuf>,
    compile_target: Option<PathBuf>,
    skip_compile: bool,
    quick: bool,
    keep: bool,
    instructions: bool,
    only: Option<Vec<String>>,
}

impl Options {
    /// Whether the section `name` runs (`--only` lists the sections to run).
    fn runs(&self, name: &str) -> bool {
        let listed = self
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name));
        listed && !(name == "compile" && self.skip_compile)
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => options.dir = Some(args.next().ok_or("--dir needs a directory")?.into()),
            "--compile-target" => {
                options.compile_target = Some(
                    args.next()
                        .ok_or("--compile-target needs a directory")?
                        .into(),
                )
            }
            "--skip-compile" => options.skip_compile = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list of sections")?;
                let only: Vec<String> = list.split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|o| !SECTIONS.contains(&o.as_str())) {
                    return Err(format!("unknown section `{bad}` (one of {SECTIONS:?})"));
                }
                options.only = Some(only);
            }
            "--quick" => options.quick = true,
            "--keep" => options.keep = true,
            "--instructions" => options.instructions = true,
            "-h" | "--help" => {
                return Err(
                    "usage: minder-bench [--dir DIR] [--compile-target DIR] [--skip-compile] \
                     [--quick] [--keep] [--instructions] \
                     [--only fan-out,sequential,replay,memory,compile]\n       \
                     minder-bench --store postgres [--only sequential] [--rounds N] [--quick]"
                        .to_string(),
                )
            }
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(options)
}

fn progress(what: &str) {
    eprintln!("minder-bench: {what}");
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match memory::run_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("minder-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // `--store postgres [--only sequential] [--rounds N] [--quick]`: the PostgreSQL section
    // only (see `postgres.rs`).
    if let Some(at) = args.iter().position(|a| a == "--store") {
        if args.get(at + 1).map(String::as_str) != Some("postgres") {
            eprintln!("--store takes `postgres` (the server: MINDER_BENCH_POSTGRES_URL, else a throwaway cluster)");
            return ExitCode::FAILURE;
        }
        let rounds = match args.iter().position(|a| a == "--rounds") {
            Some(at) => match args.get(at + 1).and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => Some(n),
                _ => {
                    eprintln!("--rounds takes a number of rounds (1 or more)");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let sequential_only = match args.iter().position(|a| a == "--only") {
            Some(at) if args.get(at + 1).map(String::as_str) == Some("sequential") => true,
            Some(_) => {
                eprintln!("with --store postgres, --only takes `sequential` (the first row)");
                return ExitCode::FAILURE;
            }
            None => false,
        };
        postgres::run(args.iter().any(|a| a == "--quick"), sequential_only, rounds);
        return ExitCode::SUCCESS;
    }
    let options = match parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let results = run(&options);
    println!("{}", results.render());
    ExitCode::SUCCESS
}

fn run(options: &Options) -> Results {
    let started = Instant::now();
    let temp = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("cannot create --dir");
            tempfile::tempdir_in(dir)
        }
        None => tempfile::tempdir(),
    }
    .expect("cannot create a temporary directory");
    let dir = temp.path().to_path_buf();
    let machine = machine::describe(&dir);

    // `big`: the fan-out whose memory is measured; `huge`: the replay whose memory is.
    let (sizes, replay_sizes, big, huge): (&[(u64, usize)], &[u64], u64, u64) = if options.quick {
        (&[(1_000, 2), (10_000, 1)], &[10_000], 10_000, 10_000)
    } else {
        (
            &[(1_000, 7), (10_000, 5), (100_000, 2)],
            &[10_000, 100_000, 1_000_000],
            100_000,
            1_000_000,
        )
    };

    let rt = runtime();
    let (fan_out, sequential, replay) = rt.block_on(async {
        let mut fan_out = Vec::new();
        if options.runs("fan-out") {
            progress("warming up");
            fanout::measure(1_000, 1, &dir.join("warm-up")).await;
            for &(n, reps) in sizes {
                progress(&format!(
                    "fan-out of {n} tasks, {reps} runs of each variant"
                ));
                fan_out.push(fanout::measure(n, reps, &dir).await);
            }
        }

        let mut sequential = None;
        if options.runs("sequential") {
            progress("1,000 sequential durable tasks");
            let reps = if options.quick { 1 } else { 5 };
            sequential = Some(sequential::measure(1_000, reps, &dir).await);
        }

        let replay_store = FileStore::new(dir.join("replay"));
        let mut replay = Vec::new();
        let mut journals = Vec::new();
        if options.runs("replay") || options.runs("memory") {
            for &n in replay_sizes {
                if n == huge || options.runs("replay") {
                    progress(&format!("building a journal of {n} completed steps"));
                    journals.push((n, replay::journal_events(n).await));
                }
            }
        }
        if options.runs("replay") {
            for (n, events) in &mut journals {
                progress(&format!("replaying {n} steps"));
                let reps = if options.quick { 1 } else { 3 };
                replay.push(replay::measure(events, *n, reps, &replay_store).await);
                if *n != huge || !options.runs("memory") {
                    // Not needed any more: a journal of a million steps takes gigabytes.
                    *events = Vec::new();
                }
            }
        }
        if options.runs("memory") {
            if let Some((_, events)) = journals.iter().find(|(n, _)| *n == huge) {
                replay::write_journal(&replay_store, "memory-replay", events).await;
            }
        }
        (fan_out, sequential, replay)
    });
    drop(rt);

    let memory = options.runs("memory").then(|| {
        progress(&format!(
            "peak memory of {big} tasks and {huge} replayed steps"
        ));
        memory::measure(big, huge, &dir, &dir.join("replay"), "memory-replay")
    });

    let compile = options.runs("compile").then(|| {
        progress("compile time (the first check and build build the dependencies)");
        let target = options
            .compile_target
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("minder-bench-target"));
        let reps = if options.quick { 1 } else { 5 };
        compile::measure(&dir.join("compile"), &target, reps, options.instructions)
    });

    if options.keep {
        let kept = temp.keep();
        progress(&format!(
            "kept the journals and generated crates in {}",
            kept.display()
        ));
    }

    Results {
        machine,
        fan_out,
        sequential,
        replay,
        memory,
        compile,
        elapsed_s: started.elapsed().as_secs_f64(),
    }
}

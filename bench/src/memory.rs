//! Benchmark 4: peak resident memory (`VmHWM`) of the 100,000-task fan-out and of the
//! 1,000,000-step replay, each in a fresh child process (this binary re-executed with `--child`),
//! minus the peak of an idle child.

use crate::workflows::{fan_out, open_gate, replay_steps};
use minder::{FileStore, Runner};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The figures of the memory benchmark, in KiB of peak resident memory.
#[derive(Debug, Clone)]
pub struct Memory {
    /// Tasks in the fan-out.
    pub n: u64,
    /// Steps in the replay.
    pub replay_n: u64,
    /// An idle child: the runtime started, nothing run.
    pub idle_kib: u64,
    /// The fan-out child (file journal).
    pub fan_out_kib: u64,
    /// The replay child (file journal).
    pub replay_kib: u64,
}

impl Memory {
    /// Bytes above the idle baseline per task of the fan-out.
    pub fn fan_out_bytes_per_step(&self) -> f64 {
        self.fan_out_kib.saturating_sub(self.idle_kib) as f64 * 1024.0 / self.n as f64
    }

    /// Bytes above the idle baseline per replayed step.
    pub fn replay_bytes_per_step(&self) -> f64 {
        self.replay_kib.saturating_sub(self.idle_kib) as f64 * 1024.0 / self.replay_n as f64
    }
}

/// The peak resident set of this process so far (`VmHWM` in `/proc/self/status`), in KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs this binary with `--child <args>` and returns the peak it reports.
fn child(args: &[&str]) -> u64 {
    let exe = std::env::current_exe().expect("cannot find the bench binary");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("cannot start a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {args:?} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("vmhwm_kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("child {args:?} printed no peak: {stdout}"))
}

/// Measures the three children: idle, the fan-out of `n` tasks in a new runs directory under
/// `dir`, and the resume of the prepared run `replay_run` (a journal of `replay_n` completed
/// steps) in `replay_runs`.
pub fn measure(n: u64, replay_n: u64, dir: &Path, replay_runs: &Path, replay_run: &str) -> Memory {
    let fan_out_dir = dir.join("memory-fan-out");
    let n_arg = n.to_string();
    let replay_n_arg = replay_n.to_string();
    Memory {
        n,
        replay_n,
        idle_kib: child(&["idle"]),
        fan_out_kib: child(&["fan-out", path_arg(&fan_out_dir), &n_arg]),
        replay_kib: child(&["replay", path_arg(replay_runs), replay_run, &replay_n_arg]),
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str()
        .expect("the temporary directory has a UTF-8 path")
}

/// The child side: runs what `args` names and prints `vmhwm_kib <n>`.
pub fn run_child(args: &[String]) -> Result<(), String> {
    let runtime = crate::runtime();
    let usage = || format!("bad child arguments {args:?}");
    match args.first().map(String::as_str) {
        Some("idle") => runtime.block_on(async {
            tokio::spawn(async {}).await.expect("an idle task");
        }),
        Some("fan-out") => {
            let dir = PathBuf::from(args.get(1).ok_or_else(usage)?);
            let n: u64 = args.get(2).and_then(|n| n.parse().ok()).ok_or_else(usage)?;
            runtime.block_on(async {
                let store = FileStore::new(dir);
                let done = Runner::new(store.clone())
                    .run::<fan_out>(n)
                    .await
                    .expect("the fan-out run failed");
                assert_eq!(done.output, n);
                println!("journal_syncs {}", store.sync_count());
            });
        }
        Some("replay") => {
            let dir = PathBuf::from(args.get(1).ok_or_else(usage)?);
            let run_id = args.get(2).ok_or_else(usage)?;
            let n: u64 = args.get(3).and_then(|n| n.parse().ok()).ok_or_else(usage)?;
            open_gate();
            runtime.block_on(async {
                let done = Runner::new(FileStore::new(dir))
                    .resume::<replay_steps>(run_id)
                    .await
                    .expect("the resume failed");
                assert_eq!(done.output, (0..n).fold(0u64, u64::wrapping_add));
            });
        }
        Some("read") => {
            // The fastest of `reps` reads of a journal (`Store::read`: read and decode whole).
            let dir = PathBuf::from(args.get(1).ok_or_else(usage)?);
            let run_id = args.get(2).ok_or_else(usage)?;
            let reps: u32 = args.get(3).and_then(|n| n.parse().ok()).ok_or_else(usage)?;
            let best = runtime.block_on(async {
                use minder::store::Store;
                let store = FileStore::new(dir);
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let start = std::time::Instant::now();
                    let events = store.read(run_id).await.expect("cannot read the journal");
                    best = best.min(start.elapsed().as_secs_f64());
                    drop(std::hint::black_box(events));
                }
                best
            });
            println!("read_s {best:.3}");
        }
        Some("block-in-place") => {
            // What the lone flush's hand-off costs on a worker thread: `block_in_place` around
            // nothing, from a spawned task, against the same loop without it.
            let n: u32 = args.get(1).and_then(|n| n.parse().ok()).ok_or_else(usage)?;
            let (with, without) = runtime.block_on(async move {
                tokio::spawn(async move {
                    let start = std::time::Instant::now();
                    for i in 0..n {
                        std::hint::black_box(tokio::task::block_in_place(|| i));
                    }
                    let with = start.elapsed().as_secs_f64() * 1e9 / f64::from(n);
                    let start = std::time::Instant::now();
                    for i in 0..n {
                        std::hint::black_box(i);
                        tokio::task::yield_now().await;
                    }
                    let without = start.elapsed().as_secs_f64() * 1e9 / f64::from(n);
                    (with, without)
                })
                .await
                .expect("the measuring task panicked")
            });
            println!("block_in_place_ns {with:.0} yield_now_ns {without:.0}");
        }
        _ => return Err(usage()),
    }
    println!("vmhwm_kib {}", peak_rss_kib());
    Ok(())
}

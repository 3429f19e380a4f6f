//! The printed report: Markdown tables, every figure next to its floor, and the targets.

use crate::compile::{self, Compile};
use crate::fanout::FanOut;
use crate::machine::Machine;
use crate::memory::Memory;
use crate::replay::Replay;
use crate::sequential::Sequential;
use std::fmt::Write as _;

/// Everything one run of the bench measured (a section is `None` when it was skipped).
#[derive(Debug, Clone)]
pub struct Results {
    /// The machine.
    pub machine: Machine,
    /// Benchmark 1, one entry per size.
    pub fan_out: Vec<FanOut>,
    /// Benchmark 2.
    pub sequential: Option<Sequential>,
    /// Benchmark 3, one entry per size.
    pub replay: Vec<Replay>,
    /// Benchmark 4.
    pub memory: Option<Memory>,
    /// Benchmark 5.
    pub compile: Option<Compile>,
    /// Seconds the whole bench took.
    pub elapsed_s: f64,
}

/// One target: what it says, the figure measured, whether it is met.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target.
    pub what: String,
    /// The measured figure.
    pub measured: String,
    /// Met?
    pub met: bool,
}

fn target(what: &str, measured: String, met: bool) -> Target {
    Target {
        what: what.to_string(),
        measured,
        met,
    }
}

impl Results {
    /// The targets of the benchmarks issue, checked against these results.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        if let Some(f) = self.fan_out.iter().find(|f| f.n == 10_000) {
            targets.push(target(
                "fan-out (c), N = 10,000: ≤ 3 µs per task",
                format!(
                    "{:.2} µs ({:.2} × its durability floor (d))",
                    f.file_us,
                    f.file_us / f.file_floor_us
                ),
                f.file_us <= 3.0,
            ));
            targets.push(target(
                "fan-out (c), N = 10,000: ≤ 1 fsync per 100 tasks (0.01 per task)",
                format!(
                    "{:.4} per task (1 per {:.0})",
                    f.fsyncs_per_task,
                    1.0 / f.fsyncs_per_task
                ),
                f.fsyncs_per_task <= 0.01,
            ));
            let ratio = f.memory_us / f.floor_us;
            targets.push(target(
                "fan-out (b)/(a), N = 10,000: ≤ 20",
                format!("{ratio:.1}"),
                ratio <= 20.0,
            ));
        }
        if let Some(s) = &self.sequential {
            let ratio = s.ratio;
            targets.push(target(
                &format!(
                    "sequential durable: ≤ 1.15 × its fsync floor (median of {} rounds)",
                    s.reps
                ),
                format!("{ratio:.2} ×"),
                ratio <= 1.15,
            ));
        }
        let small = self.replay.iter().find(|r| r.n == 10_000);
        let large = self.replay.iter().find(|r| r.n == 100_000);
        let huge = self.replay.iter().find(|r| r.n == 1_000_000);
        if let Some(l) = large {
            targets.push(target(
                "replay of 100,000 steps: < 1 s",
                format!("{:.3} s", l.total_s),
                l.total_s < 1.0,
            ));
        }
        if let (Some(s), Some(l)) = (small, large) {
            let ratio = l.per_step_us() / s.per_step_us();
            targets.push(target(
                "replay per step at 100,000: ≤ 1.5 × per step at 10,000",
                format!("{ratio:.2} ×"),
                ratio <= 1.5,
            ));
        }
        if let Some(h) = huge {
            targets.push(target(
                "replay at 1,000,000 steps: ≤ 3 µs per step",
                format!("{:.2} µs", h.per_step_us()),
                h.per_step_us() <= 3.0,
            ));
            targets.push(target(
                "resuming the completed 1,000,000-step run: < 5 ms",
                format!("{:.2} ms", h.completed_s * 1e3),
                h.completed_s < 0.005,
            ));
        }
        if let Some(m) = &self.memory {
            let per_step = m.replay_bytes_per_step();
            targets.push(target(
                &format!(
                    "replay: ≤ 200 B resident per replayed step at {} steps",
                    thousands(m.replay_n)
                ),
                format!("{per_step:.0} B"),
                per_step <= 200.0,
            ));
        }
        if let Some(c) = &self.compile {
            let ratio = c.minder_s / c.hand_s;
            targets.push(target(
                "compile time (`cargo check`, wall): ≤ 1.1 × the hand-written crate",
                match c.instructions {
                    Some((minder, hand)) => format!(
                        "{ratio:.2} × (CPU time {:.2} ×; instructions {:.2} ×)",
                        c.minder_cpu_s / c.hand_cpu_s,
                        minder as f64 / hand as f64
                    ),
                    None => format!(
                        "{ratio:.2} × (CPU time {:.2} ×)",
                        c.minder_cpu_s / c.hand_cpu_s
                    ),
                },
                ratio <= 1.1,
            ));
            let b = &c.build;
            let ratio = b.minder_s / b.hand_s;
            targets.push(target(
                "build time (`cargo build`, debug, wall): ≤ 1.5 × the hand-written crate",
                format!(
                    "{ratio:.2} × (CPU time {:.2} ×)",
                    b.minder_cpu_s / b.hand_cpu_s
                ),
                ratio <= 1.5,
            ));
        }
        targets
    }

    /// The report as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "## minder-bench\n");
        let _ = writeln!(
            out,
            "Machine: {} cores ({}), {:.1} GiB, kernel {}, journals on {}; {}. \
             Every figure is compared with its floor measured in the same run.\n",
            m.cores, m.cpu, m.memory_gib, m.kernel, m.disk, m.rustc
        );

        if !self.fan_out.is_empty() {
            let _ = writeln!(
                out,
                "### 1. Fan-out: N no-op tasks through `ctx.map(..).limit(256)` (µs per task)\n"
            );
            let _ = writeln!(
                out,
                "| N | runs | (a) floor: futures + tokio::spawn | (b) minder, in-memory journal | \
                 (c) minder, file journal | (d) floor: the journal's bytes, one fdatasync per \
                 batch as (c) | b/a | c/a | c/d | fsyncs per task (c) |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for f in &self.fan_out {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.4} (1 per {:.0}) |",
                    thousands(f.n),
                    f.reps,
                    f.floor_us,
                    f.memory_us,
                    f.file_us,
                    f.file_floor_us,
                    f.memory_us / f.floor_us,
                    f.file_us / f.floor_us,
                    f.file_us / f.file_floor_us,
                    f.fsyncs_per_task,
                    1.0 / f.fsyncs_per_task
                );
            }
            out.push('\n');
        }

        if let Some(s) = &self.sequential {
            let _ = writeln!(
                out,
                "### 2. Sequential durable: {} tasks one after another, file journal\n",
                thousands(s.n)
            );
            let _ = writeln!(
                out,
                "| runs | minder µs per task | floor: {}-byte append + `sync_data`, µs | \
                 ratio (median of pairs) | fsyncs per task | avg record | driven from a \
                 spawned task: µs per task | its ratio |",
                s.append_bytes
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.2} | {:.3} | {:.0} B | {:.1} | {:.2} |\n",
                s.reps,
                s.minder_us,
                s.floor_us,
                s.ratio,
                s.fsyncs_per_task,
                s.record_bytes,
                s.spawned_us,
                s.spawned_ratio
            );
        }

        if !self.replay.is_empty() {
            let _ = writeln!(
                out,
                "### 3. Replay: resuming a run whose journal holds N completed steps and no end\n"
            );
            let _ = writeln!(
                out,
                "| steps | runs | journal | resume total | of which read + decode | µs per step | \
                 per step vs 10,000 | resume once completed |"
            );
            let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|");
            let base = self
                .replay
                .iter()
                .find(|r| r.n == 10_000)
                .map(Replay::per_step_us);
            for r in &self.replay {
                let vs = base.map_or("–".to_string(), |b| format!("{:.2}", r.per_step_us() / b));
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} MiB | {:.3} s | {:.3} s | {:.2} | {vs} | {:.3} ms |",
                    thousands(r.n),
                    r.reps,
                    r.journal_bytes as f64 / (1024.0 * 1024.0),
                    r.total_s,
                    r.decode_s,
                    r.per_step_us(),
                    r.completed_s * 1e3
                );
            }
            out.push('\n');
        }

        if let Some(mem) = &self.memory {
            let _ = writeln!(
                out,
                "### 4. Memory: peak resident (VmHWM), each in a fresh child process\n"
            );
            let _ = writeln!(
                out,
                "| child | peak | above the idle child | bytes per task / step |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| idle (runtime started, nothing run) | {} KiB | – | – |",
                thousands(mem.idle_kib)
            );
            let _ = writeln!(
                out,
                "| fan-out of {} tasks, file journal | {} KiB | {} KiB | {:.0} |",
                thousands(mem.n),
                thousands(mem.fan_out_kib),
                thousands(mem.fan_out_kib.saturating_sub(mem.idle_kib)),
                mem.fan_out_bytes_per_step()
            );
            let _ = writeln!(
                out,
                "| replay of {} steps, file journal | {} KiB | {} KiB | {:.0} |\n",
                thousands(mem.replay_n),
                thousands(mem.replay_kib),
                thousands(mem.replay_kib.saturating_sub(mem.idle_kib)),
                mem.replay_bytes_per_step()
            );
        }

        if let Some(c) = &self.compile {
            let _ = writeln!(
                out,
                "### 5. Compile time: `cargo check` and `cargo build` of {} processes × {} tasks \
                 (median of {}, incremental off)\n",
                compile::PROCESSES,
                compile::TASKS,
                c.reps
            );
            let _ = writeln!(
                out,
                "| | with minder's macros | by hand with `tokio::try_join!` | ratio |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| `cargo check`, wall time | {:.2} s | {:.2} s | {:.2} |",
                c.minder_s,
                c.hand_s,
                c.minder_s / c.hand_s
            );
            let _ = writeln!(
                out,
                "| `cargo check`, CPU time (user + system) | {:.2} s | {:.2} s | {:.2} |",
                c.minder_cpu_s,
                c.hand_cpu_s,
                c.minder_cpu_s / c.hand_cpu_s
            );
            let b = &c.build;
            let _ = writeln!(
                out,
                "| `cargo build` (debug), wall time | {:.2} s | {:.2} s | {:.2} |",
                b.minder_s,
                b.hand_s,
                b.minder_s / b.hand_s
            );
            let _ = writeln!(
                out,
                "| `cargo build` (debug), CPU time (user + system) | {:.2} s | {:.2} s | {:.2} |\n",
                b.minder_cpu_s,
                b.hand_cpu_s,
                b.minder_cpu_s / b.hand_cpu_s
            );
            let _ = writeln!(
                out,
                "(The first check and build of each crate, which built its dependencies, took {:.0} s \
                 in all and are not counted.)\n",
                c.warm_s
            );
            if let Some((minder, hand)) = c.instructions {
                let _ = writeln!(
                    out,
                    "Instructions of each crate's `rustc` check (cachegrind): {:.2} G with the \
                     macros, {:.2} G by hand, ratio {:.2}.\n",
                    minder as f64 / 1e9,
                    hand as f64 / 1e9,
                    minder as f64 / hand as f64
                );
            }
        }

        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "### Targets\n");
            let _ = writeln!(out, "| target | measured | |");
            let _ = writeln!(out, "|---|---:|---|");
            for t in &targets {
                let verdict = if t.met { "met" } else { "**missed**" };
                let _ = writeln!(out, "| {} | {} | {verdict} |", t.what, t.measured);
            }
            out.push('\n');
        }
        let _ = writeln!(out, "Bench time: {:.0} s.", self.elapsed_s);
        out
    }
}

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}

//! What the benchmarks ran on: CPU, cores, memory, kernel, and the file system of the journal
//! directory.

use std::path::Path;
use std::process::Command;

/// A description of the machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The CPU model.
    pub cpu: String,
    /// Cores available to this process.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// The kernel release.
    pub kernel: String,
    /// `df -T` of the journal directory: device, file system type, mount point.
    pub disk: String,
    /// `rustc --version`.
    pub rustc: String,
}

fn first_line_with(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
}

/// Reads the machine's description; `dir` is where the journals are written.
pub fn describe(dir: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = first_line_with(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let disk = Command::new("df")
        .arg("-T")
        .arg(dir)
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let fields: Vec<&str> = text.lines().nth(1)?.split_whitespace().collect();
            let device = fields.first()?;
            let fs = fields.get(1)?;
            let mount = fields.last()?;
            let name = device.trim_start_matches("/dev/");
            let rotational =
                std::fs::read_to_string(format!("/sys/block/{name}/queue/rotational")).ok();
            let kind = match rotational.as_deref().map(str::trim) {
                Some("0") => ", non-rotational",
                Some("1") => ", reported rotational",
                _ => "",
            };
            Some(format!("{device} ({fs}{kind}) mounted on {mount}"))
        })
        .unwrap_or_else(|| "unknown".to_string());
    let rustc = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    Machine {
        cpu: first_line_with(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_string()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: mem_kib / (1024.0 * 1024.0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string()),
        disk,
        rustc,
    }
}

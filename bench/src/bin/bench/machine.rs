//! The machine the numbers come from, and how busy it was with other work while they were
//! measured: benchmarks on a shared 2-core machine are only as good as that second number.
//!
//! Everything is read from `/proc` (Linux only); a missing file gives an empty value rather
//! than failing the run.

use std::process::Command;

use serde_json::{json, Value};

/// The description written under `machine` in summary.json.
pub(crate) fn describe(nats_server: &str) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib / 1024);
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    json!({
        "nproc": nproc,
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total_mib,
        "kernel": read_trimmed("/proc/sys/kernel/osrelease"),
        "nats_server": command_output(nats_server, &["--version"]),
        "rustc": command_output("rustc", &["--version"]),
        "loadavg_at_start": read_trimmed("/proc/loadavg"),
        // What was measured: the commit, and whether the tree had uncommitted changes.
        "git_commit": command_output("git", &["rev-parse", "--short", "HEAD"]),
        "git_dirty": !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty(),
    })
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on every Linux this
/// runs on).
pub(crate) fn ticks_per_second() -> f64 {
    command_output("getconf", &["CLK_TCK"])
        .parse()
        .unwrap_or(100.0)
}

/// Busy CPU time of the whole machine so far (every core, everything but idle and iowait),
/// in clock ticks, from the first line of `/proc/stat`.
pub(crate) fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle =
        fields.get(3).copied().unwrap_or_default() + fields.get(4).copied().unwrap_or_default();
    total.saturating_sub(idle)
}

/// Steal time of the whole machine so far (every core), in clock ticks: the eighth field of
/// the first line of `/proc/stat`, 0 where the kernel does not report it.
pub(crate) fn machine_steal_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(8))
        .and_then(|field| field.parse().ok())
        .unwrap_or_default()
}

/// User + system CPU time of a process so far, in clock ticks (`/proc/<pid>/stat` fields 14
/// and 15).
pub(crate) fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it follow the last ')'.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime field 15.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_the_machine_is_busy() {
        let mut spin = 0_u64;
        for i in 0..20_000_000_u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        assert!(process_cpu_ticks(std::process::id()).is_some());
        assert!(machine_busy_ticks() > 0);
    }
}

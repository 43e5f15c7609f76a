//! CPU time and resident memory of a process, read from /proc (Linux).

/// Clock ticks per second of /proc/<pid>/stat's times; 100 on every Linux this runs on
/// (`getconf CLK_TCK`).
const TICKS_PER_S: f64 = 100.0;

/// User + system CPU seconds the process has used so far.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // the command name (field 2) may contain spaces: count fields after its closing parenthesis
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields after ')' start at field 3 (state); utime is field 14, stime field 15
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / TICKS_PER_S
}

/// CPU seconds of `pid` and its children (PostgreSQL's postmaster and its backends).
pub(crate) fn tree_cpu_seconds(pid: u32) -> f64 {
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| parent(child) == Some(pid))
        .map(cpu_seconds)
        .sum();
    cpu_seconds(pid) + children
}

/// The parent's PID (field 4 of /proc/<pid>/stat).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Resident set size in KiB (VmRSS).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(super::rss_kib(me) > 100);
        assert!(super::cpu_seconds(me) >= 0.0);
        assert_eq!(super::rss_kib(u32::MAX), 0);
    }
}

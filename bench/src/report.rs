//! One row per scenario and server: printed as a table with Hubbub/peer ratios, and written to
//! `bench/results/latest.json` so anyone can recompute the ratios.

use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Run {
    pub(crate) scenario: String,
    pub(crate) server: String,
    pub(crate) clients: u32,
    pub(crate) delivered_per_s: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) delivery_ratio: Option<f64>,
    pub(crate) rss_kib_per_conn: Option<f64>,
    pub(crate) max_ms: Option<f64>,
    /// Offered load, messages/s in all (None: closed loop or no messages).
    pub(crate) rate_msgs_per_s: Option<f64>,
    pub(crate) dropped_clients: Option<u32>,
    pub(crate) lagged_notices: Option<u64>,
    pub(crate) server_cpu_s_per_million: Option<f64>,
    pub(crate) server_rss_kib: Option<u64>,
    pub(crate) generator_cpu_s: Option<f64>,
    /// The generator's CPU per WebSocket frame it received, µs: what one more frame costs the
    /// measuring side (a server that batches more sends fewer, cheaper-to-count frames).
    pub(crate) generator_us_per_frame: Option<f64>,
    /// The generator used ≥ 90 % of its CPUs: the number is a floor for the server.
    pub(crate) generator_bound: bool,
    pub(crate) connects_per_s: Option<f64>,
    /// Storm: messages sent after a client was ready that never reached it.
    pub(crate) missed_after_ready: Option<u64>,
    /// Why a row has no numbers, or what limited it.
    pub(crate) note: Option<String>,
}

impl Run {
    pub(crate) fn new(scenario: &str, server: &str, clients: u32) -> Run {
        Run { scenario: scenario.into(), server: server.into(), clients, ..Run::default() }
    }

    /// Fills the delivery fields from a load run.
    pub(crate) fn with(mut self, o: &crate::fleet::Outcome, rate: f64) -> Run {
        self.delivered_per_s = Some(o.delivered_per_s().round());
        self.delivery_ratio = Some((o.ratio() * 1e5).round() / 1e5);
        self.p50_ms = Some(o.ms(0.5));
        self.p99_ms = Some(o.ms(0.99));
        self.max_ms = Some(o.latency_us.max() as f64 / 1000.0);
        self.rate_msgs_per_s = (rate > 0.0).then_some(rate);
        self.dropped_clients = Some(o.dropped);
        self.lagged_notices = Some(o.lagged);
        if o.delivered > 0 {
            self.server_cpu_s_per_million =
                Some((o.server_cpu_seconds / o.delivered as f64 * 1e6 * 1000.0).round() / 1000.0);
        }
        self.generator_cpu_s = Some((o.generator_cpu_seconds * 100.0).round() / 100.0);
        if o.frames > 0 {
            self.generator_us_per_frame = Some((o.generator_cpu_seconds / o.frames as f64 * 1e8).round() / 100.0);
        }
        self.generator_bound = o.generator_bound;
        if o.failed > 0 {
            self.note = Some(format!("{} clients failed to connect", o.failed));
        }
        self
    }
}

/// One row for several runs of the same load: the run whose `key` is the median, with the
/// spread of `key` (and how many runs) in its note, so one lucky or unlucky run sets nothing.
pub(crate) fn median_of(mut runs: Vec<Run>, what: &str, key: fn(&Run) -> Option<f64>) -> Run {
    runs.sort_by(|a, b| key(a).unwrap_or(f64::NAN).total_cmp(&key(b).unwrap_or(f64::NAN)));
    let values: Vec<f64> = runs.iter().filter_map(key).collect();
    let n = runs.len();
    let mut median = runs.swap_remove(n / 2);
    if let (Some(min), Some(max)) = (values.first(), values.last())
        && n > 1
    {
        let spread = format!("median of {n}, {what} {} – {}", cell(Some(*min), 2), cell(Some(*max), 2));
        median.note = Some(match median.note.take() {
            Some(note) => format!("{note}; {spread}"),
            None => spread,
        });
    }
    median
}

#[derive(Debug, Serialize)]
pub(crate) struct Results {
    pub(crate) machine: String,
    pub(crate) command: String,
    pub(crate) runs: Vec<Run>,
}

/// CPU model, cores and kernel, from /proc.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    format!("{} × {cores} cores, {mem} RAM, Linux {}", model.unwrap_or("unknown CPU"), kernel.trim())
}

fn cell(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v >= 10_000.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

/// Prints the runs as a table, then Hubbub's ratios to each peer for the same scenario.
pub(crate) fn print(runs: &[Run]) {
    println!();
    println!(
        "{:<18} {:<15} {:>7} {:>12} {:>8} {:>8} {:>8} {:>9} {:>5} {:>9} {:>9} {:>6} {:>9}  note",
        "scenario",
        "server",
        "clients",
        "delivered/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "max ms",
        "drop",
        "cpu s/M",
        "KiB/conn",
        "gen s",
        "gen µs/fr"
    );
    for r in runs {
        let mut note = r.note.clone().unwrap_or_default();
        if r.generator_bound {
            note = format!("GENERATOR-BOUND {note}");
        }
        println!(
            "{:<18} {:<15} {:>7} {:>12} {:>8} {:>8} {:>8} {:>9} {:>5} {:>9} {:>9} {:>6} {:>9}  {}",
            r.scenario,
            r.server,
            r.clients,
            cell(r.delivered_per_s.or(r.connects_per_s), 0),
            cell(r.delivery_ratio, 4),
            cell(r.p50_ms, 2),
            cell(r.p99_ms, 2),
            cell(r.max_ms, 1),
            r.dropped_clients.map_or("-".into(), |d| d.to_string()),
            cell(r.server_cpu_s_per_million, 3),
            cell(r.rss_kib_per_conn, 2),
            cell(r.generator_cpu_s, 1),
            cell(r.generator_us_per_frame, 2),
            note.trim()
        );
    }
    println!();
    println!("Hubbub / peer, same scenario (throughput: higher is better; p99 and KiB/conn: lower is better)");
    for h in runs.iter().filter(|r| r.server == "hubbub") {
        for p in runs.iter().filter(|p| p.server != "hubbub" && p.scenario == h.scenario) {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "-".into(),
            };
            println!(
                "  {:<18} vs {:<15} delivered/s {:>7}   p99 {:>7}   KiB/conn {:>7}   connects/s {:>7}",
                h.scenario,
                p.server,
                ratio(h.delivered_per_s, p.delivered_per_s),
                ratio(h.p99_ms, p.p99_ms),
                ratio(h.rss_kib_per_conn, p.rss_kib_per_conn),
                ratio(h.connects_per_s, p.connects_per_s),
            );
        }
    }
}

pub(crate) fn write(path: &Path, results: &Results) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(results)? + "\n")?;
    println!("results written to {}", path.display());
    Ok(())
}

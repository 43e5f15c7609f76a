//! The scenarios, each run against every server named, in one process, one after another.
//! Every run starts a fresh server, so one scenario's leftovers never weigh on the next.

use crate::{
    fleet::{Fleet, Load},
    procfs,
    report::{self, Run},
    servers::{self, Binaries, Kind},
};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// Servers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "hubbub,gorilla,axum-broadcast", global = true)]
    pub(crate) servers: Vec<Kind>,
    /// Generator worker processes; 0: one per generator CPU, more where a process would near
    /// the 20,000-file limit.
    #[arg(long, default_value_t = 0, global = true)]
    pub(crate) workers: u32,
    /// Runs of each row (a fresh server for each where the row measures a fresh server: idle
    /// memory, a connect storm); the median run is reported, with the spread in its note, so
    /// one lucky or unlucky run sets nothing. `step` takes the median p99 at each size.
    #[arg(long, default_value_t = 3, global = true)]
    pub(crate) repeats: u32,
}

impl Common {
    fn repeats(&self) -> u32 {
        self.repeats.max(1)
    }
}

/// Runs `one` `repeats` times and keeps the median row by `key` (see [`report::median_of`]).
async fn median_run<F, Fut>(repeats: u32, what: &str, key: fn(&Run) -> Option<f64>, mut one: F) -> anyhow::Result<Run>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Run>>,
{
    let mut tries = Vec::new();
    for _ in 0..repeats.max(1) {
        tries.push(one().await?);
    }
    Ok(report::median_of(tries, what, key))
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FanoutOptions {
    #[arg(long, default_value_t = 1000)]
    pub(crate) clients: u32,
    #[arg(long, default_value_t = 10)]
    pub(crate) senders: u32,
    /// Closed loop: messages each sender keeps in flight (gorilla drops a client whose
    /// 256-message queue fills, so senders × window stays below that).
    #[arg(long, default_value_t = 8)]
    pub(crate) window: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
    /// Fixed rates to climb, in deliveries per second (messages/s × clients); the climb stops
    /// at the first rate delivered below 0.999 or with a client dropped.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100000,250000,500000,1000000,1500000,2000000,3000000,4000000,5000000,6000000"
    )]
    pub(crate) rates: Vec<f64>,
    /// Run only these rows (comma-separated names, e.g. `latency-100k,fanout-closed`); all when
    /// not given.
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

impl FanoutOptions {
    fn wants(&self, row: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|r| r == row)
    }
}

/// Fan-out, per server: latency at a low and at a moderate fixed rate (each run `--repeats`
/// times, the median row kept with the spread in its note), the moderate one again with every
/// sender firing at once (`-burst`: the friendlier load), a climb over fixed rates (each rate
/// `--repeats` times, decided by its median run: the climb stops at the first rate not held),
/// then closed loop (`--repeats` times).
/// Rows: `latency-1k`, `latency-100k` (the first rate of `--rates`, 100,000 deliveries/s by
/// default), `latency-100k-burst`, `fanout-rate` (the highest rate held
/// with ratio ≥ 0.999 and no client dropped), `fanout-closed`, then `latency-100k-480b` and
/// (Hubbub) `latency-100k-480b-deflate`. Senders are staggered (each at its own point of the
/// period) except in the burst row.
pub(crate) async fn fanout(bins: &Binaries, common: &Common, o: &FanoutOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    let repeats = common.repeats();
    for &kind in &common.servers {
        let server = servers::start(kind, bins).await?;
        // a run lasts at least one period of each sender, so that a slow rate (1,000 deliveries/s
        // is one message a second from 10 senders) sends what it offers
        let one_room = |deliveries: f64| {
            let rate = deliveries / f64::from(o.clients);
            let seconds = if rate > 0.0 { o.seconds.max(f64::from(o.senders) / rate) } else { o.seconds };
            Load::one_room(o.clients, o.senders, rate, seconds, common.workers)
        };
        let first = o.rates.first().copied().unwrap_or(100_000.0);
        let latency_rows =
            [("latency-1k", 1_000.0, false), ("latency-100k", first, false), ("latency-100k-burst", first, true)];
        for (scenario, deliveries, burst) in latency_rows.into_iter().filter(|row| o.wants(row.0)) {
            let load = Load { burst, ..one_room(deliveries) };
            let once = || async {
                let (mut row, _) = measure(&server, bins, &load, scenario, kind).await?;
                row.note = Some(format!("{deliveries:.0} deliveries/s offered"));
                Ok(row)
            };
            runs.push(median_run(repeats, "p99 ms", |r| r.p99_ms, once).await?);
        }
        let mut best: Option<Run> = None;
        let climb: &[f64] = if o.wants("fanout-rate") { &o.rates } else { &[] };
        for &deliveries in climb {
            let load = one_room(deliveries);
            let once = || async { Ok(measure(&server, bins, &load, "fanout-rate", kind).await?.0) };
            // a rate holds when its median run (by delivery ratio) does
            let row = median_run(repeats, "ratio", |r| r.delivery_ratio, once).await?;
            let held = row.delivery_ratio.is_some_and(|r| r >= 0.999) && row.dropped_clients == Some(0);
            if !held {
                break;
            }
            best = Some(row);
        }
        if o.wants("fanout-rate") {
            runs.push(best.unwrap_or_else(|| {
                let mut r = Run::new("fanout-rate", kind.name(), o.clients);
                r.note = Some("not even the lowest rate held".into());
                r
            }));
        }
        if o.wants("fanout-closed") {
            let closed = Load { window: o.window, ..one_room(0.0) };
            let once = || async {
                let (mut row, _) = measure(&server, bins, &closed, "fanout-closed", kind).await?;
                row.server_rss_kib = Some(procfs::rss_kib(server.pid));
                Ok(row)
            };
            runs.push(median_run(repeats, "delivered/s", |r| r.delivered_per_s, once).await?);
        }
        // long texts at the moderate rate, as they are and (Hubbub: the peers' chat examples do
        // not compress) with every client offering permessage-deflate as a browser does: what
        // compression costs in CPU per delivery, and what it saves on the wire
        let long_rows: &[(&str, bool)] = match kind {
            Kind::Hubbub => &[("latency-100k-480b", false), ("latency-100k-480b-deflate", true)],
            Kind::Gorilla | Kind::AxumBroadcast => &[("latency-100k-480b", false)],
        };
        for &(scenario, deflate) in long_rows.iter().filter(|row| o.wants(row.0)) {
            let load = Load { text_len: LONG_TEXT, deflate, ..one_room(first) };
            let once = || async {
                let (mut row, outcome) = measure(&server, bins, &load, scenario, kind).await?;
                let wire = if deflate { "permessage-deflate" } else { "uncompressed" };
                let per_delivery = outcome.bytes_in as f64 / outcome.delivered.max(1) as f64;
                row.note = Some(format!(
                    "{first:.0} deliveries/s offered, {LONG_TEXT}-byte texts, {wire}: {per_delivery:.0} B on the wire per delivery"
                ));
                Ok(row)
            };
            runs.push(median_run(repeats, "p99 ms", |r| r.p99_ms, once).await?);
        }
    }
    Ok(runs)
}

/// One run of `load` on `server`: its row (its progress line printed) and its outcome, for what
/// the row's note adds.
async fn measure(
    server: &servers::Running,
    bins: &Binaries,
    load: &Load,
    scenario: &'static str,
    kind: Kind,
) -> anyhow::Result<(Run, crate::fleet::Outcome)> {
    let outcome = Fleet::connect(server, bins, load).await?.go(server).await?;
    let row = Run::new(scenario, kind.name(), load.clients).with(&outcome, load.rate);
    progress(&row);
    Ok((row, outcome))
}

/// The text length of the `-480b` rows: a long chat message, well over the 256 bytes from
/// which the hub compresses, and under the 512 bytes gorilla's chat example reads at most.
const LONG_TEXT: usize = 480;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RoomsOptions {
    #[arg(long, default_value_t = 2000)]
    pub(crate) clients: u32,
    #[arg(long, default_value_t = 10)]
    pub(crate) room_size: u32,
    #[arg(long, default_value_t = 5.0)]
    pub(crate) seconds: f64,
}

/// Many small rooms, one sender in each, closed loop. The peers have no rooms: their rows say so.
pub(crate) async fn rooms(bins: &Binaries, common: &Common, o: &RoomsOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &kind in &common.servers {
        if !kind.has_rooms() {
            let mut row = Run::new("rooms", kind.name(), o.clients);
            row.note = Some("no rooms in this server".into());
            runs.push(row);
            continue;
        }
        let server = servers::start(kind, bins).await?;
        let once = || async {
            let size = o.room_size.max(1);
            let load = Load {
                room_size: size,
                senders: (0..o.clients).step_by(size as usize).collect(),
                window: 8,
                ..Load::one_room(o.clients, 1, 0.0, o.seconds, common.workers)
            };
            let outcome = Fleet::connect(&server, bins, &load).await?.go(&server).await?;
            let mut row = Run::new("rooms", kind.name(), o.clients).with(&outcome, 0.0);
            row.note = Some(format!("{} rooms of {size}, one closed-loop sender each", o.clients / size));
            progress(&row);
            Ok(row)
        };
        runs.push(median_run(common.repeats(), "delivered/s", |r| r.delivered_per_s, once).await?);
    }
    Ok(runs)
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IdleOptions {
    #[arg(long, default_value_t = 19_000)]
    pub(crate) clients: u32,
}

/// Idle connections: the server's RSS growth per connected (and, for Hubbub, joined) client,
/// a fresh server for each of the `--repeats` runs.
pub(crate) async fn idle(bins: &Binaries, common: &Common, o: &IdleOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &kind in &common.servers {
        let what = "KiB/conn";
        runs.push(
            median_run(common.repeats(), what, |r| r.rss_kib_per_conn, || idle_once(bins, common, kind, o)).await?,
        );
    }
    Ok(runs)
}

async fn idle_once(bins: &Binaries, common: &Common, kind: Kind, o: &IdleOptions) -> anyhow::Result<Run> {
    let server = servers::start(kind, bins).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procfs::rss_kib(server.pid);
    // Hubbub's idle users sit in rooms of 10, as people do; the peers have one room
    let load = Load { room_size: 10, connect_parallel: 256, ..Load::one_room(o.clients, 0, 0.0, 0.0, common.workers) };
    let fleet = Fleet::connect(&server, bins, &load).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procfs::rss_kib(server.pid);
    let connected = fleet.ready.connected;
    let mut row = Run::new("idle", kind.name(), connected);
    row.server_rss_kib = Some(after);
    if connected > 0 {
        row.rss_kib_per_conn =
            Some(((after.saturating_sub(before)) as f64 / f64::from(connected) * 100.0).round() / 100.0);
    }
    row.note = Some(match (fleet.ready.failed, &fleet.ready.error) {
        (0, _) => format!("RSS {before} KiB before, {after} KiB after"),
        (n, e) => format!("{n} failed to connect: {}", e.as_deref().unwrap_or("?")),
    });
    fleet.stop().await;
    progress(&row);
    Ok(row)
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StormOptions {
    #[arg(long, default_value_t = 5000)]
    pub(crate) clients: u32,
    /// Connection attempts in flight per worker.
    #[arg(long, default_value_t = 500)]
    pub(crate) parallel: usize,
    /// Messages per second one member, in the room first, says while everyone connects.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) rate: f64,
}

/// Connect storm: everyone connects to one room at once while one member keeps talking. The
/// row: connects/s (the delivered/s column), time to ready (connected and, for Hubbub, joined
/// with its history), how many messages sent after a client was ready never reached it (must be
/// 0), and how long until the room was quiet (the last `presence` frame).
pub(crate) async fn storm(bins: &Binaries, common: &Common, o: &StormOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &kind in &common.servers {
        // a fresh server each time: the room starts empty
        let once = || storm_once(bins, common, kind, o);
        runs.push(median_run(common.repeats(), "connects/s", |r| r.connects_per_s, once).await?);
    }
    Ok(runs)
}

async fn storm_once(bins: &Binaries, common: &Common, kind: Kind, o: &StormOptions) -> anyhow::Result<Run> {
    let server = servers::start(kind, bins).await?;
    let load =
        Load { connect_parallel: o.parallel, storm: true, ..Load::one_room(o.clients, 1, o.rate, 0.0, common.workers) };
    let started_ns = crate::token::now_ns();
    // the server's CPU while everyone connects (the talker's fan-out included, the same for
    // every server): a steadier comparison of two builds than connects/s, which moves with
    // how the two CPUs' work interleaves
    let cpu_before = crate::procfs::cpu_seconds(server.pid);
    let fleet = Fleet::connect(&server, bins, &load).await?;
    let connect_cpu_s = crate::procfs::cpu_seconds(server.pid) - cpu_before;
    let ready = fleet.ready.clone();
    let outcome = fleet.go(&server).await?;
    let mut row = Run::new("storm", kind.name(), ready.connected);
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    for &(v, n) in &ready.connect_us {
        h.record_n(v, n)?;
    }
    row.connects_per_s = Some((f64::from(ready.connected) / ready.connect_seconds.max(1e-9)).round());
    // seconds per million connects: µs of server CPU per connect
    row.server_cpu_s_per_million =
        (ready.connected > 0).then(|| (connect_cpu_s / f64::from(ready.connected) * 1e6 * 10.0).round() / 10.0);
    row.p50_ms = Some(h.value_at_quantile(0.5) as f64 / 1000.0);
    row.p99_ms = Some(h.value_at_quantile(0.99) as f64 / 1000.0);
    row.max_ms = Some(h.max() as f64 / 1000.0);
    row.dropped_clients = Some(outcome.dropped);
    row.lagged_notices = Some(outcome.lagged);
    row.missed_after_ready = Some(outcome.missed_after_ready);
    row.delivery_ratio = (outcome.expected_after_ready > 0).then(|| {
        let got = outcome.expected_after_ready - outcome.missed_after_ready;
        (got as f64 / outcome.expected_after_ready as f64 * 1e5).round() / 1e5
    });
    let quiet = (outcome.last_presence_ns > 0)
        .then(|| format!("; quiet {:.1} s after the start", (outcome.last_presence_ns - started_ns) as f64 / 1e9));
    row.note = Some(format!(
        "connects/s in the delivered/s column; cpu s/M = the server's CPU µs per connect; ms = connect to ready{}; {} failed; {} of {} messages due after ready missed; {}",
        quiet.unwrap_or_default(),
        ready.failed,
        outcome.missed_after_ready,
        outcome.expected_after_ready,
        if kind.has_rooms() { "ready = joined, history read" } else { "ready = upgraded (no join reply)" },
    ));
    progress(&row);
    Ok(row)
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StepOptions {
    #[arg(long, default_value_t = 1000)]
    pub(crate) start: u32,
    #[arg(long, default_value_t = 1000)]
    pub(crate) step: u32,
    /// The goal of the people issue: 10,000 in one room.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) max: u32,
    /// Broadcasts per second (each to every client).
    #[arg(long, default_value_t = 50.0)]
    pub(crate) rate: f64,
    #[arg(long, default_value_t = 3.0)]
    pub(crate) seconds: f64,
    /// Stop adding clients once the p99 broadcast latency passes this.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) p99_limit_ms: f64,
}

/// Step test, after the websocket-shootout benchmark: add clients until p99 broadcast latency
/// passes the limit; the row is the largest client count that stayed under it.
pub(crate) async fn step(bins: &Binaries, common: &Common, o: &StepOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &kind in &common.servers {
        let server = servers::start(kind, bins).await?;
        let mut best: Option<Run> = None;
        let mut clients = o.start;
        let mut stopped_by = format!("reached --max {}", o.max);
        while clients <= o.max {
            let load = Load::one_room(clients, 1, o.rate, o.seconds, common.workers);
            let once = || async {
                let outcome = Fleet::connect(&server, bins, &load).await?.go(&server).await?;
                let mut row = Run::new("step", kind.name(), clients).with(&outcome, o.rate);
                row.note = Some(format!("{} broadcasts/s; p99 limit {} ms", o.rate, o.p99_limit_ms));
                progress(&row);
                Ok(row)
            };
            // the size holds when its median run does
            let row = median_run(common.repeats(), "p99 ms", |r| r.p99_ms, once).await?;
            let (p99, ratio) = (row.p99_ms.unwrap_or(f64::INFINITY), row.delivery_ratio.unwrap_or(0.0));
            if p99 > o.p99_limit_ms || row.dropped_clients.unwrap_or(0) > 0 || ratio < 0.999 {
                stopped_by = format!("{clients} clients: p99 {p99:.1} ms, ratio {ratio:.4} (median run)");
                break;
            }
            best = Some(row);
            clients += o.step;
        }
        let mut row = best.unwrap_or_else(|| Run::new("step", kind.name(), 0));
        row.note = Some(match row.note {
            Some(note) => format!("{note}; stopped: {stopped_by}"),
            None => format!("{} broadcasts/s; not even {} clients held; stopped: {stopped_by}", o.rate, o.start),
        });
        runs.push(row);
    }
    Ok(runs)
}

/// A scenario's options with every default, as if given no flags.
pub(crate) fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults"));
    T::from_arg_matches(&cmd.get_matches_from(["defaults"])).expect("every option has a default")
}

pub(crate) fn progress(row: &Run) {
    eprintln!(
        "  {} {} clients={} delivered/s={} ratio={} p50={} p99={} ms dropped={} lagged={} cpu/M={}s gen_cpu={}s{}",
        row.scenario,
        row.server,
        row.clients,
        row.delivered_per_s.or(row.connects_per_s).map_or("-".into(), |v| format!("{v:.0}")),
        row.delivery_ratio.map_or("-".into(), |v| format!("{v:.4}")),
        row.p50_ms.map_or("-".into(), |v| format!("{v:.2}")),
        row.p99_ms.map_or("-".into(), |v| format!("{v:.2}")),
        row.dropped_clients.map_or("-".into(), |v| v.to_string()),
        row.lagged_notices.map_or("-".into(), |v| v.to_string()),
        row.server_cpu_s_per_million.map_or("-".into(), |v| format!("{v}")),
        row.generator_cpu_s.map_or("-".into(), |v| format!("{v:.1}")),
        if row.generator_bound { " GENERATOR-BOUND" } else { "" },
    );
}

//! The cluster mode under load: several `hubbub` processes sharing one real PostgreSQL and one
//! real `redis-server` (Debian's, started here on free loopback ports in temporary folders and
//! stopped by PID: the same fixtures as the server's tests), one generator worker per hub.
//! One room spread over every hub (so most of its deliveries cross Redis) plus rooms of 10.
//! Then single-hub rows, SQLite beside PostgreSQL, under the same closed-loop load.

#[path = "../../server/tests/support/postgres.rs"]
mod pg;
#[path = "../../server/tests/support/redis.rs"]
mod redis;

use crate::{
    fleet::{Fleet, Load},
    procfs,
    report::Run,
    scenarios::progress,
    servers::{self, Binaries, Kind},
};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterOptions {
    /// Hubs (each gets one generator worker, so each holds clients / hubs connections: keep
    /// that under ~15,000, the open-files limit being 20,000 per process).
    #[arg(long, default_value_t = 7)]
    pub(crate) hubs: u32,
    #[arg(long, default_value_t = 100_000)]
    pub(crate) clients: u32,
    /// Members of the one room spread over every hub; everyone else is in rooms of 10.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) big_room: u32,
    /// Senders in the big room, and in small rooms.
    #[arg(long, default_value_t = 10)]
    pub(crate) big_senders: u32,
    #[arg(long, default_value_t = 200)]
    pub(crate) small_senders: u32,
    /// Messages per second per sender.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub(crate) seconds: f64,
    /// Clients of the single-hub rows (one room, 10 senders, closed loop).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) single_clients: u32,
}

/// Rows `cluster` (the hubs together) and `single-sqlite` / `single-postgres`.
pub(crate) async fn cluster(bins: &Binaries, o: &ClusterOptions) -> anyhow::Result<Vec<Run>> {
    let (pg, redis) = (pg::Postgres::start(), redis::Redis::start());
    let name = format!("hubbub ×{} (PostgreSQL + Redis)", o.hubs);
    let mut shared: Vec<String> = ["--database", &pg.url("postgres"), "--redis", &redis.url()].map(String::from).into();
    // 100,000 connections take minutes to connect on one vCPU, and the generator reads no
    // socket before `go`: the first ones would meet the idle timeout (and miss their pongs)
    shared.extend(["--idle-timeout-ms", "900000", "--ping-interval-ms", "600000"].map(String::from));
    let mut hubs = Vec::new();
    for _ in 0..o.hubs {
        hubs.push(servers::start_with(Kind::Hubbub, bins, &shared).await?);
    }
    let (addrs, pids): (Vec<_>, Vec<_>) = hubs.iter().map(|h| (h.addr, h.pid)).unzip();
    let rss = || pids.iter().map(|&p| procfs::rss_kib(p)).sum::<u64>();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss();

    let stride = (o.clients / o.big_room.max(1)).max(2);
    let big: Vec<u32> =
        (0..o.big_senders).map(|i| i * (o.clients / o.big_senders.max(1) / stride).max(1) * stride).collect();
    let small_step = (o.clients / o.small_senders.max(1)).max(1);
    let small =
        (0..o.small_senders).map(|i| i * small_step + 1).filter(|id| !id.is_multiple_of(stride) && *id < o.clients);
    let senders: Vec<u32> = big.into_iter().chain(small).collect();
    let load = Load {
        room_size: 10,
        senders: senders.clone(),
        rate: o.rate * senders.len() as f64,
        // joins are CPU-bound here (~260/s over all hubs): more attempts in flight only wait
        // longer, until the hubs' 10 s request-head timeout cuts them
        connect_parallel: 32,
        big_room_stride: stride,
        ..Load::one_room(o.clients, 0, 0.0, o.seconds, o.hubs)
    };
    let connecting = Instant::now();
    let fleet = Fleet::connect_spread(Kind::Hubbub, &addrs, bins, &load).await?;
    let connect_s = connecting.elapsed().as_secs_f64();
    let connected = fleet.ready.connected;
    let first_error = fleet.ready.error.clone();
    let rss_after = rss();
    let (pg_pid, redis_pid) = (pg.pid().unwrap_or(0), redis.pid().unwrap_or(0));
    let (pg_cpu, redis_cpu) = (procfs::tree_cpu_seconds(pg_pid), procfs::cpu_seconds(redis_pid));
    let outcome = fleet.go_measuring(&pids).await?;
    let (pg_cpu, redis_cpu) = (procfs::tree_cpu_seconds(pg_pid) - pg_cpu, procfs::cpu_seconds(redis_pid) - redis_cpu);
    let mut row = Run::new("cluster", &name, connected).with(&outcome, load.rate);
    if connected > 0 {
        row.rss_kib_per_conn =
            Some((rss_after.saturating_sub(rss_before) as f64 / f64::from(connected) * 100.0).round() / 100.0);
    }
    row.server_rss_kib = Some(rss_after);
    row.connects_per_s = Some((f64::from(connected) / connect_s).round());
    let seconds = outcome.seconds.max(f64::EPSILON);
    row.note = Some(format!(
        "a {}-member room over every hub + rooms of 10; during the run Redis {:.0} % and PostgreSQL {:.0} % of a CPU; {} connected (and joined) in {connect_s:.0} s{}",
        o.clients / stride,
        redis_cpu / seconds * 100.0,
        pg_cpu / seconds * 100.0,
        connected,
        row.note.as_deref().map(|n| format!("; {n}")).unwrap_or_default(),
    ));
    if let (Some(note), Some(error)) = (row.note.as_mut(), first_error) {
        note.push_str(&format!(" (the first: {error})"));
    }
    progress(&row);
    drop(hubs);

    // one hub, the same closed loop on each store
    let mut runs = vec![row];
    let database = pg.database().await;
    for (scenario, extra) in
        [("single-sqlite", Vec::new()), ("single-postgres", vec!["--database".to_owned(), database.clone()])]
    {
        let hub = servers::start_with(Kind::Hubbub, bins, &extra).await?;
        // as `fanout-closed`: 8 in flight per sender
        let load = Load { window: 8, ..Load::one_room(o.single_clients, 10, 0.0, 5.0, 0) };
        let outcome = Fleet::connect(&hub, bins, &load).await?.go(&hub).await?;
        let row = Run::new(scenario, "hubbub", o.single_clients).with(&outcome, 0.0);
        progress(&row);
        runs.push(row);
    }
    Ok(runs)
}

//! `hubbub-bench`: measures Hubbub and its peers on this machine and prints the numbers.
//!
//! ```text
//! make bench                                  # builds everything, runs `all`, writes bench/results/latest.json
//! target/release/hubbub-bench fanout --servers hubbub,gorilla
//! target/release/hubbub-bench acks            # durable, acknowledged sends (issue: nothing lost)
//! ```
//!
//! Every scenario starts the servers as real processes on 127.0.0.1 (pinned with taskset to
//! `--server-cpus`), drives them from worker processes pinned to `--generator-cpus`, is bounded
//! in count and time, and stops by itself. Latency is measured from a token in every text
//! (`token.rs`), so the same generator measures every server.

mod acks;
mod cluster;
mod fleet;
mod procfs;
mod report;
mod scenarios;
mod search;
mod servers;
mod token;
mod worker;

use clap::{Parser, Subcommand};
use scenarios::{Common, FanoutOptions, IdleOptions, RoomsOptions, StepOptions, StormOptions};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "hubbub-bench", about = "Load generator for Hubbub and its peers (loopback only, bounded)")]
struct Args {
    #[command(flatten)]
    bins: servers::Binaries,
    #[command(flatten)]
    common: Common,
    /// Also write the rows as JSON here.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Every scenario below against every server; one table, one JSON file.
    All {
        #[command(flatten)]
        fanout: FanoutOptions,
    },
    /// C clients in one room, S of them sending: closed loop, then a climb over fixed rates.
    Fanout(FanoutOptions),
    /// Many small rooms with a sender each (Hubbub only: the peers have no rooms).
    Rooms(RoomsOptions),
    /// N idle connections: the server's RSS per connection.
    Idle(IdleOptions),
    /// Everyone connects at once: connections per second, time to ready.
    Storm(StormOptions),
    /// Add clients until the p99 broadcast latency passes a limit.
    Step(StepOptions),
    /// `search` over 1,000,000 stored messages: queries/s and latency (Hubbub only).
    Search(search::SearchOptions),
    /// Acknowledged sends with synchronous=FULL: closed-loop throughput, then the ack latency
    /// at a fixed rate (Hubbub only).
    Acks(acks::Options),
    /// Several hubs on one real PostgreSQL and Redis, 100,000 connections over them; then one
    /// hub on SQLite beside one on PostgreSQL (Hubbub only).
    Cluster(cluster::ClusterOptions),
    /// (internal) one generator process, driven by the others over stdio
    #[command(hide = true)]
    Worker { plan: String },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Scenario::Worker { plan } = &args.scenario {
        return worker::main(plan);
    }
    tokio::runtime::Runtime::new()?.block_on(coordinate(args))
}

async fn coordinate(args: Args) -> anyhow::Result<()> {
    let (bins, common) = (&args.bins, &args.common);
    println!(
        "hubbub-bench on {}; servers pinned to CPU {}, generator ({} worker processes) to CPU {}",
        report::machine(),
        bins.server_cpus,
        if common.workers == 0 { "auto".to_string() } else { common.workers.to_string() },
        bins.generator_cpus
    );
    let runs = match &args.scenario {
        Scenario::All { fanout } => {
            let mut runs = scenarios::fanout(bins, common, fanout).await?;
            runs.extend(scenarios::rooms(bins, common, &scenarios::defaults::<RoomsOptions>()).await?);
            runs.extend(scenarios::idle(bins, common, &IdleOptions { clients: 19_000 }).await?);
            runs.extend(scenarios::storm(bins, common, &scenarios::defaults::<StormOptions>()).await?);
            runs.extend(scenarios::step(bins, common, &scenarios::defaults::<StepOptions>()).await?);
            runs.extend(search::search(bins, common, &scenarios::defaults::<search::SearchOptions>()).await?);
            if common.servers.contains(&servers::Kind::Hubbub) {
                runs.extend(cluster::cluster(bins, &scenarios::defaults::<cluster::ClusterOptions>()).await?);
            }
            runs
        }
        Scenario::Fanout(o) => scenarios::fanout(bins, common, o).await?,
        Scenario::Rooms(o) => scenarios::rooms(bins, common, o).await?,
        Scenario::Idle(o) => scenarios::idle(bins, common, o).await?,
        Scenario::Storm(o) => scenarios::storm(bins, common, o).await?,
        Scenario::Step(o) => scenarios::step(bins, common, o).await?,
        Scenario::Cluster(o) => cluster::cluster(bins, o).await?,
        Scenario::Search(o) => search::search(bins, common, o).await?,
        Scenario::Acks(o) => return acks::run(&bins.server_bin, o.clone()).await,
        Scenario::Worker { .. } => unreachable!("handled before the runtime starts"),
    };
    report::print(&runs);
    if let Some(path) = &args.out {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        report::write(path, &report::Results { machine: report::machine(), command, runs })?;
    }
    Ok(())
}

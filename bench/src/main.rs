//! `hubbub-bench`: measures Hubbub on this machine and prints the numbers.
//!
//! ```text
//! cargo build --release -p hubbub-server -p hubbub-bench
//! target/release/hubbub-bench acks            # durable, acknowledged sends (issue: nothing lost)
//! ```
//!
//! Every scenario starts the real `hubbub` binary on 127.0.0.1 with a fresh database file,
//! talks to it over loopback only, is bounded in count and time, and stops by itself.

mod acks;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "hubbub-bench", about = "Load generator for Hubbub (loopback only, bounded)")]
struct Args {
    /// The hubbub binary to start (build it with --release for meaningful numbers).
    #[arg(long, default_value = "target/release/hubbub", global = true)]
    server_bin: PathBuf,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Acknowledged sends with synchronous=FULL: closed-loop throughput, then the ack latency
    /// at a fixed rate.
    Acks(acks::Options),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.scenario {
        Scenario::Acks(options) => acks::run(&args.server_bin, options).await,
    }
}

//! Committed-and-acknowledged messages per second, and acknowledgement latency at a fixed rate.
//!
//! Each sender joins a room of its own (so the only copy broadcast is its own) and sends
//! messages with client ids; a message counts when its `ack` arrives, which the hub sends only
//! after the group commit that stored it returned (`synchronous=FULL`: fsynced).

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_items, encode};
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::{
    process::{Child, Command},
    sync::mpsc,
};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Options {
    /// Concurrent senders (connections).
    #[arg(long, default_value_t = 64)]
    senders: usize,
    /// Messages each sender keeps in flight in the closed-loop phase.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Messages acknowledged in the closed-loop phase, in all.
    #[arg(long, default_value_t = 300_000)]
    messages: usize,
    /// Rate of the fixed-rate phase, messages per second in all.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Length of the fixed-rate phase, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

type Ws = hubbub_client::Socket;

struct Server {
    child: Child,
    ws_url: String,
}

async fn start_server(bin: &Path, db: &Path) -> anyhow::Result<Server> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--db-sync", "full"])
        // a benchmark floods on purpose
        .args(["--messages-per-sec", "1000000", "--message-burst", "1000000", "--frames-per-sec", "1000000", "--db"])
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} (build it: cargo build --release -p hubbub-server)", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (addr, _) = hubbub_client::read_listening_line(stdout, Duration::from_secs(10)).await?;
    Ok(Server { child, ws_url: format!("ws://{addr}/ws") })
}

async fn joined(url: &str, room: &str) -> anyhow::Result<Ws> {
    let mut ws = hubbub_client::connect(url, &[]).await?;
    hubbub_client::join_and_wait(&mut ws, &hubbub_client::join(room, "bench"), Duration::from_secs(60)).await?;
    Ok(ws)
}

fn send_frame(room: &str, id: u64) -> Message {
    let msg = ClientMsg::Send {
        id: Some(id.to_string()),
        room: room.into(),
        text: "benchmark message, 64 bytes of text to make it look like a chat.".into(),
    };
    Message::text(encode(&msg))
}

/// The ack ids in a frame (one message, or several in an array).
fn ack_ids(text: &str) -> Vec<u64> {
    if !text.contains(r#"{"type":"ack""#) {
        return Vec::new();
    }
    let msgs = decode_server_items(text).unwrap_or_default();
    msgs.into_iter()
        .flatten()
        .filter_map(|m| match m {
            ServerMsg::Ack { id, .. } => id.parse().ok(),
            _ => None,
        })
        .collect()
}

pub(crate) async fn run(bin: &Path, o: Options) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("hubbub-bench-").tempdir()?;
    let server = start_server(bin, &dir.path().join("bench.db")).await?;
    let pid = server.child.id().unwrap_or(0);
    println!(
        "hubbub-bench acks: server {} (pid {pid}), {} senders, synchronous=FULL, database in {}",
        bin.display(),
        o.senders,
        dir.path().display()
    );

    // Phase 1: closed loop, `window` in flight per sender
    let per_sender = o.messages.div_ceil(o.senders);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..o.senders {
        let url = server.ws_url.clone();
        let window = o.window;
        tasks.push(tokio::spawn(async move {
            let room = format!("bench-{s}");
            let ws = joined(&url, &room).await?;
            let (mut tx, mut rx) = ws.split();
            let (mut sent, mut acked) = (0usize, 0usize);
            while acked < per_sender {
                while sent < per_sender && sent - acked < window {
                    tx.feed(send_frame(&room, sent as u64)).await?;
                    sent += 1;
                }
                tx.flush().await?;
                let frame = tokio::time::timeout(Duration::from_secs(30), rx.next()).await?.context("closed")??;
                if let Message::Text(t) = frame {
                    acked += ack_ids(&t).len();
                }
            }
            anyhow::Ok(acked)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let elapsed = started.elapsed();
    let throughput = total as f64 / elapsed.as_secs_f64();
    println!(
        "closed loop: {total} messages committed and acknowledged in {:.2} s = {:.0} messages/s",
        elapsed.as_secs_f64(),
        throughput
    );

    // Phase 2: fixed rate, latency from send to ack. Each id carries its send time (µs since
    // `base`, shifted) and an index, so the reader needs no shared state with the sender.
    let per_sender_rate = (o.rate as f64 / o.senders as f64).max(1.0);
    let interval = Duration::from_secs_f64(1.0 / per_sender_rate);
    let base = Instant::now();
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<u64>();
    let mut tasks = Vec::new();
    for s in 0..o.senders {
        let url = server.ws_url.clone();
        let lat_tx = lat_tx.clone();
        let seconds = o.seconds;
        tasks.push(tokio::spawn(async move {
            let room = format!("rate-{s}");
            let ws = joined(&url, &room).await?;
            let (mut tx, mut rx) = ws.split();
            let count = (seconds as f64 * per_sender_rate) as u64;
            let reader = tokio::spawn(async move {
                let mut got = 0u64;
                while got < count {
                    let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(30), rx.next()).await else { break };
                    let Ok(Message::Text(t)) = frame else { continue };
                    for id in ack_ids(&t) {
                        let sent_at = base + Duration::from_micros(id >> 20);
                        let _ = lat_tx.send(sent_at.elapsed().as_micros() as u64);
                        got += 1;
                    }
                }
                got
            });
            let mut next = tokio::time::Instant::now();
            for i in 0..count {
                next += interval;
                tokio::time::sleep_until(next).await;
                let id = ((base.elapsed().as_micros() as u64) << 20) | (i & 0xFFFFF);
                tx.send(send_frame(&room, id)).await?;
            }
            anyhow::Ok(reader.await?)
        }));
    }
    drop(lat_tx);
    let mut histogram = Histogram::<u64>::new(3)?;
    let collector = tokio::spawn(async move {
        while let Some(us) = lat_rx.recv().await {
            let _ = histogram.record(us.max(1));
        }
        histogram
    });
    let mut acked = 0;
    for t in tasks {
        acked += t.await??;
    }
    let histogram = collector.await?;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "fixed rate {} messages/s for {} s: {acked} acknowledged; ack latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        o.rate,
        o.seconds,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    drop(server);
    Ok(())
}

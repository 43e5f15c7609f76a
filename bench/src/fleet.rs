//! The coordinator's side of the generator: starts worker processes (this binary, `worker`
//! subcommand, pinned with taskset), hands each its share of the clients, starts them together
//! and merges what they measured.

use crate::{
    procfs,
    servers::{Binaries, Kind, Running},
    token,
    worker::{Done, Line, Plan, Ready},
};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use std::{net::SocketAddr, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

/// One load: who connects, who sends, how fast, how long.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) clients: u32,
    /// Clients per room (Hubbub); the peers have one room.
    pub(crate) room_size: u32,
    /// Global ids of the sending clients.
    pub(crate) senders: Vec<u32>,
    /// Messages per second, all senders together; 0 = closed loop.
    pub(crate) rate: f64,
    pub(crate) window: u32,
    pub(crate) seconds: f64,
    pub(crate) text_len: usize,
    pub(crate) workers: u32,
    pub(crate) connect_parallel: usize,
    /// A connect storm: the senders talk (at `rate`) while everyone connects, until `go`.
    pub(crate) storm: bool,
    /// Clients whose id is a multiple of this share one big room (0: none); see `worker::Plan`.
    pub(crate) big_room_stride: u32,
    /// Fixed rate: all senders fire together instead of staggered (see `worker::Plan::burst`).
    pub(crate) burst: bool,
    /// Hubbub: every client offers permessage-deflate, as a browser does.
    pub(crate) deflate: bool,
}

impl Load {
    /// `senders` clients spread evenly over `clients`, one room of everyone.
    pub(crate) fn one_room(clients: u32, senders: u32, rate: f64, seconds: f64, workers: u32) -> Load {
        let step = (clients / senders.max(1)).max(1);
        Load {
            clients,
            room_size: clients,
            senders: (0..senders.min(clients)).map(|i| i * step).collect(),
            rate,
            window: 64,
            seconds,
            text_len: 64,
            workers,
            connect_parallel: 64,
            storm: false,
            big_room_stride: 0,
            burst: false,
            deflate: false,
        }
    }
}

/// Connected workers, waiting for `go`.
#[derive(Debug)]
pub(crate) struct Fleet {
    workers: Vec<Worker>,
    load: Load,
    pub(crate) ready: Ready,
    generator_cpus: usize,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// What one run measured, all workers merged.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) latency_us: Histogram<u64>,
    pub(crate) dropped: u32,
    /// Clients that could not connect (or join) before the run.
    pub(crate) failed: u32,
    pub(crate) lagged: u64,
    /// From `go` to the last delivery.
    pub(crate) seconds: f64,
    pub(crate) server_cpu_seconds: f64,
    pub(crate) generator_cpu_seconds: f64,
    /// Text frames the generator received.
    pub(crate) frames: u64,
    /// Bytes the generator read from its sockets from `go` on.
    pub(crate) bytes_in: u64,
    pub(crate) generator_bound: bool,
    /// Storm: messages sent after a client was ready that it never received (all clients).
    pub(crate) missed_after_ready: u64,
    /// Storm: messages sent after a client was ready, summed over clients.
    pub(crate) expected_after_ready: u64,
    /// When the last `presence` frame arrived (ns since the epoch; 0: none).
    pub(crate) last_presence_ns: u64,
}

impl Outcome {
    pub(crate) fn delivered_per_s(&self) -> f64 {
        if self.seconds > 0.0 { self.delivered as f64 / self.seconds } else { 0.0 }
    }

    pub(crate) fn ratio(&self) -> f64 {
        if self.expected > 0 { self.delivered as f64 / self.expected as f64 } else { 0.0 }
    }

    pub(crate) fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<usize>().unwrap_or(0).saturating_sub(a.trim().parse().unwrap_or(0)) + 1,
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

impl Fleet {
    /// Starts the workers and waits until each has connected its clients.
    pub(crate) async fn connect(server: &Running, bins: &Binaries, load: &Load) -> anyhow::Result<Fleet> {
        Self::connect_spread(server.kind, &[server.addr], bins, load).await
    }

    /// The same against several servers of one kind (a cluster's hubs): worker `w` connects to
    /// `addrs[w % addrs.len()]`.
    pub(crate) async fn connect_spread(
        kind: Kind,
        addrs: &[SocketAddr],
        bins: &Binaries,
        load: &Load,
    ) -> anyhow::Result<Fleet> {
        let exe = std::env::current_exe()?;
        // one process per generator CPU, and enough that none nears the 20,000-file limit
        let processes = if load.workers > 0 {
            load.workers
        } else {
            (cpu_count(&bins.generator_cpus) as u32).max(load.clients.div_ceil(15_000))
        };
        let per = load.clients.div_ceil(processes);
        let mut workers = Vec::new();
        for w in 0..processes {
            let first = w * per;
            let count = per.min(load.clients.saturating_sub(first));
            if count == 0 {
                break;
            }
            let senders = load.senders.iter().copied().filter(|id| (first..first + count).contains(id)).collect();
            let plan = Plan {
                kind,
                addr: addrs[w as usize % addrs.len()],
                first,
                count,
                room_size: load.room_size,
                senders,
                rate_per_sender: load.rate / load.senders.len().max(1) as f64,
                window: load.window,
                seconds: load.seconds,
                text_len: load.text_len,
                connect_parallel: load.connect_parallel,
                tag: (token::now_ns() / 1_000_000 % 100_000) as u32,
                storm: load.storm,
                big_room_stride: load.big_room_stride,
                burst: load.burst,
                deflate: load.deflate,
            };
            let mut child = Command::new("taskset")
                .args(["-c", &bins.generator_cpus])
                .arg(&exe)
                .arg("worker")
                .arg(serde_json::to_string(&plan)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker under taskset")?;
            let lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
            workers.push(Worker { child, lines });
        }
        let mut ready = Ready::default();
        let mut connect_us = Histogram::<u64>::new(3)?;
        for w in &mut workers {
            // 100,000 clients joining a cluster on one vCPU take minutes
            let limit = Duration::from_secs(300).max(Duration::from_millis(u64::from(load.clients) * 10));
            let Line::Ready(r) = next_line(&mut w.lines, limit).await? else { bail!("worker answered out of turn") };
            ready.connected += r.connected;
            ready.failed += r.failed;
            ready.error = ready.error.or(r.error);
            ready.connect_seconds = ready.connect_seconds.max(r.connect_seconds);
            for (v, n) in r.connect_us {
                connect_us.record_n(v, n)?;
            }
        }
        ready.connect_us = connect_us.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        Ok(Fleet { workers, load: load.clone(), ready, generator_cpus: cpu_count(&bins.generator_cpus) })
    }

    /// Starts every worker at the same moment and merges their reports.
    pub(crate) async fn go(self, server: &Running) -> anyhow::Result<Outcome> {
        self.go_measuring(&[server.pid]).await
    }

    /// The same, with the servers' CPU summed over `servers` (a cluster's hubs).
    pub(crate) async fn go_measuring(mut self, servers: &[u32]) -> anyhow::Result<Outcome> {
        let mut pids = servers.to_vec();
        pids.extend(self.workers.iter().filter_map(|w| w.child.id()));
        // a storm is measured as it is, busy; other runs start from quiet
        if !self.load.storm {
            settle(&pids).await;
        }
        let start_ns = token::now_ns() + 300_000_000;
        for w in &mut self.workers {
            let stdin = w.child.stdin.as_mut().context("stdin")?;
            stdin.write_all(format!("go {start_ns}\n").as_bytes()).await?;
            stdin.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cpu = || servers.iter().map(|&p| procfs::cpu_seconds(p)).sum::<f64>();
        let server_cpu = cpu();
        let mut done = Vec::new();
        let limit = Duration::from_secs_f64(self.load.seconds + 60.0);
        for w in &mut self.workers {
            let Line::Done(d) = next_line(&mut w.lines, limit).await? else { bail!("worker answered out of turn") };
            done.push(d);
        }
        let server_cpu_seconds = cpu() - server_cpu;
        self.merge(done, start_ns, server_cpu_seconds)
    }

    /// Ends the workers without a run (their sockets close as they exit).
    pub(crate) async fn stop(mut self) {
        for w in &mut self.workers {
            if let Some(stdin) = w.child.stdin.as_mut() {
                let _ = stdin.write_all(b"stop\n").await;
            }
        }
        for w in &mut self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await;
        }
    }

    fn merge(&self, done: Vec<Done>, start_ns: u64, server_cpu_seconds: f64) -> anyhow::Result<Outcome> {
        let mut latency_us = Histogram::<u64>::new(3)?;
        let (mut delivered, mut dropped, mut lagged, mut last_ns, mut generator_cpu) = (0, 0, 0, start_ns, 0.0);
        let mut sent_by_room = std::collections::BTreeMap::<u32, u64>::new();
        let mut members_by_room = std::collections::BTreeMap::<u32, u64>::new();
        let (mut sent_log, mut after_ready, mut last_presence_ns, mut frames) = (Vec::new(), Vec::new(), 0, 0);
        let mut bytes_in = 0;
        for d in done {
            frames += d.frames;
            bytes_in += d.bytes_in;
            sent_log.extend(d.sent_log);
            after_ready.extend(d.after_ready);
            last_presence_ns = last_presence_ns.max(d.last_presence_ns);
            delivered += d.delivered;
            dropped += d.dropped;
            lagged += d.lagged;
            last_ns = last_ns.max(d.last_ns);
            generator_cpu += d.cpu_seconds;
            for (v, n) in d.latency_us {
                latency_us.record_n(v, n)?;
            }
            for (room, n) in d.sent_by_room {
                *sent_by_room.entry(room).or_default() += n;
            }
            for (room, n) in d.members_by_room {
                *members_by_room.entry(room).or_default() += n;
            }
        }
        // every connected member of a room, the sender included, gets each message once
        let expected = sent_by_room.iter().map(|(room, &n)| n * members_by_room.get(room).copied().unwrap_or(0)).sum();
        // a storm: each client must get every message sent after it was ready
        sent_log.sort_unstable();
        let (mut expected_after_ready, mut missed_after_ready) = (0, 0);
        for (ready_ns, got) in after_ready {
            let due = (sent_log.len() - sent_log.partition_point(|&sent| sent <= ready_ns)) as u64;
            expected_after_ready += due;
            missed_after_ready += due.saturating_sub(got);
        }
        let seconds = (last_ns.saturating_sub(start_ns)) as f64 / 1e9;
        let generator_bound = seconds > 0.0 && generator_cpu / seconds >= 0.9 * self.generator_cpus as f64;
        Ok(Outcome {
            expected,
            delivered,
            latency_us,
            dropped,
            failed: self.ready.failed,
            lagged,
            seconds,
            server_cpu_seconds,
            generator_cpu_seconds: generator_cpu,
            frames,
            bytes_in,
            generator_bound,
            missed_after_ready,
            expected_after_ready,
            last_presence_ns,
        })
    }
}

/// Waits (at most 60 s) until the server and the workers are nearly idle: joins and presence
/// from the connect phase must not be measured as the run's work.
async fn settle(pids: &[u32]) {
    let busy = || pids.iter().map(|&p| procfs::cpu_seconds(p)).sum::<f64>();
    for _ in 0..240 {
        let before = busy();
        tokio::time::sleep(Duration::from_millis(250)).await;
        if busy() - before < 0.03 {
            return;
        }
    }
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>, limit: Duration) -> anyhow::Result<Line> {
    let line = tokio::time::timeout(limit, lines.next_line())
        .await
        .context("a worker did not answer in time")??
        .context("a worker exited early")?;
    serde_json::from_str(&line).with_context(|| format!("worker said: {line}"))
}

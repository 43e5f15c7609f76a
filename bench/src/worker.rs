//! One generator process: connects its share of the clients, then on `go` sends and receives
//! for the planned time and prints what it measured. Single-threaded on purpose: the generator
//! scales by processes (each below the 20,000-file limit), and one thread needs no locks.
//!
//! Talks to the coordinator over stdio, one JSON line each way:
//! stdout `{"ready":…}` once connected; stdin `go <start-ns>` or `stop`; stdout `{"done":…}`.

use crate::{
    servers::{Kind, ws_url},
    token,
};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hdrhistogram::Histogram;
use hubbub_shared::{ClientMsg, encode};
use serde::{Deserialize, Serialize};
use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    rc::Rc,
    time::{Duration, Instant},
};
use tokio::{io::AsyncBufReadExt, net::TcpSocket, sync::Notify, task::LocalSet};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

/// How much one read of a client's socket takes at most (see `connect`).
const READ_CHUNK: usize = 4096;

/// Source addresses the clients are spread over: ~28k ephemeral ports each. Many, so that the
/// TIME_WAIT sockets of the runs of the last minute (5,000 per `storm`) leave each address most
/// of its ports: with 5 addresses, back-to-back storms slowed to a crawl (p99 of ~1 s, for every
/// server) once ~50,000 of them had piled up, and were fine again after a minute's pause.
const SOURCE_ADDRS: u32 = 50;

/// What one worker does; written by the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) kind: Kind,
    pub(crate) addr: SocketAddr,
    /// Global id of this worker's first client; ids are consecutive.
    pub(crate) first: u32,
    pub(crate) count: u32,
    /// Clients per room (client `id` is in room `id / room_size`); peers have one room anyway.
    pub(crate) room_size: u32,
    /// Global ids of the clients (of this worker) that send.
    pub(crate) senders: Vec<u32>,
    /// Messages per second per sender; 0 = closed loop with `window` messages in flight.
    pub(crate) rate_per_sender: f64,
    pub(crate) window: u32,
    pub(crate) seconds: f64,
    pub(crate) text_len: usize,
    /// Connection attempts in flight at once.
    pub(crate) connect_parallel: usize,
    /// Differs between fleets, so a nickname is never still held by the last fleet's ghost.
    pub(crate) tag: u32,
    /// A connect storm: the senders connect first and send at their rate from then on, while
    /// everyone else connects; `go` stops them. Each client counts the messages sent after it
    /// was ready (joined), which must all arrive.
    #[serde(default)]
    pub(crate) storm: bool,
    /// Every client whose id is a multiple of this is in one big room instead ([`BIG_ROOM`]):
    /// spread over every worker, and so over every hub of a cluster. 0: no big room.
    #[serde(default)]
    pub(crate) big_room_stride: u32,
    /// Fixed rate: every sender fires at the same moments (the load of a burst), instead of
    /// at its own offset within the period (people typing independently; the default).
    #[serde(default)]
    pub(crate) burst: bool,
    /// Offer permessage-deflate the way Chromium does (Hubbub only), and read what comes
    /// compressed.
    #[serde(default)]
    pub(crate) deflate: bool,
}

/// The big room's number (see [`Plan::big_room_stride`]).
pub(crate) const BIG_ROOM: u32 = 999_999_999;

/// Sent once all clients are connected (or failed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Ready {
    pub(crate) connected: u32,
    pub(crate) failed: u32,
    /// First connect error, for the report.
    pub(crate) error: Option<String>,
    /// Time from TCP connect to ready-to-chat (joined, for Hubbub), µs: (value, count) pairs.
    pub(crate) connect_us: Vec<(u64, u64)>,
    pub(crate) connect_seconds: f64,
}

/// Sent when the run is over.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Done {
    /// Messages sent, by room.
    pub(crate) sent_by_room: BTreeMap<u32, u64>,
    /// Connected clients, by room: each should get every message of its room.
    pub(crate) members_by_room: BTreeMap<u32, u64>,
    /// Tokens received, all clients together.
    pub(crate) delivered: u64,
    /// Send → receive latency, µs: (value, count) pairs.
    pub(crate) latency_us: Vec<(u64, u64)>,
    /// Clients whose connection the server ended during the run.
    pub(crate) dropped: u32,
    /// Hubbub's `lagged` notices (live messages dropped for a slow reader).
    pub(crate) lagged: u64,
    /// This process's CPU seconds during the run.
    pub(crate) cpu_seconds: f64,
    /// When the last token arrived (ns since the epoch).
    pub(crate) last_ns: u64,
    /// Storm: when each message of this worker's senders was sent (ns since the epoch).
    pub(crate) sent_log: Vec<u64>,
    /// Storm: per client, when it was ready, and how many messages sent after that it received.
    pub(crate) after_ready: Vec<(u64, u64)>,
    /// When the last news of who is here (a `presence` frame, or a big room's unasked `members`
    /// page) arrived (ns since the epoch; 0: none).
    pub(crate) last_presence_ns: u64,
    /// WebSocket text frames received, all clients together: what the generator's CPU is per.
    #[serde(default)]
    pub(crate) frames: u64,
    /// Bytes read from the sockets from `go` on, all clients together: what the hub put on
    /// the wire (compressed where permessage-deflate was agreed).
    #[serde(default)]
    pub(crate) bytes_in: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Line {
    Ready(Ready),
    Done(Done),
}

type Ws = WebSocketStream<Counted>;

thread_local! {
    /// Bytes read by every socket of this (single-threaded) worker.
    static BYTES_IN: Cell<u64> = const { Cell::new(0) };
}

/// A TCP stream that counts the bytes read from it into [`BYTES_IN`].
#[derive(Debug)]
pub(crate) struct Counted(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        BYTES_IN.set(BYTES_IN.get() + (buf.filled().len() - before) as u64);
        poll
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The worker's main: runs on a current-thread runtime.
pub(crate) fn main(plan: &str) -> anyhow::Result<()> {
    let plan: Plan = serde_json::from_str(plan).context("bad plan")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    LocalSet::new().block_on(&rt, run(plan))
}

async fn run(plan: Plan) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ready = Ready::default();
    let mut connect_us = Histogram::<u64>::new(3)?;
    let shared = Rc::new(Shared {
        stopping: Cell::new(false),
        delivered: Cell::new(0),
        frames: Cell::new(0),
        lagged: Cell::new(0),
        dropped: Cell::new(0),
        last_ns: Cell::new(0),
        last_presence_ns: Cell::new(0),
        latency_us: RefCell::new(Histogram::new(3)?),
        sent_by_room: RefCell::new(BTreeMap::new()),
        sending: Cell::new(true),
        stop_sending: Notify::new(),
        sent_log: RefCell::new(Vec::new()),
    });
    let mut ids: Vec<u32> = (plan.first..plan.first + plan.count).collect();
    let mut senders = Vec::new();
    let mut members_by_room = BTreeMap::new();
    let mut readers = Vec::with_capacity(ids.len());
    // a storm's senders are in the room first, and talk through it
    let mut storm_senders = Vec::new();
    if plan.storm {
        ids.retain(|id| !plan.senders.contains(id));
        for &id in &plan.senders {
            let ws = connect(&plan, id).await.context("a storm's sender")?;
            ready.connected += 1;
            *members_by_room.entry(room_of(&plan, id)).or_insert(0) += 1;
            let (sink, stream) = ws.split();
            let own = Rc::new(Own { echoed: Cell::new(0), notify: Notify::new() });
            readers.push(tokio::task::spawn_local(read(id, stream, shared.clone(), own, None)));
            storm_senders.push(tokio::task::spawn_local(storm_send(plan.clone(), id, sink, shared.clone())));
        }
    }
    let mut after_ready = Vec::new();
    // each attempt a task of its own, `connect_parallel` at a time: with every attempt polled
    // inside this one task (`buffer_unordered`), they shared its cooperative budget, and ~1 % of
    // the clients of an `idle` run were noticed connected only seconds after the kernel had
    // connected them: the hub's header-read timeout closed them first (README, Performance)
    let slots = Rc::new(tokio::sync::Semaphore::new(plan.connect_parallel.max(1)));
    let shared_plan = Rc::new(plan.clone());
    let mut attempts: futures_util::stream::FuturesUnordered<_> = ids
        .into_iter()
        .map(|id| {
            let (plan, slots) = (shared_plan.clone(), slots.clone());
            tokio::task::spawn_local(async move {
                let _slot = slots.acquire().await;
                let t = Instant::now();
                (id, connect(&plan, id).await, t.elapsed())
            })
        })
        .collect();
    while let Some(attempt) = attempts.next().await {
        let (id, result, took) = attempt.context("a connect task")?;
        match result {
            Ok(ws) => {
                ready.connected += 1;
                *members_by_room.entry(room_of(&plan, id)).or_insert(0) += 1;
                let _ = connect_us.record((took.as_micros() as u64).max(1));
                let counted = plan.storm.then(|| {
                    let (at, count) = (token::now_ns(), Rc::new(Cell::new(0)));
                    after_ready.push((at, count.clone()));
                    (at, count)
                });
                // read from the start: what the server sends before `go` (presence) is consumed
                // now, not counted against the run
                let own = Rc::new(Own { echoed: Cell::new(0), notify: Notify::new() });
                if plan.senders.contains(&id) {
                    let (sink, stream) = ws.split();
                    readers.push(tokio::task::spawn_local(read(id, stream, shared.clone(), own.clone(), counted)));
                    senders.push((id, sink, own));
                } else {
                    // a pure receiver keeps its socket whole: no lock between the halves
                    readers.push(tokio::task::spawn_local(read(id, ws, shared.clone(), own, counted)));
                }
            }
            Err(e) => {
                ready.failed += 1;
                ready.error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    drop(attempts);
    ready.connect_us = pairs(&connect_us);
    ready.connect_seconds = started.elapsed().as_secs_f64();
    say(&Line::Ready(ready))?;

    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let command = stdin.next_line().await?.unwrap_or_default();
    let Some(start_ns) = command.strip_prefix("go ").and_then(|s| s.trim().parse::<u64>().ok()) else {
        return Ok(()); // `stop` (or the coordinator went away): the sockets close with the process
    };
    let wait = start_ns.saturating_sub(token::now_ns());
    tokio::time::sleep(Duration::from_nanos(wait)).await;
    let cpu_before = crate::procfs::cpu_seconds(std::process::id());
    let bytes_before = BYTES_IN.get();
    // a storm's `go` ends the sending that went on while everyone connected
    shared.sending.set(false);
    shared.stop_sending.notify_waiters();
    for s in storm_senders {
        s.await??;
    }

    let senders: Vec<_> = senders
        .into_iter()
        .map(|(id, sink, own)| tokio::task::spawn_local(send(plan.clone(), id, sink, own, shared.clone())))
        .collect();
    for s in senders {
        s.await??;
    }
    // drain: until nothing arrived (messages or presence) for a second, at most 10 s
    let drain_until = Instant::now() + Duration::from_secs(10);
    let arrived = || (shared.delivered.get(), shared.last_presence_ns.get());
    let mut last = arrived();
    while Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = arrived();
        if now == last {
            break;
        }
        last = now;
    }
    shared.stopping.set(true);
    let done = Done {
        sent_by_room: shared.sent_by_room.take(),
        members_by_room,
        delivered: shared.delivered.get(),
        latency_us: pairs(&shared.latency_us.borrow()),
        dropped: shared.dropped.get(),
        lagged: shared.lagged.get(),
        cpu_seconds: crate::procfs::cpu_seconds(std::process::id()) - cpu_before,
        last_ns: shared.last_ns.get(),
        sent_log: shared.sent_log.take(),
        after_ready: after_ready.iter().map(|(at, count)| (*at, count.get())).collect(),
        last_presence_ns: shared.last_presence_ns.get(),
        frames: shared.frames.get(),
        bytes_in: BYTES_IN.get() - bytes_before,
    };
    say(&Line::Done(done))?;
    for r in readers {
        r.abort();
    }
    Ok(())
}

struct Shared {
    stopping: Cell<bool>,
    delivered: Cell<u64>,
    frames: Cell<u64>,
    lagged: Cell<u64>,
    dropped: Cell<u32>,
    last_ns: Cell<u64>,
    last_presence_ns: Cell<u64>,
    latency_us: RefCell<Histogram<u64>>,
    sent_by_room: RefCell<BTreeMap<u32, u64>>,
    /// A storm's senders send while this is true.
    sending: Cell<bool>,
    /// ... and are woken by this when it turns false.
    stop_sending: Notify,
    /// When each message of a storm's senders was sent.
    sent_log: RefCell<Vec<u64>>,
}

/// A sender's own messages coming back: its closed-loop window.
struct Own {
    echoed: Cell<u64>,
    notify: Notify,
}

fn say(line: &Line) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(line)?)?;
    out.flush()?;
    Ok(())
}

fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

fn room_of(plan: &Plan, id: u32) -> u32 {
    match (plan.kind.has_rooms(), plan.big_room_stride) {
        (false, _) => 0,
        (true, stride) if stride > 0 && id.is_multiple_of(stride) => BIG_ROOM,
        (true, _) => id / plan.room_size.max(1),
    }
}

async fn connect(plan: &Plan, id: u32) -> anyhow::Result<Ws> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (id % SOURCE_ADDRS) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddrV4::new(source, 0).into())?;
    let stream = tokio::time::timeout(Duration::from_secs(30), socket.connect(plan.addr)).await??;
    stream.set_nodelay(true)?;
    // tungstenite zeroes its whole read chunk before every read: at the default 128 KiB that
    // was half of the generator's CPU (perf: memset) at 100,000 frames/s, and it capped what a
    // run could measure. Frames here are small; a bigger one takes a few reads.
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, protocol};
    let mut config = protocol::WebSocketConfig::default().read_buffer_size(READ_CHUNK);
    let mut request = ws_url(plan.addr).into_client_request()?;
    if plan.deflate {
        let offer = "permessage-deflate; client_max_window_bits";
        request.headers_mut().insert("sec-websocket-extensions", offer.parse()?);
        config = config.deflate(Some(protocol::DeflateConfig::default()));
    }
    let handshake = tokio_tungstenite::client_async_with_config(request, Counted(stream), Some(config));
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(30), handshake).await??;
    match plan.kind {
        Kind::Hubbub => {
            // joined once the room's history arrived
            let join = hubbub_client::join(&format!("r{}", room_of(plan, id)), &format!("b{id}x{}", plan.tag));
            hubbub_client::join_and_wait(&mut ws, &join, Duration::from_secs(60)).await?;
        }
        // axum's chat example takes the first message as the user name
        Kind::AxumBroadcast => ws.send(Message::text(format!("b{id}x{}", plan.tag))).await?,
        Kind::Gorilla => {}
    }
    Ok(ws)
}

/// Counts and times every token that arrives; ends when the connection does (or is aborted
/// after the run). `counted`: (since when, where) to count the tokens sent after that time.
async fn read<S>(id: u32, mut stream: S, shared: Rc<Shared>, own: Rc<Own>, counted: Option<(u64, Rc<Cell<u64>>)>)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let text = match stream.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_)) | Err(_)) | None => {
                if !shared.stopping.get() {
                    shared.dropped.set(shared.dropped.get() + 1);
                }
                return;
            }
        };
        let now = token::now_ns();
        shared.frames.set(shared.frames.get() + 1);
        let mut got = 0;
        let mut mine = 0;
        let mut latency = shared.latency_us.borrow_mut();
        token::scan(&text, |t| {
            got += 1;
            if t.sender == id {
                mine += 1;
            }
            if let Some((since, count)) = &counted
                && t.sent_ns > *since
            {
                count.set(count.get() + 1);
            }
            let _ = latency.record((now.saturating_sub(t.sent_ns) / 1000).max(1));
        });
        drop(latency);
        if got > 0 {
            shared.delivered.set(shared.delivered.get() + got);
            shared.last_ns.set(now);
        }
        if mine > 0 {
            own.echoed.set(own.echoed.get() + mine);
            own.notify.notify_one();
        }
        let kinds = token::kinds(&text);
        if kinds.error {
            eprintln!("DEBUG error frame: {}", &text[..text.len().min(300)]);
        }
        if kinds.lagged {
            shared.lagged.set(shared.lagged.get() + 1);
        }
        // a big room's wave comes as a fresh first page (an unasked `members`) instead
        if kinds.presence {
            shared.last_presence_ns.set(now);
        }
    }
}

/// A storm's sender: `rate_per_sender` messages a second, from the moment it joined until `go`,
/// each send time logged.
async fn storm_send(plan: Plan, id: u32, mut sink: SplitSink<Ws, Message>, shared: Rc<Shared>) -> anyhow::Result<()> {
    let room = room_of(&plan, id);
    let room_name = format!("r{room}");
    let every = Duration::from_secs_f64(1.0 / plan.rate_per_sender.max(0.1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    loop {
        // `go` ends the talk at once: a talker slower than the drain (one message in ten
        // seconds) would otherwise send once more after it, unseen by the other workers' clients
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.stop_sending.notified() => break,
        }
        if !shared.sending.get() {
            break;
        }
        let sent_ns = token::now_ns();
        let text = token::text(id, seq, sent_ns, plan.text_len);
        let frame = match plan.kind {
            Kind::Hubbub => Message::text(encode(&ClientMsg::Send { id: None, room: room_name.clone(), text })),
            Kind::Gorilla | Kind::AxumBroadcast => Message::text(text),
        };
        if sink.send(frame).await.is_err() {
            break; // counted by its reader as dropped
        }
        shared.sent_log.borrow_mut().push(sent_ns);
        seq += 1;
    }
    *shared.sent_by_room.borrow_mut().entry(room).or_default() += seq;
    Ok(())
}

async fn send(
    plan: Plan,
    id: u32,
    mut sink: SplitSink<Ws, Message>,
    own: Rc<Own>,
    shared: Rc<Shared>,
) -> anyhow::Result<()> {
    let room = room_of(&plan, id);
    let room_name = format!("r{room}");
    let frame = |seq: u64| {
        let text = token::text(id, seq, token::now_ns(), plan.text_len);
        match plan.kind {
            Kind::Hubbub => Message::text(encode(&ClientMsg::Send { id: None, room: room_name.clone(), text })),
            Kind::Gorilla | Kind::AxumBroadcast => Message::text(text),
        }
    };
    let started = Instant::now();
    let length = Duration::from_secs_f64(plan.seconds);
    let mut seq = 0u64;
    let result: anyhow::Result<()> = async {
        if plan.rate_per_sender > 0.0 {
            // fixed rate: every millisecond, send what is due by now. Each sender starts at its
            // own point of the period (spread evenly by the golden ratio of its id), as people
            // typing independently do; with `burst` all fire together, which lets a hub send
            // each member one frame for all of them
            let period = 1.0 / plan.rate_per_sender;
            let offset = if plan.burst { period } else { period * (f64::from(id) * 0.618_033_988_75).fract() };
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let elapsed = started.elapsed();
                if elapsed >= length {
                    break;
                }
                let since_first = elapsed.as_secs_f64() - offset;
                let due = if since_first < 0.0 { 0 } else { (since_first * plan.rate_per_sender) as u64 + 1 };
                while seq < due {
                    sink.feed(frame(seq)).await?;
                    seq += 1;
                }
                sink.flush().await?;
            }
        } else {
            // closed loop: `window` messages in flight, counted back by the sender's own copy
            while started.elapsed() < length {
                while seq.saturating_sub(own.echoed.get()) < u64::from(plan.window) {
                    sink.feed(frame(seq)).await?;
                    seq += 1;
                }
                sink.flush().await?;
                if tokio::time::timeout(Duration::from_secs(1), own.notify.notified()).await.is_err() {
                    // own copies were dropped (a lagged or evicted reader): forgive the window
                    own.echoed.set(seq);
                }
            }
        }
        Ok(())
    }
    .await;
    *shared.sent_by_room.borrow_mut().entry(room).or_default() += seq;
    // a sender cut off by the server is counted by its reader as dropped; not the run's error
    let _ = result;
    Ok(())
}

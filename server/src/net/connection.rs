//! One WebSocket connection: a reader and a writer running concurrently in one task. Every
//! endpoint (chat, echo, add) runs on this machinery; an [`Endpoint`] decides what a received
//! message means, so limits, heartbeats, close codes and shutdown behave the same everywhere.
//!
//! - The **reader** ([`Reader`]) decodes client frames and hands them to the endpoint. It
//!   enforces the idle timeout (nothing received for `idle_timeout` → close 4000), queues a
//!   ping every `ping_interval` (its wait ends then anyway; the writer needs no timer) and turns
//!   read errors into close codes (too big 1009, bad UTF-8 1007, protocol 1002; the endpoint may
//!   refuse binary, 1003).
//! - The **writer** ([`Writer`]) drains the outbound queue, writing everything queued in one go
//!   (feed all, flush once), tells the client when live messages had to be dropped (`lagged`),
//!   and sends the close frame for every server-initiated close: a request from the
//!   reader, control frames piling up (4001), or shutdown (1001).
//!
//! After a close frame is sent the reader keeps reading until the peer's close reply ends the
//! stream (or a short grace passes): returning early would drop the close handshake.

use super::{
    Outbound, OutboundRx,
    deflate::{self, Agreed},
    outbound::{Closing, Next, Queued, Runs},
    upgrade::WebSocket,
};
use crate::{AppState, stats::Stats};
use bytes::Bytes;
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use hubbub_shared::close;
use std::{sync::Arc, time::Duration};
use tokio::{sync::oneshot, time::timeout};
use tokio_util::sync::CancellationToken;
use tungstenite::{Message, Utf8Bytes, protocol::CloseFrame};

/// How long to wait for the peer's close reply after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most frames written per flush; bounds one batch's latency for the first frame in it.
const MAX_BATCH: usize = 256;

/// A close frame the hub sends: one of the documented codes (`hubbub_shared::close`) and a
/// short reason for the person at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl Close {
    pub(crate) const fn new(code: u16, reason: &'static str) -> Self {
        Close { code, reason }
    }
}

/// What an endpoint does with the messages its clients send.
pub(crate) trait Endpoint: Send {
    /// The connection is open: queue a greeting, if the endpoint has one.
    fn on_open(&mut self, _out: &Outbound) {}
    /// A text message. `Err` closes the connection with that code and reason. A future, so
    /// that a request may wait for something shared before it is answered (the chat's `join`
    /// claims its nickname across hubs in cluster mode); the next message is read after it.
    fn on_text(&mut self, text: Utf8Bytes, out: &Outbound) -> impl Future<Output = Result<(), Close>> + Send;
    /// A binary message; refused (1003) unless the endpoint says otherwise.
    fn on_binary(&mut self, _data: Bytes, _out: &Outbound) -> Result<(), Close> {
        Err(Close::new(close::UNSUPPORTED_DATA, "binary messages are not supported here"))
    }
    /// A moment by which the client must have done something (the chat: joined a room, or
    /// renewed its sign-in token), and the close it gets when that passes. `None`: no deadline.
    fn deadline(&self) -> Option<(tokio::time::Instant, Close)> {
        None
    }
    /// Any frame arrived, control frames included; `Err` closes the connection (a flood).
    fn on_frame(&mut self) -> Result<(), Close> {
        Ok(())
    }
    /// The connection started closing (any cause): let go of shared state now, so others
    /// hear of it before the close handshake ends. May be called more than once.
    fn on_closing(&mut self) {}
    /// Whether queued text messages may be sent as one JSON array frame (the chat protocol
    /// allows it; an echo must send back exactly what it got).
    fn coalesces(&self) -> bool {
        false
    }
    /// Under permessage-deflate, the smallest message worth compressing; 0: every message, even
    /// where deflate makes it no smaller.
    fn compress_from(&self) -> usize {
        deflate::MIN_BYTES
    }
}

/// Why the writer should stop, sent by the reader.
#[derive(Debug)]
enum Stop {
    /// The client sent a close frame: tungstenite answers it; the writer just stops.
    PeerClosed,
    /// Send this close frame, then stop.
    Close(Close),
}

/// Runs the connection to its end; `endpoint` gives it its meaning (its welcome is queued at
/// once). Not an `async fn`: it sets the connection up first and returns just the two halves'
/// futures joined, so an idle connection's task holds those and no second copy of the
/// arguments and locals they were made from (`hubbub-bench idle`).
pub(crate) fn serve(
    socket: WebSocket,
    deflate: Option<Agreed>,
    state: AppState,
    mut endpoint: impl Endpoint,
    who: Who,
) -> impl Future<Output = ()> {
    let config = &state.config;
    let open = Counted::new(state.stats.clone());
    let (sink, stream) = socket.split();
    let (out, queue) = Outbound::bounded(config.outbound_queue, config.outbound_queue_bytes, state.stats.clone());
    let out = out.with_deflate(deflate);
    if deflate.is_some() {
        state.stats.deflate_connections.inc();
    }
    // sent at most once: a oneshot, which (unlike a bounded channel's block of slots) costs an
    // idle connection next to nothing
    let (stop_tx, stop_rx) = oneshot::channel::<Stop>();
    // cancelled as soon as either side starts closing: the reader then leaves the rooms at
    // once (so the room hears `member_left` now, not after the close handshake) and waits only
    // a short grace for the peer's close reply
    let closing = queue.closing();

    endpoint.on_open(&out);

    let shared = queue.shared();
    let ping_every = config.ping_interval().max(Duration::from_millis(10));
    let writer = Writer {
        _open: open,
        conn: who.conn,
        sink,
        queue,
        stop: stop_rx,
        stats: state.stats.clone(),
        shutdown: state.shutdown.clone(),
        write_timeout: config.write_timeout(),
        coalesce: endpoint.coalesces(),
        deflate,
        compress_from: endpoint.compress_from(),
    }
    .run(closing.clone());
    let reader = Reader {
        stream,
        endpoint,
        out,
        stop: Some(stop_tx),
        who,
        close_requested: false,
        closing,
        idle_timeout: config.idle_timeout(),
        heard_at: tokio::time::Instant::now(),
        ping_every,
        next_ping: tokio::time::Instant::now() + ping_every,
        stats: state.stats.clone(),
    }
    .run();

    // combinators, not an `async` block: a block would keep the two futures it captured and
    // the two it awaits, twice the room
    futures_util::FutureExt::map(super::halves::Halves::new(shared, reader, writer), |()| {
        tracing::debug!("connection finished");
    })
}

/// Which connection this is, for the connection's info-level log lines (its tracing span is at
/// debug level: see `net::routes`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who {
    pub(crate) conn: super::ConnId,
    pub(crate) endpoint: &'static str,
    /// The client: the peer, or behind a trusted proxy the address it speaks for.
    pub(crate) client: std::net::IpAddr,
    pub(crate) peer: std::net::SocketAddr,
}

/// Counts an open connection in the `connections` gauge for as long as it lives (also when a
/// panic unwinds it).
struct Counted(Arc<Stats>);

impl Counted {
    fn new(stats: Arc<Stats>) -> Counted {
        stats.connections.inc();
        Counted(stats)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// The reading half of a connection, and what it has decided so far.
struct Reader<E> {
    stream: SplitStream<WebSocket>,
    endpoint: E,
    /// The connection's outbound queue, for the endpoint's replies.
    out: Outbound,
    /// Asks the writer to close (or to stop after the peer's close); sent at most once.
    stop: Option<oneshot::Sender<Stop>>,
    who: Who,
    /// Whether that request went out: later faults are not reported again.
    close_requested: bool,
    /// Shared with the writer: either side cancels it when the connection starts closing.
    closing: Closing,
    idle_timeout: Duration,
    /// When the client was last heard from (any frame): the idle timeout counts from it.
    heard_at: tokio::time::Instant,
    /// How often to ping the client, so that a dead peer is noticed (it stops answering and
    /// meets the idle timeout) and a live one that only listens is not closed as idle. The
    /// reader's wait ends for it anyway: its ping goes out through the queue, so the writer
    /// keeps no timer of its own (`hubbub-bench idle`: a boxed `Sleep` per connection).
    ping_every: Duration,
    next_ping: tokio::time::Instant,
    stats: Arc<Stats>,
}

/// What the reader does after one read.
enum Step {
    /// Keep reading.
    Read,
    /// Ask the writer to stop, then keep reading (to reach the close reply).
    Stop(Stop),
    /// The stream is over.
    End,
}

/// One read from the socket: a frame, the end of the stream, or the wait running out.
type Read = Result<Option<Result<Message, tungstenite::Error>>, tokio::time::error::Elapsed>;

impl<E: Endpoint> Reader<E> {
    async fn run(mut self) {
        loop {
            if self.closing.is_cancelled() {
                self.endpoint.on_closing();
            }
            let wait = self.wait();
            let next = tokio::select! {
                next = timeout(wait, self.stream.next()) => next,
                _ = self.closing.cancelled(), if !self.closing.is_cancelled() => continue,
            };
            // boxed: handling a frame (the endpoint's whole request path) lives on the heap only
            // while it runs, instead of widening every idle connection's task by its size
            match Box::pin(self.step(next)).await {
                Step::Read => {}
                Step::End => break,
                Step::Stop(_) if self.close_requested => {}
                Step::Stop(request) => {
                    self.close_requested = true;
                    if let Stop::Close(Close { code, reason }) = &request {
                        let who = self.who;
                        tracing::info!(
                            conn = who.conn,
                            endpoint = who.endpoint,
                            client = %who.client,
                            peer = %who.peer,
                            code,
                            reason,
                            "closing connection"
                        );
                    }
                    // sent before `closing` is cancelled, so the writer's biased select sees the
                    // request, not a bare `closing`
                    if let Some(stop) = self.stop.take() {
                        let _ = stop.send(request);
                    }
                    self.closing.cancel();
                }
            }
        }
        self.closing.cancel();
        self.endpoint.on_closing();
    }

    /// How long the next read may take: until the idle timeout, the next ping or the
    /// endpoint's deadline, whichever is first; once closing, the grace for the close reply.
    fn wait(&self) -> Duration {
        if self.closing.is_cancelled() {
            return CLOSE_GRACE;
        }
        let now = tokio::time::Instant::now();
        let mut until = (self.heard_at + self.idle_timeout).min(self.next_ping);
        if let Some((by, _)) = self.endpoint.deadline() {
            until = until.min(by);
        }
        until.saturating_duration_since(now)
    }

    async fn step(&mut self, next: Read) -> Step {
        let closing = self.closing.is_cancelled();
        let now = tokio::time::Instant::now();
        if let Ok(Some(Ok(_))) = &next {
            self.heard_at = now;
        }
        // every frame counts against the frame rate, pings included
        if let Ok(Some(Ok(_))) = &next
            && let Err(flood) = self.endpoint.on_frame()
        {
            return if closing { Step::Read } else { Step::Stop(Stop::Close(flood)) };
        }
        let refused = |result: Result<(), Close>| result.err().map_or(Step::Read, |c| Step::Stop(Stop::Close(c)));
        match next {
            Err(_elapsed) if closing => Step::End,
            Err(_elapsed) if self.endpoint.deadline().is_some_and(|(by, _)| tokio::time::Instant::now() >= by) => {
                let (_, close) = self.endpoint.deadline().expect("checked just now");
                Step::Stop(Stop::Close(close))
            }
            // not idle yet: the wait ended for the next ping
            Err(_elapsed) if now < self.heard_at + self.idle_timeout => {
                if now >= self.next_ping {
                    self.out.push_frame(Queued::Ping);
                    self.next_ping = now + self.ping_every;
                }
                Step::Read
            }
            Err(_elapsed) => Step::Stop(Stop::Close(Close::new(close::IDLE_TIMEOUT, "idle timeout"))),
            Ok(None) => Step::End,
            // once closing, further messages are read (to reach the close reply) but ignored
            Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) if closing => Step::Read,
            Ok(Some(Ok(Message::Text(text)))) => {
                self.stats.messages_in.inc();
                refused(self.endpoint.on_text(text, &self.out).await)
            }
            Ok(Some(Ok(Message::Binary(data)))) => {
                self.stats.messages_in.inc();
                refused(self.endpoint.on_binary(data, &self.out))
            }
            // raw frames are only ever written, never read
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => Step::Read,
            Ok(Some(Ok(Message::Close(frame)))) => {
                tracing::debug!(code = frame.as_ref().map(|f| u16::from(f.code)), "client closed");
                Step::Stop(Stop::PeerClosed)
            }
            Ok(Some(Err(err))) => match close_code_for(err, &self.who) {
                Some(close) if !self.close_requested => Step::Stop(Stop::Close(close)),
                // the stream is broken (reset, or an error after our close): nothing more to read
                _ => Step::End,
            },
        }
    }
}

/// Maps a read error to the close code the client should see; `None` when the connection is
/// already gone (reset, EOF without close) and there is nobody to tell.
fn close_code_for(err: tungstenite::Error, who: &Who) -> Option<Close> {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let (conn, client, peer) = (who.conn, who.client, who.peer);
    match err {
        WsError::Capacity(_) => Some(Close::new(close::MESSAGE_TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some(Close::new(close::INVALID_PAYLOAD, "invalid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_) => {
            tracing::info!(conn, %client, %peer, cause = %err, "connection dropped without a close frame (abnormal)");
            None
        }
        WsError::Protocol(_) | WsError::AttackAttempt => Some(Close::new(close::PROTOCOL_ERROR, "protocol error")),
        WsError::ConnectionClosed | WsError::AlreadyClosed => None,
        other => {
            tracing::warn!(conn, %client, %peer, cause = %other, "unexpected read error");
            Some(Close::new(close::INTERNAL_ERROR, "internal error"))
        }
    }
}

/// The writing half of a connection: the only code that writes to the socket.
struct Writer {
    /// The connection counts as open until the writer is done.
    _open: Counted,
    /// Its id, for the writer's log line (the reader names the client too: one copy of `Who`
    /// per connection is enough).
    conn: super::ConnId,
    sink: SplitSink<WebSocket, Message>,
    /// Everything the hub has for this client, in order.
    queue: OutboundRx,
    /// The reader's request to close (or to stop, after the client's own close).
    stop: oneshot::Receiver<Stop>,
    stats: Arc<Stats>,
    /// The process is stopping: close 1001.
    shutdown: CancellationToken,
    /// Bound on every socket write: a client that does not read is dropped after it.
    write_timeout: Duration,
    /// Whether queued texts may be joined into one JSON array frame ([`Endpoint::coalesces`]).
    coalesce: bool,
    /// permessage-deflate, if the handshake agreed on it: texts and binaries of `compress_from`
    /// bytes or more go compressed (broadcasts arrive compressed already).
    deflate: Option<Agreed>,
    compress_from: usize,
}

impl Writer {
    async fn run(mut self, closing: Closing) {
        // the upgrade's answer waits for the first frame (`net::corked`): an endpoint that
        // greets nobody sends it now
        if self.queue.is_empty() {
            let _ = bounded(self.write_timeout, self.sink.flush()).await;
        }
        // made once and kept across the loop's turns: each would otherwise register again
        let mut shutting = std::pin::pin!(self.shutdown.clone().cancelled_owned());
        let close = loop {
            let result = tokio::select! {
                biased;
                () = &mut shutting => break Some(Close::new(close::GOING_AWAY, "server shutting down")),
                // before `next`, which sees the `closing` the reader sets right after its request
                // to close; every arm of this one leaves the loop: the oneshot is never polled again
                stop = &mut self.stop => match stop.ok() {
                    Some(Stop::Close(requested)) => {
                        // what was queued before the client's fault still goes out first,
                        // so replies to its valid messages are not lost to the close
                        if let Some(frame) = self.queue.try_recv() {
                            let _ = self.write_batch(frame).await;
                        }
                        break Some(requested);
                    }
                    Some(Stop::PeerClosed) | None => break None,
                },
                next = self.queue.next() => match next {
                    Next::Evicted => break Some(Close::new(close::SLOW_CONSUMER, "too slow to keep up")),
                    Next::Closing => break None,
                    // each write boxed, like the reader's step: an idle connection's task keeps
                    // no room for a write in flight (`hubbub-bench idle`: the task was 5.7 KiB)
                    Next::Lagged => Box::pin(self.tell_lagged()).await,
                    Next::Frame(frame) => Box::pin(self.write_batch(frame)).await,
                },
            };
            match result {
                Ok(()) => {}
                Err(WriteError::Slow) => break Some(Close::new(close::SLOW_CONSUMER, "too slow to keep up")),
                Err(WriteError::Timeout) => {
                    let conn = self.conn;
                    tracing::info!(conn, code = close::WRITE_TIMEOUT, "write deadline passed; dropping connection");
                    self.stats.write_timeouts.inc();
                    closing.cancel();
                    // offered, within the close grace: a socket this stuck rarely takes it, but
                    // one that only stalled does, and the client learns why
                    self.stats.closed_with(close::WRITE_TIMEOUT);
                    let frame = CloseFrame { code: close::WRITE_TIMEOUT.into(), reason: "write timeout".into() };
                    let _ = timeout(CLOSE_GRACE, self.sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
                Err(WriteError::Gone) => {
                    closing.cancel();
                    return;
                }
            }
        };
        closing.cancel();
        if let Some(Close { code, reason }) = close {
            self.stats.closed_with(code);
            let frame = CloseFrame { code: code.into(), reason: reason.into() };
            // a stuck socket cannot take the close frame either; bounded like any write
            let _ = timeout(CLOSE_GRACE, self.sink.send(Message::Close(Some(frame)))).await;
        } else {
            // flush whatever tungstenite queued, such as the reply to the client's close
            let _ = timeout(CLOSE_GRACE, self.sink.flush()).await;
        }
    }

    /// Tells the client which rooms' live messages were dropped, so it catches up (`resume`).
    async fn tell_lagged(&mut self) -> Result<(), WriteError> {
        let lagged = self.queue.take_lagged();
        let sink = &mut self.sink;
        let notices = async move {
            for (room, from_seq) in lagged {
                tracing::debug!(%room, from_seq, "reader lagged; live messages dropped");
                let notice = hubbub_shared::encode(&hubbub_shared::ServerMsg::Lagged { room, from_seq });
                sink.feed(Message::Text(notice.into())).await?;
            }
            sink.flush().await
        };
        bounded(self.write_timeout, notices).await
    }

    /// Writes `first` and everything queued behind it (as JSON arrays where the endpoint
    /// allows), then flushes once.
    async fn write_batch(&mut self, first: Queued) -> Result<(), WriteError> {
        let mut frames = vec![first];
        while frames.len() < MAX_BATCH
            && let Some(frame) = self.queue.try_recv()
        {
            frames.push(frame);
        }
        self.stats.messages_out.add(frames.len() as u64);
        if self.coalesce && frames.len() > 1 {
            frames = coalesce(frames);
        }
        if let Some(agreed) = &self.deflate {
            for frame in &mut frames {
                if compress(frame, agreed, self.compress_from) {
                    self.stats.compressions.inc();
                }
                if matches!(frame, Queued::Deflated { .. }) {
                    self.stats.compressed_frames_out.inc();
                }
            }
        }
        let sink = &mut self.sink;
        let batch = async move {
            for frame in frames {
                sink.feed(frame.into_message()).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            // a reader this far behind is evicted even while its socket is blocked
            () = self.queue.evicted() => Err(WriteError::Slow),
            r = bounded(self.write_timeout, batch) => r,
        }
    }
}

/// Joins runs of text messages into JSON array frames, cut where [`Runs`] says;
/// other frames pass through in place. One message alone stays a bare object.
fn coalesce(frames: Vec<Queued>) -> Vec<Queued> {
    fn flush(run: &mut Vec<Utf8Bytes>, out: &mut Vec<Queued>) {
        match run.len() {
            0 => {}
            1 => out.extend(run.drain(..).map(Queued::Text)),
            _ => {
                let frame = hubbub_shared::encode_batch(run.iter().map(|t| t.as_str()));
                run.clear();
                out.push(Queued::Text(frame.into()));
            }
        }
    }
    let mut out = Vec::new();
    let mut run: Vec<Utf8Bytes> = Vec::new();
    let mut runs = Runs::default();
    for frame in frames {
        match frame {
            Queued::Text(text) => {
                if runs.starts_new(text.len()) {
                    flush(&mut run, &mut out);
                }
                run.push(text);
            }
            other => {
                flush(&mut run, &mut out);
                runs = Runs::default();
                out.push(other);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Replaces a text or binary message of `from` bytes or more by its compressed frame (when that
/// is smaller, or always when `from` is 0), for a connection that agreed on permessage-deflate.
/// Says whether it compressed.
fn compress(frame: &mut Queued, agreed: &Agreed, from: usize) -> bool {
    let (data, binary): (&[u8], _) = match frame {
        Queued::Text(t) => (t.as_bytes(), false),
        Queued::Binary(b) => (b, true),
        _ => return false,
    };
    if data.len() < from {
        return false;
    }
    match deflate::deflated(data, agreed.window_bits, from == 0) {
        Some(payload) => {
            *frame = Queued::Deflated { payload, binary };
            true
        }
        None => false,
    }
}

/// Every write to the socket runs under the write deadline: past it the client counts as gone.
async fn bounded(
    deadline: Duration,
    write: impl Future<Output = Result<(), tungstenite::Error>>,
) -> Result<(), WriteError> {
    match timeout(deadline, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteError::Gone),
        Err(_) => Err(WriteError::Timeout),
    }
}

#[derive(Debug)]
enum WriteError {
    /// Control frames overflowed while a write was blocked.
    Slow,
    /// A write took longer than the write deadline.
    Timeout,
    /// The socket failed (reset, closed).
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::outbound::MAX_COALESCED_BYTES;

    fn text(s: &str) -> Queued {
        Queued::Text(s.into())
    }

    #[test]
    fn queued_texts_become_arrays_and_other_frames_keep_their_place() {
        let frames =
            vec![text("{\"a\":1}"), text("{\"b\":2}"), Queued::Binary(Bytes::from_static(b"x")), text("{\"c\":3}")];
        let out = coalesce(frames);
        assert_eq!(
            out,
            vec![text("[{\"a\":1},{\"b\":2}]"), Queued::Binary(Bytes::from_static(b"x")), text("{\"c\":3}")]
        );
    }

    #[test]
    fn a_batch_splits_before_it_grows_past_the_limit() {
        let big = format!("{{\"t\":\"{}\"}}", "x".repeat(MAX_COALESCED_BYTES / 2));
        let out = coalesce(vec![text(&big), text(&big), text(&big), text("{}")]);
        assert_eq!(out.len(), 3, "two halves and their separators do not fit in one frame");
        assert!(
            out.iter().all(|m| m.to_text().unwrap().len() <= MAX_COALESCED_BYTES + 2),
            "frames stay near the limit"
        );
        let count: usize = out
            .iter()
            .map(|m| {
                let t = m.to_text().unwrap();
                if t.starts_with('[') { serde_json::from_str::<Vec<serde_json::Value>>(t).unwrap().len() } else { 1 }
            })
            .sum();
        assert_eq!(count, 4, "no message lost or duplicated");
    }
}

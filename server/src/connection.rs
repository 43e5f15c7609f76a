//! One WebSocket connection: a reader and a writer running concurrently in one task. Every
//! endpoint (chat, echo, add) runs on this machinery; a [`Handler`] decides what a received
//! message means, so limits, heartbeats, close codes and shutdown behave the same everywhere.
//!
//! - The **reader** decodes client frames and acts on them through the hub. It enforces the idle
//!   timeout (nothing received for `idle_timeout` → close 4000) and turns read errors into close
//!   codes (too big 1009, bad UTF-8 1007, protocol 1002; the handler may refuse binary, 1003).
//! - The **writer** drains the outbound queue, writing everything queued in one go (feed all,
//!   flush once), tells the client when live messages had to be dropped (`lagged`), sends
//!   pings, and sends the close frame for every server-initiated close: a request from the
//!   reader, control frames piling up (4001), or shutdown (1001).
//!
//! After a close frame is sent the reader keeps reading until the peer's close reply ends the
//! stream (or a short grace passes): returning early would drop the close handshake.

use crate::{AppState, outbox::Outbox};
use axum::{
    body::Bytes,
    extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket},
};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hubbub_shared::close;
use std::time::Duration;
use tokio::{sync::mpsc, time::timeout};
use tokio_util::sync::CancellationToken;

/// How long to wait for the peer's close reply after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most frames written per flush; bounds one batch's latency for the first frame in it.
const MAX_BATCH: usize = 256;
/// A coalesced frame grows to about this size before the next one starts.
const MAX_COALESCED_BYTES: usize = 64 * 1024;

/// What an endpoint does with the messages its clients send.
pub(crate) trait Handler: Send {
    /// The connection is open: queue a greeting, if the endpoint has one.
    fn on_open(&mut self, _out: &Outbox) {}
    /// A text message. `Err` closes the connection with that code and reason.
    fn on_text(&mut self, text: Utf8Bytes, out: &Outbox) -> Result<(), (u16, &'static str)>;
    /// A binary message; refused (1003) unless the endpoint says otherwise.
    fn on_binary(&mut self, _data: Bytes, _out: &Outbox) -> Result<(), (u16, &'static str)> {
        Err((close::UNSUPPORTED_DATA, "binary messages are not supported here"))
    }
    /// A moment by which the client must have done something (the chat: joined a room); the
    /// connection is closed with 4004 when it passes. `None`: no deadline.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// Any frame arrived, control frames included; `Err` closes the connection (a flood).
    fn on_frame(&mut self) -> Result<(), (u16, &'static str)> {
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
}

/// Why the writer should stop, sent by the reader.
#[derive(Debug)]
enum Stop {
    /// The client sent a close frame: tungstenite answers it; the writer just stops.
    PeerClosed,
    /// Send this close frame, then stop.
    Close(u16, &'static str),
}

/// Runs the connection to its end; `handler` gives it its meaning.
pub(crate) async fn serve(socket: WebSocket, state: AppState, mut handler: impl Handler) {
    let config = &state.config;
    let _open = state.stats.connections.hold();
    let (sink, mut stream) = socket.split();
    let (outbox, queue, overflowed) = Outbox::new(config.outbound_queue, state.stats.clone());
    let (stop_tx, stop_rx) = mpsc::channel::<Stop>(1);
    // cancelled as soon as either side starts closing: the reader then leaves the rooms at
    // once (so the room hears `member_left` now, not after the close handshake) and waits only
    // a short grace for the peer's close reply
    let closing = CancellationToken::new();

    handler.on_open(&outbox);

    let writer = Writer {
        sink,
        queue,
        stop: stop_rx,
        stats: state.stats.clone(),
        overflowed,
        shutdown: state.shutdown.clone(),
        ping_interval: config.ping_interval(),
        write_timeout: config.write_timeout(),
        coalesce: handler.coalesces(),
    }
    .run(closing.clone());

    let reader = async {
        let mut close_requested = false;
        loop {
            if closing.is_cancelled() {
                handler.on_closing();
            }
            let wait = match (closing.is_cancelled(), handler.deadline()) {
                (true, _) => CLOSE_GRACE,
                (false, None) => config.idle_timeout(),
                (false, Some(by)) => {
                    config.idle_timeout().min(by.saturating_duration_since(tokio::time::Instant::now()))
                }
            };
            let next = tokio::select! {
                next = timeout(wait, stream.next()) => next,
                _ = closing.cancelled(), if !closing.is_cancelled() => continue,
            };
            // every frame counts against the frame rate, pings included
            let flood = match &next {
                Ok(Some(Ok(_))) => handler.on_frame().err(),
                _ => None,
            };
            let request = match next {
                _ if flood.is_some() && closing.is_cancelled() => None,
                _ if let Some((code, reason)) = flood => Some(Stop::Close(code, reason)),
                Err(_elapsed) if closing.is_cancelled() => break,
                Err(_elapsed) if handler.deadline().is_some_and(|by| tokio::time::Instant::now() >= by) => {
                    Some(Stop::Close(close::NO_JOIN, "no room joined in time"))
                }
                Err(_elapsed) => Some(Stop::Close(close::IDLE_TIMEOUT, "idle timeout")),
                Ok(None) => break,
                // once closing, further messages are read (to reach the close reply) but ignored
                Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) if closing.is_cancelled() => None,
                Ok(Some(Ok(Message::Text(text)))) => {
                    state.stats.messages_in.inc();
                    handler.on_text(text, &outbox).err().map(|(code, reason)| Stop::Close(code, reason))
                }
                Ok(Some(Ok(Message::Binary(data)))) => {
                    state.stats.messages_in.inc();
                    handler.on_binary(data, &outbox).err().map(|(code, reason)| Stop::Close(code, reason))
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => None,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    tracing::debug!(code = frame.as_ref().map(|f| f.code), "client closed");
                    Some(Stop::PeerClosed)
                }
                Ok(Some(Err(err))) => match close_code_for(err) {
                    Some((code, reason)) if !close_requested => Some(Stop::Close(code, reason)),
                    // the stream is broken (reset, or an error after our close): nothing more to read
                    _ => break,
                },
            };
            if let Some(request) = request
                && !close_requested
            {
                close_requested = true;
                if let Stop::Close(code, reason) = &request {
                    tracing::info!(code, reason, "closing connection");
                }
                // capacity 1 and sent once: never waits. Sent before `closing` is cancelled,
                // so the writer's biased select sees the request, not a bare `closing`.
                let _ = stop_tx.send(request).await;
                closing.cancel();
            }
        }
        closing.cancel();
        handler.on_closing();
    };

    tokio::join!(reader, writer);
    tracing::debug!("connection finished");
}

/// Maps a read error to the close code the client should see; `None` when the connection is
/// already gone (reset, EOF without close) and there is nobody to tell.
fn close_code_for(err: axum::Error) -> Option<(u16, &'static str)> {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let inner = err.into_inner();
    let Some(err) = inner.downcast_ref::<WsError>() else {
        tracing::warn!(cause = %inner, "unexpected read error");
        return Some((close::INTERNAL_ERROR, "internal error"));
    };
    match err {
        WsError::Capacity(_) => Some((close::MESSAGE_TOO_BIG, "message too big")),
        WsError::Utf8(_) => Some((close::INVALID_PAYLOAD, "invalid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) | WsError::Io(_) => {
            tracing::info!(cause = %err, "connection dropped without a close frame (abnormal)");
            None
        }
        WsError::Protocol(_) | WsError::AttackAttempt => Some((close::PROTOCOL_ERROR, "protocol error")),
        WsError::ConnectionClosed | WsError::AlreadyClosed => None,
        other => {
            tracing::warn!(cause = %other, "unexpected read error");
            Some((close::INTERNAL_ERROR, "internal error"))
        }
    }
}

struct Writer {
    sink: SplitSink<WebSocket, Message>,
    queue: crate::outbox::Queue,
    stop: mpsc::Receiver<Stop>,
    stats: std::sync::Arc<crate::stats::Stats>,
    overflowed: CancellationToken,
    shutdown: CancellationToken,
    ping_interval: Duration,
    write_timeout: Duration,
    coalesce: bool,
}

impl Writer {
    async fn run(mut self, closing: CancellationToken) {
        let period = self.ping_interval.max(Duration::from_millis(10));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let lag = self.queue.lag_signal();
        let close = loop {
            let result = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
                _ = self.overflowed.cancelled() => break Some((close::SLOW_CONSUMER, "too slow to keep up")),
                stop = self.stop.recv() => match stop {
                    Some(Stop::Close(code, reason)) => {
                        // what was queued before the client's fault still goes out first,
                        // so replies to its valid messages are not lost to the close
                        if let Some(frame) = self.queue.try_recv() {
                            let _ = self.write_batch(frame).await;
                        }
                        break Some((code, reason));
                    }
                    Some(Stop::PeerClosed) | None => break None,
                },
                _ = closing.cancelled() => break None,
                _ = lag.wait() => self.tell_lagged().await,
                frame = self.queue.recv() => match frame {
                    Some(frame) => self.write_batch(frame).await,
                    None => break None,
                },
                _ = ping.tick() => self.write(Message::Ping(Default::default())).await,
            };
            match result {
                Ok(()) => {}
                Err(WriteError::Slow) => break Some((close::SLOW_CONSUMER, "too slow to keep up")),
                Err(WriteError::Timeout) => {
                    tracing::info!(code = close::WRITE_TIMEOUT, "write deadline passed; dropping connection");
                    self.stats.write_timeouts.inc();
                    closing.cancel();
                    return;
                }
                Err(WriteError::Gone) => {
                    closing.cancel();
                    return;
                }
            }
        };
        closing.cancel();
        if let Some((code, reason)) = close {
            self.stats.closed_with(code);
            let frame = CloseFrame { code, reason: reason.into() };
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
    async fn write_batch(&mut self, first: Message) -> Result<(), WriteError> {
        let overflowed = self.overflowed.clone();
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
        let sink = &mut self.sink;
        let batch = async move {
            for frame in frames {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            // a reader this far behind is evicted even while its socket is blocked
            _ = overflowed.cancelled() => Err(WriteError::Slow),
            r = bounded(self.write_timeout, batch) => r,
        }
    }

    async fn write(&mut self, msg: Message) -> Result<(), WriteError> {
        bounded(self.write_timeout, self.sink.send(msg)).await
    }
}

/// Joins runs of text messages into JSON array frames of up to about [`MAX_COALESCED_BYTES`];
/// other frames pass through in place. One message alone stays a bare object.
fn coalesce(frames: Vec<Message>) -> Vec<Message> {
    fn flush(run: &mut Vec<Utf8Bytes>, out: &mut Vec<Message>) {
        match run.len() {
            0 => {}
            1 => out.extend(run.drain(..).map(Message::Text)),
            _ => {
                let frame = hubbub_shared::encode_batch(run.iter().map(|t| t.as_str()));
                run.clear();
                out.push(Message::Text(frame.into()));
            }
        }
    }
    let mut out = Vec::new();
    let mut run: Vec<Utf8Bytes> = Vec::new();
    let mut bytes = 0;
    for frame in frames {
        match frame {
            Message::Text(text) => {
                if bytes + text.len() > MAX_COALESCED_BYTES {
                    flush(&mut run, &mut out);
                    bytes = 0;
                }
                bytes += text.len() + 1;
                run.push(text);
            }
            other => {
                flush(&mut run, &mut out);
                bytes = 0;
                out.push(other);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Every write to the socket runs under the write deadline: past it the client counts as gone.
async fn bounded(deadline: Duration, write: impl Future<Output = Result<(), axum::Error>>) -> Result<(), WriteError> {
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

    fn text(s: &str) -> Message {
        Message::Text(s.into())
    }

    #[test]
    fn queued_texts_become_arrays_and_other_frames_keep_their_place() {
        let frames =
            vec![text("{\"a\":1}"), text("{\"b\":2}"), Message::Binary(Bytes::from_static(b"x")), text("{\"c\":3}")];
        let out = coalesce(frames);
        assert_eq!(
            out,
            vec![text("[{\"a\":1},{\"b\":2}]"), Message::Binary(Bytes::from_static(b"x")), text("{\"c\":3}")]
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

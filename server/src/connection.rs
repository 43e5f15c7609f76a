//! One WebSocket connection: a reader and a writer running concurrently in one task.
//!
//! - The **reader** decodes client frames and acts on them through the hub. It enforces the idle
//!   timeout (nothing received for `idle_timeout` → close 4000) and turns read errors into close
//!   codes (too big 1009, bad UTF-8 1007, protocol 1002, binary 1003).
//! - The **writer** drains the bounded outbound queue, writing everything queued in one go
//!   (feed all, flush once), sends pings, and sends the close frame for every server-initiated
//!   close: a request from the reader, an overflowing queue (4001), or shutdown (1001).
//!
//! After a close frame is sent the reader keeps reading until the peer's close reply ends the
//! stream (or a short grace passes): returning early would drop the close handshake.

use crate::{AppState, hub::ConnId, outbox::Outbox};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hubbub_shared::{
    ChatText, ClientMsg, ErrorCode, Invalid, Nick, RoomName, ServerMsg, close, decode_client,
};
use std::{collections::HashMap, time::Duration};
use tokio::{sync::mpsc, time::timeout};
use tokio_util::sync::CancellationToken;

/// How long to wait for the peer's close reply after sending ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Most frames written per flush; bounds one batch's latency for the first frame in it.
const MAX_BATCH: usize = 256;

/// Why the writer should stop, sent by the reader.
#[derive(Debug)]
enum Stop {
    /// The client sent a close frame: tungstenite answers it; the writer just stops.
    PeerClosed,
    /// Send this close frame, then stop.
    Close(u16, &'static str),
}

/// Runs the connection to its end and cleans up its rooms.
pub(crate) async fn serve(socket: WebSocket, state: AppState, conn: ConnId) {
    let config = &state.config;
    state.stats.connections.inc();
    let (sink, mut stream) = socket.split();
    let (outbox, queue, overflowed) = Outbox::new(config.outbound_queue, state.stats.clone());
    let (stop_tx, stop_rx) = mpsc::channel::<Stop>(1);
    // cancelled as soon as either side starts closing: the reader then leaves the rooms at
    // once (so the room hears `member_left` now, not after the close handshake) and waits only
    // a short grace for the peer's close reply
    let closing = CancellationToken::new();

    outbox.push(&ServerMsg::Welcome { protocol: hubbub_shared::PROTOCOL_VERSION, limits: config.limits() });

    let writer = Writer {
        sink,
        queue,
        stop: stop_rx,
        overflowed,
        shutdown: state.shutdown.clone(),
        ping_interval: config.ping_interval(),
        write_timeout: config.write_timeout(),
    }
    .run(closing.clone());

    let mut session = Session { state: &state, conn, outbox, rooms: HashMap::new() };
    let reader = async {
        let mut close_requested = false;
        loop {
            if closing.is_cancelled() {
                session.leave_all();
            }
            let wait = if closing.is_cancelled() { CLOSE_GRACE } else { config.idle_timeout() };
            let next = tokio::select! {
                next = timeout(wait, stream.next()) => next,
                _ = closing.cancelled(), if !closing.is_cancelled() => continue,
            };
            let request = match next {
                Err(_elapsed) if closing.is_cancelled() => break,
                Err(_elapsed) => Some(Stop::Close(close::IDLE_TIMEOUT, "idle timeout")),
                Ok(None) => break,
                Ok(Some(Ok(Message::Text(text)))) => {
                    if !closing.is_cancelled() {
                        session.handle_text(text.as_str());
                    }
                    None
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    Some(Stop::Close(close::UNSUPPORTED_DATA, "binary frames are not supported"))
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
            if let Some(request) = request {
                if !close_requested {
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
        }
        closing.cancel();
        session.leave_all();
    };

    tokio::join!(reader, writer);
    state.stats.connections.dec();
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

/// The reader's view of the connection: which rooms it is in, under which nickname.
struct Session<'a> {
    state: &'a AppState,
    conn: ConnId,
    outbox: Outbox,
    rooms: HashMap<RoomName, Nick>,
}

impl Session<'_> {
    /// Acts on one text frame. Every refusal becomes one `error` frame; the connection stays.
    fn handle_text(&mut self, text: &str) {
        let msg = match decode_client(text) {
            Ok(msg) => msg,
            Err(err) => {
                let mut detail = err.detail.clone();
                detail.truncate(200);
                return self.refuse(err.id.clone(), err.code(), detail, None);
            }
        };
        let id = msg.id().map(str::to_owned);
        if let Err((invalid, room)) = self.act(msg) {
            self.refuse(id, invalid.code, invalid.reason, room);
        }
    }

    fn act(&mut self, msg: ClientMsg) -> Result<(), (Invalid, Option<String>)> {
        match msg {
            ClientMsg::Join { id, room, nick } => {
                let room = RoomName::parse(&room).map_err(|e| (e, Some(room.clone())))?;
                let in_room = |e| (e, Some(room.to_string()));
                let nick = Nick::parse(&nick).map_err(in_room)?;
                if self.rooms.contains_key(&room) {
                    return Err(in_room(Invalid {
                        code: ErrorCode::AlreadyJoined,
                        reason: format!("You are already in {room}."),
                    }));
                }
                let max = self.state.config.max_rooms_per_connection;
                if self.rooms.len() >= max {
                    return Err(in_room(Invalid {
                        code: ErrorCode::TooManyRooms,
                        reason: format!("One connection can be in at most {max} rooms."),
                    }));
                }
                self.state.hub.join(self.conn, &room, nick.clone(), &self.outbox, id).map_err(in_room)?;
                tracing::debug!(%room, %nick, "joined");
                self.rooms.insert(room, nick);
            }
            ClientMsg::Leave { id, room } => {
                let room = self.member_of(&room)?;
                self.rooms.remove(&room);
                self.state.hub.leave(self.conn, &room, Some((&self.outbox, id)));
            }
            ClientMsg::Send { room, text, .. } => {
                let room = self.member_of(&room)?;
                let max = self.state.config.limits().max_text_chars;
                let text = ChatText::parse(&text, max).map_err(|e| (e, Some(room.to_string())))?;
                self.state.hub.say(self.conn, &room, text).map_err(|e| (e, Some(room.to_string())))?;
            }
        }
        Ok(())
    }

    /// The canonical room, if this connection has joined it.
    fn member_of(&self, raw: &str) -> Result<RoomName, (Invalid, Option<String>)> {
        let room = RoomName::parse(raw).map_err(|e| (e, Some(raw.to_owned())))?;
        if self.rooms.contains_key(&room) {
            Ok(room)
        } else {
            let reason = format!("You are not in {room}.");
            Err((Invalid { code: ErrorCode::NotMember, reason }, Some(room.to_string())))
        }
    }

    /// Leaves every room (announcing `member_left`); idempotent.
    fn leave_all(&mut self) {
        for (room, _) in self.rooms.drain() {
            self.state.hub.leave(self.conn, &room, None);
        }
    }

    fn refuse(&self, id: Option<String>, code: ErrorCode, message: String, room: Option<String>) {
        tracing::debug!(code = code.as_str(), "request refused");
        self.outbox.push(&ServerMsg::Error { id, code, message, room });
    }
}

struct Writer {
    sink: SplitSink<WebSocket, Message>,
    queue: mpsc::Receiver<Utf8Bytes>,
    stop: mpsc::Receiver<Stop>,
    overflowed: CancellationToken,
    shutdown: CancellationToken,
    ping_interval: Duration,
    write_timeout: Duration,
}

impl Writer {
    async fn run(mut self, closing: CancellationToken) {
        let period = self.ping_interval.max(Duration::from_millis(10));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let close = loop {
            let result = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
                _ = self.overflowed.cancelled() => break Some((close::SLOW_CONSUMER, "too slow to keep up")),
                stop = self.stop.recv() => match stop {
                    Some(Stop::Close(code, reason)) => break Some((code, reason)),
                    Some(Stop::PeerClosed) | None => break None,
                },
                _ = closing.cancelled() => break None,
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
            let frame = CloseFrame { code, reason: reason.into() };
            // a stuck socket cannot take the close frame either; bounded like any write
            let _ = timeout(CLOSE_GRACE, self.sink.send(Message::Close(Some(frame)))).await;
        } else {
            // flush whatever tungstenite queued, such as the reply to the client's close
            let _ = timeout(CLOSE_GRACE, self.sink.flush()).await;
        }
    }

    /// Writes `first` and everything queued behind it, then flushes once.
    async fn write_batch(&mut self, first: Utf8Bytes) -> Result<(), WriteError> {
        let overflowed = self.overflowed.clone();
        let sink = &mut self.sink;
        let queue = &mut self.queue;
        let batch = async move {
            sink.feed(Message::Text(first)).await?;
            for _ in 1..MAX_BATCH {
                let Ok(frame) = queue.try_recv() else { break };
                sink.feed(Message::Text(frame)).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            // a reader this far behind is evicted even while its socket is blocked
            _ = overflowed.cancelled() => Err(WriteError::Slow),
            r = timeout(self.write_timeout, batch) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(WriteError::Gone),
                Err(_) => Err(WriteError::Timeout),
            },
        }
    }

    async fn write(&mut self, msg: Message) -> Result<(), WriteError> {
        match timeout(self.write_timeout, self.sink.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Gone),
            Err(_) => Err(WriteError::Timeout),
        }
    }
}

#[derive(Debug)]
enum WriteError {
    /// The queue overflowed while a write was blocked.
    Slow,
    /// A write took longer than the write deadline.
    Timeout,
    /// The socket failed (reset, closed).
    Gone,
}

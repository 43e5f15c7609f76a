//! The chat endpoint (`/ws`): rooms, nicknames and messages, through the hub.

use crate::{AppState, connection::Handler, hub::ConnId, outbox::Outbox, rate::TokenBucket, store::Append};
use axum::extract::ws::Utf8Bytes;
use hubbub_shared::{
    ChatText, ClientMsg, ErrorCode, Invalid, Nick, RoomName, ServerMsg, cursor::Cursor, decode_client,
};
use std::collections::HashMap;

/// Most messages one `history` request returns.
const MAX_HISTORY_LIMIT: u32 = 100;

/// One chat connection: which rooms it is in, under which nickname.
#[derive(Debug)]
pub(crate) struct ChatSession {
    state: AppState,
    conn: ConnId,
    rooms: HashMap<RoomName, Nick>,
    /// Messages sent without a client id, numbered to make one (no acks for those).
    anonymous_sends: u64,
    /// Requests per second; refusals in a row since the last accepted one.
    messages: TokenBucket,
    strikes: u32,
    /// Frames per second, pings included.
    frames: TokenBucket,
}

impl Handler for ChatSession {
    fn on_open(&mut self, out: &Outbox) {
        let limits = self.state.config.limits();
        let epoch = self.state.store.epoch().to_owned();
        out.push(&ServerMsg::Welcome { protocol: hubbub_shared::PROTOCOL_VERSION, epoch, limits });
    }

    /// Every refusal becomes one `error` frame; the connection stays (unless it keeps
    /// flooding past the rate limit).
    fn on_text(&mut self, text: Utf8Bytes, out: &Outbox) -> Result<(), (u16, &'static str)> {
        if let Err(wait) = self.messages.take() {
            self.strikes += 1;
            self.state.stats.rate_limited.inc();
            if self.strikes > self.state.config.rate_limit_strikes {
                return Err((hubbub_shared::close::RATE_LIMITED, "too many messages"));
            }
            let id = decode_client(text.as_str()).ok().and_then(|m| m.id().map(str::to_owned));
            let retry_after_ms = Some(wait.as_millis() as u64 + 1);
            let message = "Slow down: too many messages.".to_owned();
            out.push(&ServerMsg::Error { id, code: ErrorCode::RateLimited, message, room: None, retry_after_ms });
            return Ok(());
        }
        self.strikes = 0;
        let msg = match decode_client(text.as_str()) {
            Ok(msg) => msg,
            Err(err) => {
                let mut detail = err.detail.clone();
                detail.truncate(200);
                refuse(out, err.id.clone(), err.code(), detail, None);
                return Ok(());
            }
        };
        let id = msg.id().map(str::to_owned);
        if let Err((invalid, room)) = self.act(msg, out) {
            refuse(out, id, invalid.code, invalid.reason, room);
        }
        Ok(())
    }

    fn on_frame(&mut self) -> Result<(), (u16, &'static str)> {
        self.frames.take().map_err(|_| (hubbub_shared::close::RATE_LIMITED, "too many frames"))
    }

    fn on_closing(&mut self) {
        // leaving announces `member_left` to every room this connection was in
        for (room, _) in self.rooms.drain() {
            self.state.hub.leave(self.conn, &room, None);
        }
    }
}

impl ChatSession {
    pub(crate) fn new(state: AppState, conn: ConnId) -> Self {
        let config = &state.config;
        let messages = TokenBucket::new(config.messages_per_sec, config.message_burst);
        let frames = TokenBucket::new(config.frames_per_sec, 2.0 * config.frames_per_sec);
        Self { state, conn, rooms: HashMap::new(), anonymous_sends: 0, messages, strikes: 0, frames }
    }

    fn act(&mut self, msg: ClientMsg, out: &Outbox) -> Result<(), (Invalid, Option<String>)> {
        match msg {
            ClientMsg::Join { id, room, nick, since, token } => {
                let room = RoomName::parse(&room).map_err(|e| (e, Some(room.clone())))?;
                let in_room = |e| (e, Some(room.to_string()));
                let nick = Nick::parse(&nick).and_then(|n| crate::nick_rules::canonical(&n)).map_err(in_room)?;
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
                self.state.hub.join(self.conn, &room, nick.clone(), token, out, id.clone()).map_err(in_room)?;
                tracing::debug!(%room, %nick, "joined");
                // registered first, history read second: every message is either in the
                // history or delivered live (or both; clients keep one copy per seq)
                let history = send_history(self.state.clone(), room.clone(), since, id, out.clone());
                self.state.tracker.spawn(history);
                self.rooms.insert(room, nick);
            }
            ClientMsg::Leave { id, room } => {
                let room = self.member_of(&room)?;
                self.rooms.remove(&room);
                self.state.hub.leave(self.conn, &room, Some((out, id)));
            }
            ClientMsg::Add { id, a, b } => match a.checked_add(b) {
                Some(sum) => out.push(&ServerMsg::Sum { id, sum }),
                None => {
                    let reason = format!("{a} + {b} does not fit in a 64-bit integer.");
                    return Err((Invalid { code: ErrorCode::Overflow, reason }, None));
                }
            },
            ClientMsg::History { id, room, before, limit } => {
                let room = self.member_of(&room)?;
                let limit = limit.unwrap_or(self.state.config.history_page as u32).clamp(1, MAX_HISTORY_LIMIT) as usize;
                let store = self.state.store.clone();
                let out = out.clone();
                self.state.tracker.spawn(async move {
                    let page = store.page(&room, 0, before.saturating_sub(1), limit, true).await;
                    push_history(&out, id, &room, page, true);
                });
            }
            ClientMsg::Resume { id, room, since } => {
                let room = self.member_of(&room)?;
                self.state.tracker.spawn(send_history(self.state.clone(), room, Some(since), id, out.clone()));
            }
            ClientMsg::Send { id, room, text } => {
                let room = self.member_of(&room)?;
                let in_room = |e| (e, Some(room.to_string()));
                let max = self.state.config.limits().max_text_chars;
                let text = ChatText::parse(&text, max).map_err(in_room)?;
                let author = self.rooms[&room].to_string();
                let client_id = match &id {
                    Some(id) => format!("c:{id}"),
                    None => {
                        self.anonymous_sends += 1;
                        format!("s:{}:{}:{}", self.state.started_at, self.conn, self.anonymous_sends)
                    }
                };
                let append = Append { room: room.clone(), author, text: text.into_string(), client_id, ack_id: id, reply_to: out.clone() };
                self.state.store.append(append).map_err(|e| {
                    in_room(Invalid { code: ErrorCode::StorageUnavailable, reason: e.to_string() })
                })?;
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
}

fn refuse(out: &Outbox, id: Option<String>, code: ErrorCode, message: String, room: Option<String>) {
    tracing::debug!(code = code.as_str(), "request refused");
    out.push(&ServerMsg::Error { id, code, message, room, retry_after_ms: None });
}

/// Sends the `history` that follows a `joined` (or answers `resume`): the messages after the `since` cursor when
/// it is valid and the gap is within the limit (`recovered: true`), else the latest page.
async fn send_history(state: AppState, room: RoomName, since: Option<String>, id: Option<String>, out: Outbox) {
    let store = &state.store;
    let head = match store.head(&room).await {
        Ok(head) => head,
        Err(e) => return push_history(&out, id, &room, Err(e), false),
    };
    let page_size = state.config.history_page;
    let room_ref = &room;
    let latest = |recovered| async move { (store.page(room_ref, 0, head, page_size, true).await, recovered) };
    let (page, recovered) = match since.as_deref().map(|s| (s, Cursor::parse(s))) {
        None => latest(false).await,
        Some((raw, cursor)) => match cursor {
            Some(c) if c.epoch != store.epoch() => {
                tracing::debug!(cursor = raw, "stale cursor from another database");
                latest(false).await
            }
            Some(c) if c.room == room.as_str() && c.seq <= head => {
                if head - c.seq <= state.config.resume_gap_limit {
                    let gap = (head - c.seq) as usize;
                    (store.page(&room, c.seq, head, gap, false).await, true)
                } else {
                    latest(false).await
                }
            }
            _ => {
                let reason = format!("{raw:?} is not a cursor of {room} (EPOCH:ROOM:SEQ, SEQ at most {head})");
                refuse(&out, id.clone(), ErrorCode::InvalidCursor, reason, Some(room.to_string()));
                latest(false).await
            }
        },
    };
    push_history(&out, id, &room, page, recovered);
}

fn push_history(
    out: &Outbox,
    id: Option<String>,
    room: &RoomName,
    page: Result<Vec<hubbub_shared::ChatMessage>, crate::store::StoreError>,
    recovered: bool,
) {
    match page {
        Ok(messages) => {
            let more = messages.first().is_some_and(|m| m.seq > 1);
            out.push(&ServerMsg::History { id, room: room.to_string(), messages, recovered, more });
        }
        Err(e) => refuse(out, id, ErrorCode::StorageUnavailable, e.to_string(), Some(room.to_string())),
    }
}

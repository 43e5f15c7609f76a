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
    /// Until the first successful join: when the connection must have joined by.
    join_by: Option<tokio::time::Instant>,
}

impl Handler for ChatSession {
    fn coalesces(&self) -> bool {
        true
    }

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
                // serde quotes the input back: cap it, on a character boundary
                let detail: String = err.detail.chars().take(200).collect();
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

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.join_by
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
        let join_by = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(config.join_timeout_ms));
        Self { state, conn, rooms: HashMap::new(), anonymous_sends: 0, messages, strikes: 0, frames, join_by }
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
                self.join_by = None;
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
                let append = Append {
                    room: room.clone(),
                    author,
                    text: text.into_string(),
                    client_id,
                    ack_id: id,
                    reply_to: out.clone(),
                };
                self.state
                    .store
                    .append(append)
                    .map_err(|e| in_room(Invalid { code: ErrorCode::StorageUnavailable, reason: e.to_string() }))?;
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

#[cfg(test)]
mod tests {
    //! The decode-and-handle path against arbitrary input: it never panics, and on a fresh
    //! connection every frame gets exactly one immediate reply (an error, `joined`, `sum`), or a
    //! close.

    use super::*;
    use crate::{Config, outbox::Queue};
    use proptest::prelude::*;
    use serde_json::Value;
    use std::sync::OnceLock;

    fn state() -> &'static (tokio::runtime::Runtime, AppState) {
        static STATE: OnceLock<(tokio::runtime::Runtime, AppState)> = OnceLock::new();
        STATE.get_or_init(|| {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let state = AppState::new(Config::for_tests()).unwrap();
            (runtime, state)
        })
    }

    /// Handles one frame on a fresh session; the number of frames it queued, or the close.
    fn replies_to(text: &str) -> Result<usize, (u16, &'static str)> {
        let (runtime, state) = state();
        let _in_runtime = runtime.enter();
        let (out, mut queue, _) = Outbox::new(16, state.stats.clone());
        let mut session = ChatSession::new(state.clone(), state.hub.new_conn_id());
        let result = session.on_text(text.into(), &out);
        session.on_closing();
        result.map(|()| count(&mut queue))
    }

    fn count(queue: &mut Queue) -> usize {
        std::iter::from_fn(|| queue.try_recv()).count()
    }

    /// JSON values, with objects biased towards the protocol's field names and types.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("join"),
                Just("send"),
                Just("leave"),
                Just("add"),
                Just("history"),
                Just("resume"),
                Just("lobby")
            ]
            .prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("type".to_owned()),
                Just("id".to_owned()),
                Just("room".to_owned()),
                Just("nick".to_owned()),
                Just("text".to_owned()),
                Just("a".to_owned()),
                Just("b".to_owned()),
                Just("since".to_owned()),
                Just("before".to_owned()),
                "\\PC{0,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_gets_exactly_one_reply(text in "\\PC{0,200}") {
            prop_assert_eq!(replies_to(&text), Ok(1));
        }

        #[test]
        fn arbitrary_bytes_read_as_text_get_exactly_one_reply(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(replies_to(&String::from_utf8_lossy(&bytes)), Ok(1));
        }

        #[test]
        fn arbitrary_json_gets_exactly_one_reply(value in json()) {
            prop_assert_eq!(replies_to(&value.to_string()), Ok(1));
        }
    }

    #[test]
    fn deeply_nested_json_is_one_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(replies_to(&deep), Ok(1));
        let deep_object = format!("{}1{}", r#"{"type":"#.repeat(50_000), "}".repeat(50_000));
        assert_eq!(replies_to(&deep_object), Ok(1));
    }
}

//! The chat endpoint (`/ws`): rooms, nicknames and messages, through the hub.

use crate::{AppState, connection::Handler, hub::ConnId, outbox::Outbox};
use axum::extract::ws::Utf8Bytes;
use hubbub_shared::{
    ChatText, ClientMsg, ErrorCode, Invalid, Nick, RoomName, ServerMsg, decode_client,
};
use std::collections::HashMap;

/// One chat connection: which rooms it is in, under which nickname.
#[derive(Debug)]
pub(crate) struct ChatSession {
    state: AppState,
    conn: ConnId,
    rooms: HashMap<RoomName, Nick>,
}

impl Handler for ChatSession {
    fn on_open(&mut self, out: &Outbox) {
        let limits = self.state.config.limits();
        out.push(&ServerMsg::Welcome { protocol: hubbub_shared::PROTOCOL_VERSION, limits });
    }

    /// Every refusal becomes one `error` frame; the connection stays.
    fn on_text(&mut self, text: Utf8Bytes, out: &Outbox) -> Result<(), (u16, &'static str)> {
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

    fn on_closing(&mut self) {
        // leaving announces `member_left` to every room this connection was in
        for (room, _) in self.rooms.drain() {
            self.state.hub.leave(self.conn, &room, None);
        }
    }
}

impl ChatSession {
    pub(crate) fn new(state: AppState, conn: ConnId) -> Self {
        Self { state, conn, rooms: HashMap::new() }
    }

    fn act(&mut self, msg: ClientMsg, out: &Outbox) -> Result<(), (Invalid, Option<String>)> {
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
                self.state.hub.join(self.conn, &room, nick.clone(), out, id).map_err(in_room)?;
                tracing::debug!(%room, %nick, "joined");
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
}

fn refuse(out: &Outbox, id: Option<String>, code: ErrorCode, message: String, room: Option<String>) {
    tracing::debug!(code = code.as_str(), "request refused");
    out.push(&ServerMsg::Error { id, code, message, room });
}

//! Presence: the rooms and who is in them, under which nickname.
//!
//! [`Presence`] is the seam: today's engine is [`LocalPresence`], the rooms of this one process;
//! a cluster engine (nickname ownership and member lists in Redis) plugs in beside it, chosen at
//! start-up (`crate::app`).
//!
//! `LocalPresence` keeps all state behind one `std::sync::Mutex` that is never held across an
//! `.await`: every operation is a short, synchronous critical section. Replies and broadcasts
//! are pushed into the members' outbound queues *inside* that section, so everyone sees a room's
//! events in the same order, and a joiner's `joined` reply always precedes the room's next
//! message.

use super::nick_rules;
use crate::net::{ConnId, Outbound};
use hubbub_shared::{ChatMessage, ErrorCode, Invalid, Nick, RoomName, ServerMsg, encode};
use std::{collections::HashMap, sync::Mutex};

/// A connection asking to be a member of a room.
#[derive(Debug)]
pub(crate) struct JoinRequest<'a> {
    pub(crate) conn: ConnId,
    pub(crate) room: &'a RoomName,
    /// Canonical already ([`nick_rules::canonical`]).
    pub(crate) nick: Nick,
    /// The client's secret from `join`, if it gave one: proves a later join is the same client.
    pub(crate) token: Option<String>,
    /// Where the `joined` reply and the room's events go.
    pub(crate) out: &'a Outbound,
    /// The request id the `joined` reply echoes.
    pub(crate) reply_id: Option<String>,
}

/// Who is in which room, and telling them when that changes.
pub(crate) trait Presence: Send + Sync + std::fmt::Debug {
    /// Adds the connection to the room (creating it), replies `joined` with the member list and
    /// announces `member_joined` to the others; or refuses (nickname taken or confusable).
    fn join(&self, request: JoinRequest<'_>) -> Result<(), Invalid>;

    /// Removes `conn` from `room`, announces `member_left`, forgets the room when it is empty.
    /// With `reply`, the leaver gets `left` (an explicit leave; not on disconnect).
    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>);

    /// Number of rooms with at least one member (for `/metrics`).
    fn room_count(&self) -> usize;
}

/// The rooms of this process. Also what [`crate::broker::local::LocalFanout`] delivers through.
#[derive(Debug, Default)]
pub(crate) struct LocalPresence {
    rooms: Mutex<HashMap<RoomName, Room>>,
}

#[derive(Debug, Default)]
struct Room {
    members: HashMap<ConnId, Member>,
}

#[derive(Debug)]
struct Member {
    nick: Nick,
    /// [`nick_rules::look_alike_key`] of `nick`, computed once: every join compares against it.
    look_alike: String,
    /// The client's secret from `join`, if it gave one.
    token: Option<String>,
    out: Outbound,
}

/// A member whose nickname looks like the one asked for.
#[derive(Debug)]
struct Holder {
    conn: ConnId,
    /// The very same nickname (not just a look-alike).
    same_nick: bool,
    nick: String,
    token: Option<String>,
}

impl Room {
    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members.values().map(|m| m.nick.to_string()).collect();
        names.sort_by_key(|n| n.to_lowercase());
        names
    }

    fn holder_of(&self, nick: &Nick, look_alike: &str) -> Option<Holder> {
        self.members.iter().find(|(_, m)| m.look_alike == look_alike).map(|(conn, m)| Holder {
            conn: *conn,
            same_nick: m.nick.key() == nick.key(),
            nick: m.nick.to_string(),
            token: m.token.clone(),
        })
    }

    /// Serialises a chat message once and queues the same bytes for every member, as a live
    /// (droppable, catch-up-able) frame.
    fn broadcast_live(&self, message: ChatMessage) {
        let (room, seq) = (message.room.clone(), message.seq);
        let frame = axum::extract::ws::Message::Text(encode(&ServerMsg::Message(message)).into());
        for member in self.members.values() {
            member.out.push_live(&room, seq, frame.clone());
        }
    }

    /// Serialises once and queues the same bytes for every member except `skip`.
    fn broadcast(&self, msg: &ServerMsg, skip: Option<ConnId>) {
        let frame = axum::extract::ws::Message::Text(encode(msg).into());
        for (id, member) in &self.members {
            if Some(*id) != skip {
                member.out.push_frame(frame.clone());
            }
        }
    }
}

impl LocalPresence {
    /// Delivers a committed message to everyone in its room here, the author included.
    pub(crate) fn deliver(&self, message: ChatMessage) {
        let Ok(room) = RoomName::parse(&message.room) else { return };
        let rooms = self.lock();
        if let Some(entry) = rooms.get(&room) {
            entry.broadcast_live(message);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Room>> {
        // A panic while holding the lock cannot leave a room half-updated in a way later
        // operations would trip over, so a poisoned lock is still usable.
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Presence for LocalPresence {
    /// A nickname held by a member with the same (non-empty) `token` is taken over: that member
    /// is a ghost of this client (a connection it lost, that the hub has not noticed yet), so it
    /// is replaced quietly, with no leave and join announced.
    fn join(&self, request: JoinRequest<'_>) -> Result<(), Invalid> {
        let JoinRequest { conn, room, nick, token, out, reply_id } = request;
        let mut rooms = self.lock();
        let entry = rooms.entry(room.clone()).or_default();
        let look_alike = nick_rules::look_alike_key(&nick);
        let takeover = match entry.holder_of(&nick, &look_alike) {
            None => false,
            Some(ghost) if ghost.same_nick && token.as_ref().is_some_and(|t| !t.is_empty()) && ghost.token == token => {
                entry.members.remove(&ghost.conn);
                true
            }
            Some(holder) => {
                let (code, reason) = if holder.same_nick {
                    (ErrorCode::NickTaken, format!("Someone in {room} is already called {nick}."))
                } else {
                    (
                        ErrorCode::NickConfusable,
                        format!("{nick} looks too much like {}, who is in {room}.", holder.nick),
                    )
                };
                // an empty room was just created by `entry`: do not leave it behind
                if entry.members.is_empty() {
                    rooms.remove(room);
                }
                return Err(Invalid { code, reason });
            }
        };
        entry.members.insert(conn, Member { nick: nick.clone(), look_alike, token, out: out.clone() });
        out.push(&ServerMsg::Joined {
            id: reply_id,
            room: room.to_string(),
            nick: nick.to_string(),
            members: entry.member_names(),
        });
        if !takeover {
            entry.broadcast(&ServerMsg::MemberJoined { room: room.to_string(), nick: nick.to_string() }, Some(conn));
        }
        Ok(())
    }

    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>) {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        let Some(member) = entry.members.remove(&conn) else { return };
        if let Some((out, id)) = reply {
            out.push(&ServerMsg::Left { id, room: room.to_string() });
        }
        if entry.members.is_empty() {
            rooms.remove(room);
        } else {
            entry.broadcast(&ServerMsg::MemberLeft { room: room.to_string(), nick: member.nick.to_string() }, None);
        }
    }

    fn room_count(&self) -> usize {
        self.lock().len()
    }
}

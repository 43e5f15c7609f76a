//! The rooms and who is in them. One `Hub` per process, shared by every connection.
//!
//! All state sits behind one `std::sync::Mutex` that is never held across an `.await`: every
//! operation is a short, synchronous critical section. Replies and broadcasts are pushed into the
//! members' bounded outbound queues *inside* that section, so everyone sees a room's events in the
//! same order, and a joiner's `joined` reply always precedes the room's next message.

use crate::{outbox::Outbox, store};
use hubbub_shared::{ChatMessage, ErrorCode, Invalid, Nick, RoomName, ServerMsg, encode};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Identifies one WebSocket connection for the lifetime of the process.
pub(crate) type ConnId = u64;

#[derive(Debug, Default)]
pub(crate) struct Hub {
    rooms: Mutex<HashMap<RoomName, Room>>,
    next_conn: AtomicU64,
}

#[derive(Debug, Default)]
struct Room {
    members: HashMap<ConnId, Member>,
}

#[derive(Debug)]
struct Member {
    nick: Nick,
    /// [`crate::nick_rules::look_alike_key`] of `nick`, computed once.
    look_alike: String,
    /// The client's secret from `join`, if it gave one: proves a later join is the same client.
    token: Option<String>,
    out: Outbox,
}

impl Room {
    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members.values().map(|m| m.nick.to_string()).collect();
        names.sort_by_key(|n| n.to_lowercase());
        names
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

impl Hub {
    pub(crate) fn new_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Number of rooms with at least one member.
    pub(crate) fn room_count(&self) -> usize {
        self.lock().len()
    }

    /// Adds `conn` to `room` (creating it), replies `joined` to it and announces it to the rest.
    ///
    /// A nickname held by a member with the same (non-empty) `token` is taken over: that member
    /// is a ghost of this client (a connection it lost, that the hub has not noticed yet), so it
    /// is replaced quietly, with no leave and join announced.
    pub(crate) fn join(
        &self,
        conn: ConnId,
        room: &RoomName,
        nick: Nick,
        token: Option<String>,
        out: &Outbox,
        reply_id: Option<String>,
    ) -> Result<(), Invalid> {
        let mut rooms = self.lock();
        let entry = rooms.entry(room.clone()).or_default();
        let look_alike = crate::nick_rules::look_alike_key(&nick);
        let holder = entry.members.iter().find(|(_, m)| m.look_alike == look_alike);
        let holder = holder.map(|(id, m)| (*id, m.nick.key() == nick.key(), m.nick.to_string(), m.token.clone()));
        let takeover = match holder {
            None => false,
            Some((ghost, true, _, held)) if token.as_ref().is_some_and(|t| !t.is_empty()) && held == token => {
                entry.members.remove(&ghost);
                true
            }
            Some((_, same, present, _)) => {
                let (code, reason) = if same {
                    (ErrorCode::NickTaken, format!("Someone in {room} is already called {nick}."))
                } else {
                    (ErrorCode::NickConfusable, format!("{nick} looks too much like {present}, who is in {room}."))
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

    /// Removes `conn` from `room`, tells the others, forgets the room when it is empty.
    /// With `reply`, the leaver gets `left` (an explicit leave; not on disconnect).
    pub(crate) fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbox, Option<String>)>) {
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

    /// Delivers a message the store has committed to everyone in its room, the author
    /// included. Called on the store's thread in commit order, which is sequence order.
    pub(crate) fn publish(&self, message: ChatMessage) {
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

/// What happens once the store decided on a message: a new one is broadcast, and the sender
/// gets its `ack` (when it gave an id) or, when the commit failed, a `storage_unavailable`
/// error and no broadcast.
pub(crate) fn on_commit(hub: Arc<Hub>) -> store::OnCommit {
    Box::new(move |outcome| match outcome {
        Ok(committed) => {
            let (room, seq) = (committed.message.room.clone(), committed.message.seq);
            if !committed.duplicate {
                hub.publish(committed.message);
            }
            if let Some(id) = committed.ack_id {
                committed.reply_to.push(&ServerMsg::Ack { id, room, seq });
            }
        }
        Err((append, reason)) => {
            append.reply_to.push(&ServerMsg::Error {
                id: append.ack_id,
                code: ErrorCode::StorageUnavailable,
                message: format!("The message was not stored: {reason}"),
                room: Some(append.room.to_string()),
                retry_after_ms: None,
            });
        }
    })
}

//! Fan-out: who hears a committed message. The message log decides *what* happened (stored,
//! with this seq); the broker decides *who is told*.
//!
//! [`Fanout`] is the seam: in-process ([`local::LocalFanout`]: the members connected to this
//! process, the embedded default) or Redis ([`redis::RedisFanout`], `--redis`: pub/sub per room
//! between hubs), chosen at start-up (`crate::app`), without the chat logic changing.

pub(crate) mod local;
pub(crate) mod redis;

use crate::{
    chat::presence::HubView,
    store::{Committed, NotStored, OnCommit, Outcome},
};
use futures_util::future::BoxFuture;
use hubbub_shared::{ChatMessage, ErrorCode, RoomName, ServerMsg};
use std::sync::Arc;

/// Delivers committed messages to the members of their room.
pub(crate) trait Fanout: Send + Sync + std::fmt::Debug {
    /// Delivers each of `messages` (the new ones of one group commit, in commit order) to every
    /// member of its room, the author included. Commit order is this hub's share of each room's
    /// seq order; it must not block (it runs on the log's writer).
    fn publish(&self, messages: Vec<ChatMessage>);

    /// Resolves once every message committed from now on in `room` (by any hub) will reach this
    /// hub's members: a join awaits it before reading the joiner's history.
    fn watch(&self, room: &RoomName) -> BoxFuture<'static, ()>;

    /// Forgets the rooms this hub has no member in any more (called a few times a second).
    fn sweep(&self);

    /// Why fan-out is degraded right now (Redis away), if it is; for `/healthz`.
    fn problem(&self) -> Option<String>;

    /// Takes `nick` (under its look-alike key `key`) in `room` for the person `claim` names, or
    /// confirms it is theirs already, across every hub: `Err` with the holder's nickname when
    /// someone else has it. The hub's own room check follows. In-process there is only that
    /// check: always `Ok`.
    fn claim_nick(
        &self,
        _room: &RoomName,
        _key: &str,
        _claim: &str,
        _nick: &str,
    ) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Tells every connection of `person` (the digest of their identity), on every hub.
    fn tell(&self, person: &str, msg: &ServerMsg);

    /// The claim (the digest of the person's identity) and the nickname of whoever holds the
    /// nickname with look-alike key `key` in `room` on another hub; for `dm`. In-process there
    /// are no other hubs.
    fn nick_holder(&self, _room: &RoomName, _key: &str) -> BoxFuture<'static, Option<(String, String)>> {
        Box::pin(std::future::ready(None))
    }

    /// The rooms that only other hubs have people in, with how many people (each once) their
    /// views show there; for `rooms`. In-process: there are no other hubs.
    fn remote_room_sizes(&self) -> BoxFuture<'static, Vec<(String, u64)>> {
        Box::pin(std::future::ready(Vec::new()))
    }

    /// The other hubs' views of `room`'s people, read when this hub's first member joins it, so
    /// that their `joined` lists everyone. In-process: there are no other hubs.
    fn load_views(&self, _room: &RoomName) -> BoxFuture<'static, Vec<(String, HubView)>> {
        Box::pin(std::future::ready(Vec::new()))
    }
}

/// What happens once the log decided on a group commit's messages: the new ones are published
/// (together: a member gets a room's messages of one commit in one frame), then each sender
/// gets its `ack` (when it gave an id), so that its own copy arrives before the ack; a change the
/// log refused (`not_author`, `no_such_message`) is told to the sender alone; when the commit
/// failed, the senders get `storage_unavailable` and nobody hears of the messages.
pub(crate) fn after_commit(fanout: Arc<dyn Fanout>) -> OnCommit {
    Box::new(move |outcome| match outcome {
        Ok(committed) => {
            let fresh: Vec<ChatMessage> = committed
                .iter()
                .filter_map(|c| match &c.outcome {
                    Outcome::New(message) => Some(message.clone()),
                    _ => None,
                })
                .collect();
            if !fresh.is_empty() {
                fanout.publish(fresh);
            }
            committed.into_iter().for_each(reply);
        }
        Err(NotStored { appends, reason }) => {
            for append in appends {
                append.reply_to.push(&ServerMsg::Error {
                    id: append.ack_id,
                    code: ErrorCode::StorageUnavailable,
                    message: format!("The message was not stored: {reason}"),
                    room: Some(append.room.to_string()),
                    retry_after_ms: None,
                });
            }
        }
    })
}

/// The sender's answer to one append's outcome (its copy, if new, is published already).
fn reply(Committed { room, outcome, ack_id, reply_to }: Committed) {
    let seq = match outcome {
        Outcome::New(message) | Outcome::Duplicate(message) => message.seq,
        Outcome::Refused(code, message) => {
            let room = Some(room.to_string());
            reply_to.push(&ServerMsg::Error { id: ack_id, code, message, room, retry_after_ms: None });
            return;
        }
    };
    if let Some(id) = ack_id {
        reply_to.push(&ServerMsg::Ack { id, room: room.to_string(), seq });
    }
}

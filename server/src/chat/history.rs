//! History replies: the page after a `joined`, the catch-up of a `resume`, and older pages on
//! request. Each runs as its own task (reads may wait on the database) and answers with one
//! `history` frame, or a `storage_unavailable` error.

use super::{ChatDeps, Refusal, session::refuse};
use crate::{
    net::Outbound,
    store::{MessageLog, Range, ReadMove, ReadState, StoreError},
};
use hubbub_shared::{ChatMessage, ErrorCode, RoomName, ServerMsg, cursor::Cursor};
use std::sync::Arc;

/// Sends the `history` that follows a `joined` (or answers `resume`): the messages after the
/// `since` cursor when it is valid and the gap is within the limit (`recovered: true`), else the
/// latest page (and an `invalid_cursor` error first when the cursor is not one of this room).
/// After a join of a person with an identity (`reader`), their read position follows (`read`).
pub(crate) async fn send_since(
    deps: ChatDeps,
    room: RoomName,
    since: Option<String>,
    id: Option<String>,
    out: Outbound,
    reader: Option<String>,
) {
    send_history_since(&deps, &room, since, id, &out).await;
    if let Some(person) = reader {
        let from_start = room.is_conversation();
        match deps.log.read_position(&person, &room, ReadMove::Stay { from_start }).await {
            Ok(read) => out.push(&read_frame(&room, read)),
            Err(e) => refuse(&out, None, Refusal::about(&room, ErrorCode::StorageUnavailable, e.to_string())),
        }
    }
}

/// The `read` frame of a read position.
pub(crate) fn read_frame(room: &RoomName, read: ReadState) -> ServerMsg {
    ServerMsg::Read { room: room.to_string(), seq: read.seq, unread: read.unread, up_to: read.up_to }
}

async fn send_history_since(
    deps: &ChatDeps,
    room: &RoomName,
    since: Option<String>,
    id: Option<String>,
    out: &Outbound,
) {
    // first make sure the room's live messages reach this hub, then read: every message is in
    // the history or arrives live (or both: clients keep one copy per seq)
    deps.fanout.watch(room).await;
    let log = &deps.log;
    let page = deps.config.history_page;
    let Some(since) = since else {
        // a plain join: the newest page, read at once (no head first: one read, not two, for
        // each of a storm of joins)
        let latest = Range { after: 0, up_to: u64::MAX, limit: page, newest: true };
        return push_history(out, id, room, log.page(room, latest).await, false);
    };
    let head = match log.head(room).await {
        Ok(head) => head,
        Err(e) => return push_history(out, id, room, Err(e), false),
    };
    let latest = Range { after: 0, up_to: head, limit: page, newest: true };
    let (raw, cursor) = (since.as_str(), Cursor::parse(&since));
    let (range, recovered) = match cursor {
        Some(c) if c.epoch != log.epoch() => {
            tracing::debug!(cursor = raw, "stale cursor from another database");
            (latest, false)
        }
        Some(c) if c.room == room.as_str() && c.seq <= head => {
            if head - c.seq <= deps.config.resume_gap_limit {
                let gap = (head - c.seq) as usize;
                (Range { after: c.seq, up_to: head, limit: gap, newest: false }, true)
            } else {
                (latest, false)
            }
        }
        _ => {
            let reason = format!("{raw:?} is not a cursor of {room} (EPOCH:ROOM:SEQ, SEQ at most {head})");
            refuse(out, id.clone(), Refusal::about(room, ErrorCode::InvalidCursor, reason));
            (latest, false)
        }
    };
    let page = log.page(room, range).await;
    push_history(out, id, room, page, recovered);
}

/// Answers a `history` request: up to `limit` messages before `before`, newest of them.
pub(crate) async fn send_older(
    log: Arc<dyn MessageLog>,
    room: RoomName,
    before: u64,
    limit: usize,
    id: Option<String>,
    out: Outbound,
) {
    let range = Range { after: 0, up_to: before.saturating_sub(1), limit, newest: true };
    let page = log.page(&room, range).await;
    push_history(&out, id, &room, page, true);
}

fn push_history(
    out: &Outbound,
    id: Option<String>,
    room: &RoomName,
    page: Result<Vec<ChatMessage>, StoreError>,
    recovered: bool,
) {
    match page {
        Ok(messages) => {
            let more = messages.first().is_some_and(|m| m.seq > 1);
            out.push(&ServerMsg::History { id, room: room.to_string(), messages, recovered, more });
        }
        Err(e) => {
            refuse(out, id, Refusal::about(room, ErrorCode::StorageUnavailable, e.to_string()));
        }
    }
}

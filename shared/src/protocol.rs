//! The messages themselves. Every frame is one JSON object with a `type` tag in snake_case.

use serde::{Deserialize, Serialize};

/// What a client may send. `id` is an optional request id chosen by the client; the hub echoes
/// it in the direct reply (`joined`, `left`, `error`) so a client can match answers to requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Join `room` (created on first join) under nickname `nick`. The reply `joined` is
    /// followed by `history`: the latest page, or with `since` (a cursor, see
    /// [`crate::cursor`]) exactly the messages after it when the gap is small enough.
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        nick: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        /// A secret the client keeps (a page: in local storage). A join whose nickname is held
        /// by a member that joined with the same token takes that membership over (the old
        /// connection is a ghost of this client) instead of being refused `nick_taken`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Older messages of a joined room: up to `limit` (clamped to 1–100, default 50) before
    /// sequence number `before`; reply `history`.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        before: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// More of a joined room's member list: up to `limit` (clamped to 1–500, default 100)
    /// members whose names sort after `after` (case-insensitively), or the first ones without
    /// it; reply `members`.
    Members {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Leave `room`; the others see the person among `left` in the next `presence`.
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
    },
    /// Catch up on a joined room after `lagged` (or any doubt): reply `history` with the
    /// messages after the cursor, exactly as for `join` with `since`.
    Resume {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        since: String,
    },
    /// The rooms people are in right now, biggest first (at most 100); reply `rooms`. For a
    /// "browse rooms" view: any room can be joined by name.
    Rooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Messages of the rooms this connection is in (or of `room` alone, which it must be in)
    /// that contain every word of `query` (as the beginning of a word: see
    /// [`crate::search`]), newest first, at most `limit` (clamped to 1–50, default 20);
    /// reply `found`. Edits are found by their latest text; deleted messages are not found.
    Search {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        query: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Sign-in mode (the hub says `auth` in `welcome`): the connection token from the host
    /// application, first, and again before it expires; reply `authed`. A bad token is refused
    /// (`invalid_token`, `token_expired`) and the connection closed (4005).
    Auth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        token: String,
    },
    /// Add two integers (the seed's JSON request/response service); reply `sum`.
    Add {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        a: i64,
        b: i64,
    },
    /// The person is typing in `room`. Send at most every 3 s while they type; the hub tells the
    /// room (`typing`), clears it when they send, and forgets it 6 s after the last one.
    /// Ephemeral: never stored, never acknowledged.
    Typing { room: String },
    /// The page became hidden or visible (the Page Visibility API). A member whose every
    /// connection has been hidden for 5 minutes is shown as away (`member_state`).
    Visibility { hidden: bool },
    /// Change the text of one's own message `seq` in `room` to `text`. Stored like a send: it
    /// takes the room's next sequence number and reaches every member as a `message` with
    /// `edits: seq`; with an `id` it is acknowledged (`ack`) once stored, and a resend of the same
    /// id is acknowledged again and never applied twice. Refused with `not_author` for someone
    /// else's message, `no_such_message` for one that does not exist or was deleted.
    Edit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        seq: u64,
        text: String,
    },
    /// Delete one's own message `seq` in `room`: as `edit`, with `deleted` and no text.
    Delete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        seq: u64,
    },
    /// Start a direct conversation with the person called `nick` in `room` (a room this
    /// connection is in), or find the one the two of you have already: reply `conversations`
    /// with it. Both people's connections (every tab, on every hub) get it in `conversations`
    /// too, and then join it like a room (its name, `@` and 24 hex digits, is in the reply). Only
    /// those two people can ever join it; it needs an identity (the `token` of `join`, or the
    /// signed-in person), and not oneself. Refused with `no_such_member` otherwise.
    Dm {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        nick: String,
    },
    /// The person has read `room` (a room or conversation this connection is in) up to `seq`.
    /// The hub keeps the highest position per person and tells every connection of theirs
    /// (`read`); no reply otherwise.
    Read { room: String, seq: u64 },
    /// Say `text` in `room`. The author, sequence number and time are the hub's, never the
    /// client's. With an `id` (client-generated, unique per message) the hub answers `ack` once
    /// the message is on disk, and a resend of the same id is acknowledged again with the same
    /// sequence number, never stored or broadcast twice.
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        text: String,
    },
}

impl ClientMsg {
    /// The client's request id, if it gave one.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientMsg::Join { id, .. }
            | ClientMsg::History { id, .. }
            | ClientMsg::Resume { id, .. }
            | ClientMsg::Leave { id, .. }
            | ClientMsg::Members { id, .. }
            | ClientMsg::Auth { id, .. }
            | ClientMsg::Add { id, .. }
            | ClientMsg::Rooms { id, .. }
            | ClientMsg::Search { id, .. }
            | ClientMsg::Edit { id, .. }
            | ClientMsg::Delete { id, .. }
            | ClientMsg::Dm { id, .. }
            | ClientMsg::Send { id, .. } => id.as_deref(),
            ClientMsg::Typing { .. } | ClientMsg::Visibility { .. } | ClientMsg::Read { .. } => None,
        }
    }
}

/// A chat message as the hub accepted it and as every member of the room receives it, or a
/// change to an earlier one (`edits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Canonical room name.
    pub room: String,
    /// Per-room sequence number: starts at 1 and only grows.
    pub seq: u64,
    /// The author's nickname in this room, taken from the connection.
    pub author: String,
    pub text: String,
    /// Server time of acceptance, milliseconds since the Unix epoch.
    pub ts: u64,
    /// The author's client id for this message, when it gave one: lets the author's page
    /// replace its pending copy with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Set on an edit or a deletion: the `seq` of the message it changes (by the same author, in
    /// the same room). Its own `seq` orders it with everything else (resume and gaps work as for
    /// messages); a client applies it to that message (new `text`, or `deleted`) and shows no
    /// line of its own for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<u64>,
    /// The text was changed after it was sent: history and resume give the latest text.
    #[serde(default, skip_serializing_if = "is_false")]
    pub edited: bool,
    /// Deleted by its author: the text is gone (empty).
    #[serde(default, skip_serializing_if = "is_false")]
    pub deleted: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What the hub sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First frame on every connection. `epoch` names the hub's database; cursors from
    /// another epoch are stale.
    Welcome {
        protocol: u32,
        epoch: String,
        limits: Limits,
        /// Present in sign-in mode: send `auth` with a token first (from `token_url`, the host
        /// application's endpoint, when the operator configured one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<AuthInfo>,
    },
    /// Reply to `auth`: signed in as `name` (the nickname every join uses) until `expires_at`
    /// (ms since the Unix epoch); send a fresh `auth` before then.
    Authed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        name: String,
        expires_at: u64,
    },
    /// Reply to `join`: the canonical names, how many people are in the room (`count`, sender
    /// included, each person once however many connections they have) and the first page of
    /// them (`members`, sorted case-insensitively; `members` requests fetch more); `away` names
    /// those of the page shown as away.
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        nick: String,
        members: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<String>,
        count: u64,
    },
    /// Reply to `leave`.
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
    },
    /// A page of a room's member list, sorted case-insensitively: the reply to `members`
    /// (`after` echoes the request's), or, unasked and without `after`, a fresh first page for a
    /// reader whose `presence` frames were dropped (it replaces what the client had). `more`
    /// says members sort after the last one; `away` names those of the page shown as away.
    Members {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        members: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<String>,
        count: u64,
        more: bool,
    },
    /// What changed in a room's member list since the last `presence` frame, sent at most a few
    /// times a second: people who joined (their first connection arrived), who left (on
    /// purpose from their last connection, or gone for the grace period), who became away
    /// (every connection hidden for 5 minutes) or came back; `count` is the room's size after.
    /// A join and a leave within one frame cancel out. Droppable for a reader who is behind:
    /// it gets an unasked `members` snapshot instead.
    Presence {
        room: String,
        count: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        back: Vec<String>,
    },
    /// Who is typing in `room` now (the whole set, each time it changes; the page leaves out
    /// its own nickname). Ephemeral: dropped for a reader who is behind.
    Typing { room: String, nicks: Vec<String> },
    /// A chat message, to every member of the room including its author.
    Message(ChatMessage),
    /// A `send` with an id was stored as `seq` (sent again for a resend of the same id).
    Ack { id: String, room: String, seq: u64 },
    /// Stored messages of a room, oldest first: after `joined`, and in reply to `history`.
    /// `recovered` is true when they continue exactly from the `since` cursor of the join (or
    /// answer a `history` request); false means a gap may precede them. `more` says older
    /// messages exist before the first one.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: String,
        messages: Vec<ChatMessage>,
        recovered: bool,
        more: bool,
    },
    /// This connection read too slowly: live messages of `room` from `from_seq` on were
    /// dropped for it. Catch up with `resume` from the last message you have.
    Lagged { room: String, from_seq: u64 },
    /// Reply to `add`.
    Sum {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        sum: i64,
    },
    /// Reply to `rooms`: the active rooms with how many people are in each, biggest first,
    /// then by name; at most 100.
    Rooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        rooms: Vec<RoomSize>,
    },
    /// Reply to `search`: the matching messages, newest first, and the words looked for
    /// (`terms`, lower case), so a client highlights exactly the words that matched
    /// ([`crate::search::marks`]).
    Found {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        terms: Vec<String>,
        messages: Vec<ChatMessage>,
    },
    /// The person's direct conversations: all of them, unasked, after the first `join` of a
    /// connection with an identity; one, when it starts (to every connection of both people;
    /// with the `id` of the `dm` that asked, on the asking connection).
    Conversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        conversations: Vec<Conversation>,
    },
    /// The person's read position in `room`: after the `history` that follows each `joined`,
    /// and whenever any connection of theirs moves it (`read`). `unread` counts the messages
    /// of others after `seq` up to `up_to` (the newest the hub had then; at most 1,000), so a
    /// client adds the messages of others it receives after `up_to`. A person's first join of
    /// a room starts at its newest message (nothing unread); a conversation starts at nothing
    /// read.
    Read { room: String, seq: u64, unread: u64, up_to: u64 },
    /// A request was refused. The connection stays open.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        /// With `rate_limited`: how long to wait before the next message is accepted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// A direct conversation in a `conversations` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation's name: join, send, search and resume it as a room.
    pub room: String,
    /// The other person's nickname in it (theirs when it started).
    pub with: String,
}

/// A room in a `rooms` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSize {
    pub room: String,
    /// People in it (each person once, across every hub).
    pub count: u64,
}

/// Sign-in mode, as `welcome` announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthInfo {
    /// Where a page gets its connection token (the host application's endpoint), if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
}

/// The hub's limits, announced in `welcome` so the page can check before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest inbound WebSocket message, in bytes.
    pub max_message_bytes: usize,
    /// Longest chat text, in characters (Unicode scalar values).
    pub max_text_chars: usize,
    /// How many rooms one connection may be in at once.
    pub max_rooms: usize,
}

/// Why a request was refused. Stable strings: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// The `type` tag is missing or names no known message.
    UnknownType,
    /// A known type with missing fields or fields of the wrong type.
    InvalidMessage,
    NickEmpty,
    NickTooLong,
    /// Control, bidi-override or zero-width characters.
    NickForbiddenChar,
    /// Someone in the room already uses this nickname (ignoring case).
    NickTaken,
    /// The nickname looks like one already in the room (confusable characters).
    NickConfusable,
    /// The nickname is reserved (admin, system, ...).
    NickReserved,
    RoomEmpty,
    RoomTooLong,
    /// Room names are letters, digits, `-`, `_` and `.`.
    RoomForbiddenChar,
    TextEmpty,
    TextTooLong,
    /// Control characters other than newline and tab.
    TextForbiddenChar,
    /// `join` for a room this connection is already in.
    AlreadyJoined,
    /// `send` or `leave` for a room this connection has not joined.
    NotMember,
    /// `join` beyond the per-connection room limit.
    TooManyRooms,
    /// `add` whose sum does not fit in a signed 64-bit integer.
    Overflow,
    /// A `since` cursor that is malformed, of another room, or ahead of the room's history.
    InvalidCursor,
    /// The database could not store the message (it was not acknowledged or broadcast).
    StorageUnavailable,
    /// Over the per-connection message rate; nothing was done. See `retry_after_ms`.
    RateLimited,
    /// Sign-in mode: a request before `auth`.
    Unauthorized,
    /// Sign-in mode: a token that is malformed, wrongly signed or lacks `sub` or `name`.
    InvalidToken,
    /// Sign-in mode: a token past its `exp`.
    TokenExpired,
    /// `edit` or `delete` of a message that is not this person's.
    NotAuthor,
    /// `edit` or `delete` of a message that does not exist in the room, was deleted, or is
    /// itself an edit.
    NoSuchMessage,
    /// `search` whose query has no letters or digits to look for.
    QueryEmpty,
    /// `join` of a conversation name (`@…`) that is not one of this person's: whether it exists
    /// or not, the answer is the same.
    NoSuchConversation,
    /// `dm` to a nickname nobody has in that room, to oneself, or without an identity.
    NoSuchMember,
}

impl ErrorCode {
    /// Every code (the docs' table is checked against this list by the server's tests).
    pub const ALL: [ErrorCode; 30] = [
        ErrorCode::BadJson,
        ErrorCode::UnknownType,
        ErrorCode::InvalidMessage,
        ErrorCode::NickEmpty,
        ErrorCode::NickTooLong,
        ErrorCode::NickForbiddenChar,
        ErrorCode::NickTaken,
        ErrorCode::NickConfusable,
        ErrorCode::NickReserved,
        ErrorCode::RoomEmpty,
        ErrorCode::RoomTooLong,
        ErrorCode::RoomForbiddenChar,
        ErrorCode::TextEmpty,
        ErrorCode::TextTooLong,
        ErrorCode::TextForbiddenChar,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotMember,
        ErrorCode::TooManyRooms,
        ErrorCode::Overflow,
        ErrorCode::InvalidCursor,
        ErrorCode::StorageUnavailable,
        ErrorCode::RateLimited,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidToken,
        ErrorCode::TokenExpired,
        ErrorCode::NotAuthor,
        ErrorCode::NoSuchMessage,
        ErrorCode::QueryEmpty,
        ErrorCode::NoSuchConversation,
        ErrorCode::NoSuchMember,
    ];

    /// The wire string of this code, e.g. `nick_taken`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::NickEmpty => "nick_empty",
            ErrorCode::NickTooLong => "nick_too_long",
            ErrorCode::NickForbiddenChar => "nick_forbidden_char",
            ErrorCode::NickTaken => "nick_taken",
            ErrorCode::NickConfusable => "nick_confusable",
            ErrorCode::NickReserved => "nick_reserved",
            ErrorCode::RoomEmpty => "room_empty",
            ErrorCode::RoomTooLong => "room_too_long",
            ErrorCode::RoomForbiddenChar => "room_forbidden_char",
            ErrorCode::TextEmpty => "text_empty",
            ErrorCode::TextTooLong => "text_too_long",
            ErrorCode::TextForbiddenChar => "text_forbidden_char",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::Overflow => "overflow",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::NoSuchMessage => "no_such_message",
            ErrorCode::QueryEmpty => "query_empty",
            ErrorCode::NoSuchConversation => "no_such_conversation",
            ErrorCode::NoSuchMember => "no_such_member",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ErrorCode::ALL` lists every code once: a new variant does not compile here until it is
    /// placed in this match, and then the count check asks for it in `ALL`.
    #[test]
    fn all_error_codes_are_listed_once() {
        let position = |c: ErrorCode| match c {
            ErrorCode::BadJson => 0,
            ErrorCode::UnknownType => 1,
            ErrorCode::InvalidMessage => 2,
            ErrorCode::NickEmpty => 3,
            ErrorCode::NickTooLong => 4,
            ErrorCode::NickForbiddenChar => 5,
            ErrorCode::NickTaken => 6,
            ErrorCode::NickConfusable => 7,
            ErrorCode::NickReserved => 8,
            ErrorCode::RoomEmpty => 9,
            ErrorCode::RoomTooLong => 10,
            ErrorCode::RoomForbiddenChar => 11,
            ErrorCode::TextEmpty => 12,
            ErrorCode::TextTooLong => 13,
            ErrorCode::TextForbiddenChar => 14,
            ErrorCode::AlreadyJoined => 15,
            ErrorCode::NotMember => 16,
            ErrorCode::TooManyRooms => 17,
            ErrorCode::Overflow => 18,
            ErrorCode::InvalidCursor => 19,
            ErrorCode::StorageUnavailable => 20,
            ErrorCode::RateLimited => 21,
            ErrorCode::Unauthorized => 22,
            ErrorCode::InvalidToken => 23,
            ErrorCode::TokenExpired => 24,
            ErrorCode::NotAuthor => 25,
            ErrorCode::NoSuchMessage => 26,
            ErrorCode::QueryEmpty => 27,
            ErrorCode::NoSuchConversation => 28,
            ErrorCode::NoSuchMember => 29,
        };
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(position(code), i, "{}", code.as_str());
        }
    }
}

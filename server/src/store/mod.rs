//! The message log: what must last. Every accepted chat message is committed here before
//! anyone hears of it, and every history page, resume and head comes from here.
//!
//! [`MessageLog`] is the seam: the chat logic talks to `Arc<dyn MessageLog>` and never learns
//! which engine is behind it: SQLite ([`sqlite::SqliteLog`], the embedded default) or
//! PostgreSQL ([`postgres::PgLog`], `--database`, shared by many hubs), chosen at start-up
//! (`crate::app`).
//!
//! The contract every engine keeps:
//! - **group commit, then hand over in order**: appends are committed in batches, and only after
//!   a batch's COMMIT are its outcomes handed to the [`OnCommit`] callback, all at once, in
//!   commit order. That order is each room's `seq` order, so fan-out from the callback keeps
//!   rooms ordered (and can send a room's messages of one commit as one frame), and
//!   "acknowledged" always means "committed".
//! - **gap-free per-room `seq`**, allocated inside the transaction that stores the message.
//! - **dedupe by client id**: a resend with a stored `(room, client_id)` is reported as a
//!   duplicate with the first copy, and nothing new is written.
//! - **an epoch** naming the database, so a cursor from another database is recognised.
//! - **edits and deletions** are appends too: one takes the room's next `seq` (so it reaches
//!   everyone, and resumes, in order) and, in the same transaction, changes the message it
//!   targets, so history and resume give the latest text. Only the author may change a message:
//!   each row keeps its author's `author_key` (a digest of the person's identity, the one that
//!   holds nicknames), and a change by another person, or of a missing, deleted or edit row, is
//!   [`Outcome::Refused`] with nothing written.
//! - **search** by words ([`hubbub_shared::search`]): every stored message is indexed by its
//!   words in the transaction that stores it, an edit re-indexes its target and a deletion
//!   removes it, so a search finds what history shows. SQLite uses FTS5, PostgreSQL a GIN
//!   index over a `tsvector`; both index the very words the hub computes (never a database
//!   parser's idea of a word), so both engines find the same messages.
//! - **people's own records**: the direct conversations ([`Conversation`]: which two people may
//!   join one) and each person's read position per room ([`ReadState`]), written at once (not
//!   through the group commit: they are not messages and nobody waits on their order).

mod migrations;
pub(crate) mod postgres;
pub(crate) mod sqlite;
mod tails;

use crate::net::Outbound;
use futures_util::future::BoxFuture;
use hubbub_shared::{ChatMessage, ErrorCode, RoomName};

/// Durability of a commit (SQLite's `PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// fsync at every commit: an acknowledged message survives power loss.
    Full,
    /// WAL's default trade-off: survives a crash of the process, not always of the machine.
    Normal,
}

/// Why the log could not do what was asked. Shown to clients as `storage_unavailable`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database engine refused or failed (locked past the busy timeout, disk full ...).
    #[error("storage is unavailable: {0}")]
    Unavailable(#[from] rusqlite::Error),
    /// The file system failed before the database could be opened (folder, temp file, thread).
    #[error("storage is unavailable: {0}")]
    Io(#[from] std::io::Error),
    /// PostgreSQL refused or failed, or could not be reached; with the server's own message.
    #[error("storage is unavailable: {0}")]
    Postgres(String),
    /// The database did not answer in time.
    #[error("storage is unavailable: timed out {0}")]
    Timeout(&'static str),
    /// The writer has stopped (the hub is shutting down).
    #[error("the storage writer has stopped")]
    Stopped,
}

impl From<tokio_postgres::Error> for StoreError {
    /// tokio-postgres shows a server error as just "db error": keep what the server said.
    fn from(err: tokio_postgres::Error) -> Self {
        StoreError::Postgres(match err.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => err.to_string(),
        })
    }
}

/// The client's own id from a stored one: `c:ID` is a client's id, `s:…` one the hub made up.
fn public_id(stored: &str) -> Option<String> {
    stored.strip_prefix("c:").map(str::to_owned)
}

/// Milliseconds since the Unix epoch: a message's `ts`, a conversation's start.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A sequence number as the databases store it (signed 64-bit).
fn db_seq(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// A chat message to store, or a change to an earlier one.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) room: RoomName,
    pub(crate) author: String,
    /// Who the author is, as a digest of their identity: only they may change the message.
    pub(crate) author_key: String,
    /// The message's text, or the new text of an edit (empty for a deletion).
    pub(crate) text: String,
    /// Set for an edit or a deletion: which message it changes.
    pub(crate) change: Option<Change>,
    /// The client's id for this message: a resend with the same id in the same room is a
    /// duplicate, acknowledged with the first one's sequence number and not stored again.
    pub(crate) client_id: String,
    /// The id to acknowledge with, when the client gave one.
    pub(crate) ack_id: Option<String>,
    /// The sender's outbound queue. The log only carries it through the commit, so that the
    /// acknowledgement is queued in commit order, after the broadcast.
    pub(crate) reply_to: Outbound,
}

/// An edit or a deletion of message `target` of the same room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) target: u64,
    pub(crate) delete: bool,
}

/// What a committed transaction did with one [`Append`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Stored under a new `seq`: published to the room, then acknowledged.
    New(ChatMessage),
    /// A resend of an already stored message (nothing new was written): acknowledged again.
    Duplicate(ChatMessage),
    /// A change that may not be made: `not_author`, `no_such_message`; nothing was written.
    Refused(ErrorCode, String),
}

/// What happened to an [`Append`] whose transaction committed.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) room: RoomName,
    pub(crate) outcome: Outcome,
    pub(crate) ack_id: Option<String>,
    pub(crate) reply_to: Outbound,
}

impl Committed {
    pub(crate) fn new(append: Append, outcome: Outcome) -> Committed {
        Committed { room: append.room, outcome, ack_id: append.ack_id, reply_to: append.reply_to }
    }
}

/// Why a change to message `target` is refused, from the target's row (`None`: no such row):
/// its author's key, whether it is itself a change, whether it was deleted.
fn refuse_change(
    target: u64,
    row: Option<(Option<String>, bool, bool)>,
    author_key: &str,
) -> Option<(ErrorCode, String)> {
    match row {
        None | Some((_, true, _)) => Some((ErrorCode::NoSuchMessage, format!("There is no message {target} here."))),
        Some((_, _, true)) => Some((ErrorCode::NoSuchMessage, format!("Message {target} was deleted."))),
        Some((key, ..)) if key.as_deref() != Some(author_key) => {
            Some((ErrorCode::NotAuthor, format!("Message {target} is someone else's: only its author can change it.")))
        }
        Some(_) => None,
    }
}

/// What a stored append is as everyone receives it: the message, or for a change the new text
/// (none for a deletion) for its target. The same for every engine.
fn stored_message(room: &str, seq: u64, a: &Append, ts: u64) -> ChatMessage {
    let delete = a.change.is_some_and(|c| c.delete);
    ChatMessage {
        room: room.to_owned(),
        seq,
        author: a.author.clone(),
        text: if delete { String::new() } else { a.text.clone() },
        ts,
        id: public_id(&a.client_id),
        edits: a.change.map(|c| c.target),
        edited: a.change.is_some() && !delete,
        deleted: delete,
    }
}

/// The words a message is found by: its text's distinct words, space-separated (what both
/// engines index).
fn index_words(text: &str) -> String {
    hubbub_shared::search::index_words(text).join(" ")
}

/// A group commit that failed, and why: none of its appends was stored.
#[derive(Debug)]
pub(crate) struct NotStored {
    pub(crate) appends: Vec<Append>,
    pub(crate) reason: String,
}

/// Called by the log's writer once per group commit: each append's outcome in commit order, or
/// the whole batch not stored.
pub(crate) type OnCommit = Box<dyn Fn(Result<Vec<Committed>, NotStored>) + Send>;

/// Which messages of a room a page holds: `after < seq <= up_to`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) after: u64,
    pub(crate) up_to: u64,
    pub(crate) limit: usize,
    /// The `limit` newest of the range when set (a history page), else the oldest (a resume).
    pub(crate) newest: bool,
}

/// A direct conversation: its name and its two people, each as (person, nickname): the person
/// is the digest of their identity (as `Append::author_key`), the nickname theirs when it began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conversation {
    pub(crate) room: RoomName,
    pub(crate) people: [(String, String); 2],
}

impl Conversation {
    /// The conversation of two people: its name comes from their two digests, in either order,
    /// so asking again (or from the other side) finds the same one.
    pub(crate) fn between(a: (String, String), b: (String, String)) -> Conversation {
        use sha2::{Digest, Sha256};
        let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
        let digest = Sha256::digest(format!("conversation:{}:{}", first.0, second.0));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Conversation { room: RoomName::conversation(&hex), people: [first, second] }
    }

    /// The other person of the two, as (person, nickname), if `person` is one of them.
    pub(crate) fn other(&self, person: &str) -> Option<&(String, String)> {
        match &self.people {
            [(a, _), b] if a == person => Some(b),
            [a, (b, _)] if b == person => Some(a),
            _ => None,
        }
    }
}

/// A person's read position in a room, and what is unread after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadState {
    /// Everything up to this seq has been read.
    pub(crate) seq: u64,
    /// Messages of others (not edits, not deleted) after `seq` up to `up_to`, at most
    /// [`MAX_UNREAD`].
    pub(crate) unread: u64,
    /// The room's newest seq when this was counted.
    pub(crate) up_to: u64,
}

/// Unread messages are counted up to this many (a page shows "999+" long before).
pub(crate) const MAX_UNREAD: u64 = 1000;

/// Where a person's read position in a room moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadMove {
    /// Read up to this seq (never back, never past the newest message).
    To(u64),
    /// Stays where it is; a person without one yet starts at the newest message (a room:
    /// what was said before they came is not "unread") or at nothing read (`from_start`: a
    /// conversation, whose every message was meant for them).
    Stay { from_start: bool },
}

/// How both engines write a [`ReadMove`]: the position a new row starts at (the query caps it
/// at the room's newest seq), and whether an existing row moves up to it (only when that is
/// higher: otherwise the row is not written at all).
fn read_move_sql(to: ReadMove) -> (i64, bool) {
    match to {
        ReadMove::To(seq) => (db_seq(seq), true),
        ReadMove::Stay { from_start: true } => (0, false),
        ReadMove::Stay { from_start: false } => (i64::MAX, false),
    }
}

/// The durable history of every room. See the module docs for the contract.
pub(crate) trait MessageLog: Send + Sync + std::fmt::Debug {
    /// Random id of this database, made when it was created; part of every resume cursor.
    fn epoch(&self) -> &str;

    /// Queues a message for the next group commit; never blocks. The outcome goes to the
    /// log's [`OnCommit`].
    fn append(&self, append: Append) -> Result<(), StoreError>;

    /// The messages of `room` in `range`, oldest first.
    fn page(&self, room: &RoomName, range: Range) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>>;

    /// The sequence number of `room`'s newest message (0 when it has none).
    fn head(&self, room: &RoomName) -> BoxFuture<'static, Result<u64, StoreError>>;

    /// The messages of `rooms` whose words begin with every one of `terms` (lower case, as
    /// [`hubbub_shared::search::terms`] makes them), newest first, at most `limit`. Rows that
    /// edit or delete another are never found, nor are deleted messages.
    fn search(
        &self,
        rooms: Vec<RoomName>,
        terms: Vec<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>>;

    /// Starts `conversation` unless it exists; either way, the stored one.
    fn start_conversation(&self, conversation: Conversation) -> BoxFuture<'static, Result<Conversation, StoreError>>;

    /// The conversation named `room`, if there is one.
    fn conversation(&self, room: &RoomName) -> BoxFuture<'static, Result<Option<Conversation>, StoreError>>;

    /// Every conversation `person` is in, oldest first.
    fn conversations(&self, person: &str) -> BoxFuture<'static, Result<Vec<Conversation>, StoreError>>;

    /// Moves (or reads) `person`'s read position in `room` and counts what is unread after it.
    fn read_position(
        &self,
        person: &str,
        room: &RoomName,
        to: ReadMove,
    ) -> BoxFuture<'static, Result<ReadState, StoreError>>;

    /// Whether the database answers (for `/healthz`).
    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// Commits what is queued, stops the writer and waits for it. Appends after this fail
    /// with [`StoreError::Stopped`]. Called once, at the end of shutdown.
    fn close(&self) -> BoxFuture<'static, ()>;
}

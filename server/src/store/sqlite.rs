//! The embedded message log: one SQLite file (WAL), the default engine.
//!
//! Writes go through one thread that owns the write connection and commits in groups: it takes
//! every request that is waiting (up to [`MAX_BATCH`]), runs them in one transaction, and only
//! after `COMMIT` returns hands the batch's outcomes to `on_commit`, in commit order. SQLite
//! has one writer anyway; one thread that batches turns that into throughput (one fsync per
//! batch).
//!
//! Reads (history pages, heads) use a second connection on one reader thread of its own; WAL
//! lets them run beside the writer.

use super::{
    Append, Committed, Conversation, Durability, MAX_UNREAD, MessageLog, NotStored, OnCommit, Outcome, Range, ReadMove,
    ReadState, StoreError, db_seq, index_words, migrations, now_ms, public_id, read_move_sql, refuse_change,
    stored_message, tails::Tails,
};
use crate::stats::Stats;
use futures_util::{FutureExt, future::BoxFuture};
use hubbub_shared::{ChatMessage, RoomName};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, mpsc as std_mpsc},
    thread::JoinHandle,
    time::Duration,
};

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 1024;

/// What the writer thread is asked to do, in order.
// nearly every write is an Append: boxing it would cost an allocation per message for the
// sake of the one Close
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Write {
    Append(Append),
    /// Read this room's newest page and keep it in [`Tails`] (a read missed it).
    Fill(String),
    /// Commit everything queued before this, then stop.
    Close,
}

/// A read to run on the reader thread (history pages, heads, search, read positions): one at
/// a time, in the order asked; reads are short.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

#[derive(Debug)]
pub(crate) struct SqliteLog {
    /// The writer thread's queue: unbounded so that `append` never blocks a connection task;
    /// the rate limits bound what one client can put in it.
    writes: std_mpsc::Sender<Write>,
    /// The writer thread, joined by [`MessageLog::close`] so shutdown ends after the last commit.
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Reads for the reader thread, which owns the read connection and runs them in order.
    reads: std_mpsc::Sender<ReadJob>,
    /// The newest page of busy rooms, kept by the writer: most joins read nothing.
    tails: Arc<Tails>,
    /// For `:memory:`: the temporary folder holding the database, removed with the log.
    _throwaway: Option<tempfile::TempDir>,
    epoch: String,
}

impl SqliteLog {
    /// Opens (creating and migrating) the database and starts the writer thread. `path` may
    /// be `:memory:` for a throwaway database.
    pub(crate) fn open(
        path: &Path,
        durability: Durability,
        busy_timeout: Duration,
        stats: Arc<Stats>,
        on_commit: OnCommit,
        tail_len: usize,
    ) -> Result<SqliteLog, StoreError> {
        // `:memory:` is a file in a temporary folder, not SQLite's shared-cache memory database:
        // that one locks whole tables (SQLITE_LOCKED, which ignores the busy timeout), so history
        // reads would fail group commits. A WAL file behaves exactly like the real thing.
        let throwaway = if path == Path::new(":memory:") {
            Some(tempfile::Builder::new().prefix("hubbub-memory-").tempdir()?)
        } else {
            None
        };
        let location = match &throwaway {
            Some(dir) => dir.path().join("hubbub.db"),
            None => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                path.to_path_buf()
            }
        };
        let writer = open_connection(&location, durability, busy_timeout)?;
        migrations::migrate(&writer)?;
        let epoch: String = writer.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?;
        let reader = open_connection(&location, durability, busy_timeout)?;
        // one thread of its own, like the writer's: reads on tokio's blocking pool took a
        // thread each and queued on the connection's mutex, and a wave of joins (a history read
        // each) spent more time waking and parking threads than reading (`hubbub-bench storm`)
        let (reads, read_queue) = std_mpsc::channel::<ReadJob>();
        std::thread::Builder::new().name("hubbub-reader".into()).spawn(move || {
            while let Ok(job) = read_queue.recv() {
                job(&reader);
            }
        })?;
        let (writes, queue) = std_mpsc::channel::<Write>();
        let tails = Arc::new(Tails::new(tail_len));
        let writer_tails = tails.clone();
        let thread = std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || write_loop(writer, queue, &stats, &writer_tails, on_commit))?;
        Ok(SqliteLog { writes, writer: Mutex::new(Some(thread)), reads, tails, _throwaway: throwaway, epoch })
    }

    /// Runs `read` on the read connection, on the reader thread.
    fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = done.send(read(conn).map_err(StoreError::from));
        });
        if self.reads.send(job).is_err() {
            return futures_util::future::ready(Err(StoreError::Stopped)).boxed();
        }
        result.map(|r| r.unwrap_or(Err(StoreError::Stopped))).boxed()
    }
}

impl MessageLog for SqliteLog {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn append(&self, append: Append) -> Result<(), StoreError> {
        self.writes.send(Write::Append(append)).map_err(|_| StoreError::Stopped)
    }

    fn page(&self, room: &RoomName, range: Range) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>> {
        let room = room.to_string();
        match self.tails.page(&room, range) {
            Ok(page) => return futures_util::future::ready(Ok(page)).boxed(),
            Err(true) => {
                let _ = self.writes.send(Write::Fill(room.clone()));
            }
            Err(false) => {}
        }
        self.read(move |conn| read_page(conn, &room, range))
    }

    fn head(&self, room: &RoomName) -> BoxFuture<'static, Result<u64, StoreError>> {
        let room = room.to_string();
        self.read(move |conn| {
            let head: Option<i64> =
                conn.query_row("SELECT MAX(seq) FROM messages WHERE room = ?1", [room], |r| r.get(0))?;
            Ok(head.unwrap_or(0) as u64)
        })
    }

    fn search(
        &self,
        rooms: Vec<RoomName>,
        terms: Vec<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>> {
        if rooms.is_empty() || terms.is_empty() {
            return futures_util::future::ready(Ok(Vec::new())).boxed();
        }
        // every term as a prefix, in any of the rooms; terms are letters and digits only, and
        // rooms are tokens of hex digits, so nothing here can be FTS5 syntax
        let words: Vec<String> = terms.iter().map(|t| format!("\"{t}\"*")).collect();
        let in_rooms: Vec<String> = rooms.iter().map(|r| room_token(r.as_str())).collect();
        let query = format!("words : ({}) AND room : ({})", words.join(" AND "), in_rooms.join(" OR "));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT m.room, m.seq, m.author, m.text, m.ts, m.client_id, m.edits, m.edited, m.deleted
                 FROM message_words JOIN messages m ON m.doc = message_words.rowid
                 WHERE message_words MATCH ?1 ORDER BY message_words.rowid DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![query, limit as i64], |r| {
                let room: String = r.get(0)?;
                message_from_columns(room, r, 1)
            })?;
            rows.collect()
        })
    }

    fn start_conversation(&self, c: Conversation) -> BoxFuture<'static, Result<Conversation, StoreError>> {
        // on the read connection: a short write of its own, beside the writer's group commits
        // (WAL takes turns; the busy timeout covers the wait)
        self.read(move |conn| {
            let [(a, nick_a), (b, nick_b)] = &c.people;
            conn.prepare_cached(
                "INSERT OR IGNORE INTO conversations (room, person_a, nick_a, person_b, nick_b, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![c.room.as_str(), a, nick_a, b, nick_b, now_ms() as i64])?;
            Ok(find_conversation(conn, c.room.as_str())?.unwrap_or(c))
        })
    }

    fn conversation(&self, room: &RoomName) -> BoxFuture<'static, Result<Option<Conversation>, StoreError>> {
        let room = room.to_string();
        self.read(move |conn| find_conversation(conn, &room))
    }

    fn conversations(&self, person: &str) -> BoxFuture<'static, Result<Vec<Conversation>, StoreError>> {
        let person = person.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT room, person_a, nick_a, person_b, nick_b FROM conversations
                 WHERE person_a = ?1 OR person_b = ?1 ORDER BY created, room",
            )?;
            let rows = stmt.query_map([person], conversation_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
        })
    }

    fn read_position(
        &self,
        person: &str,
        room: &RoomName,
        to: ReadMove,
    ) -> BoxFuture<'static, Result<ReadState, StoreError>> {
        let (person, room) = (person.to_owned(), room.to_string());
        self.read(move |conn| {
            // the write first: the transaction takes the write lock before it reads anything,
            // so the busy timeout applies (a read first would fail at once on a newer commit).
            // A position that stays (every join) or would not rise writes nothing.
            let tx = conn.unchecked_transaction()?;
            let (start, raise) = read_move_sql(to);
            tx.prepare_cached(
                "INSERT INTO read_marks (person, room, seq)
                 VALUES (?1, ?2, min(?3, (SELECT coalesce(MAX(seq), 0) FROM messages WHERE room = ?2)))
                 ON CONFLICT (person, room) DO UPDATE SET seq = excluded.seq
                 WHERE ?4 AND excluded.seq > read_marks.seq",
            )?
            .execute(params![person, room, start, raise])?;
            let (seq, head): (i64, i64) = tx.query_row(
                "SELECT seq, (SELECT coalesce(MAX(seq), 0) FROM messages WHERE room = ?2) FROM read_marks
                 WHERE person = ?1 AND room = ?2",
                [&person, &room],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let unread: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT 1 FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3
                     AND edits IS NULL AND deleted = 0 AND coalesce(author_key, '') <> ?4 LIMIT ?5)",
                )?
                .query_row(params![room, seq, head, person, MAX_UNREAD as i64], |r| r.get(0))?;
            tx.commit()?;
            Ok(ReadState { seq: seq as u64, unread: unread as u64, up_to: head as u64 })
        })
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        // the writer ends after committing what is queued before this request
        let _ = self.writes.send(Write::Close);
        let thread = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        async move {
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
        .boxed()
    }
}

fn find_conversation(conn: &Connection, room: &str) -> rusqlite::Result<Option<Conversation>> {
    conn.prepare_cached("SELECT room, person_a, nick_a, person_b, nick_b FROM conversations WHERE room = ?1")?
        .query_row([room], conversation_from_row)
        .optional()
        .map(Option::flatten)
}

/// A conversation from a row of `SELECT room, person_a, nick_a, person_b, nick_b` (`None` for a
/// name that is not a conversation's, which the hub never writes).
fn conversation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Conversation>> {
    let room = RoomName::parse(&r.get::<_, String>(0)?).ok().filter(RoomName::is_conversation);
    let people = [(r.get(1)?, r.get(2)?), (r.get(3)?, r.get(4)?)];
    Ok(room.map(|room| Conversation { room, people }))
}

/// The messages of `room` in `range`, oldest first.
fn read_page(conn: &Connection, room: &str, range: Range) -> rusqlite::Result<Vec<ChatMessage>> {
    let sql = if range.newest {
        "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4"
    } else {
        "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq ASC LIMIT ?4"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let bounds = params![room, db_seq(range.after), db_seq(range.up_to), range.limit as i64];
    let rows = stmt.query_map(bounds, |r| message_from_row(room, r))?;
    let mut page = rows.collect::<Result<Vec<_>, _>>()?;
    if range.newest {
        page.reverse();
    }
    Ok(page)
}

/// A message from a row of `SELECT seq, author, text, ts, client_id, edits, edited, deleted`.
fn message_from_row(room: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    message_from_columns(room.to_owned(), r, 0)
}

/// The same, from the columns starting at `at`.
fn message_from_columns(room: String, r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        room,
        seq: r.get::<_, i64>(at)? as u64,
        author: r.get(at + 1)?,
        text: r.get(at + 2)?,
        ts: r.get::<_, i64>(at + 3)? as u64,
        id: public_id(&r.get::<_, String>(at + 4)?),
        edits: r.get::<_, Option<i64>>(at + 5)?.map(|s| s as u64),
        edited: r.get(at + 6)?,
        deleted: r.get(at + 7)?,
    })
}

/// A room as one token of the search index: `r` and its name's bytes in hex (exact, and only
/// letters and digits, so FTS5 keeps it whole).
fn room_token(room: &str) -> String {
    let mut token = String::with_capacity(1 + 2 * room.len());
    token.push('r');
    for b in room.bytes() {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// Adds message `doc` of `room` with `text` to the search index.
pub(super) fn index_message(conn: &Connection, doc: i64, room: &str, text: &str) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached("INSERT INTO message_words (rowid, words, room) VALUES (?1, ?2, ?3)")?;
    insert.execute(params![doc, index_words(text), room_token(room)])?;
    Ok(())
}

fn open_connection(location: &Path, durability: Durability, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(location, flags)?;
    // a writer holding the lock longer than this makes the operation fail with a typed error
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// The writer thread: group commits until [`Write::Close`] or until the log is dropped.
fn write_loop(
    mut conn: Connection,
    queue: std_mpsc::Receiver<Write>,
    stats: &Stats,
    tails: &Tails,
    on_commit: OnCommit,
) {
    // last sequence number per room, read from the database on first use
    let mut heads: HashMap<String, u64> = HashMap::new();
    // the last search document number, likewise
    let mut last_doc: Option<i64> = None;
    let mut closing = false;
    while !closing && let Ok(first) = queue.recv() {
        let mut batch = Vec::new();
        let mut fills = Vec::new();
        for write in std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok())) {
            match write {
                Write::Append(append) => batch.push(append),
                Write::Fill(room) => fills.push(room),
                Write::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
        }
        // between commits, this connection reads what is committed: the tails stay exact
        for room in fills {
            let newest = Range { after: 0, up_to: u64::MAX, limit: tails.len(), newest: true };
            tails.fill(&room, read_page(&conn, &room, newest).ok());
        }
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let committed = commit_batch(&mut conn, &mut heads, &mut last_doc, &batch);
        stats.commit_latency.observe(started.elapsed());
        match committed {
            Ok(outcomes) => {
                stats.commit_outcome(None);
                stats.messages_stored.add(outcomes.iter().filter(|o| matches!(o, Outcome::New(_))).count() as u64);
                // before anyone hears of them: a join registered after the broadcast reads them
                for outcome in &outcomes {
                    if let Outcome::New(message) = outcome {
                        tails.stored(message);
                    }
                }
                on_commit(Ok(batch
                    .into_iter()
                    .zip(outcomes)
                    .map(|(append, outcome)| Committed::new(append, outcome))
                    .collect()));
            }
            Err(err) => {
                // nothing of the batch was stored: the cached heads may be ahead of the disk
                heads.clear();
                last_doc = None;
                tracing::error!(cause = %err, messages = batch.len(), "commit failed");
                stats.commit_outcome(Some(err.to_string()));
                on_commit(Err(NotStored { appends: batch, reason: err.to_string() }));
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Stores `batch` in one transaction: each append is either found (a resend, by client id),
/// refused (a change that may not be made), or inserted with its room's next seq (a change also
/// updates its target). The outcomes, in batch order.
fn commit_batch(
    conn: &mut Connection,
    heads: &mut HashMap<String, u64>,
    last_doc: &mut Option<i64>,
    batch: &[Append],
) -> Result<Vec<Outcome>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut find = tx.prepare_cached(
            "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages
             WHERE room = ?1 AND client_id = ?2",
        )?;
        let mut head = tx.prepare_cached("SELECT MAX(seq) FROM messages WHERE room = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (room, seq, author, text, ts, client_id, author_key, edits, deleted, doc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut target = tx.prepare_cached(
            "SELECT author_key, edits IS NOT NULL, deleted, doc FROM messages WHERE room = ?1 AND seq = ?2",
        )?;
        let mut unindex = tx.prepare_cached("DELETE FROM message_words WHERE rowid = ?1")?;
        let mut change = tx.prepare_cached(
            "UPDATE messages SET text = ?3, edited = edited OR NOT ?4, deleted = ?4 WHERE room = ?1 AND seq = ?2",
        )?;
        let now = now_ms();
        for a in batch {
            let room = a.room.as_str();
            let existing = find.query_row(params![room, a.client_id], |r| message_from_row(room, r)).optional()?;
            if let Some(message) = existing {
                outcomes.push(Outcome::Duplicate(message));
                continue;
            }
            if let Some(c) = a.change {
                let row = target
                    .query_row(params![room, db_seq(c.target)], |r| {
                        Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get::<_, Option<i64>>(3)?))
                    })
                    .optional()?;
                if let Some((code, reason)) = refuse_change(c.target, row.as_ref().map(|r| r.0.clone()), &a.author_key)
                {
                    outcomes.push(Outcome::Refused(code, reason));
                    continue;
                }
                change.execute(params![room, db_seq(c.target), a.text, c.delete])?;
                // found by its new words from now on, or not at all once deleted
                if let Some(doc) = row.and_then(|r| r.1) {
                    unindex.execute([doc])?;
                    if !c.delete {
                        index_message(&tx, doc, room, &a.text)?;
                    }
                }
            }
            let last = match heads.get(room) {
                Some(last) => *last,
                None => head.query_row([room], |r| r.get::<_, Option<i64>>(0))?.unwrap_or(0) as u64,
            };
            let seq = last + 1;
            let (edits, deleted) = (a.change.map(|c| db_seq(c.target)), a.change.is_some_and(|c| c.delete));
            // a change is not a message of its own: it is found through its target
            let doc = match a.change {
                Some(_) => None,
                None => {
                    let last = match *last_doc {
                        Some(last) => last,
                        None => tx
                            .query_row("SELECT MAX(doc) FROM messages", [], |r| r.get::<_, Option<i64>>(0))?
                            .unwrap_or(0),
                    };
                    *last_doc = Some(last + 1);
                    Some(last + 1)
                }
            };
            let row =
                params![room, seq as i64, a.author, a.text, now as i64, a.client_id, a.author_key, edits, deleted, doc];
            insert.execute(row)?;
            if let Some(doc) = doc {
                index_message(&tx, doc, room, &a.text)?;
            }
            heads.insert(room.to_owned(), seq);
            outcomes.push(Outcome::New(stored_message(room, seq, a, now)));
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

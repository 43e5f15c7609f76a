//! Durable history: every accepted chat message is committed to SQLite before anyone hears of
//! it. The rest of the hub sees only this module's API (append, pages, head, epoch), so a
//! different backend can replace it without the hub knowing.
//!
//! Writes go through one thread that owns the write connection and commits in groups: it takes
//! every request that is waiting (up to `MAX_BATCH`), runs them in one transaction, and only
//! after `COMMIT` returns hands each stored message to `on_commit`, in commit order. That order
//! is the per-room sequence order, so broadcasting from `on_commit` keeps rooms ordered, and
//! "acknowledged" always means "on disk" (with `synchronous=FULL`, the default).
//!
//! Reads (history pages) use a second connection; WAL lets them run beside the writer.

use crate::outbox::Outbox;
use hubbub_shared::{ChatMessage, RoomName};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc as std_mpsc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("storage is unavailable: {0}")]
    Unavailable(#[from] rusqlite::Error),
    #[error("the storage thread has stopped")]
    Stopped,
}

/// A chat message to store.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) room: RoomName,
    pub(crate) author: String,
    pub(crate) text: String,
    /// The client's id for this message: a resend with the same id in the same room is a
    /// duplicate, acknowledged with the first one's sequence number and not stored again.
    pub(crate) client_id: String,
    /// The id to acknowledge with, when the client gave one.
    pub(crate) ack_id: Option<String>,
    /// Where the acknowledgement goes.
    pub(crate) reply_to: Outbox,
}

/// What happened to an [`Append`], handed to `on_commit` after the transaction committed.
#[derive(Debug)]
pub(crate) struct Committed {
    pub(crate) message: ChatMessage,
    pub(crate) ack_id: Option<String>,
    /// True when this was a resend of an already stored message (nothing new was written).
    pub(crate) duplicate: bool,
    pub(crate) reply_to: Outbox,
}

/// Called on the writer thread, in commit order, with each append's outcome.
pub(crate) type OnCommit = Box<dyn Fn(Result<Committed, (Append, String)>) + Send>;

/// Durability of a commit (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sync {
    /// fsync at every commit: an acknowledged message survives power loss.
    Full,
    /// WAL's default trade-off: survives a crash of the process, not always of the machine.
    Normal,
}

#[derive(Debug, Clone)]
pub(crate) struct Store {
    writes: std_mpsc::Sender<Append>,
    reader: Arc<Mutex<Connection>>,
    /// For `:memory:`: the temporary file behind it, deleted with the last handle.
    _throwaway: Option<Arc<Throwaway>>,
    /// Random id of this database, made when it was created: a cursor from another database
    /// (the file was replaced) is recognised as stale.
    epoch: Arc<str>,
}

impl Store {
    /// Opens (creating and migrating) the database and starts the writer thread.
    /// `path` may be `:memory:` for a throwaway database.
    pub(crate) fn open(
        path: &Path,
        sync: Sync,
        busy_timeout: Duration,
        stats: Arc<crate::stats::Stats>,
        on_commit: OnCommit,
    ) -> Result<Store, StoreError> {
        // `:memory:` is a temporary file, not SQLite's shared-cache memory database: that one
        // locks whole tables (SQLITE_LOCKED, which ignores the busy timeout), so history reads
        // would fail group commits. A WAL file behaves exactly like the real thing.
        let throwaway = (path == Path::new(":memory:")).then(Throwaway::new).map(Arc::new);
        let location = if let Some(t) = &throwaway {
            t.path.clone()
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Unavailable(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
            }
            path.to_path_buf()
        };
        let writer = open_connection(&location, sync, busy_timeout)?;
        migrate(&writer)?;
        let epoch: String = writer.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?;
        let reader = open_connection(&location, sync, busy_timeout)?;
        let (writes, queue) = std_mpsc::channel::<Append>();
        std::thread::Builder::new()
            .name("hubbub-store".into())
            .spawn(move || write_loop(writer, queue, &stats, on_commit))
            .map_err(|e| StoreError::Unavailable(rusqlite::Error::ToSqlConversionFailure(e.into())))?;
        Ok(Store { writes, reader: Arc::new(Mutex::new(reader)), _throwaway: throwaway, epoch: epoch.into() })
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Queues a message for the next group commit; never blocks.
    pub(crate) fn append(&self, append: Append) -> Result<(), StoreError> {
        self.writes.send(append).map_err(|_| StoreError::Stopped)
    }

    /// Up to `limit` messages of `room` with `after < seq <= up_to`, oldest first: the
    /// `limit` newest of that range when `newest` is set, else the oldest.
    pub(crate) async fn page(
        &self,
        room: &RoomName,
        after: u64,
        up_to: u64,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let reader = self.reader.clone();
        let room = room.to_string();
        run_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            let sql = if newest {
                "SELECT seq, author, text, ts, client_id FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq DESC LIMIT ?4"
            } else {
                "SELECT seq, author, text, ts, client_id FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq ASC LIMIT ?4"
            };
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![room, clamp(after), clamp(up_to), limit as i64], |r| message_from_row(&room, r))?;
            let mut page = rows.collect::<Result<Vec<_>, _>>()?;
            if newest {
                page.reverse();
            }
            Ok(page)
        })
        .await
    }

    /// The sequence number of `room`'s newest message (0 when it has none).
    pub(crate) async fn head(&self, room: &RoomName) -> Result<u64, StoreError> {
        let reader = self.reader.clone();
        let room = room.to_string();
        run_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            let head: Option<i64> =
                conn.query_row("SELECT MAX(seq) FROM messages WHERE room = ?1", [room], |r| r.get(0))?;
            Ok(head.unwrap_or(0) as u64)
        })
        .await
    }

    /// Whether the database answers (for `/healthz`).
    pub(crate) async fn check(&self) -> Result<(), StoreError> {
        let reader = self.reader.clone();
        run_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

/// A database file in the temporary folder, removed (with its WAL files) on drop.
#[derive(Debug)]
struct Throwaway {
    path: PathBuf,
}

impl Throwaway {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("hubbub-memory-{}-{nanos}.db", std::process::id()));
        Throwaway { path }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A message from a row of `SELECT seq, author, text, ts, client_id`.
fn message_from_row(room: &str, r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        room: room.to_owned(),
        seq: r.get::<_, i64>(0)? as u64,
        author: r.get(1)?,
        text: r.get(2)?,
        ts: r.get::<_, i64>(3)? as u64,
        id: public_id(&r.get::<_, String>(4)?),
    })
}

/// The client's own id from a stored one: `c:ID` is a client's id, `s:…` one the hub made up.
fn public_id(stored: &str) -> Option<String> {
    stored.strip_prefix("c:").map(str::to_owned)
}

/// Sequence numbers are stored as SQLite's signed 64-bit integers.
fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StoreError::Stopped)?
}

fn open_connection(location: &Path, sync: Sync, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(location, flags)?;
    // a writer holding the lock longer than this makes the operation fail with a typed error
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            Sync::Full => "FULL",
            Sync::Normal => "NORMAL",
        },
    )?;
    Ok(conn)
}

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))));
     CREATE TABLE messages (
         room TEXT NOT NULL,
         seq INTEGER NOT NULL,
         author TEXT NOT NULL,
         text TEXT NOT NULL,
         ts INTEGER NOT NULL,
         client_id TEXT NOT NULL,
         PRIMARY KEY (room, seq)
     ) WITHOUT ROWID;
     CREATE UNIQUE INDEX messages_by_client_id ON messages (room, client_id);"];

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

/// The writer thread: group commits until every `Store` handle is dropped.
fn write_loop(
    mut conn: Connection,
    queue: std_mpsc::Receiver<Append>,
    stats: &crate::stats::Stats,
    on_commit: OnCommit,
) {
    // last sequence number per room, read from the database on first use
    let mut heads: HashMap<String, u64> = HashMap::new();
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let committed = commit_batch(&mut conn, &mut heads, &batch);
        stats.commit_latency.observe(started.elapsed());
        match committed {
            Ok(outcomes) => {
                stats.messages_stored.add(outcomes.iter().filter(|(_, duplicate)| !duplicate).count() as u64);
                for (append, (message, duplicate)) in batch.into_iter().zip(outcomes) {
                    on_commit(Ok(Committed { message, ack_id: append.ack_id, duplicate, reply_to: append.reply_to }));
                }
            }
            Err(err) => {
                // nothing of the batch was stored: the cached heads may be ahead of the disk
                heads.clear();
                tracing::error!(cause = %err, messages = batch.len(), "commit failed");
                for append in batch {
                    on_commit(Err((append, err.to_string())));
                }
            }
        }
    }
}

fn commit_batch(
    conn: &mut Connection,
    heads: &mut HashMap<String, u64>,
    batch: &[Append],
) -> Result<Vec<(ChatMessage, bool)>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut find = tx.prepare_cached(
            "SELECT seq, author, text, ts, client_id FROM messages WHERE room = ?1 AND client_id = ?2",
        )?;
        let mut head = tx.prepare_cached("SELECT MAX(seq) FROM messages WHERE room = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (room, seq, author, text, ts, client_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        for a in batch {
            let room = a.room.as_str();
            let existing = find.query_row(params![room, a.client_id], |r| message_from_row(room, r)).optional()?;
            if let Some(message) = existing {
                outcomes.push((message, true));
                continue;
            }
            let last = match heads.get(room) {
                Some(last) => *last,
                None => head.query_row([room], |r| r.get::<_, Option<i64>>(0))?.unwrap_or(0) as u64,
            };
            let seq = last + 1;
            insert.execute(params![room, seq as i64, a.author, a.text, now as i64, a.client_id])?;
            heads.insert(room.to_owned(), seq);
            let id = public_id(&a.client_id);
            outcomes.push((
                ChatMessage { room: room.to_owned(), seq, author: a.author.clone(), text: a.text.clone(), ts: now, id },
                false,
            ));
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

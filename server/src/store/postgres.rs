//! The cluster's message log: PostgreSQL (`--database postgres://…`), shared by any number of
//! hubs.
//!
//! The contract is the SQLite engine's (see the module docs of `crate::store`): a writer task
//! per hub owns one connection and commits in groups, handing each outcome to `on_commit` only
//! after `COMMIT` returned. What changes with several hubs writing to one database:
//!
//! - **`seq` per room.** A batch first upserts its rooms' rows in `rooms`, in name order; that
//!   locks each row until the transaction ends, so a second hub writing to the same room waits
//!   its turn and reads the head the first one committed. Rooms are locked in name order in
//!   every hub, so two hubs never wait for each other in a cycle. No head is cached between
//!   batches: another hub may have moved it.
//! - **Dedupe by client id** is checked after taking the room's lock, so a resend that reached
//!   two hubs at once is stored by one and found by the other.
//! - **Failures.** A batch that fails (PostgreSQL down, connection lost, the commit timed out)
//!   is reported as not stored, message by message; the next batch connects again. A commit
//!   whose reply was lost may in fact have been stored: the sender was not acknowledged, so it
//!   resends with the same id and gets the stored copy's `seq`.
//!
//! Reads (history pages, heads, the health check) share a second connection; tokio-postgres
//! pipelines concurrent queries over it.

use super::{
    Append, Committed, Conversation, MAX_UNREAD, MessageLog, NotStored, OnCommit, Outcome, Range, ReadMove, ReadState,
    StoreError, db_seq, index_words, now_ms, public_id, read_move_sql, refuse_change, stored_message,
};
use crate::stats::Stats;
use futures_util::{FutureExt, future::BoxFuture};
use hubbub_shared::{ChatMessage, RoomName};
use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How long connecting may take before the operation counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one group commit may take: past it the batch is reported as not stored.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Schema versions, oldest first, from `server/migrations/postgres/`. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_edits.sql"),
    include_str!("../../migrations/postgres/0003_search.sql"),
    include_str!("../../migrations/postgres/0004_people.sql"),
];
/// Any fixed number: the advisory lock that makes hubs starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6875_6262_7562; // "hubbub"

// nearly every write is an Append: boxing it would cost an allocation per message for the
// sake of the one Close
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Write {
    Append(Append),
    /// Commit everything queued before this, then stop.
    Close,
}

#[derive(Debug)]
pub(crate) struct PgLog {
    writes: mpsc::UnboundedSender<Write>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    reader: Arc<Connector>,
    epoch: String,
}

/// A connection made on first use and made again after it broke.
#[derive(Debug)]
struct Connector {
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Connector {
    fn new(url: &str) -> Result<Connector, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("hubbub");
        Ok(Connector { config, client: tokio::sync::Mutex::new(None) })
    }

    /// A fresh connection; its driver runs as a task of its own until the connection ends.
    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, self.config.connect(NoTls))
            .await
            .map_err(|_| StoreError::Timeout("connecting to PostgreSQL"))??;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(cause = %err, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// The shared connection, connecting (again) when there is none or it broke.
    async fn shared(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        match &*slot {
            Some(client) if !client.is_closed() => Ok(client.clone()),
            _ => {
                let client = Arc::new(self.connect().await?);
                *slot = Some(client.clone());
                Ok(client)
            }
        }
    }
}

impl PgLog {
    /// Connects, migrates (one hub at a time), reads the epoch and starts the writer task.
    pub(crate) async fn open(url: &str, stats: Arc<Stats>, on_commit: OnCommit) -> Result<PgLog, StoreError> {
        let reader = Arc::new(Connector::new(url)?);
        let mut client = reader.connect().await?;
        migrate(&mut client).await?;
        let epoch: String = client.query_one("SELECT value FROM meta WHERE key = 'epoch'", &[]).await?.get(0);
        *reader.client.lock().await = Some(Arc::new(client));
        let writer_connector = Connector::new(url)?;
        let (writes, queue) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(writer_connector, queue, stats, on_commit));
        Ok(PgLog { writes, writer: Mutex::new(Some(writer)), reader, epoch })
    }
}

/// Brings the database up to the newest schema; hubs starting together take turns.
async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hubbub_schema (version integer NOT NULL)").await?;
    let done: Option<i32> = tx.query_one("SELECT max(version) FROM hubbub_schema", &[]).await?.get(0);
    let done = done.unwrap_or(0).max(0) as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO hubbub_schema (version) VALUES ($1)", &[&(i as i32 + 1)]).await?;
        tracing::info!(version = i + 1, "PostgreSQL database migrated");
    }
    tx.commit().await?;
    Ok(())
}

impl MessageLog for PgLog {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn append(&self, append: Append) -> Result<(), StoreError> {
        self.writes.send(Write::Append(append)).map_err(|_| StoreError::Stopped)
    }

    fn page(&self, room: &RoomName, range: Range) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>> {
        let (reader, room) = (self.reader.clone(), room.to_string());
        async move {
            let sql = if range.newest {
                "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages
                 WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4"
            } else {
                "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages
                 WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq ASC LIMIT $4"
            };
            let client = reader.shared().await?;
            let bounds = (db_seq(range.after), db_seq(range.up_to), range.limit as i64);
            let rows = client.query(sql, &[&room, &bounds.0, &bounds.1, &bounds.2]).await?;
            let mut page: Vec<ChatMessage> = rows.iter().map(|r| message_from_row(&room, r)).collect();
            if range.newest {
                page.reverse();
            }
            Ok(page)
        }
        .boxed()
    }

    fn head(&self, room: &RoomName) -> BoxFuture<'static, Result<u64, StoreError>> {
        let (reader, room) = (self.reader.clone(), room.to_string());
        async move {
            let client = reader.shared().await?;
            let row = client.query_opt("SELECT head FROM rooms WHERE room = $1", &[&room]).await?;
            Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
        }
        .boxed()
    }

    fn search(
        &self,
        rooms: Vec<RoomName>,
        terms: Vec<String>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<ChatMessage>, StoreError>> {
        let reader = self.reader.clone();
        async move {
            if rooms.is_empty() || terms.is_empty() {
                return Ok(Vec::new());
            }
            // tsquery text: terms are letters and digits, room names letters, digits, `-`, `_`
            // and `.`, so quoting them is enough to keep them lexemes
            let words: Vec<String> = terms.iter().map(|t| format!("'{t}':*")).collect();
            let in_rooms: Vec<String> = rooms.iter().map(|r| format!("'#{r}'")).collect();
            let query = format!("({}) & ({})", words.join(" & "), in_rooms.join(" | "));
            let client = reader.shared().await?;
            let rows = client
                .query(
                    "SELECT seq, author, text, ts, client_id, edits, edited, deleted, room FROM messages
                     WHERE words @@ $1::text::tsquery ORDER BY ts DESC, seq DESC LIMIT $2",
                    &[&query, &(limit as i64)],
                )
                .await?;
            Ok(rows.iter().map(|r| message_from_row(r.get(8), r)).collect())
        }
        .boxed()
    }

    fn start_conversation(&self, c: Conversation) -> BoxFuture<'static, Result<Conversation, StoreError>> {
        let reader = self.reader.clone();
        async move {
            let client = reader.shared().await?;
            let [(a, nick_a), (b, nick_b)] = &c.people;
            client
                .execute(
                    "INSERT INTO conversations (room, person_a, nick_a, person_b, nick_b, created)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room) DO NOTHING",
                    &[&c.room.as_str(), a, nick_a, b, nick_b, &(now_ms() as i64)],
                )
                .await?;
            Ok(find_conversation(&client, c.room.as_str()).await?.unwrap_or(c))
        }
        .boxed()
    }

    fn conversation(&self, room: &RoomName) -> BoxFuture<'static, Result<Option<Conversation>, StoreError>> {
        let (reader, room) = (self.reader.clone(), room.to_string());
        async move { find_conversation(&*reader.shared().await?, &room).await }.boxed()
    }

    fn conversations(&self, person: &str) -> BoxFuture<'static, Result<Vec<Conversation>, StoreError>> {
        let (reader, person) = (self.reader.clone(), person.to_owned());
        async move {
            let rows = reader
                .shared()
                .await?
                .query(
                    "SELECT room, person_a, nick_a, person_b, nick_b FROM conversations
                     WHERE person_a = $1 OR person_b = $1 ORDER BY created, room",
                    &[&person],
                )
                .await?;
            Ok(rows.iter().filter_map(conversation_from_row).collect())
        }
        .boxed()
    }

    fn read_position(
        &self,
        person: &str,
        room: &RoomName,
        to: ReadMove,
    ) -> BoxFuture<'static, Result<ReadState, StoreError>> {
        let (reader, person, room) = (self.reader.clone(), person.to_owned(), room.to_string());
        async move {
            let client = reader.shared().await?;
            let (start, raise) = read_move_sql(to);
            // one statement: the new position (capped at the room's head) and the count after it.
            // A position that stays (every join) or would not rise is not written (no new row
            // version): `written` is then empty and the row as it was is the position (or, if
            // another tab of the person inserted it just now, where this one would have started)
            let row = client
                .query_one(
                    "WITH head AS (SELECT coalesce((SELECT head FROM rooms WHERE room = $2), 0) AS head),
                     written AS (
                         INSERT INTO read_marks (person, room, seq) VALUES ($1, $2, LEAST($3, (SELECT head FROM head)))
                         ON CONFLICT (person, room) DO UPDATE SET seq = excluded.seq
                         WHERE $4 AND excluded.seq > read_marks.seq
                         RETURNING seq
                     ),
                     mark AS (
                         SELECT coalesce(
                             (SELECT seq FROM written),
                             (SELECT seq FROM read_marks WHERE person = $1 AND room = $2),
                             LEAST($3, (SELECT head FROM head))
                         ) AS seq
                     )
                     SELECT mark.seq, head.head, (SELECT count(*) FROM (SELECT 1 FROM messages
                         WHERE room = $2 AND seq > mark.seq AND seq <= head.head AND edits IS NULL
                         AND NOT deleted AND coalesce(author_key, '') <> $1 LIMIT $5) unread)
                     FROM mark, head",
                    &[&person, &room, &start, &raise, &(MAX_UNREAD as i64)],
                )
                .await?;
            let (seq, up_to, unread): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            Ok(ReadState { seq: seq.max(0) as u64, unread: unread.max(0) as u64, up_to: up_to.max(0) as u64 })
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let reader = self.reader.clone();
        async move {
            reader.shared().await?.query_one("SELECT 1", &[]).await?;
            Ok(())
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let _ = self.writes.send(Write::Close);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        async move {
            if let Some(writer) = writer {
                let _ = writer.await;
            }
        }
        .boxed()
    }
}

/// The writer task: group commits until [`Write::Close`] or until the log is dropped.
async fn write_loop(
    connector: Connector,
    mut queue: mpsc::UnboundedReceiver<Write>,
    stats: Arc<Stats>,
    on_commit: OnCommit,
) {
    let mut client: Option<Client> = None;
    let mut closing = false;
    while !closing && let Some(first) = queue.recv().await {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(write) = next {
            match write {
                Write::Append(append) => batch.push(append),
                Write::Close => {
                    closing = true;
                    break;
                }
            }
            if batch.len() >= MAX_BATCH {
                break;
            }
            next = queue.try_recv().ok();
        }
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let committed = async {
            let conn = match &mut client {
                Some(c) if !c.is_closed() => c,
                _ => client.insert(connector.connect().await?),
            };
            tokio::time::timeout(COMMIT_TIMEOUT, commit_batch(conn, &batch))
                .await
                .map_err(|_| StoreError::Timeout("committing to PostgreSQL"))?
        }
        .await;
        stats.commit_latency.observe(started.elapsed());
        match committed {
            Ok(outcomes) => {
                stats.commit_outcome(None);
                stats.messages_stored.add(outcomes.iter().filter(|o| matches!(o, Outcome::New(_))).count() as u64);
                on_commit(Ok(batch
                    .into_iter()
                    .zip(outcomes)
                    .map(|(append, outcome)| Committed::new(append, outcome))
                    .collect()));
            }
            Err(err) => {
                // the connection may be half-way through a transaction: start afresh next time
                client = None;
                tracing::error!(cause = %err, messages = batch.len(), "commit failed");
                stats.commit_outcome(Some(err.to_string()));
                on_commit(Err(NotStored { appends: batch, reason: err.to_string() }));
            }
        }
    }
    tracing::debug!("PostgreSQL writer stopped");
}

/// Stores `batch` in one transaction; the outcomes in batch order.
async fn commit_batch(client: &mut Client, batch: &[Append]) -> Result<Vec<Outcome>, StoreError> {
    let now = now_ms() as i64;
    // each room's appends, in arrival order; rooms in name order (the lock order of every hub)
    let mut by_room: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in batch.iter().enumerate() {
        by_room.entry(a.room.as_str()).or_default().push(i);
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
    let tx = client.transaction().await?;
    for (room, indexes) in by_room {
        let head: i64 = tx
            .query_one(
                "INSERT INTO rooms (room, head) VALUES ($1, 0)
                 ON CONFLICT (room) DO UPDATE SET head = rooms.head RETURNING head",
                &[&room],
            )
            .await?
            .get(0);
        // resends: stored before (by any hub), or earlier in this very batch
        let ids: Vec<&str> = indexes.iter().map(|&i| batch[i].client_id.as_str()).collect();
        let rows = tx
            .query(
                "SELECT seq, author, text, ts, client_id, edits, edited, deleted FROM messages
                 WHERE room = $1 AND client_id = ANY($2)",
                &[&room, &ids],
            )
            .await?;
        let mut stored: HashMap<String, ChatMessage> =
            rows.iter().map(|r| (r.get::<_, String>(4), message_from_row(room, r))).collect();
        let mut seq = head;
        let mut new = NewRows::default();
        for i in indexes {
            let a = &batch[i];
            if let Some(message) = stored.get(&a.client_id) {
                outcomes[i] = Some(Outcome::Duplicate(message.clone()));
                continue;
            }
            if let Some(c) = a.change {
                // the target may be among this batch's rows: write those first (changes are rare)
                new.insert(&tx, room).await?;
                let row = tx
                    .query_opt(
                        "SELECT author_key, edits IS NOT NULL, deleted FROM messages WHERE room = $1 AND seq = $2",
                        &[&room, &db_seq(c.target)],
                    )
                    .await?
                    .map(|r| (r.get(0), r.get(1), r.get(2)));
                if let Some((code, reason)) = refuse_change(c.target, row, &a.author_key) {
                    outcomes[i] = Some(Outcome::Refused(code, reason));
                    continue;
                }
                // found by its new words from now on, or not at all once deleted
                // (`hubbub_words`: see 0003_search.sql)
                let update = "UPDATE messages SET text = $3, edited = edited OR NOT $4, deleted = $4,
                                  words = CASE WHEN $4 THEN NULL ELSE hubbub_words($5, $1) END
                              WHERE room = $1 AND seq = $2";
                tx.execute(update, &[&room, &db_seq(c.target), &a.text, &c.delete, &index_words(&a.text)]).await?;
            }
            seq += 1;
            let message = stored_message(room, seq as u64, a, now as u64);
            new.push(seq, a, now);
            stored.insert(a.client_id.clone(), message.clone());
            outcomes[i] = Some(Outcome::New(message));
        }
        new.insert(&tx, room).await?;
        if seq > head {
            tx.execute("UPDATE rooms SET head = $2 WHERE room = $1", &[&room, &seq]).await?;
        }
    }
    tx.commit().await?;
    Ok(outcomes.into_iter().map(|o| o.expect("every append has an outcome")).collect())
}

/// The new rows of one room not yet written, as columns for one `INSERT … UNNEST`.
#[derive(Debug, Default)]
struct NewRows<'a> {
    seqs: Vec<i64>,
    authors: Vec<&'a str>,
    texts: Vec<&'a str>,
    ts: Vec<i64>,
    client_ids: Vec<&'a str>,
    author_keys: Vec<&'a str>,
    edits: Vec<Option<i64>>,
    deleted: Vec<bool>,
    /// The words to index (empty for a change: it is found through its target).
    words: Vec<String>,
}

impl<'a> NewRows<'a> {
    fn push(&mut self, seq: i64, a: &'a Append, ts: i64) {
        self.seqs.push(seq);
        self.authors.push(&a.author);
        self.texts.push(&a.text);
        self.ts.push(ts);
        self.client_ids.push(&a.client_id);
        self.author_keys.push(&a.author_key);
        self.edits.push(a.change.map(|c| db_seq(c.target)));
        self.deleted.push(a.change.is_some_and(|c| c.delete));
        self.words.push(if a.change.is_some() { String::new() } else { index_words(&a.text) });
    }

    /// Writes the rows gathered so far in one statement, and forgets them.
    async fn insert(&mut self, tx: &tokio_postgres::Transaction<'_>, room: &str) -> Result<(), StoreError> {
        if self.seqs.is_empty() {
            return Ok(());
        }
        // (`hubbub_words`: see 0003_search.sql)
        let insert = "INSERT INTO messages (room, seq, author, text, ts, client_id, author_key, edits, deleted, words)
                      SELECT $1, s, a, t, ts, c, k, e, d, CASE WHEN e IS NULL THEN hubbub_words(w, $1) END
                      FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                                  $8::bigint[], $9::boolean[], $10::text[]) AS u(s, a, t, ts, c, k, e, d, w)";
        tx.execute(
            insert,
            &[
                &room,
                &self.seqs,
                &self.authors,
                &self.texts,
                &self.ts,
                &self.client_ids,
                &self.author_keys,
                &self.edits,
                &self.deleted,
                &self.words,
            ],
        )
        .await?;
        *self = NewRows::default();
        Ok(())
    }
}

async fn find_conversation(client: &Client, room: &str) -> Result<Option<Conversation>, StoreError> {
    let row = client
        .query_opt("SELECT room, person_a, nick_a, person_b, nick_b FROM conversations WHERE room = $1", &[&room])
        .await?;
    Ok(row.as_ref().and_then(conversation_from_row))
}

/// A conversation from a row of `SELECT room, person_a, nick_a, person_b, nick_b`.
fn conversation_from_row(r: &tokio_postgres::Row) -> Option<Conversation> {
    let room = RoomName::parse(r.get(0)).ok().filter(RoomName::is_conversation)?;
    Some(Conversation { room, people: [(r.get(1), r.get(2)), (r.get(3), r.get(4))] })
}

/// A message from a row of `SELECT seq, author, text, ts, client_id, edits, edited, deleted`.
fn message_from_row(room: &str, r: &tokio_postgres::Row) -> ChatMessage {
    ChatMessage {
        room: room.to_owned(),
        seq: r.get::<_, i64>(0).max(0) as u64,
        author: r.get(1),
        text: r.get(2),
        ts: r.get::<_, i64>(3).max(0) as u64,
        id: public_id(r.get(4)),
        edits: r.get::<_, Option<i64>>(5).map(|s| s.max(0) as u64),
        edited: r.get(6),
        deleted: r.get(7),
    }
}

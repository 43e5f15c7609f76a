//! The SQLite schema, as versions applied in order; `PRAGMA user_version` records how many ran.

use rusqlite::Connection;

/// Schema versions, oldest first. Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
     CREATE UNIQUE INDEX messages_by_client_id ON messages (room, client_id);",
    // version 2: edits and deletions (see `crate::store`): who may change a row, and what it is
    "ALTER TABLE messages ADD COLUMN author_key TEXT;
     ALTER TABLE messages ADD COLUMN edits INTEGER;
     ALTER TABLE messages ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;",
    // version 3: search (see `crate::store`). `message_words` holds each message's words (the
    // hub's, see `hubbub_shared::search`) and its room as one token; its rowid is the message's
    // `doc`, numbered in commit order, so newest first is rowid order, which FTS5 walks without
    // sorting. Measured with `hubbub-bench search` (1,000,000 messages) and `rooms` (what
    // indexing costs every send), on 2 cores: `detail=column` (no positions: no phrase queries)
    // and `columnsize=0` write less than the defaults, and `detail=none` made queries 60 %
    // slower; prefix indexes for beginnings of 1–6 letters take a query's p99 from 60 to 38 ms
    // (without them FTS5 merges every word a beginning matches), and `automerge=8` (merging
    // segments less often) pays for their writing: `rooms` 267,000 deliveries/s with all of it,
    // 268,000 with no prefix index, 306,000 with no search at all. Existing messages are indexed
    // by `backfill_search`, right after this.
    "CREATE VIRTUAL TABLE message_words USING fts5(
         words, room, detail = column, columnsize = 0, prefix = '1 2 3 4 5 6', tokenize = 'unicode61 remove_diacritics 0'
     );
     INSERT INTO message_words (message_words, rank) VALUES ('automerge', 8);
     ALTER TABLE messages ADD COLUMN doc INTEGER;
     CREATE UNIQUE INDEX messages_by_doc ON messages (doc);",
    // version 4: people's own records (see `crate::store`): direct conversations, with their two
    // people (digests of identities) and nicknames, and each person's read position per room
    "CREATE TABLE conversations (
         room TEXT PRIMARY KEY,
         person_a TEXT NOT NULL,
         nick_a TEXT NOT NULL,
         person_b TEXT NOT NULL,
         nick_b TEXT NOT NULL,
         created INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX conversations_by_a ON conversations (person_a);
     CREATE INDEX conversations_by_b ON conversations (person_b);
     CREATE TABLE read_marks (
         person TEXT NOT NULL,
         room TEXT NOT NULL,
         seq INTEGER NOT NULL,
         PRIMARY KEY (person, room)
     ) WITHOUT ROWID;",
];

/// Rust steps that follow a version's SQL, by version number (they need the hub's own rules).
fn after_version(version: usize, conn: &Connection) -> rusqlite::Result<()> {
    match version {
        3 => backfill_search(conn),
        _ => Ok(()),
    }
}

/// Indexes the messages stored before version 3, oldest first, as the writer indexes new ones.
fn backfill_search(conn: &Connection) -> rusqlite::Result<()> {
    let mut rows = conn
        .prepare("SELECT room, seq, text FROM messages WHERE edits IS NULL AND deleted = 0 ORDER BY ts, room, seq")?;
    let rows = rows.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
    let mut doc = 0;
    for row in rows {
        let (room, seq, text) = row?;
        doc += 1;
        conn.execute("UPDATE messages SET doc = ?3 WHERE room = ?1 AND seq = ?2", rusqlite::params![room, seq, doc])?;
        super::sqlite::index_message(conn, doc, &room, &text)?;
    }
    Ok(())
}

/// Brings the database up to the newest version, one transaction per version.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        after_version(i + 1, &tx)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "database migrated");
    }
    Ok(())
}

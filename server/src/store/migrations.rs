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
];

/// Brings the database up to the newest version, one transaction per version.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
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

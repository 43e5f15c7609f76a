//! `search`: the messages of one's own rooms by the beginnings of their words, newest first, as
//! they are now (after edits and deletions), and typed refusals for anything beyond one's rooms.

use crate::helpers::{Client, spawn_app};
use hubbub_shared::{ChatMessage, ClientMsg, ErrorCode, ServerMsg};

/// Sends `text` to `room` with an id and waits for its ack (what others say meanwhile is read
/// past): the message is committed, so a search can find it.
async fn say_acked(c: &mut Client, room: &str, text: &str, id: &str) -> u64 {
    c.send(&ClientMsg::Send { id: Some(id.into()), room: room.into(), text: text.into() }).await;
    acked(c, id).await
}

async fn acked(c: &mut Client, want: &str) -> u64 {
    loop {
        match c.next().await {
            ServerMsg::Ack { id, seq, .. } if id == want => return seq,
            ServerMsg::Message(_) => continue,
            other => panic!("expected the ack of {want}, got {other:?}"),
        }
    }
}

/// Searches and returns the reply: (terms, messages) or the refusal's code.
async fn search(c: &mut Client, query: &str, room: Option<&str>, limit: Option<u32>) -> Result<Found, ErrorCode> {
    let id = format!("s-{query}");
    c.send(&ClientMsg::Search { id: Some(id.clone()), query: query.into(), room: room.map(Into::into), limit }).await;
    loop {
        match c.next().await {
            ServerMsg::Found { id: got, terms, messages } => {
                assert_eq!(got.as_deref(), Some(id.as_str()), "the reply names the request");
                return Ok(Found { terms, messages });
            }
            ServerMsg::Error { id: got, code, .. } => {
                assert_eq!(got.as_deref(), Some(id.as_str()), "the refusal names the request");
                return Err(code);
            }
            ServerMsg::Message(_) | ServerMsg::Ack { .. } => continue,
            other => panic!("expected found, got {other:?}"),
        }
    }
}

#[derive(Debug)]
struct Found {
    terms: Vec<String>,
    messages: Vec<ChatMessage>,
}

impl Found {
    fn texts(&self) -> Vec<(&str, &str)> {
        self.messages.iter().map(|m| (m.room.as_str(), m.text.as_str())).collect()
    }
}

#[tokio::test]
async fn a_person_finds_messages_of_their_own_rooms_by_word_beginnings_newest_first() {
    let app = spawn_app().await;
    let mut alice = app.person_in(&["lobby", "ops"], "alice", "alice-secret").await;
    let mut bob = app.person_in(&["lobby", "vault"], "bob", "bob-secret").await;
    say_acked(&mut bob, "lobby", "Deploying the new build now", "b1").await;
    say_acked(&mut bob, "vault", "deploy keys are under the mat", "b2").await;
    say_acked(&mut alice, "ops", "deployed: all green", "a1").await;
    say_acked(&mut alice, "lobby", "lunch?", "a2").await;
    say_acked(&mut bob, "lobby", "Ünïcode DÉPLOIEMENT 2024", "b3").await;

    // Act + Assert: a word's beginning, in any case, newest first, only in alice's rooms
    let found = search(&mut alice, "DEPLO", None, None).await.unwrap();
    assert_eq!(found.terms, ["deplo"]);
    assert_eq!(found.texts(), [("ops", "deployed: all green"), ("lobby", "Deploying the new build now")]);
    let first = &found.messages[1];
    assert_eq!((first.author.as_str(), first.id.as_deref()), ("bob", Some("b1")), "found as history shows it");

    // every word must be there; inside a word is not a beginning
    let found = search(&mut alice, "build deplo", None, None).await.unwrap();
    assert_eq!(found.texts(), [("lobby", "Deploying the new build now")]);
    assert!(search(&mut alice, "ploy", None, None).await.unwrap().messages.is_empty());
    // letters of any script, compared in lower case
    assert_eq!(
        search(&mut alice, "déploi ünï", None, None).await.unwrap().texts(),
        [("lobby", "Ünïcode DÉPLOIEMENT 2024")]
    );
    // one room, and a limit
    assert_eq!(search(&mut alice, "deplo", Some("lobby"), None).await.unwrap().texts().len(), 1);
    assert_eq!(search(&mut alice, "deplo", None, Some(1)).await.unwrap().texts(), [("ops", "deployed: all green")]);

    // the room alice is not in stays closed, whatever she puts in the request
    assert!(search(&mut alice, "mat keys", None, None).await.unwrap().messages.is_empty());
    assert_eq!(search(&mut alice, "keys", Some("vault"), None).await.unwrap_err(), ErrorCode::NotMember);
    // while bob, who is in it, finds it
    assert_eq!(
        search(&mut bob, "keys", None, None).await.unwrap().texts(),
        [("vault", "deploy keys are under the mat")]
    );
    // nothing to look for
    assert_eq!(search(&mut alice, " ?! ", None, None).await.unwrap_err(), ErrorCode::QueryEmpty);
    // someone in no room finds nothing
    let mut carol = app.client().await;
    assert!(search(&mut carol, "deplo", None, None).await.unwrap().messages.is_empty());
}

#[tokio::test]
async fn search_finds_messages_as_they_are_after_edits_and_deletions() {
    let app = spawn_app().await;
    let mut alice = app.person("alice", "alice-secret").await;
    let typo = say_acked(&mut alice, "lobby", "the relaese is out", "a1").await;
    let gone = say_acked(&mut alice, "lobby", "release party at noon", "a2").await;

    // Act: fix the typo, delete the other
    alice
        .send(&ClientMsg::Edit {
            id: Some("e1".into()),
            room: "lobby".into(),
            seq: typo,
            text: "the release is out".into(),
        })
        .await;
    acked(&mut alice, "e1").await;
    alice.send(&ClientMsg::Delete { id: Some("d1".into()), room: "lobby".into(), seq: gone }).await;
    acked(&mut alice, "d1").await;

    // Assert: found by the new words only, once (not also as the edit), and the deleted one never
    let found = search(&mut alice, "release", None, None).await.unwrap();
    let summary: Vec<_> = found.messages.iter().map(|m| (m.seq, m.text.as_str(), m.edited, m.edits)).collect();
    assert_eq!(summary, [(typo, "the release is out", true, None)]);
    assert!(search(&mut alice, "relaese", None, None).await.unwrap().messages.is_empty());
    assert!(search(&mut alice, "party", None, None).await.unwrap().messages.is_empty());
}

/// A database as a hub before search left it (schema version 2): a message in the lobby, one in
/// a room alice is not in, and a deleted one with its deletion.
/// (room, seq, text, ts, client id, edits, deleted)
type OldRow = (&'static str, i64, &'static str, i64, &'static str, Option<i64>, bool);
const OLD_ROWS: &[OldRow] = &[
    ("lobby", 1, "we deployed it", 1_000, "c:x1", None, false),
    ("vault", 1, "deploy keys under the mat", 1_001, "c:x2", None, false),
    ("lobby", 2, "", 1_002, "c:x3", None, true),
    ("lobby", 3, "", 1_003, "c:x4", Some(2), true),
];

/// What alice finds for `deplo` after the upgrade, then again once she said something new.
async fn finds_old_and_new(app: &crate::helpers::TestApp) {
    let mut alice = app.person("alice", "alice-secret").await;
    let found = search(&mut alice, "deplo", None, None).await.unwrap();
    assert_eq!(found.texts(), [("lobby", "we deployed it")], "the old message, and only in her rooms");
    let seq = say_acked(&mut alice, "lobby", "deploying again", "a1").await;
    assert_eq!(seq, 4, "numbered after the old ones");
    let found = search(&mut alice, "deplo", None, None).await.unwrap();
    assert_eq!(found.texts(), [("lobby", "deploying again"), ("lobby", "we deployed it")]);
}

#[tokio::test]
async fn messages_stored_before_search_existed_are_found_after_the_upgrade_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    // versions 1 and 2 of `server/src/store/migrations.rs`, as they shipped
    conn.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta (key, value) VALUES ('epoch', 'old0epoch');
         CREATE TABLE messages (room TEXT NOT NULL, seq INTEGER NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL,
             ts INTEGER NOT NULL, client_id TEXT NOT NULL, PRIMARY KEY (room, seq)) WITHOUT ROWID;
         CREATE UNIQUE INDEX messages_by_client_id ON messages (room, client_id);
         ALTER TABLE messages ADD COLUMN author_key TEXT;
         ALTER TABLE messages ADD COLUMN edits INTEGER;
         ALTER TABLE messages ADD COLUMN edited INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    for (room, seq, text, ts, client_id, edits, deleted) in OLD_ROWS {
        conn.execute(
            "INSERT INTO messages (room, seq, author, text, ts, client_id, author_key, edits, deleted)
             VALUES (?1, ?2, 'bob', ?3, ?4, ?5, 'k', ?6, ?7)",
            rusqlite::params![room, seq, text, ts, client_id, edits, deleted],
        )
        .unwrap();
    }
    drop(conn);

    let app = crate::helpers::spawn_app_with(|c| c.db = path.clone()).await;
    finds_old_and_new(&app).await;
}

#[tokio::test]
async fn messages_stored_before_search_existed_are_found_after_the_upgrade_in_postgres() {
    let pg = crate::pg::Postgres::start();
    let url = pg.database().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // versions 1 and 2 of `server/migrations/postgres`, as a hub records them
    client.batch_execute(include_str!("../../migrations/postgres/0001_init.sql")).await.unwrap();
    client.batch_execute(include_str!("../../migrations/postgres/0002_edits.sql")).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE hubbub_schema (version integer NOT NULL);
             INSERT INTO hubbub_schema (version) VALUES (1), (2);
             INSERT INTO rooms (room, head) VALUES ('lobby', 3), ('vault', 1);",
        )
        .await
        .unwrap();
    for (room, seq, text, ts, client_id, edits, deleted) in OLD_ROWS {
        client
            .execute(
                "INSERT INTO messages (room, seq, author, text, ts, client_id, author_key, edits, deleted)
                 VALUES ($1, $2, 'bob', $3, $4, $5, 'k', $6, $7)",
                &[room, seq, text, ts, client_id, edits, deleted],
            )
            .await
            .unwrap();
    }

    let app = crate::helpers::spawn_app_with(move |c| c.database = Some(url)).await;
    finds_old_and_new(&app).await;
}

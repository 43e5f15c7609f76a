//! Nothing lost: stored history, acknowledged idempotent sends, paging and resume.

use crate::helpers::*;
use hubbub_shared::{ChatMessage, ClientMsg, ErrorCode, ServerMsg, cursor::Cursor};
use std::{path::PathBuf, time::Duration};

fn send(room: &str, id: &str, text: &str) -> ClientMsg {
    ClientMsg::Send { id: Some(id.into()), room: room.into(), text: text.into() }
}

/// Sends `n` messages with ids `{prefix}{i}` and waits for each one's ack (acks of other
/// messages do not count); returns the seqs in the order the acks came.
async fn say_acked(c: &mut Client, room: &str, prefix: &str, n: usize) -> Vec<u64> {
    let mut waiting: std::collections::HashSet<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for i in 0..n {
        c.send(&send(room, &format!("{prefix}{i}"), &format!("{prefix} message {i}"))).await;
    }
    let mut seqs = Vec::new();
    while !waiting.is_empty() {
        if let ServerMsg::Ack { id, seq, .. } = c.next().await
            && waiting.remove(&id)
        {
            seqs.push(seq);
        }
    }
    seqs
}

fn history(msg: ServerMsg) -> (Vec<ChatMessage>, bool, bool) {
    match msg {
        ServerMsg::History { messages, recovered, more, .. } => (messages, recovered, more),
        other => panic!("expected history, got {other:?}"),
    }
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A database file in a new temporary folder, removed with the returned guard.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hubbub.db");
    (dir, db)
}

#[tokio::test]
async fn a_send_with_an_id_is_acknowledged_with_its_sequence_number_after_the_broadcast() {
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    alice.send(&send("lobby", "m-1", "hello")).await;
    let ServerMsg::Message(m) = alice.next().await else { panic!("own copy first") };
    assert_eq!(m.id.as_deref(), Some("m-1"), "the broadcast names the client id");
    assert_eq!(alice.next().await, ServerMsg::Ack { id: "m-1".into(), room: "lobby".into(), seq: m.seq });
}

#[tokio::test]
async fn the_same_id_sent_three_times_is_stored_once_and_acknowledged_three_times() {
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    let (mut bob, _) = app.joined("lobby", "bob").await;
    for _ in 0..3 {
        alice.send(&send("lobby", "same-id", "only once")).await;
    }
    let mut acks = Vec::new();
    while acks.len() < 3 {
        match alice.next().await {
            ServerMsg::Ack { id, seq, .. } => acks.push((id, seq)),
            ServerMsg::Message(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acks, vec![("same-id".to_string(), 1); 3]);
    assert!(matches!(bob.next().await, ServerMsg::Message(m) if m.seq == 1));
    assert!(bob.is_quiet_for(Duration::from_millis(300)).await, "broadcast once");
    let (_, h) = app.client().await.join_since("lobby", "carol", None).await;
    assert_eq!(seqs(&history(h).0), [1], "stored once");
}

#[tokio::test]
async fn joining_shows_the_latest_page_and_older_pages_on_request() {
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    say_acked(&mut alice, "lobby", "a", 60).await;

    let mut bob = app.client().await;
    let (_, h) = bob.join_since("lobby", "bob", None).await;
    let (page, recovered, more) = history(h);
    assert_eq!(seqs(&page), (11..=60).collect::<Vec<_>>(), "the newest 50, oldest first");
    assert!(more && !recovered);
    assert_eq!(page[0].text, "a message 10");

    bob.send(&ClientMsg::History { id: Some("h1".into()), room: "lobby".into(), before: 11, limit: None }).await;
    let (older, _, more) = history(bob.next().await);
    assert_eq!((seqs(&older), more), ((1..=10).collect::<Vec<_>>(), false));

    // page sizes are clamped, and only the requested room is read
    bob.send(&ClientMsg::History { id: None, room: "lobby".into(), before: 61, limit: Some(1_000_000_000) }).await;
    assert_eq!(history(bob.next().await).0.len(), 60);
    bob.send(&ClientMsg::History { id: None, room: "lobby".into(), before: 61, limit: Some(0) }).await;
    assert_eq!(seqs(&history(bob.next().await).0), [60]);
    bob.send(&ClientMsg::History { id: None, room: "kitchen".into(), before: 10, limit: None }).await;
    assert!(matches!(bob.next().await, ServerMsg::Error { code: ErrorCode::NotMember, .. }));
}

#[tokio::test]
async fn resume_table() {
    let app = spawn_app_with(|c| c.resume_gap_limit = 12).await;
    let epoch = app.epoch().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    alice.join("kitchen", "alice").await;
    say_acked(&mut alice, "lobby", "l", 20).await;
    let cursor = |room: &str, seq| Some(Cursor::new(&epoch, room, seq).to_string());

    // from the middle: exactly the missed messages, in order
    let (_, h) = app.client().await.join_since("lobby", "b1", cursor("lobby", 10)).await;
    let (page, recovered, _) = history(h);
    assert_eq!((seqs(&page), recovered), ((11..=20).collect::<Vec<_>>(), true));

    // from the head: nothing to send, fully recovered
    let (_, h) = app.client().await.join_since("lobby", "b2", cursor("lobby", 20)).await;
    assert_eq!(history(h).0.len(), 0);

    // beyond the gap limit: the latest page, not recovered
    let (_, h) = app.client().await.join_since("lobby", "b3", cursor("lobby", 2)).await;
    let (page, recovered, more) = history(h);
    assert_eq!((page.len(), page.last().map(|m| m.seq), recovered, more), (20, Some(20), false, false));

    // a cursor of another room, ahead of the head, or malformed: refused, then the latest page
    let bad_cursors =
        [cursor("kitchen", 5), cursor("lobby", 21), Some("1 OR 1=1".into()), Some(format!("{epoch}:lobby:-1"))];
    for (n, bad) in bad_cursors.into_iter().enumerate() {
        let mut c = app.client().await;
        c.send(&ClientMsg::Join {
            id: Some("j".into()),
            room: "lobby".into(),
            nick: format!("b{}", n + 4),
            since: bad.clone(),
            token: None,
        })
        .await;
        assert!(matches!(c.next().await, ServerMsg::Joined { .. }));
        let ServerMsg::Error { code, id, .. } = c.next().await else { panic!("refusal for {bad:?}") };
        assert_eq!((code, id.as_deref()), (ErrorCode::InvalidCursor, Some("j")), "{bad:?}");
        assert!(!history(c.next().await).1, "{bad:?}");
    }
}

#[tokio::test]
async fn history_and_sequence_numbers_survive_a_restart_and_a_replaced_database_is_detected() {
    let (_dir, db) = temp_db();
    let first = {
        let db = db.clone();
        spawn_app_with(move |c| c.db = db).await
    };
    let epoch = first.epoch().await;
    let (mut alice, _) = first.joined("lobby", "alice").await;
    assert_eq!(say_acked(&mut alice, "lobby", "x", 5).await, [1, 2, 3, 4, 5]);
    drop(alice);
    let mut first = first;
    first.shut_down();
    let _ = tokio::time::timeout(WAIT, &mut first.task).await;

    // the same file: same epoch, history kept, numbering continues, resume works
    let second = {
        let db = db.clone();
        spawn_app_with(move |c| c.db = db).await
    };
    assert_eq!(second.epoch().await, epoch);
    let mut bob = second.client().await;
    let (_, h) = bob.join_since("lobby", "bob", Some(Cursor::new(&epoch, "lobby", 3).to_string())).await;
    assert_eq!((seqs(&history(h).0), true), (vec![4, 5], true));
    assert_eq!(say_acked(&mut bob, "lobby", "y", 1).await, [6]);
    // a resend of an id acknowledged before the restart is still a duplicate
    bob.send(&send("lobby", "x0", "again")).await;
    assert!(matches!(bob.next().await, ServerMsg::Ack { seq: 1, .. }));

    // a new database in the old one's place: the old cursor is stale, not trusted
    let (_replaced_dir, replaced_db) = temp_db();
    let replaced = spawn_app_with(|c| c.db = replaced_db).await;
    let mut carol = replaced.client().await;
    let (_, h) = carol.join_since("lobby", "carol", Some(Cursor::new(&epoch, "lobby", 6).to_string())).await;
    let (page, recovered, _) = history(h);
    assert!(page.is_empty() && !recovered, "stale cursor: not recovered");
}

#[tokio::test]
async fn a_database_locked_by_another_process_delays_or_refuses_acks_and_the_hub_recovers() {
    let (_dir, db) = temp_db();
    let app = {
        let db = db.clone();
        spawn_app_with(move |c| {
            c.db = db;
            c.db_busy_timeout_ms = 1_000;
        })
        .await
    };
    let (mut alice, _) = app.joined("lobby", "alice").await;
    assert_eq!(say_acked(&mut alice, "lobby", "before", 1).await, [1]);

    // another process takes the write lock for 3 s: longer than the busy timeout
    let locker = {
        let db = db.clone();
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
            std::thread::sleep(Duration::from_secs(3));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    alice.send(&send("lobby", "during", "while locked")).await;
    // the connection itself stays responsive while the commit waits
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        alice.ws.send(Message::Ping(b"still there?".to_vec().into())).await.unwrap();
        let pong = tokio::time::timeout(Duration::from_millis(500), alice.ws.next()).await.expect("pong while locked");
        assert!(matches!(pong, Some(Ok(Message::Pong(p))) if &p[..] == b"still there?"));
    }
    // nothing is broadcast or acknowledged; a typed error instead
    let ServerMsg::Error { code, id, .. } = alice.next().await else { panic!("expected the refusal") };
    assert_eq!((code, id.as_deref()), (ErrorCode::StorageUnavailable, Some("during")));
    let (status, _, _) = http_get(app.addr, "/healthz", &[]).await;
    assert!(status == 200 || status == 503);
    locker.join().unwrap();

    // after the lock is gone, the same message (same id) goes through, once
    alice.send(&send("lobby", "during", "while locked")).await;
    let ServerMsg::Message(m) = alice.next().await else { panic!("broadcast after recovery") };
    assert_eq!((m.seq, m.text.as_str()), (2, "while locked"));
    assert!(matches!(alice.next().await, ServerMsg::Ack { seq: 2, .. }));
}

#[tokio::test]
async fn sql_looking_input_round_trips_literally_and_the_schema_stays_intact() {
    let app = spawn_app().await;
    let nick = "'; DROP TABLE messages;--";
    let (mut mallory, _) = app.joined("lobby", nick).await;
    let texts = ["%' OR 1=1 --", "'); DELETE FROM messages; --", "\" OR \"\"=\""];
    for (i, text) in texts.iter().enumerate() {
        mallory.send(&send("lobby", &format!("q{i}"), text)).await;
    }
    let mut acks = 0;
    while acks < texts.len() {
        if let ServerMsg::Ack { .. } = mallory.next().await {
            acks += 1;
        }
    }
    // rooms cannot carry SQL at all
    mallory
        .send(&ClientMsg::Join {
            id: None,
            room: "'; DROP TABLE messages;--".into(),
            nick: "x".into(),
            since: None,
            token: None,
        })
        .await;
    let refused = loop {
        if let ServerMsg::Error { code, .. } = mallory.next().await {
            break code;
        }
    };
    assert_eq!(refused, ErrorCode::RoomForbiddenChar);

    let (_, h) = app.client().await.join_since("lobby", "reader", None).await;
    let (page, _, _) = history(h);
    let got: Vec<(&str, &str)> = page.iter().map(|m| (m.author.as_str(), m.text.as_str())).collect();
    assert_eq!(got, texts.map(|t| (nick, t)));
    // a cursor past 2^63 is refused like any other bad one
    let mut c = app.client().await;
    let epoch = app.epoch().await;
    c.send(&ClientMsg::Join {
        id: None,
        room: "lobby".into(),
        nick: "late".into(),
        since: Some(format!("{epoch}:lobby:9223372036854775808")),
        token: None,
    })
    .await;
    assert!(matches!(c.next().await, ServerMsg::Joined { .. }));
    assert!(matches!(c.next().await, ServerMsg::Error { code: ErrorCode::InvalidCursor, .. }));
}

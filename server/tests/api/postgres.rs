//! The history in a real PostgreSQL (`--database`), shared by two hubs: one gap-free `seq` per
//! room whoever stores, resends found whichever hub they reach, a cursor from one hub resumed at
//! the other, and an outage that refuses sends without losing anything acknowledged.

use crate::{helpers::*, pg::Postgres};
use hubbub_shared::{ClientMsg, ErrorCode, ServerMsg, cursor::Cursor};
use std::collections::BTreeSet;

async fn hub_on(url: &str) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |c| c.database = Some(url)).await
}

fn send(id: &str, text: &str) -> ClientMsg {
    ClientMsg::Send { id: Some(id.into()), room: "lobby".into(), text: text.into() }
}

/// Reads until the `ack` (or refusal) of every id in `ids`; their seqs (0 for a refusal).
async fn acks(client: &mut Client, ids: &[String]) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    while got.len() < ids.len() {
        match client.next().await {
            ServerMsg::Ack { id, seq, .. } => got.push((id, seq)),
            ServerMsg::Error { id: Some(id), code: ErrorCode::StorageUnavailable, .. } => got.push((id, 0)),
            ServerMsg::Message(_) | ServerMsg::Typing { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    got
}

/// Every message of the lobby, oldest first, paging back with `history` requests.
async fn whole_history(client: &mut Client) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut before = u64::MAX;
    loop {
        client.send(&ClientMsg::History { id: Some("h".into()), room: "lobby".into(), before, limit: Some(40) }).await;
        let (messages, more) = loop {
            match client.next().await {
                ServerMsg::History { id: Some(id), messages, more, .. } if id == "h" => break (messages, more),
                _ => continue,
            }
        };
        let Some(first) = messages.first() else { break };
        before = first.seq;
        all.splice(0..0, messages.into_iter().map(|m| (m.seq, m.text)));
        if !more {
            break;
        }
    }
    all
}

#[tokio::test]
async fn two_hubs_on_one_database_number_a_room_without_gaps_dedupe_resends_and_resume_each_others_cursors() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let (hub_a, hub_b) = (hub_on(&url).await, hub_on(&url).await);
    assert_eq!(hub_a.epoch().await, hub_b.epoch().await, "the epoch names the database, not the hub");
    let (mut alice, _) = hub_a.joined("lobby", "alice").await;
    let (mut bob, _) = hub_b.joined("lobby", "bob").await;

    // Act: both hubs store into the same room at once
    let ids = |who: &str| (0..60).map(|i| format!("{who}-{i}")).collect::<Vec<_>>();
    let (alice_ids, bob_ids) = (ids("a"), ids("b"));
    for (a, b) in alice_ids.iter().zip(&bob_ids) {
        alice.send(&send(a, a)).await;
        bob.send(&send(b, b)).await;
    }
    let (from_a, from_b) = tokio::join!(acks(&mut alice, &alice_ids), acks(&mut bob, &bob_ids));

    // Assert: one numbering for the room, no gap, no seq twice, each hub's own order kept
    let seqs: BTreeSet<u64> = from_a.iter().chain(&from_b).map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=120).collect(), "every seq once");
    for acks in [&from_a, &from_b] {
        assert!(acks.windows(2).all(|w| w[0].1 < w[1].1), "a sender's messages keep their order");
    }

    // a resend that reaches the other hub is found there, not stored again
    bob.send(&send("a-7", "a-7 again")).await;
    let resent = acks(&mut bob, &["a-7".to_owned()]).await;
    let first = from_a.iter().find(|(id, _)| id == "a-7").unwrap().1;
    assert_eq!(resent[0].1, first, "acknowledged with the first copy's seq");

    // either hub serves the whole history, once, in order
    let history = whole_history(&mut bob).await;
    assert_eq!(history.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=120).collect::<Vec<_>>());
    assert!(!history.iter().any(|(_, text)| text == "a-7 again"));

    // a page that loses hub A resumes at hub B from its cursor: exactly what it missed
    let cursor = Cursor::new(&hub_a.epoch().await, "lobby", 110).to_string();
    let (_, resumed) = hub_b.client().await.join_since("lobby", "alice-phone", Some(cursor)).await;
    let ServerMsg::History { messages, recovered, .. } = resumed else { panic!() };
    assert!(recovered, "the cursor is valid at any hub of the database");
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), (111..=120).collect::<Vec<_>>());
}

#[tokio::test]
async fn postgres_down_refuses_sends_then_they_work_again_and_nothing_acknowledged_is_lost() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let app = hub_on(&url).await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    let before: Vec<String> = (0..5).map(|i| format!("m{i}")).collect();
    for id in &before {
        alice.send(&send(id, id)).await;
    }
    assert!(acks(&mut alice, &before).await.iter().all(|(_, seq)| *seq > 0));

    // Act: the database goes away
    pg.stop();
    alice.send(&send("during", "said while the database was down")).await;
    let refused = acks(&mut alice, &["during".to_owned()]).await;
    assert_eq!(refused[0].1, 0, "refused with storage_unavailable, never a false ack");
    let (status, _, body) = http_get(app.addr, "/healthz", &[]).await;
    assert_eq!(status, 503, "{body}");

    // ... and comes back: the page's resend of the same id is stored, once
    pg.restart();
    alice.send(&send("during", "said while the database was down")).await;
    let stored = acks(&mut alice, &["during".to_owned()]).await;
    assert_eq!(stored[0].1, 6);
    let history = whole_history(&mut alice).await;
    assert_eq!(history.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert_eq!(app.health().await["status"], "ok");
}

#[tokio::test]
async fn health_and_readiness_follow_the_commits_not_only_whether_the_database_answers() {
    let pg = Postgres::start();
    let url = pg.database().await;
    let app = hub_on(&url).await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    alice.send(&send("ok-1", "fine")).await;
    assert_eq!(acks(&mut alice, &["ok-1".to_owned()]).await[0].1, 1);
    let (status, _, _) = http_get(app.addr, "/readyz", &[]).await;
    assert_eq!(status, 200);

    // Arrange: the database answers every SELECT, but refuses to store anything
    let (admin, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(driver);
    admin.batch_execute("ALTER TABLE messages ADD CONSTRAINT no_writes CHECK (false) NOT VALID").await.unwrap();

    // Act + Assert: the failed commit is what health reports
    alice.send(&send("refused-1", "not stored")).await;
    assert_eq!(acks(&mut alice, &["refused-1".to_owned()]).await[0].1, 0, "storage_unavailable");
    let (status, _, body) = http_get(app.addr, "/healthz", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no_writes"), "says why: {body}");
    let (status, _, body) = http_get(app.addr, "/readyz", &[]).await;
    assert_eq!(status, 503, "{body}");

    // ... and the next commit that works clears it, without a restart
    admin.batch_execute("ALTER TABLE messages DROP CONSTRAINT no_writes").await.unwrap();
    alice.send(&send("refused-1", "not stored")).await;
    assert_eq!(acks(&mut alice, &["refused-1".to_owned()]).await[0].1, 2);
    assert_eq!(app.health().await["status"], "ok");
    let (status, _, _) = http_get(app.addr, "/readyz", &[]).await;
    assert_eq!(status, 200);
}

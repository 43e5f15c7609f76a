//! The cluster mode with real processes: two `hubbub` processes on one real PostgreSQL and one
//! real `redis-server`, each started by the test on a free loopback port and stopped by PID.
//! A hub is killed (`kill -9`) in the middle of a burst: afterwards the database holds every
//! acknowledged message once, `seq` has no gap, and the member on the surviving hub has heard
//! every stored message once, in order (those the dead hub committed but never published
//! included). And alice, whose hub died, leaves bob's member list once the dead hub's view of
//! the room runs out (three heartbeats), without waiting for anything else.

mod support;

use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_frame, encode};
use std::collections::BTreeSet;
use support::{Hub, WAIT, postgres::Postgres, redis::Redis};
use tokio_tungstenite::tungstenite::Message;

use hubbub_client::Socket as Ws;

const BURST: usize = 400;

async fn joined(hub: &Hub, nick: &str) -> Ws {
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut ws = hubbub_client::connect(&url, &[]).await.unwrap();
    hubbub_client::join_and_wait(&mut ws, &hubbub_client::join("lobby", nick), WAIT).await.unwrap();
    ws
}

#[tokio::test]
async fn a_hub_killed_mid_burst_loses_nothing_acknowledged_and_the_other_hubs_member_hears_all_that_was_stored() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    let redis_url = redis.url();
    let args = [
        "--database",
        &url,
        "--redis",
        &redis_url,
        "--messages-per-sec",
        "1000000",
        "--message-burst",
        "1000000",
        "--frames-per-sec",
        "1000000",
        "--redis-heartbeat-ms",
        "200",
    ];
    let (mut a, b) = (Hub::start(&args).await, Hub::start(&args).await);
    let mut bob = joined(&b, "bob").await;
    let alice = joined(&a, "alice").await;
    // bob's list shows alice (hub A shared its view of the room) before anything happens
    'listed: loop {
        let Some(Ok(Message::Text(text))) = tokio::time::timeout(WAIT, bob.next()).await.expect("alice shows") else {
            continue;
        };
        for msg in decode_server_frame(&text).unwrap() {
            if matches!(&msg, ServerMsg::Presence { joined, .. } if joined.contains(&"alice".to_owned())) {
                break 'listed;
            }
        }
    }

    // Act: alice floods hub A; A is killed once a quarter of the burst is acknowledged
    let (mut tx, mut rx) = alice.split();
    let sender = tokio::spawn(async move {
        for i in 0..BURST {
            let send = ClientMsg::Send { id: Some(format!("m{i}")), room: "lobby".into(), text: format!("m{i}") };
            if tx.send(Message::text(encode(&send))).await.is_err() {
                break; // the hub is gone
            }
        }
    });
    let mut acked = BTreeSet::new();
    'reading: while acked.len() < BURST / 4 {
        let Some(Ok(Message::Text(text))) = tokio::time::timeout(WAIT, rx.next()).await.expect("acks in time") else {
            break;
        };
        for msg in decode_server_frame(&text).unwrap() {
            if let ServerMsg::Ack { id, .. } = msg {
                acked.insert(id);
                if acked.len() >= BURST / 4 {
                    break 'reading;
                }
            }
        }
    }
    a.kill();
    let killed = std::time::Instant::now();
    let _ = sender.await;

    // Assert: the database holds every acknowledged message, once, with no gap
    let (db, driver) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(driver);
    let rows = db.query("SELECT seq, client_id FROM messages WHERE room = 'lobby' ORDER BY seq", &[]).await.unwrap();
    let stored: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let seqs: Vec<i64> = stored.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>(), "no gap");
    let ids: BTreeSet<String> = stored.iter().map(|(_, id)| id.trim_start_matches("c:").to_owned()).collect();
    assert_eq!(ids.len(), stored.len(), "none twice");
    assert!(acked.is_subset(&ids), "every acknowledged message is stored");
    assert!(stored.len() >= BURST / 4);

    // ... and bob, on the surviving hub, hears every stored message once, in order
    let mut heard = Vec::new();
    let mut alice_left = None;
    while heard.len() < stored.len() || alice_left.is_none() {
        let Some(Ok(Message::Text(text))) = tokio::time::timeout(WAIT, bob.next()).await.expect("bob keeps hearing")
        else {
            continue;
        };
        for msg in decode_server_frame(&text).unwrap() {
            match msg {
                ServerMsg::Message(m) => heard.push(m.seq as i64),
                ServerMsg::Presence { left, .. } if left.contains(&"alice".to_owned()) => {
                    alice_left = Some(killed.elapsed());
                }
                _ => {}
            }
        }
    }
    assert_eq!(heard, seqs, "every stored message once, in order");
    // three heartbeats of 200 ms, checked every heartbeat, then a presence tick
    let alice_left = alice_left.expect("read until then");
    assert!(alice_left < std::time::Duration::from_secs(3), "alice left after {alice_left:?}");
    drop(b);
}

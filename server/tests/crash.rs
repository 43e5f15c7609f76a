//! Crash safety, on the real binary: acknowledged messages survive `kill -9` exactly once and
//! in order, and the database stays intact. Three rounds, killed after a pseudo-random number of
//! acknowledgements (fixed seed, so a failure replays).

mod support;

use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_frame, encode};
use std::collections::HashMap;
use support::{Hub, WAIT, fresh_db};
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: usize = 500;
/// The writer floods on purpose.
const UNLIMITED: &[&str] =
    &["--messages-per-sec", "1000000", "--message-burst", "1000000", "--frames-per-sec", "1000000"];

/// A small deterministic generator (64-bit LCG): the kill points replay across runs.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

use hubbub_client::Socket as Ws;

async fn joined(hub: &Hub, nick: &str) -> Ws {
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut ws = hubbub_client::connect(&url, &[]).await.unwrap();
    hubbub_client::join_and_wait(&mut ws, &hubbub_client::join("crash", nick), WAIT).await.unwrap();
    ws
}

/// The messages of the next text frame (one, or several batched in an array).
async fn next(ws: &mut Ws) -> Vec<ServerMsg> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => return decode_server_frame(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

async fn send_all(ws: &mut Ws, round: usize) {
    for i in 0..MESSAGES {
        let msg =
            ClientMsg::Send { id: Some(format!("r{round}-{i}")), room: "crash".into(), text: format!("message {i}") };
        ws.feed(Message::text(encode(&msg))).await.unwrap();
    }
    ws.flush().await.unwrap();
}

/// (client id, seq) of every stored message of the room, in seq order; checks integrity.
fn stored(db: &std::path::Path) -> Vec<(String, u64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let mut stmt = conn.prepare("SELECT client_id, seq FROM messages WHERE room = 'crash' ORDER BY seq").unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill_exactly_once_and_in_order() {
    let mut rng = Lcg(0x5eed);
    for round in 0..3 {
        let db = fresh_db();
        let kill_after = 1 + rng.below(MESSAGES as u64 - 1) as usize;

        // Act: 500 messages in flight; kill -9 after `kill_after` acknowledgements
        let mut hub = Hub::start_on(&db, UNLIMITED).await;
        let mut ws = joined(&hub, "writer").await;
        send_all(&mut ws, round).await;
        let mut acked: HashMap<String, u64> = HashMap::new();
        while acked.len() < kill_after {
            for msg in next(&mut ws).await {
                if let ServerMsg::Ack { id, seq, .. } = msg {
                    acked.insert(id, seq);
                }
            }
        }
        hub.kill();

        // Assert: every acknowledged message is on disk once, with its seq; no gaps
        let rows = stored(&db);
        let seqs: Vec<u64> = rows.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, (1..=rows.len() as u64).collect::<Vec<_>>(), "round {round}: gap-free, in order");
        let by_id: HashMap<&str, u64> = rows.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        assert_eq!(by_id.len(), rows.len(), "round {round}: no id stored twice");
        for (id, seq) in &acked {
            assert_eq!(by_id.get(format!("c:{id}").as_str()), Some(seq), "round {round}: acknowledged {id} lost");
        }
        println!("round {round}: killed after {kill_after} acks; {} messages on disk", rows.len());

        // and after a restart, resending everything stores each message exactly once
        let hub = Hub::start_on(&db, UNLIMITED).await;
        let mut ws = joined(&hub, "writer").await;
        send_all(&mut ws, round).await;
        let mut acks = 0;
        while acks < MESSAGES {
            for msg in next(&mut ws).await {
                if let ServerMsg::Ack { id, seq, .. } = msg {
                    if let Some(before) = acked.get(&id) {
                        assert_eq!(*before, seq, "round {round}: {id} kept its seq");
                    }
                    acks += 1;
                }
            }
        }
        assert_eq!(stored(&db).len(), MESSAGES, "round {round}: 500 ids, 500 rows");
        drop(hub);
    }
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_keeps_what_was_acknowledged_and_exits_0() {
    let db = fresh_db();
    let mut hub = Hub::start_on(&db, UNLIMITED).await;
    let address = hub.url.trim_start_matches("http://").to_owned();
    // three clients; the writer keeps sending until the hub goes away
    let mut idle_a = joined(&hub, "a").await;
    let mut idle_b = joined(&hub, "b").await;
    let (mut writer_tx, mut writer) = joined(&hub, "writer").await.split();
    let mut acked = HashMap::new();
    // the writer sends without pause, before, during and after the SIGTERM
    let sending = tokio::spawn(async move {
        let mut sent = 0usize;
        loop {
            let msg = ClientMsg::Send { id: Some(format!("t{sent}")), room: "crash".into(), text: "mid-send".into() };
            if writer_tx.send(Message::text(encode(&msg))).await.is_err() {
                return sent;
            }
            sent += 1;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    while acked.len() < 20 {
        let frame = tokio::time::timeout(WAIT, writer.next()).await.expect("acks in time");
        if let Some(Ok(Message::Text(t))) = frame {
            for msg in decode_server_frame(&t).unwrap() {
                if let ServerMsg::Ack { id, seq, .. } = msg {
                    acked.insert(id, seq);
                }
            }
        }
    }

    // Act: SIGTERM while messages are in flight
    let pid = hub.child.id().unwrap();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());

    // Assert: everyone gets 1001; meanwhile no new connection gets in
    let mut refused_while_draining = false;
    let (writer_rx, idle_a_rx, idle_b_rx) = (&mut writer, &mut idle_a, &mut idle_b);
    let streams: [(&str, &mut (dyn futures_util::Stream<Item = _> + Unpin)); 3] =
        [("writer", writer_rx), ("idle a", idle_a_rx), ("idle b", idle_b_rx)];
    for (name, ws) in streams {
        let code = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                    Some(Ok(Message::Text(t))) => {
                        for msg in decode_server_frame(&t).unwrap() {
                            if let ServerMsg::Ack { id, seq, .. } = msg {
                                acked.insert(id, seq);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("{name}: no close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("the close arrives within the drain deadline");
        assert_eq!(code, Some(hubbub_shared::close::GOING_AWAY), "{name}");
        if !refused_while_draining {
            refused_while_draining = tokio::net::TcpStream::connect(&address).await.is_err();
        }
    }
    assert!(refused_while_draining, "new connections are refused while draining");
    assert!(acked.len() >= 20);
    let sent = sending.await.unwrap();
    let status = tokio::time::timeout(WAIT, hub.child.wait()).await.expect("exits within the grace").unwrap();
    assert_eq!(status.code(), Some(0));

    // every acknowledged message is on disk
    let rows: HashMap<String, u64> = stored(&db).into_iter().collect();
    for (id, seq) in &acked {
        assert_eq!(rows.get(&format!("c:{id}")), Some(seq), "acknowledged {id} missing");
    }
    println!("SIGTERM with {sent} sent: {} acknowledged, {} on disk", acked.len(), rows.len());
}

//! Closing: by the client, and by the hub at shutdown.

use crate::helpers::*;
use futures_util::{SinkExt, StreamExt};
use hubbub_shared::close;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

#[tokio::test]
async fn a_client_close_is_answered_and_the_member_removed() {
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    let (mut bob, _) = app.joined("lobby", "bob").await;
    alice.sees_join("bob").await;

    bob.ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))).await.unwrap();
    // the hub answers the close; then the stream ends
    let reply = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match bob.ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("expected the close reply, got {other:?}"),
            }
        }
    })
    .await
    .expect("close answered within 1 s");
    assert_eq!(reply.map(|f| u16::from(f.code)), Some(close::NORMAL));
    assert!(matches!(tokio::time::timeout(WAIT, bob.ws.next()).await, Ok(None)), "then the TCP connection ends");

    alice.sees_leave("bob").await;
    assert!(alice.is_quiet_for(Duration::from_millis(200)).await);
    app.wait_for_health("connections", 1).await;
}

#[tokio::test]
async fn shutdown_sends_every_client_1001_and_stops_accepting() {
    let mut app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    let (mut bob, _) = app.joined("lobby", "bob").await;

    app.shut_down();
    assert_eq!(alice.expect_close().await, close::GOING_AWAY);
    assert_eq!(bob.expect_close().await, close::GOING_AWAY);
    // the clients answer the close (tungstenite does that on the next read)
    let _ = tokio::time::timeout(WAIT, alice.ws.next()).await;
    let _ = tokio::time::timeout(WAIT, bob.ws.next()).await;

    let result = tokio::time::timeout(WAIT, &mut app.task).await.expect("the hub stops within the grace");
    result.expect("task joined").expect("clean exit");
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn counters_return_to_zero_when_everyone_is_gone() {
    let app = spawn_app().await;
    let (a, _) = app.joined("lobby", "a").await;
    let (b, _) = app.joined("kitchen", "b").await;
    assert_eq!(app.health().await["rooms"], 2);
    drop((a, b));
    app.wait_for_health("connections", 0).await;
    app.wait_for_health("rooms", 0).await;
}

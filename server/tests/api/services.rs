//! The seed's other systems: echo and add, on the same connection machinery as the chat.

use crate::helpers::*;
use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ErrorCode, ServerMsg, close};
use tokio_tungstenite::tungstenite::Message;

async fn raw(app: &TestApp, path: &str) -> Ws {
    hubbub_client::connect(&format!("ws://{}{path}", app.addr), &[]).await.expect("handshake")
}

async fn next(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn echo_returns_text_and_binary_unchanged_and_in_order() {
    let app = spawn_app_with(|c| c.echo_max_message_bytes = 2 << 20).await;
    let mut ws = raw(&app, "/ws/echo").await;
    let big = vec![7u8; 1 << 20]; // far over the chat's 4 KiB limit, raised for this test
    let sent = [
        Message::text("hello"),
        Message::binary(vec![0u8, 159, 146, 150]),
        Message::text("ünïcödé ✓ and {not json"),
        Message::binary(big),
    ];
    for m in &sent {
        ws.send(m.clone()).await.unwrap();
    }
    for m in &sent {
        assert_eq!(&next(&mut ws).await, m, "no greeting, just the echo");
    }
}

#[tokio::test]
async fn echo_has_its_own_size_limit_and_the_shared_close_codes() {
    // the default: 64 KiB
    let app = spawn_app().await;
    let mut ws = raw(&app, "/ws/echo").await;
    ws.send(Message::text("x".repeat(64 * 1024))).await.unwrap();
    assert_eq!(next(&mut ws).await.len(), 64 * 1024);
    ws.send(Message::binary(vec![1u8; 64 * 1024 + 1])).await.unwrap();
    let Message::Close(Some(frame)) = next(&mut ws).await else { panic!("expected a close") };
    assert_eq!(u16::from(frame.code), close::MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn echo_has_its_own_frame_rate_and_can_be_turned_off() {
    let app = spawn_app_with(|c| c.echo_frames_per_sec = 50.0).await;
    let mut ws = raw(&app, "/ws/echo").await;
    for i in 0..1000 {
        if ws.send(Message::text(format!("{i}"))).await.is_err() {
            break;
        }
    }
    let code = loop {
        match next(&mut ws).await {
            Message::Close(Some(frame)) => break u16::from(frame.code),
            Message::Text(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, close::RATE_LIMITED, "a flood is closed");

    let off = spawn_app_with(|c| c.echo = false).await;
    let refused = hubbub_client::connect(&format!("ws://{}/ws/echo", off.addr), &[]).await;
    assert!(matches!(refused, Err(hubbub_client::ConnectError::Refused { status: 404, .. })), "{refused:?}");
}

#[tokio::test]
async fn the_chat_socket_adds_numbers_and_refuses_overflow_and_wrong_types_with_the_request_id() {
    let app = spawn_app().await;
    let mut c = app.client().await;
    c.send(&ClientMsg::Add { id: Some("a1".into()), a: 3, b: 9 }).await;
    assert_eq!(c.next().await, ServerMsg::Sum { id: Some("a1".into()), sum: 12 });

    c.send(&ClientMsg::Add { id: Some("a2".into()), a: i64::MAX, b: 1 }).await;
    let ServerMsg::Error { id, code, .. } = c.next().await else { panic!() };
    assert_eq!((id.as_deref(), code), (Some("a2"), ErrorCode::Overflow));

    for (frame, want_id) in [
        (r#"{"type":"add","id":"a3","a":"3","b":9}"#, "a3"),
        (r#"{"type":"add","id":"a4","a":1.5,"b":9}"#, "a4"),
        (r#"{"type":"add","id":"a5","a":1}"#, "a5"),
    ] {
        c.send_raw(frame).await;
        let ServerMsg::Error { id, code, .. } = c.next().await else { panic!() };
        assert_eq!((id.as_deref(), code), (Some(want_id), ErrorCode::InvalidMessage), "{frame}");
    }
}

#[tokio::test]
async fn the_add_socket_speaks_the_seeds_exact_shape() {
    let app = spawn_app().await;
    let mut ws = raw(&app, "/ws/add").await;
    let mut ask = async |frame: &str| -> serde_json::Value {
        ws.send(Message::text(frame)).await.unwrap();
        let Message::Text(reply) = next(&mut ws).await else { panic!("text reply") };
        serde_json::from_str(&reply).unwrap()
    };
    assert_eq!(ask(r#"{"A":3,"B":9}"#).await, serde_json::json!({"Sum": 12}));
    assert_eq!(ask(r#"{"A":-40,"B":2}"#).await, serde_json::json!({"Sum": -38}));
    assert_eq!(ask(r#"{"A":9223372036854775807,"B":1}"#).await["Code"], "overflow");
    assert_eq!(ask(r#"{"A":"3","B":9}"#).await["Code"], "invalid_message");
    assert_eq!(ask("{nope").await["Code"], "bad_json");
    assert_eq!(ask(r#"{"A":1,"B":1}"#).await, serde_json::json!({"Sum": 2}), "still open after refusals");
}

#[tokio::test]
async fn every_socket_applies_the_origin_policy() {
    let app = spawn_app().await;
    for path in ["/ws/echo", "/ws/add"] {
        let url = format!("ws://{}{path}", app.addr);
        let err = hubbub_client::connect(&url, &[("origin", "https://evil.example")]).await.expect_err("refused");
        let ConnectError::Refused { status, .. } = err else { panic!("{err:?}") };
        assert_eq!(status, 403, "{path}");
    }
}

//! permessage-deflate, as a browser negotiates it: long messages travel compressed both ways, a
//! broadcast is compressed once for all its members, a client without the offer is served as
//! before, `--compression false` never agrees, and a compressed message cannot get past the
//! size limit by inflating.

use crate::helpers::{Client, TestApp, WAIT, spawn_app, spawn_app_with};
use futures_util::SinkExt;
use hubbub_shared::{ClientMsg, ServerMsg, close, encode};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        protocol::{
            DeflateConfig, WebSocketConfig,
            frame::{
                Frame,
                coding::{Data, OpCode},
            },
        },
    },
};

/// What Chromium offers.
const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Connects offering `offer` (if any), reading compressed frames when the hub agreed; returns
/// the greeted client and the hub's `Sec-WebSocket-Extensions` answer.
async fn connect(app: &TestApp, offer: Option<&str>) -> (Client, Option<String>) {
    let mut request = app.ws_url().into_client_request().unwrap();
    if let Some(offer) = offer {
        request.headers_mut().insert("sec-websocket-extensions", offer.parse().unwrap());
    }
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let config = WebSocketConfig::default().deflate(offer.map(|_| DeflateConfig::default()));
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config)),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let answer = response.headers().get("sec-websocket-extensions").map(|v| v.to_str().unwrap().to_owned());
    let mut client = Client::from_ws(ws);
    assert!(matches!(client.next().await, ServerMsg::Welcome { .. }));
    (client, answer)
}

/// `data` deflated the way a browser sends it: raw deflate, sync flush, the `00 00 ff ff` tail
/// removed, in a text frame with RSV1 set.
fn compressed_text(data: &[u8]) -> Message {
    let mut compressor = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    compressor.compress_vec(data, &mut out, flate2::FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "a sync flush ends so");
    out.truncate(out.len() - 4);
    let mut frame = Frame::message(out, OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true;
    Message::Frame(frame)
}

async fn counters(app: &TestApp) -> (u64, u64, u64) {
    let health = app.health().await;
    let n = |k: &str| health[k].as_u64().unwrap_or_else(|| panic!("{k} in /healthz"));
    (n("deflate_connections"), n("compressions"), n("compressed_frames_out"))
}

async fn said(client: &mut Client, text: &str) {
    loop {
        match client.next().await {
            ServerMsg::Message(m) if m.text == text => return,
            ServerMsg::Message(m) => panic!("another message came first: {:?}", m.text),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_long_message_sent_compressed_reaches_every_member_compressed_once() {
    let app = spawn_app().await;
    let (mut alice, answer) = connect(&app, Some(BROWSER_OFFER)).await;
    // each side compresses every message alone: the hub keeps no inflater between messages
    let both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    assert_eq!(answer.as_deref(), Some(both));
    let (mut bob, _) = connect(&app, Some(BROWSER_OFFER)).await;
    let (mut carol, _) = connect(&app, Some("permessage-deflate; client_no_context_takeover")).await;
    let (mut dave, answer) = connect(&app, None).await;
    assert_eq!(answer, None, "no offer, no extension");
    for (client, nick) in [(&mut alice, "alice"), (&mut bob, "bob"), (&mut carol, "carol"), (&mut dave, "dave")] {
        client.join("lobby", nick).await;
    }
    let (agreed, compressions, compressed_out) = counters(&app).await;
    assert_eq!(agreed, 3);

    // Act: alice says something long, compressed as her browser would
    let text = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(12);
    let send = ClientMsg::Send { id: None, room: "lobby".into(), text: text.trim_end().into() };
    alice.ws.send(compressed_text(encode(&send).as_bytes())).await.expect("send");

    // Assert: everyone reads it (the three who agreed had it compressed; dave as it was)
    for client in [&mut alice, &mut bob, &mut carol, &mut dave] {
        said(client, text.trim_end()).await;
    }
    let (_, compressions_after, compressed_out_after) = counters(&app).await;
    assert_eq!(compressions_after - compressions, 1, "one compression for the whole room");
    assert_eq!(compressed_out_after - compressed_out, 3, "one compressed frame per member who agreed");
    drop((alice, bob, carol, dave));
    app.assert_settled().await;
}

#[tokio::test]
async fn with_compression_off_the_offer_is_declined_and_everything_still_arrives() {
    let app = spawn_app_with(|c| c.compression = false).await;
    let (mut alice, answer) = connect(&app, Some(BROWSER_OFFER)).await;
    assert_eq!(answer, None);
    let (mut bob, _) = connect(&app, Some(BROWSER_OFFER)).await;
    alice.join("lobby", "alice").await;
    bob.join("lobby", "bob").await;
    let text = "words words words ".repeat(30);
    alice.say("lobby", text.trim_end()).await;
    said(&mut bob, text.trim_end()).await;
    assert_eq!(counters(&app).await, (0, 0, 0));
    drop((alice, bob));
    app.assert_settled().await;
}

#[tokio::test]
async fn a_message_that_inflates_past_the_limit_is_closed_as_too_big_and_garbage_as_a_protocol_error() {
    let app = spawn_app().await;
    // 1 MiB of the same letter deflates to about a kilobyte: under the 4 KiB limit on the wire
    let (mut bomber, _) = connect(&app, Some(BROWSER_OFFER)).await;
    bomber.join("lobby", "bomber").await;
    let bomb = ClientMsg::Send { id: None, room: "lobby".into(), text: "a".repeat(1 << 20) };
    bomber.ws.send(compressed_text(encode(&bomb).as_bytes())).await.expect("send");
    assert_eq!(bomber.expect_close().await, close::MESSAGE_TOO_BIG);

    let (mut garbler, _) = connect(&app, Some(BROWSER_OFFER)).await;
    let mut frame = Frame::message(vec![0xff; 64], OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true;
    garbler.ws.send(Message::Frame(frame)).await.expect("send");
    assert_eq!(garbler.expect_close().await, close::PROTOCOL_ERROR);

    // and RSV1 without the extension agreed is a protocol error as before
    let (mut plain, _) = connect(&app, None).await;
    plain.ws.send(compressed_text(b"{\"type\":\"ping\"}")).await.expect("send");
    assert_eq!(plain.expect_close().await, close::PROTOCOL_ERROR);
    app.assert_settled().await;
}

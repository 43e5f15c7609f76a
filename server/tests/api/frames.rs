//! Bad handshakes and malformed frames on the chat socket, written byte by byte: each gets a
//! 4xx before the upgrade or a documented close code after it, and nobody else is affected.

use crate::helpers::*;
use futures_util::StreamExt;
use hubbub_shared::{ServerMsg, close};
use std::time::Duration;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A chat socket past its `welcome`, as the bare TCP stream.
async fn raw_socket(app: &TestApp) -> TcpStream {
    let mut ws = hubbub_client::connect(&app.ws_url(), &[]).await.unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(matches!(
        hubbub_shared::decode_server_frame(first.to_text().unwrap()).as_deref(),
        Ok([ServerMsg::Welcome { .. }])
    ));
    match ws.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain TCP on loopback"),
    }
}

/// One client frame: FIN, RSV1, opcode, masked or not (clients must mask).
fn frame(fin: bool, rsv1: bool, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads the hub's frames until its close frame; its code (`None` if the socket just ended).
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        loop {
            let mut head = [0u8; 2];
            tcp.read_exact(&mut head).await.ok()?;
            let len = match head[1] & 0x7F {
                126 => u16::from_be_bytes({
                    let mut b = [0u8; 2];
                    tcp.read_exact(&mut b).await.ok()?;
                    b
                }) as usize,
                127 => u64::from_be_bytes({
                    let mut b = [0u8; 8];
                    tcp.read_exact(&mut b).await.ok()?;
                    b
                }) as usize,
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.ok()?;
            if head[0] & 0x0F == 0x8 {
                return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            }
        }
    })
    .await
    .expect("the hub answers in time")
}

async fn expect_close(app: &TestApp, bytes: &[u8], want: u16, case: &str) {
    let mut tcp = raw_socket(app).await;
    tcp.write_all(bytes).await.unwrap();
    assert_eq!(close_code(&mut tcp).await, Some(want), "{case}");
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let app = spawn_app().await;
    let (mut bystander, _) = app.joined("lobby", "bystander").await;
    let cases: [(&str, Vec<u8>); 6] = [
        ("unmasked frame", frame(true, false, 0x1, false, b"{}")),
        ("RSV1 without an extension", frame(true, true, 0x1, true, b"{}")),
        ("reserved opcode 0x3", frame(true, false, 0x3, true, b"x")),
        ("126-byte ping", frame(true, false, 0x9, true, &[0u8; 126])),
        ("fragmented ping", frame(false, false, 0x9, true, b"x")),
        ("continuation without a start", frame(true, false, 0x0, true, b"x")),
    ];
    for (case, bytes) in cases {
        expect_close(&app, &bytes, close::PROTOCOL_ERROR, case).await;
    }
    bystander.say("lobby", "unaffected").await;
    assert!(matches!(bystander.next().await, ServerMsg::Message(m) if m.text == "unaffected"));
    drop(bystander);
    app.assert_settled().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let app = spawn_app().await;
    expect_close(&app, &frame(true, false, 0x1, true, &[0x7B, 0xFF, 0xFE, 0x7D]), close::INVALID_PAYLOAD, "bad UTF-8")
        .await;
    app.assert_settled().await;
}

#[tokio::test]
async fn oversized_announcements_and_fragment_piles_close_with_1009() {
    let app = spawn_app().await;
    // a header announcing 2^62 bytes: refused from the header alone, nothing allocated
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let mut tcp = raw_socket(&app).await;
    tcp.write_all(&huge).await.unwrap();
    let code = close_code(&mut tcp).await;
    assert!(matches!(code, Some(close::MESSAGE_TOO_BIG | close::PROTOCOL_ERROR)), "{code:?}");

    // 1 KiB, then 100 continuations of 1 KiB: over 4 KiB long before the end
    let mut pile = frame(false, false, 0x1, true, &[b'a'; 1024]);
    for i in 0..100 {
        pile.extend(frame(i == 99, false, 0x0, true, &[b'a'; 1024]));
    }
    expect_close(&app, &pile, close::MESSAGE_TOO_BIG, "fragment pile").await;
    drop(tcp);
    app.assert_settled().await;
}

#[tokio::test]
async fn a_fragmented_message_that_never_ends_is_closed_at_the_idle_timeout() {
    let app = spawn_app_with(|c| c.idle_timeout_ms = 600).await;
    let mut tcp = raw_socket(&app).await;
    tcp.write_all(&frame(false, false, 0x1, true, b"{")).await.unwrap();
    // one more byte every 100 ms, never finishing: no message ever completes
    let dripping = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp.write_all(&frame(false, false, 0x0, true, b" ")).await.is_err() {
                break;
            }
        }
    };
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), dripping).await.ok();
    assert!(started.elapsed() < Duration::from_secs(3), "the hub stopped taking the drip");
    assert_eq!(close_code(&mut tcp).await, Some(close::IDLE_TIMEOUT));
    drop(tcp);
    app.assert_settled().await;
}

#[tokio::test]
async fn bad_handshakes_get_4xx_with_a_reason_and_others_are_unaffected() {
    let app = spawn_app().await;
    let (mut bystander, _) = app.joined("lobby", "bystander").await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let cases = [
        (
            "POST",
            format!(
                "POST /ws HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nContent-Length: 0\r\n\r\n"
            ),
        ),
        ("no key", format!("GET /ws HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n")),
        (
            "version 8",
            format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\n{upgrade}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {key}\r\n\r\n"
            ),
        ),
        (
            "64 KiB header",
            format!(
                "GET /ws HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
                "j".repeat(64 * 1024)
            ),
        ),
    ];
    for (case, request) in cases {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        let _ = tcp.write_all(request.as_bytes()).await;
        // the status line is enough (a 4xx may keep the connection open)
        let mut response = Vec::new();
        let _ = tokio::time::timeout(WAIT, async {
            let mut buf = [0u8; 1024];
            while !response.windows(2).any(|w| w == b"\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => response.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let response = String::from_utf8_lossy(&response);
        let status: u16 = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!((400..500).contains(&status), "{case}: {}", response.lines().next().unwrap_or(""));
    }
    bystander.say("lobby", "unaffected").await;
    assert!(matches!(bystander.next().await, ServerMsg::Message(m) if m.text == "unaffected"));
    drop(bystander);
    app.assert_settled().await;
}

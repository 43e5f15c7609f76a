//! HTTPS and WSS on the real binary (`--tls-cert`, `--tls-key`), with certificates the test makes:
//! the chat over `wss://`, and a renewed certificate taken on SIGHUP while an open connection
//! goes on undisturbed.

mod support;

use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_frame, encode};
use std::path::{Path, PathBuf};
use support::{Hub, WAIT};
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for 127.0.0.1 and localhost, written as `name.pem` / `name.key`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let made = support::Certificate::make(dir, name);
    (made.cert, made.key)
}

async fn wss(hub: &Hub, ca: &Path) -> Result<hubbub_client::Socket, hubbub_client::ConnectError> {
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    assert!(url.starts_with("wss://"), "{url}");
    hubbub_client::connect_with_ca(&url, &[], Some(ca)).await
}

#[tokio::test]
async fn chat_over_wss_and_a_certificate_renewed_on_sighup_drops_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_key) = certificate(dir.path(), "first");
    let (live, live_key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&first, &live).unwrap();
    std::fs::copy(&first_key, &live_key).unwrap();
    let hub = Hub::start(&["--tls-cert", live.to_str().unwrap(), "--tls-key", live_key.to_str().unwrap()]).await;
    assert!(hub.url.starts_with("https://"), "the listening line says https: {}", hub.url);

    // the chat over wss://, trusting the hub's own certificate
    let mut alice = wss(&hub, &first).await.expect("wss with the first certificate");
    hubbub_client::join_and_wait(&mut alice, &hubbub_client::join("lobby", "alice"), WAIT).await.unwrap();

    // Act: the certificate is renewed on disk, and the hub told
    let (second, second_key) = certificate(dir.path(), "second");
    std::fs::copy(&second, &live).unwrap();
    std::fs::copy(&second_key, &live_key).unwrap();
    let pid = hub.child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());

    // Assert: new handshakes get the new certificate ...
    let mut renewed = None;
    for _ in 0..100 {
        if let Ok(ws) = wss(&hub, &second).await {
            renewed = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(renewed.is_some(), "the renewed certificate is served");
    assert!(wss(&hub, &first).await.is_err(), "the old one no longer is");

    // ... and the connection made before it goes on
    let send = ClientMsg::Send { id: None, room: "lobby".into(), text: "still here".into() };
    alice.send(Message::text(encode(&send))).await.unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = tokio::time::timeout(WAIT, alice.next()).await.expect("in time") else {
            continue;
        };
        if decode_server_frame(&text)
            .unwrap()
            .iter()
            .any(|m| matches!(m, ServerMsg::Message(m) if m.text == "still here"))
        {
            break;
        }
    }
}

//! Behind a real nginx running the configuration of `docs/operations.md`, with
//! `--trusted-proxies`: the per-address cap counts each real client (clients from several
//! 127.0.0.x source addresses), the page's Origin is checked against what the client used, chat
//! works through the proxy, and forwarding headers from an untrusted peer change nothing.

use crate::{helpers::*, nginx::Nginx};
use hubbub_shared::ServerMsg;
use std::net::{Ipv4Addr, SocketAddr};
use tokio_tungstenite::tungstenite;

/// A handshake from source address `from` to `to`, its `welcome` read; the HTTP status of a
/// refusal.
async fn open(from: Ipv4Addr, to: SocketAddr, headers: &[(&'static str, &str)]) -> Result<Client, u16> {
    match handshake_from(from, to, headers).await {
        Ok(ws) => {
            let mut client = Client::from_ws(ws);
            assert!(matches!(client.next().await, ServerMsg::Welcome { .. }));
            Ok(client)
        }
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

#[tokio::test]
async fn behind_nginx_each_real_client_has_its_own_cap_and_chat_goes_through() {
    let app = spawn_app_with(|c| {
        c.max_connections_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let nginx = Nginx::start_plain(app.addr);
    let proxy: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
    let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));

    // Act + Assert: two for client a, the third refused; client b is not affected
    let a1 = open(a, proxy, &[]).await.expect("a's first");
    let a2 = open(a, proxy, &[]).await.expect("a's second");
    assert_eq!(open(a, proxy, &[]).await.err(), Some(429), "the cap applies to a, not to nginx");
    let mut b1 = open(b, proxy, &[]).await.expect("b is its own client");

    // chat through the proxy, with the page's own origin (the host the client used)
    let origin = format!("http://127.0.0.1:{}", nginx.port);
    let mut b2 = open(b, proxy, &[("origin", &origin)]).await.expect("the page's origin through nginx");
    b2.join("lobby", "bob").await;
    b2.say("lobby", "through nginx").await;
    assert!(matches!(b2.next().await, ServerMsg::Message(m) if m.text == "through nginx"));
    assert_eq!(open(Ipv4Addr::new(127, 0, 0, 4), proxy, &[("origin", "http://evil.example")]).await.err(), Some(403));
    b1.join("lobby", "bob-2").await;

    // a peer that is not a trusted proxy cannot borrow another address with the headers
    let direct = open(Ipv4Addr::new(127, 0, 0, 5), app.addr, &[("x-forwarded-for", "127.0.0.2")]).await;
    assert!(direct.is_ok(), "counted as 127.0.0.5, whatever it claims");
    drop((a1, a2));
}

//! Sign-in from the host application: tokens signed with a shared secret (HS256) or a key pair
//! (ES256), each refusal typed and closed with 4005, the token's `sub` and `name` deciding who
//! joins, and a token that runs out while connected closing the connection (4006) unless renewed.

use crate::helpers::*;
use hubbub_shared::{ClientMsg, ErrorCode, ServerMsg, close};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "a shared secret of at least 32 bytes";

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(key: &EncodingKey, algorithm: Algorithm, sub: &str, name: &str, exp: u64) -> String {
    let claims = serde_json::json!({ "sub": sub, "name": name, "exp": exp });
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

pub(crate) fn hs256(sub: &str, name: &str, exp: u64) -> String {
    token(&EncodingKey::from_secret(SECRET.as_bytes()).unwrap(), Algorithm::HS256, sub, name, exp)
}

pub(crate) async fn signed_in_app() -> TestApp {
    spawn_app_with(|c| {
        c.auth_jwt_secret = Some(SECRET.into());
        c.auth_token_url = Some("https://app.example/chat-token".into());
    })
    .await
}

/// A fresh connection that sends `auth` with `token`; what it heard back.
async fn auth(app: &TestApp, token: &str) -> (Client, ServerMsg) {
    let mut c = app.client().await;
    c.send(&ClientMsg::Auth { id: Some("a".into()), token: token.into() }).await;
    let reply = c.next().await;
    (c, reply)
}

#[tokio::test]
async fn every_bad_token_is_refused_by_name_and_closed_with_4005() {
    let app = signed_in_app().await;
    let ServerMsg::Welcome { auth: info, .. } = Client::raw(&app.ws_url()).await.next().await else { panic!() };
    assert_eq!(info.unwrap().token_url.as_deref(), Some("https://app.example/chat-token"));

    let other_key = EncodingKey::from_secret(b"another secret, also 32 bytes long!!").unwrap();
    let cases = [
        ("not a token", ErrorCode::InvalidToken),
        (&token(&other_key, Algorithm::HS256, "u1", "alice", now() + 60), ErrorCode::InvalidToken),
        (&hs256("u1", "alice", now() - 120), ErrorCode::TokenExpired),
        (&hs256("u1", "", now() + 60), ErrorCode::InvalidToken),
    ];
    for (token, want) in cases {
        let (mut c, reply) = auth(&app, token).await;
        let ServerMsg::Error { code, id, .. } = reply else { panic!("{reply:?}") };
        assert_eq!((code, id.as_deref()), (want, Some("a")), "{token}");
        assert_eq!(c.expect_close().await, close::AUTH_FAILED);
    }

    // before signing in, requests are refused and the connection stays
    let mut c = app.client().await;
    c.send(&hubbub_client::join("lobby", "alice")).await;
    assert!(matches!(c.next().await, ServerMsg::Error { code: ErrorCode::Unauthorized, .. }));
    c.send(&ClientMsg::Auth { id: None, token: hs256("u1", "alice", now() + 60) }).await;
    assert!(matches!(c.next().await, ServerMsg::Authed { .. }), "still open, and signs in");
}

#[tokio::test]
async fn the_token_decides_who_joins_and_one_person_is_one_member_on_every_connection() {
    let app = signed_in_app().await;
    let exp = now() + 600;
    let (mut tab1, reply) = auth(&app, &hs256("user-17", "Alice", exp)).await;
    assert_eq!(reply, ServerMsg::Authed { id: Some("a".into()), name: "Alice".into(), expires_at: exp * 1000 });
    let members = tab1.join("lobby", "mallory").await;
    assert_eq!(members, ["Alice"], "the nickname is the token's, whatever the join says");

    // the same person on another connection (another device): the same member
    let (mut tab2, _) = auth(&app, &hs256("user-17", "Alice", exp)).await;
    assert_eq!(tab2.join("lobby", "whatever").await, ["Alice"]);
    // someone else whose token claims the same name is refused
    let (mut other, _) = auth(&app, &hs256("user-99", "alice", exp)).await;
    other.send(&hubbub_client::join("lobby", "alice")).await;
    assert!(matches!(other.next().await, ServerMsg::Error { code: ErrorCode::NickTaken, .. }));
}

#[tokio::test]
async fn a_token_that_runs_out_closes_the_connection_unless_a_fresh_one_came() {
    let app = signed_in_app().await;
    let (mut lapsing, _) = auth(&app, &hs256("u1", "alice", now() + 2)).await;
    let (mut renewed, _) = auth(&app, &hs256("u2", "bob", now() + 2)).await;
    lapsing.join("lobby", "alice").await;
    renewed.join("lobby", "bob").await;
    renewed.send(&ClientMsg::Auth { id: None, token: hs256("u2", "bob", now() + 600) }).await;
    assert!(matches!(renewed.next().await, ServerMsg::Authed { .. }));
    let started = std::time::Instant::now();
    assert_eq!(lapsing.expect_close().await, close::TOKEN_EXPIRED);
    assert!(started.elapsed() < Duration::from_secs(5));
    renewed.say("lobby", "still here").await;
    loop {
        if let ServerMsg::Message(m) = renewed.next().await {
            break assert_eq!(m.text, "still here");
        }
    }
    // a fresh token must be for the same person
    renewed.send(&ClientMsg::Auth { id: None, token: hs256("someone-else", "eve", now() + 600) }).await;
    assert!(matches!(renewed.next().await, ServerMsg::Error { code: ErrorCode::InvalidToken, .. }));
    assert_eq!(renewed.expect_close().await, close::AUTH_FAILED);
}

#[tokio::test]
async fn tokens_signed_with_a_key_pair_are_checked_with_the_public_key() {
    let pair = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256: ES256
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("auth.pub.pem");
    std::fs::write(&public, pair.public_key_pem()).unwrap();
    let app = spawn_app_with(move |c| c.auth_jwt_public_key = Some(public)).await;
    let signing = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let (_, reply) = auth(&app, &token(&signing, Algorithm::ES256, "u1", "alice", now() + 60)).await;
    assert!(matches!(reply, ServerMsg::Authed { .. }), "{reply:?}");
    let forged =
        token(&EncodingKey::from_secret(SECRET.as_bytes()).unwrap(), Algorithm::HS256, "u1", "alice", now() + 60);
    let (_, reply) = auth(&app, &forged).await;
    assert!(matches!(reply, ServerMsg::Error { code: ErrorCode::InvalidToken, .. }), "an HS256 token is not accepted");
}

#[tokio::test]
async fn the_page_may_fetch_tokens_from_the_configured_address_and_nothing_else_starts() {
    // an address on another origin: the page's Content-Security-Policy allows exactly that origin
    let app = signed_in_app().await;
    let (_, head, _) = http_get(app.addr, "/", &[]).await;
    let csp = head.lines().find(|l| l.to_lowercase().starts_with("content-security-policy:")).expect("a CSP");
    assert!(csp.contains("connect-src 'self' https://app.example;"), "{csp}");

    // what the page could never fetch, or the policy could not name, stops the hub at start
    for bad in ["javascript:alert(1)", "chat-token", "//app.example/t", "ftp://app.example/t"] {
        let mut config = hubbub_server::Config::for_tests();
        config.auth_jwt_secret = Some(SECRET.into());
        config.auth_token_url = Some(bad.into());
        let refused = match hubbub_server::Application::build(config).await {
            Ok(_) => panic!("{bad} was taken"),
            Err(e) => e.to_string(),
        };
        assert!(refused.contains("--auth-token-url must be"), "{bad}: {refused}");
    }
}

//! People, not connections, over real sockets: the grace before a leave, away, typing. (The
//! same rules on tokio's paused clock: `chat/presence.rs`'s unit tests.)

use crate::helpers::*;
use hubbub_shared::{ClientMsg, ServerMsg};
use std::time::Duration;

/// A client that joined `lobby` as `nick` with identity `token`, its history read.
async fn person(app: &TestApp, nick: &str, token: &str) -> Client {
    let mut c = app.client().await;
    let join =
        ClientMsg::Join { id: None, room: "lobby".into(), nick: nick.into(), since: None, token: Some(token.into()) };
    c.send(&join).await;
    assert!(matches!(c.next().await, ServerMsg::Joined { .. }));
    assert!(matches!(c.next().await, ServerMsg::History { .. }));
    c
}

#[tokio::test]
async fn a_person_gone_leaves_only_after_the_grace_and_a_return_within_it_is_quiet() {
    let app = spawn_app_with(|c| c.presence_grace_ms = 600).await;
    let mut alice = person(&app, "alice", "a").await;
    let bob = person(&app, "bob", "b").await;
    assert!(matches!(alice.next().await, ServerMsg::MemberJoined { .. }));

    // a reload: the old connection goes, a new one comes within the grace
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob = person(&app, "bob", "b").await;
    assert!(alice.is_quiet_for(Duration::from_millis(900)).await, "a reload announces nothing");

    // gone for good: announced once the grace has passed, not before
    let gone_at = tokio::time::Instant::now();
    drop(bob);
    assert_eq!(alice.next().await, ServerMsg::MemberLeft { room: "lobby".into(), nick: "bob".into() });
    assert!(gone_at.elapsed() >= Duration::from_millis(600), "left after {:?}", gone_at.elapsed());
    drop(alice);
    app.assert_settled().await;
}

#[tokio::test]
async fn typing_reaches_the_room_ends_with_the_send_and_expires_without_a_refresh() {
    let app = spawn_app_with(|c| c.typing_ttl_ms = 400).await;
    let mut alice = person(&app, "alice", "a").await;
    let mut bob = person(&app, "bob", "b").await;
    assert!(matches!(alice.next().await, ServerMsg::MemberJoined { .. }));
    let typing = |nicks: &[&str]| ServerMsg::Typing {
        room: "lobby".into(),
        nicks: nicks.iter().map(|n| n.to_string()).collect(),
    };

    bob.send(&ClientMsg::Typing { room: "lobby".into() }).await;
    assert_eq!(alice.next().await, typing(&["bob"]));
    bob.say("lobby", "done typing").await;
    assert_eq!(alice.next().await, typing(&[]), "the send clears it");
    assert!(matches!(alice.next().await, ServerMsg::Message(m) if m.text == "done typing"));

    bob.send(&ClientMsg::Typing { room: "lobby".into() }).await;
    assert_eq!(alice.next().await, typing(&["bob"]));
    let started = tokio::time::Instant::now();
    assert_eq!(alice.next().await, typing(&[]), "expired");
    assert!(started.elapsed() >= Duration::from_millis(300), "not before the TTL: {:?}", started.elapsed());

    // typing in a room one is not in is refused like any request
    bob.send(&ClientMsg::Typing { room: "elsewhere".into() }).await;
    loop {
        match bob.next().await {
            ServerMsg::Error { code, .. } => break assert_eq!(code.as_str(), "not_member"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_person_whose_every_tab_is_hidden_becomes_away_and_a_visible_tab_brings_them_back() {
    let app = spawn_app_with(|c| c.away_after_ms = 300).await;
    let mut alice = person(&app, "alice", "a").await;
    let mut tab1 = person(&app, "bob", "b").await;
    let mut tab2 = person(&app, "bob", "b").await;
    assert!(matches!(alice.next().await, ServerMsg::MemberJoined { .. }));
    let state = |away| ServerMsg::MemberState { room: "lobby".into(), nick: "bob".into(), away };

    tab1.send(&ClientMsg::Visibility { hidden: true }).await;
    assert!(alice.is_quiet_for(Duration::from_millis(700)).await, "one tab is still visible");
    tab2.send(&ClientMsg::Visibility { hidden: true }).await;
    assert_eq!(alice.next().await, state(true));
    // a newcomer sees it in the member list
    let mut carol = app.client().await;
    carol.send(&hubbub_client::join("lobby", "carol")).await;
    let ServerMsg::Joined { away, .. } = carol.next().await else { panic!() };
    assert_eq!(away, ["bob"]);

    tab2.send(&ClientMsg::Visibility { hidden: false }).await;
    loop {
        match alice.next().await {
            ServerMsg::MemberJoined { .. } => continue,
            other => break assert_eq!(other, state(false)),
        }
    }
    // bob's own tabs hear it too
    loop {
        if let ServerMsg::MemberState { away: false, .. } = tab1.next().await {
            break;
        }
    }
}

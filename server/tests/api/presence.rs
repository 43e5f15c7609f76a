//! People, not connections, over real sockets: the grace before a leave, away, typing. (The
//! same rules on tokio's paused clock: `chat/presence.rs`'s unit tests.)

use crate::helpers::*;
use hubbub_shared::{ClientMsg, ServerMsg};
use std::time::Duration;

#[tokio::test]
async fn a_person_gone_leaves_only_after_the_grace_and_a_return_within_it_is_quiet() {
    let app = spawn_app_with(|c| c.presence_grace_ms = 600).await;
    let mut alice = app.person("alice", "a").await;
    let bob = app.person("bob", "b").await;
    alice.sees_join("bob").await;

    // a reload: the old connection goes, a new one comes within the grace
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob = app.person("bob", "b").await;
    assert!(alice.is_quiet_for(Duration::from_millis(900)).await);
    assert_eq!(alice.presence_so_far(), [], "a reload announces nothing");

    // gone for good: announced once the grace has passed, not before
    let gone_at = tokio::time::Instant::now();
    drop(bob);
    assert_eq!(alice.sees_leave("bob").await, 1);
    assert!(gone_at.elapsed() >= Duration::from_millis(600), "left after {:?}", gone_at.elapsed());
    drop(alice);
    app.assert_settled().await;
}

#[tokio::test]
async fn typing_reaches_the_room_ends_with_the_send_and_expires_without_a_refresh() {
    let app = spawn_app_with(|c| c.typing_ttl_ms = 400).await;
    let mut alice = app.person("alice", "a").await;
    let mut bob = app.person("bob", "b").await;
    let typing = |nicks: &[&str]| ServerMsg::Typing {
        room: "lobby".into(),
        nicks: nicks.iter().map(|n| n.to_string()).collect(),
    };

    bob.send(&ClientMsg::Typing { room: "lobby".into() }).await;
    assert_eq!(alice.next().await, typing(&["bob"]));
    bob.say("lobby", "done typing").await;
    // the message goes out at once, the typing change at the next presence tick
    assert!(matches!(alice.next().await, ServerMsg::Message(m) if m.text == "done typing"));
    assert_eq!(alice.next().await, typing(&[]), "the send clears it");

    let sent = tokio::time::Instant::now();
    bob.send(&ClientMsg::Typing { room: "lobby".into() }).await;
    assert_eq!(alice.next().await, typing(&["bob"]));
    assert_eq!(alice.next().await, typing(&[]), "expired");
    assert!(sent.elapsed() >= Duration::from_millis(400), "not before the TTL: {:?}", sent.elapsed());

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
    let mut alice = app.person("alice", "a").await;
    let mut tab1 = app.person("bob", "b").await;
    let mut tab2 = app.person("bob", "b").await;
    alice.sees_join("bob").await;

    tab1.send(&ClientMsg::Visibility { hidden: true }).await;
    assert!(alice.is_quiet_for(Duration::from_millis(700)).await);
    assert_eq!(alice.presence_so_far(), [], "one tab is still visible");
    tab2.send(&ClientMsg::Visibility { hidden: true }).await;
    alice.sees_state("bob", true).await;
    // a newcomer sees it in the member list (with two hubs, once both told each other: a tick)
    let mut carol = app.client().await;
    carol.send(&hubbub_client::join("lobby", "carol")).await;
    let ServerMsg::Joined { away, .. } = carol.next().await else { panic!() };
    if away != ["bob"] {
        carol.sees_state("bob", true).await;
    }

    tab2.send(&ClientMsg::Visibility { hidden: false }).await;
    alice.sees_state("bob", false).await;
    // bob's own tabs hear it too
    tab1.sees_state("bob", false).await;
}

#[tokio::test]
async fn a_wave_of_joins_reaches_a_member_in_a_few_frames_and_the_list_comes_in_pages() {
    const PEOPLE: usize = 250;
    let app = spawn_app_with(|c| c.max_connections_per_ip = 1000).await;
    let mut alice = app.person("alice", "a").await;
    let mut people = Vec::new();
    for i in 0..PEOPLE {
        people.push(app.person(&format!("p{i:03}"), &format!("t{i}")).await);
    }

    // Assert: everyone announced once, in a few batched frames, not one notice per join
    let mut joined = std::collections::BTreeSet::new();
    let mut frames = 0;
    while joined.len() < PEOPLE {
        let ServerMsg::Presence { joined: names, count, .. } = alice.next_presence().await else { unreachable!() };
        frames += 1;
        assert!(names.iter().all(|n| n == "alice" || joined.insert(n.clone())), "each joiner once");
        assert!(count as usize >= joined.len(), "the count grows with them");
    }
    assert!(frames < PEOPLE / 5, "{frames} presence frames for {PEOPLE} joins");

    // a newcomer gets the count and the first page, and pages through the rest
    let mut carol = app.client().await;
    carol.send(&hubbub_client::join("lobby", "carol")).await;
    let ServerMsg::Joined { members, count, .. } = carol.next().await else { panic!() };
    assert_eq!((members.len(), count), (100, PEOPLE as u64 + 2));
    let mut all = members;
    loop {
        let after = all.last().cloned();
        carol
            .send(&ClientMsg::Members {
                id: Some("m".into()),
                room: "lobby".into(),
                after: after.clone(),
                limit: Some(70),
            })
            .await;
        let msg = loop {
            match carol.next().await {
                msg @ ServerMsg::Members { id: Some(_), .. } => break msg,
                // an unasked first page (a presence frame dropped for a slow reader) may come
                // at any time; it is not the reply
                ServerMsg::Members { id: None, .. } | ServerMsg::History { .. } | ServerMsg::Typing { .. } => continue,
                other => panic!("{other:?}"),
            }
        };
        let ServerMsg::Members { id, after: echoed, members, more, .. } = msg else { unreachable!() };
        assert_eq!((id.as_deref(), echoed), (Some("m"), after));
        assert!(members.len() <= 70);
        all.extend(members);
        if !more {
            break;
        }
    }
    let mut expected: Vec<String> = (0..PEOPLE).map(|i| format!("p{i:03}")).collect();
    expected.extend(["alice".to_owned(), "carol".to_owned()]);
    expected.sort();
    assert_eq!(all, expected, "every member once, in order");

    // the list of a room one is not in is refused
    carol.send(&ClientMsg::Members { id: None, room: "elsewhere".into(), after: None, limit: None }).await;
    let refusal = loop {
        match carol.next().await {
            // the join's history may come after the pages (it is read from the store)
            ServerMsg::Members { id: None, .. } | ServerMsg::History { .. } => continue,
            other => break other,
        }
    };
    assert!(matches!(refusal, ServerMsg::Error { code: hubbub_shared::ErrorCode::NotMember, .. }), "{refusal:?}");
    drop(people);
}

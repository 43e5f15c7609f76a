//! Two hubs on one real PostgreSQL and one real `redis-server` (`--database` + `--redis`): the
//! members of a room on either hub hear every message of the room once, in `seq` order, while
//! both hubs store into it at once; and a Redis outage loses nothing (the other hub catches up
//! from the database when Redis is back).

use crate::{helpers::*, pg::Postgres, redis::Redis};
use hubbub_shared::{ClientMsg, ServerMsg};
use std::time::Duration;

async fn hub(pg: &str, redis: &str) -> TestApp {
    let (pg, redis) = (pg.to_owned(), redis.to_owned());
    spawn_app_with(move |c| {
        c.database = Some(pg);
        c.redis = Some(redis);
    })
    .await
}

/// The seqs of the next `n` chat messages `client` hears.
async fn heard(client: &mut Client, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        if let ServerMsg::Message(m) = client.next().await {
            seqs.push(m.seq);
        }
    }
    seqs
}

#[tokio::test]
async fn members_on_two_hubs_hear_every_message_once_in_order_while_both_hubs_store_into_the_room() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    let (a, b) = (hub(&url, &redis.url()).await, hub(&url, &redis.url()).await);
    let (mut alice, _) = a.joined("lobby", "alice").await;
    let (mut bob, _) = b.joined("lobby", "bob").await;
    let (mut carol, _) = a.joined("lobby", "carol").await;
    let (mut dave, _) = b.joined("lobby", "dave").await;

    // Act: a sender on each hub, at the same time
    for i in 0..60 {
        alice.send(&ClientMsg::Send { id: Some(format!("a{i}")), room: "lobby".into(), text: format!("a{i}") }).await;
        bob.send(&ClientMsg::Send { id: Some(format!("b{i}")), room: "lobby".into(), text: format!("b{i}") }).await;
    }

    // Assert: everyone, on either hub, hears 1..=120 once and in order
    for (who, client) in [("alice", &mut alice), ("bob", &mut bob), ("carol", &mut carol), ("dave", &mut dave)] {
        assert_eq!(heard(client, 120).await, (1..=120).collect::<Vec<_>>(), "{who}");
    }
    assert!(dave.is_quiet_for(Duration::from_millis(300)).await, "and nothing twice");
    for hub in [&a, &b] {
        let health = hub.health().await;
        assert_eq!(health["fanout"], "ok");
        assert_eq!(health["gap_repairs"], 0, "Redis carried every message; none was read back from the log");
    }
}

#[tokio::test]
async fn redis_away_for_a_while_loses_nothing_and_the_other_hub_catches_up_when_it_is_back() {
    let (pg, mut redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    let (a, b) = (hub(&url, &redis.url()).await, hub(&url, &redis.url()).await);
    let (mut alice, _) = a.joined("lobby", "alice").await;
    let (mut bob, _) = b.joined("lobby", "bob").await;
    alice.say("lobby", "before").await;
    assert_eq!(heard(&mut bob, 1).await, [1]);

    // Act: Redis goes away; alice keeps talking
    redis.kill();
    for i in 0..5 {
        alice.send(&ClientMsg::Send { id: Some(format!("d{i}")), room: "lobby".into(), text: format!("d{i}") }).await;
    }

    // Assert: stored and acknowledged all the same, and heard on her own hub
    let mut acked = Vec::new();
    while acked.len() < 5 {
        match alice.next().await {
            ServerMsg::Ack { seq, .. } => acked.push(seq),
            ServerMsg::Message(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(acked, [2, 3, 4, 5, 6]);
    let health = a.health().await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["fanout"].as_str().unwrap().starts_with("redis"), "{health}");

    // ... and once Redis is back, bob's hub catches up from the database, in order
    redis.restart();
    assert_eq!(heard(&mut bob, 5).await, [2, 3, 4, 5, 6]);
    bob.say("lobby", "back").await;
    loop {
        if let ServerMsg::Message(m) = alice.next().await
            && m.text == "back"
        {
            break assert_eq!(m.seq, 7);
        }
    }
    let mut healthy = false;
    for _ in 0..50 {
        if a.health().await["status"] == "ok" {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "healthy again once Redis answers");
    assert!(b.health().await["gap_repairs"].as_u64() >= Some(1));
}

#[tokio::test]
async fn redis_without_a_shared_database_is_refused_at_start() {
    let mut config = hubbub_server::Config::for_tests();
    config.redis = Some("redis://127.0.0.1:1".into());
    let err = hubbub_server::Application::build(config).await.expect_err("refused");
    assert!(format!("{err:#}").contains("--redis needs --database"), "{err:#}");
}

/// A hub that refreshes its views every 150 ms (so a silent one is dropped after ~0.5 s).
async fn quick_hub(pg: &str, redis: &str) -> TestApp {
    let (pg, redis) = (pg.to_owned(), redis.to_owned());
    spawn_app_with(move |c| {
        c.database = Some(pg);
        c.redis = Some(redis);
        c.redis_heartbeat_ms = 150;
    })
    .await
}

#[tokio::test]
async fn people_on_two_hubs_see_one_member_list_typing_and_one_person_in_tabs_on_both() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    let (a, b) = (quick_hub(&url, &redis.url()).await, quick_hub(&url, &redis.url()).await);
    let (mut alice, members) = a.joined("lobby", "alice").await;
    assert_eq!(members, ["alice"]);
    // hub a has shared its view of the lobby by now (every 150 ms here)
    tokio::time::sleep(Duration::from_millis(400)).await;

    // bob, first in the room on hub b: b reads a's view before answering, so bob's `joined`
    // lists alice, and alice hears bob arrive
    let (mut bob, members) = b.joined("lobby", "bob").await;
    assert_eq!(members, ["alice", "bob"]);
    assert_eq!(alice.sees_join("bob").await, 2);

    // typing crosses hubs, and so does its end
    bob.send(&ClientMsg::Typing { room: "lobby".into() }).await;
    loop {
        if let ServerMsg::Typing { nicks, .. } = alice.next().await {
            assert_eq!(nicks, ["bob"]);
            break;
        }
    }

    // carol, one person (one identity) with a tab on each hub: one member, announced once
    let carol = ClientMsg::Join {
        id: None,
        room: "lobby".into(),
        nick: "carol".into(),
        since: None,
        token: Some("carol's secret".into()),
    };
    let mut carol_a = a.client().await;
    carol_a.send(&carol).await;
    assert_eq!(alice.sees_join("carol").await, 3);
    let mut carol_b = b.client().await;
    carol_b.send(&carol).await;
    assert!(matches!(carol_b.next().await, ServerMsg::Joined { count: 3, .. }), "counted once");
    // her tab on hub a closes: she is still here through hub b, so nobody hears her leave
    drop(carol_a);
    assert!(alice.is_quiet_for(Duration::from_millis(800)).await);
    assert!(
        !alice.presence_so_far().iter().any(|p| matches!(p, ServerMsg::Presence { left, .. } if !left.is_empty())),
        "nobody left"
    );
}

#[tokio::test]
async fn a_hub_that_goes_silent_has_its_people_leave_the_other_hubs_lists_after_three_heartbeats() {
    let (pg, redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    let (a, mut b) = (quick_hub(&url, &redis.url()).await, quick_hub(&url, &redis.url()).await);
    let (mut alice, _) = a.joined("lobby", "alice").await;
    let (_bob, _) = b.joined("lobby", "bob").await;
    assert_eq!(alice.sees_join("bob").await, 2);

    // Act: hub b stops (its people would stay for the grace on b, but b refreshes nothing now)
    let stopped = std::time::Instant::now();
    b.shut_down();

    // Assert: bob leaves alice's list once b's view runs out, well before the 15 s grace
    assert_eq!(alice.sees_leave("bob").await, 1);
    assert!(stopped.elapsed() < Duration::from_secs(5), "{:?}", stopped.elapsed());
}

/// `join` as `nick` with the identity `token`; the `joined` count, or the refusal's code.
async fn try_join(hub: &TestApp, nick: &str, token: &str) -> (Client, Result<u64, hubbub_shared::ErrorCode>) {
    let mut c = hub.client().await;
    let join =
        ClientMsg::Join { id: None, room: "lobby".into(), nick: nick.into(), since: None, token: Some(token.into()) };
    c.send(&join).await;
    let outcome = match c.next().await {
        ServerMsg::Joined { count, .. } => Ok(count),
        ServerMsg::Error { code, .. } => Err(code),
        other => panic!("{other:?}"),
    };
    (c, outcome)
}

#[tokio::test]
async fn two_hubs_never_give_one_nickname_to_two_people_and_a_name_let_go_is_free_again() {
    use hubbub_shared::ErrorCode::{NickConfusable, NickTaken};
    let (pg, redis) = (Postgres::start(), Redis::start());
    let url = pg.database().await;
    // default heartbeat (5 s): a name let go is free again by its release, not by a lapsed lease
    let (a, b) = (hub(&url, &redis.url()).await, hub(&url, &redis.url()).await);
    let (mut alice, joined) = try_join(&a, "alice", "alice's secret").await;
    assert_eq!(joined, Ok(1));

    // someone else on the other hub: refused, under that spelling or a look-alike (Cyrillic а)
    assert_eq!(try_join(&b, "alice", "mallory's secret").await.1, Err(NickTaken));
    assert!(matches!(try_join(&b, "\u{430}lice", "mallory's secret").await.1, Err(NickTaken | NickConfusable)));
    // alice herself on the other hub: the same member
    let (mut alice_b, joined) = try_join(&b, "alice", "alice's secret").await;
    assert_eq!(joined, Ok(1), "one person, counted once");

    // two people asking for one free name on the two hubs at the same moment: one gets it
    for name in ["zed", "yan", "xia", "wim", "val"] {
        let (on_a, on_b) = tokio::join!(try_join(&a, name, "first"), try_join(&b, name, "second"));
        let granted = [&on_a.1, &on_b.1].iter().filter(|o| o.is_ok()).count();
        assert_eq!(granted, 1, "{name}: {:?} / {:?}", on_a.1, on_b.1);
    }

    // alice leaves on purpose from both hubs: the name is free again soon for someone else
    for c in [&mut alice, &mut alice_b] {
        c.send(&ClientMsg::Leave { id: None, room: "lobby".into() }).await;
        while !matches!(c.next().await, ServerMsg::Left { .. }) {}
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_c, outcome) = try_join(&b, "alice", "mallory's secret").await;
        if outcome.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the name stayed taken: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

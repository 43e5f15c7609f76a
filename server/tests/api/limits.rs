//! Bad input and slow or silent peers: each gets a typed error or a documented close code.

use crate::helpers::*;
use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ErrorCode, ServerMsg, close};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn malformed_frames_get_a_typed_error_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let (mut c, _) = app.joined("lobby", "alice").await;
    let cases = [
        ("{not json", ErrorCode::BadJson, None),
        ("[1,2,3]", ErrorCode::BadJson, None),
        (r#"{"type":"dance","id":"r1"}"#, ErrorCode::UnknownType, Some("r1")),
        (r#"{"type":"send","id":"r2","room":"lobby","text":42}"#, ErrorCode::InvalidMessage, Some("r2")),
        (r#"{"type":"join","room":"lobby"}"#, ErrorCode::InvalidMessage, None),
    ];
    for (frame, want, want_id) in cases {
        c.send_raw(frame).await;
        let ServerMsg::Error { code, id, .. } = c.next().await else { panic!("expected an error for {frame}") };
        assert_eq!((code, id.as_deref()), (want, want_id), "{frame}");
    }
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    c.send_raw(&deep).await;
    assert!(matches!(c.next().await, ServerMsg::Error { code: ErrorCode::BadJson, .. }));

    c.say("lobby", "still here").await;
    assert!(matches!(c.next().await, ServerMsg::Message(m) if m.text == "still here"));
    drop(c);
    app.assert_settled().await;
}

#[tokio::test]
async fn chat_text_rules_are_enforced_by_the_hub() {
    let app = spawn_app().await;
    let (mut c, _) = app.joined("lobby", "alice").await;
    for (text, want) in [
        ("   ".to_string(), ErrorCode::TextEmpty),
        ("x".repeat(1001), ErrorCode::TextTooLong),
        ("nul\u{0}".to_string(), ErrorCode::TextForbiddenChar),
    ] {
        c.say("lobby", &text).await;
        let ServerMsg::Error { code, room, .. } = c.next().await else { panic!() };
        assert_eq!((code, room.as_deref()), (want, Some("lobby")));
    }
    // exactly 1000 characters of multi-byte text fits the 4 KiB frame limit and is accepted
    let longest = "é".repeat(1000);
    c.say("lobby", &longest).await;
    assert!(matches!(c.next().await, ServerMsg::Message(m) if m.text == longest));
}

#[tokio::test]
async fn a_message_over_the_size_limit_closes_with_1009_and_one_at_the_limit_is_accepted() {
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    let (mut bob, _) = app.joined("lobby", "bob").await;
    alice.sees_join("bob").await;

    // exactly 4096 bytes: a valid frame padded with spaces, refused only for its long text
    let prefix = r#"{"type":"send","room":"lobby","text":""#;
    let at_limit = format!("{prefix}{}\"}}", "y".repeat(4096 - prefix.len() - 2));
    assert_eq!(at_limit.len(), 4096);
    bob.send_raw(&at_limit).await;
    assert!(matches!(bob.next().await, ServerMsg::Error { code: ErrorCode::TextTooLong, .. }));

    let over = format!("{prefix}{}\"}}", "y".repeat(4097 - prefix.len() - 2));
    bob.send_raw(&over).await;
    assert_eq!(bob.expect_close().await, close::MESSAGE_TOO_BIG);
    alice.sees_leave("bob").await;
    assert!(alice.is_quiet_for(Duration::from_millis(200)).await, "nothing of it was broadcast");
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let app = spawn_app().await;
    let mut c = app.client().await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.expect_close().await, close::UNSUPPORTED_DATA);
}

#[tokio::test]
async fn rooms_per_connection_are_capped() {
    let app = spawn_app_with(|c| c.max_rooms_per_connection = 2).await;
    let mut c = app.client().await;
    c.join("a", "x").await;
    c.join("b", "x").await;
    c.send(&ClientMsg::Join { id: None, room: "c".into(), nick: "x".into(), since: None, token: None }).await;
    assert!(matches!(c.next().await, ServerMsg::Error { code: ErrorCode::TooManyRooms, .. }));
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_while_a_fast_one_gets_everything_in_order() {
    const MESSAGES: u64 = 8000;
    let app = spawn_app_with(|c| c.write_timeout_ms = 1000).await;
    // Arrange: a slow reader that never reads (with a small receive buffer), and a fast one
    // who also sends
    let mut slow = Client::connect_with_small_receive_buffer(app.addr).await;
    slow.join("lobby", "slow").await;
    let (fast, _) = app.joined("lobby", "fast").await;

    // Act: ~8.8 MB through the room, more than the kernel's socket buffers hold, so the slow
    // reader's writes block: it lags (live messages dropped), then misses the write deadline.
    // The sender keeps at most 64 messages in flight so that the fast reader never lags.
    let (mut tx, mut rx) = fast.ws.split();
    let text = "z".repeat(1000);
    let mut received = Vec::new();
    let mut saw_slow_leave = false;
    let mut sent = 0;
    while (received.len() as u64) < MESSAGES {
        while sent < MESSAGES && sent < received.len() as u64 + 64 {
            let frame = hubbub_shared::encode(&ClientMsg::Send { id: None, room: "lobby".into(), text: text.clone() });
            tx.send(Message::text(frame)).await.unwrap();
            sent += 1;
        }
        let frame = tokio::time::timeout(WAIT, rx.next()).await.expect("fast reader keeps receiving");
        let Some(Ok(Message::Text(t))) = frame else { continue };
        for msg in hubbub_shared::decode_server_frame(&t).unwrap() {
            match msg {
                ServerMsg::Message(m) => received.push(m.seq),
                ServerMsg::Presence { left, .. } if left.iter().any(|n| n == "slow") => saw_slow_leave = true,
                ServerMsg::Presence { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    // Assert
    assert_eq!(received, (1..=MESSAGES).collect::<Vec<_>>(), "every message, in order");
    if !saw_slow_leave {
        let mut fast = Client::from_ws(tx.reunite(rx).unwrap());
        fast.sees_leave("slow").await;
    }
    app.wait_for_health("connections", 1).await;
    let health = app.health().await;
    assert_eq!(
        (health["lagged_readers"].as_u64(), health["write_timeouts"].as_u64()),
        (Some(1), Some(1)),
        "dealt with once"
    );
    // the slow reader finds what the kernel buffered, then the end of its connection
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match slow.ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break None,
            }
        }
    })
    .await
    .expect("the slow reader's connection ends");
    // the hub offers close 4002 for 2 s after the deadline: it gets through when the reader
    // comes back within them (as here, usually), else the connection just ends
    assert!(matches!(ended, Some(close::WRITE_TIMEOUT) | None), "{ended:?}");
    drop(slow);
    app.wait_for_health("panics", 0).await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_told_and_catches_up_from_history_without_loss() {
    // a queue of one frame: bob lags once his socket is full and a second commit's frame comes
    // (a commit's messages reach him as one frame, so the burst must outgrow the kernel's
    // buffers, as in the test below)
    falls_behind_and_catches_up(|c| c.outbound_queue = 1, 300, 600).await;
}

#[tokio::test]
async fn the_outbound_queue_is_bounded_in_bytes_too() {
    // room for ten thousand frames, but only for about fifty of these 300-character messages
    falls_behind_and_catches_up(
        |c| {
            c.outbound_queue = 10_000;
            c.outbound_queue_bytes = 16 * 1024;
        },
        300,
        // enough bytes that the kernel's socket buffers (which grow on their own) cannot take
        // them all before the hub's queue must (200 were not always)
        600,
    )
    .await;
}

/// A burst to bob, who reads while the hub is configured by `configure`: he is told he lagged,
/// resumes, and ends with every message once.
async fn falls_behind_and_catches_up(
    configure: impl FnOnce(&mut hubbub_server::Config),
    text_len: usize,
    messages: u64,
) {
    let app = spawn_app_with(configure).await;
    let epoch = app.epoch().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    // a small receive buffer: the kernel holds little for bob, so the hub's queue fills
    let mut bob = Client::connect_with_small_receive_buffer(app.addr).await;
    bob.join("lobby", "bob").await;

    // Act: a burst, committed in groups, so the store hands bob many messages at once
    // (without ids: no acks pile up for alice, who reads nothing while it goes). The hub's send
    // buffer for bob, which the kernel grows on its own, sometimes takes a whole burst, and bob
    // is never behind: then the burst comes again (each a fresh chance), at most 10 times.
    let mut seen = std::collections::BTreeSet::new();
    let mut lags = 0;
    let mut sent = 0;
    for _ in 0..10 {
        for _ in 0..messages {
            sent += 1;
            alice.say("lobby", &format!("{sent:0>text_len$}")).await;
        }
        lags += read_all(&mut bob, &mut seen, sent, &epoch).await;
        if lags > 0 {
            break;
        }
        // alice's copies, so that her buffers are as empty as bob's for the next burst
        while !alice.is_quiet_for(Duration::from_millis(50)).await {}
    }

    // Assert: told at least once, and nothing lost
    assert!(lags >= 1, "bob was told he lagged");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), (1..=sent).collect::<Vec<_>>());
    assert!(app.health().await["lagged_readers"].as_u64() >= Some(1));
    drop(alice);
}

/// Reads until `seen` holds `messages` seqs, resuming after each `lagged`; how many there were.
async fn read_all(bob: &mut Client, seen: &mut std::collections::BTreeSet<u64>, messages: u64, epoch: &str) -> u32 {
    let mut lags = 0;
    while (seen.len() as u64) < messages {
        match bob.next().await {
            ServerMsg::Message(m) => {
                seen.insert(m.seq);
            }
            ServerMsg::Lagged { room, .. } => {
                lags += 1;
                let last = seen.iter().next_back().copied().unwrap_or(0);
                let since = hubbub_shared::cursor::Cursor::new(epoch, &room, last).to_string();
                bob.send(&ClientMsg::Resume { id: None, room, since }).await;
            }
            ServerMsg::History { messages, recovered, .. } => {
                assert!(recovered, "the gap is within the limit");
                seen.extend(messages.iter().map(|m| m.seq));
            }
            // a presence frame dropped for bob is made up for by a fresh member list
            ServerMsg::Members { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    lags
}

#[tokio::test]
async fn a_client_that_answers_no_pings_is_closed_after_the_idle_timeout_and_others_stay() {
    let app = spawn_app_with(|c| {
        c.ping_interval_ms = 200;
        c.idle_timeout_ms = 600;
    })
    .await;
    let (mut silent, _) = app.joined("lobby", "silent").await;
    let (mut alive, _) = app.joined("lobby", "alive").await;

    // alive keeps reading (and so answers pings); silent reads nothing for a while
    let started = std::time::Instant::now();
    alive.sees_leave("silent").await;
    assert!(started.elapsed() < Duration::from_secs(3), "closed promptly: {:?}", started.elapsed());
    assert_eq!(silent.expect_close().await, close::IDLE_TIMEOUT);

    // alive answers pings while it reads, so it outlives several idle timeouts
    assert!(alive.is_quiet_for(Duration::from_millis(1500)).await);
    alive.say("lobby", "still connected").await;
    assert!(matches!(alive.next().await, ServerMsg::Message(m) if m.text == "still connected"));
}

#[tokio::test]
async fn a_flood_gets_rate_limited_errors_then_a_close_and_others_are_served_meanwhile() {
    let app = spawn_app_with(|c| {
        c.messages_per_sec = 10.0;
        c.message_burst = 20.0;
        c.rate_limit_strikes = 50;
    })
    .await;
    let (mut flood, _) = app.joined("lobby", "flood").await;
    let (mut calm, _) = app.joined("lobby", "calm").await;

    // Act: 200 messages at once (the join took one token)
    for i in 0..200 {
        flood.send(&ClientMsg::Send { id: Some(format!("f{i}")), room: "lobby".into(), text: format!("{i}") }).await;
    }
    let mut limited = 0;
    let code = loop {
        match flood.next_frame().await {
            Some(Ok(Message::Text(t))) => {
                for msg in hubbub_shared::decode_server_frame(&t).unwrap() {
                    if let ServerMsg::Error { code: ErrorCode::RateLimited, retry_after_ms, id, .. } = msg {
                        assert!(retry_after_ms.is_some_and(|ms| ms > 0 && ms <= 100), "{retry_after_ms:?}");
                        assert!(id.is_some(), "the refusal names the message");
                        limited += 1;
                    }
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };

    // Assert: the burst passed, the rest was refused until the strikes ran out
    assert_eq!(code, close::RATE_LIMITED);
    assert_eq!(limited, 50, "refused until the strike limit");
    // calm got the burst (less the join's token) and nothing of the refused ones, and is
    // served promptly
    calm.say("lobby", "still served").await;
    let mut broadcast = 0;
    loop {
        match calm.next().await {
            ServerMsg::Message(m) if m.text == "still served" => break,
            ServerMsg::Message(_) => broadcast += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((19..=21).contains(&broadcast), "the burst passed, the rest did not: {broadcast}");
    assert_eq!(app.health().await["rate_limited"], 51, "50 answered, the 51st closed the connection");
    drop((flood, calm));
    app.assert_settled().await;
}

#[tokio::test]
async fn a_ping_flood_is_closed_and_the_hub_keeps_answering_others() {
    let app = spawn_app_with(|c| c.frames_per_sec = 100.0).await;
    let (mut pinger, _) = app.joined("lobby", "pinger").await;
    let (mut other, _) = app.joined("lobby", "other").await;
    for _ in 0..5000 {
        if pinger.ws.feed(Message::Ping(Default::default())).await.is_err() {
            break;
        }
    }
    let _ = pinger.ws.flush().await;
    assert_eq!(pinger.expect_close().await, close::RATE_LIMITED);
    other.say("lobby", "hello?").await;
    // (presence frames, such as the pinger's leave, are kept apart by the test client)
    assert!(matches!(other.next().await, ServerMsg::Message(m) if m.text == "hello?"));
    drop((pinger, other));
    app.assert_settled().await;
}

#[tokio::test]
async fn a_connection_that_never_joins_is_closed_at_the_join_deadline_and_one_that_joins_stays() {
    let app = spawn_app_with(|c| c.join_timeout_ms = 300).await;
    let mut lurker = app.client().await;
    let (mut member, _) = app.joined("lobby", "member").await;
    let started = std::time::Instant::now();
    assert_eq!(lurker.expect_close().await, close::NO_JOIN);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(member.is_quiet_for(Duration::from_millis(500)).await, "the member is not affected");
    member.say("lobby", "still here").await;
    assert!(matches!(member.next().await, ServerMsg::Message(m) if m.text == "still here"));
}

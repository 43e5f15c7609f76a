//! The page's rules, driven the way the connection task and the person drive them.

use super::*;
use hubbub_shared::encode;

const TOKEN: &str = "secret";
const LIMITS: Limits = Limits { max_message_bytes: 4096, max_text_chars: 1000, max_rooms: 16 };

fn msg(room: &str, seq: u64, author: &str, id: Option<&str>) -> ChatMessage {
    ChatMessage {
        room: room.into(),
        seq,
        author: author.into(),
        text: format!("m{seq}"),
        ts: 0,
        id: id.map(Into::into),
        ..ChatMessage::default()
    }
}

fn history(room: &str, seqs: impl IntoIterator<Item = u64>, recovered: bool) -> ServerMsg {
    let messages: Vec<ChatMessage> = seqs.into_iter().map(|s| msg(room, s, "bob", None)).collect();
    let more = messages.first().is_some_and(|m| m.seq > 1);
    ServerMsg::History { id: None, room: room.into(), messages, recovered, more }
}

/// A page connected and in `lobby` as alice, welcomed by epoch `e1`.
fn in_lobby() -> PageModel {
    let mut page = PageModel::new(Session::default(), Vec::new());
    page.connected();
    page.apply(ServerMsg::Welcome { protocol: 2, epoch: "e1".into(), limits: LIMITS, auth: None });
    let effects = page.request_join("lobby", "alice", TOKEN);
    let Some(Effect::Send(ClientMsg::Join { id, .. })) = effects.first() else { panic!("{effects:?}") };
    let id = id.clone();
    page.apply(ServerMsg::Joined {
        id,
        room: "lobby".into(),
        nick: "alice".into(),
        members: vec!["alice".into()],
        away: vec![],
        count: 1,
    });
    page
}

/// A `presence` frame of the lobby.
fn presence(count: u64, joined: &[&str], left: &[&str], away: &[&str], back: &[&str]) -> ServerMsg {
    let names = |n: &[&str]| n.iter().map(|n| n.to_string()).collect();
    ServerMsg::Presence {
        room: "lobby".into(),
        count,
        joined: names(joined),
        left: names(left),
        away: names(away),
        back: names(back),
    }
}

fn notices(page: &PageModel) -> Vec<String> {
    page.room("lobby")
        .unwrap()
        .log
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn seqs(page: &PageModel, room: &str) -> Vec<u64> {
    page.room(room).unwrap().log.iter().filter_map(Entry::seq).collect()
}

fn sends(effects: &[Effect]) -> Vec<&ClientMsg> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn history_and_live_messages_that_overlap_leave_one_copy_per_seq_in_order() {
    let mut page = in_lobby();
    // live messages can arrive before the history that follows `joined`
    page.apply(ServerMsg::Message(msg("lobby", 4, "bob", None)));
    page.apply(history("lobby", 1..=4, false));
    page.apply(ServerMsg::Message(msg("lobby", 5, "bob", None)));
    page.apply(ServerMsg::Message(msg("lobby", 5, "bob", None)));
    assert_eq!(seqs(&page, "lobby"), [1, 2, 3, 4, 5]);
    assert_eq!(page.room("lobby").unwrap().last_seq, 5);
}

#[test]
fn an_own_message_is_pending_then_sent_and_leaves_the_outbox_by_its_client_id() {
    let mut page = in_lobby();
    let effects = page.say("lobby", "hello", "c-1".into()).unwrap();
    assert_eq!(
        effects,
        [
            Effect::SaveOutbox,
            Effect::Send(ClientMsg::Send { id: Some("c-1".into()), room: "lobby".into(), text: "hello".into() })
        ]
    );
    assert_eq!(page.outbox.len(), 1, "pending until the hub has it");

    let effects = page.apply(ServerMsg::Message(msg("lobby", 1, "alice", Some("c-1"))));
    assert_eq!(effects, [Effect::SaveOutbox]);
    assert!(page.outbox.is_empty());
    let entry = page.room("lobby").unwrap().log.last().unwrap().clone();
    assert!(matches!(entry.kind, EntryKind::Message { own: true, seq: 1, .. }), "{entry:?}");
    // the ack that follows changes nothing more
    assert_eq!(page.apply(ServerMsg::Ack { id: "c-1".into(), room: "lobby".into(), seq: 1 }), []);
}

#[test]
fn a_message_said_offline_waits_and_is_resent_with_the_same_id_after_the_rejoin() {
    let mut page = in_lobby();
    page.apply(ServerMsg::Message(msg("lobby", 7, "bob", None)));
    page.connection_lost(1006, String::new(), true);
    let effects = page.say("lobby", "while away", "c-2".into()).unwrap();
    assert_eq!(effects, [Effect::SaveOutbox], "not sent while disconnected");
    assert_eq!(page.conn.name(), "reconnecting");

    page.connected();
    let rejoins = page.rejoins(TOKEN);
    let [ClientMsg::Join { room, since: Some(since), token: Some(token), .. }] = &rejoins[..] else {
        panic!("{rejoins:?}")
    };
    assert_eq!((room.as_str(), since.as_str(), token.as_str()), ("lobby", "e1:lobby:7", TOKEN));
    assert_eq!(
        page.resends(),
        [ClientMsg::Send { id: Some("c-2".into()), room: "lobby".into(), text: "while away".into() }]
    );
}

#[test]
fn a_refused_message_is_marked_failed_until_retried_or_discarded() {
    let mut page = in_lobby();
    page.say("lobby", "x", "c-3".into()).unwrap();
    page.apply(ServerMsg::Error {
        id: Some("c-3".into()),
        code: ErrorCode::StorageUnavailable,
        message: "disk full".into(),
        room: Some("lobby".into()),
        retry_after_ms: None,
    });
    assert_eq!(page.outbox[0].failed.as_deref(), Some("disk full"));
    assert!(page.resends().is_empty(), "failed messages wait for the person");
    let effects = page.retry("c-3");
    assert_eq!(sends(&effects).len(), 1);
    assert_eq!(page.outbox[0].failed, None);
    page.discard("c-3");
    assert!(page.outbox.is_empty());
}

#[test]
fn rate_limited_messages_are_retried_after_the_wait_not_failed() {
    let mut page = in_lobby();
    page.say("lobby", "x", "c-4".into()).unwrap();
    let effects = page.apply(ServerMsg::Error {
        id: Some("c-4".into()),
        code: ErrorCode::RateLimited,
        message: "slow down".into(),
        room: None,
        retry_after_ms: Some(120),
    });
    assert_eq!(effects, [Effect::RetryLater { id: "c-4".into(), after_ms: 120 }]);
    assert_eq!(page.outbox[0].failed, None);
    assert_eq!(sends(&page.resend("c-4")).len(), 1);
    page.connection_lost(1006, String::new(), true);
    assert!(page.resend("c-4").is_empty(), "offline: the rejoin resends it");
}

#[test]
fn lagged_asks_to_resume_from_the_last_message_the_page_has() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=3, false));
    let effects = page.apply(ServerMsg::Lagged { room: "lobby".into(), from_seq: 4 });
    assert_eq!(
        effects,
        [Effect::Send(ClientMsg::Resume { id: None, room: "lobby".into(), since: "e1:lobby:3".into() })]
    );
    page.apply(history("lobby", 4..=6, true));
    assert_eq!(seqs(&page, "lobby"), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_gap_is_marked_and_each_load_fetches_the_page_before_what_was_loaded_until_it_closes() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=10, false));
    // back after a long time away: the hub sends the latest page, not the 189 missed ones
    page.apply(history("lobby", 200..=210, false));
    let room = page.room("lobby").unwrap();
    let gap = room.log.iter().find(|e| matches!(e.kind, EntryKind::Gap { .. })).unwrap().key;
    assert_eq!(room.gap(gap), Some((10, 200)));

    let before_of = |effects: Vec<Effect>| match &effects[..] {
        [Effect::Send(ClientMsg::History { before, .. })] => *before,
        other => panic!("{other:?}"),
    };
    assert_eq!(before_of(page.load_gap("lobby", gap)), 200);
    page.apply(history("lobby", 150..=199, true));
    assert_eq!(page.room("lobby").unwrap().gap(gap), Some((10, 150)), "the gap shrank");
    assert_eq!(before_of(page.load_gap("lobby", gap)), 150, "the next load asks for the page before");
    page.apply(history("lobby", 100..=149, true));
    page.apply(history("lobby", 50..=99, true));
    page.apply(history("lobby", 11..=49, true));
    assert_eq!(page.room("lobby").unwrap().gap(gap), None, "nothing missing: the marker is gone");
    assert!(page.load_gap("lobby", gap).is_empty());
    assert_eq!(seqs(&page, "lobby"), (1..=210).collect::<Vec<_>>());
}

#[test]
fn the_gap_marker_stays_between_the_old_messages_and_the_loaded_ones() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=2, false));
    page.apply(history("lobby", 9..=10, false));
    page.apply(history("lobby", 6..=8, true));
    let log = &page.room("lobby").unwrap().log;
    let order: Vec<String> = log
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Message { seq, .. } => Some(seq.to_string()),
            EntryKind::Gap { .. } => Some("gap".into()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["1", "2", "gap", "6", "7", "8", "9", "10"]);
}

#[test]
fn load_older_asks_for_the_page_before_the_oldest_message() {
    let mut page = in_lobby();
    page.apply(history("lobby", 51..=100, true));
    assert_eq!(
        page.load_older("lobby"),
        [Effect::Send(ClientMsg::History { id: None, room: "lobby".into(), before: 51, limit: None })]
    );
    page.apply(history("lobby", 1..=50, true));
    assert_eq!(seqs(&page, "lobby"), (1..=100).collect::<Vec<_>>());
}

#[test]
fn a_failed_retry_keeps_the_close_that_ended_the_last_good_connection_on_screen() {
    let mut page = in_lobby();
    page.connection_lost(1001, "server shutting down".into(), true);
    assert_eq!(page.conn.describe(), "Connection closed: server shutting down (1001). Reconnecting…");
    page.connection_lost(1006, String::new(), false);
    assert_eq!(page.conn, ConnState::Reconnecting { code: 1001, reason: "server shutting down".into() });
    page.connected();
    page.connection_lost(1006, String::new(), true);
    assert_eq!(page.conn.describe(), "Connection closed: connection lost (1006). Reconnecting…");
    page.closed_for_good(1002, "protocol 2 is not supported".into());
    assert_eq!(page.conn.name(), "closed");
}

#[test]
fn a_refused_join_from_the_form_is_shown_under_it_and_a_refused_rejoin_in_the_room() {
    let mut page = in_lobby();
    let effects = page.request_join("rust", "alice", TOKEN);
    let [Effect::Send(ClientMsg::Join { id, .. })] = &effects[..] else { panic!("{effects:?}") };
    page.apply(ServerMsg::Error {
        id: id.clone(),
        code: ErrorCode::NickTaken,
        message: "Someone in rust is already called alice.".into(),
        room: Some("rust".into()),
        retry_after_ms: None,
    });
    assert_eq!(page.join_error.as_deref(), Some("Someone in rust is already called alice."));

    assert_eq!(page.request_join("", "alice", TOKEN), []);
    assert!(page.join_error.is_some(), "the form shows the rule before anything is sent");
}

#[test]
fn a_refused_rejoin_offers_another_nickname_or_removing_the_room() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=3, false));
    page.connection_lost(1006, String::new(), true);
    page.connected();
    let rejoin = page.rejoins(TOKEN).remove(0);
    let ClientMsg::Join { id, .. } = &rejoin else { panic!() };
    page.apply(ServerMsg::Error {
        id: id.clone(),
        code: ErrorCode::NickTaken,
        message: "Someone in lobby is already called alice.".into(),
        room: Some("lobby".into()),
        retry_after_ms: None,
    });
    let room = page.room("lobby").unwrap();
    assert_eq!(room.refused.as_deref(), Some("Someone in lobby is already called alice."));
    assert!(page.join_error.is_none(), "shown in the room, not under the form");

    // way out one: another nickname, resuming where the page is
    assert_eq!(page.rejoin_as("lobby", " ", TOKEN), []);
    assert!(page.room("lobby").unwrap().refused.is_some(), "a blank nickname is refused by the page");
    let effects = page.rejoin_as("lobby", "alice2", TOKEN);
    let [Effect::Send(ClientMsg::Join { nick, since, .. }), Effect::SaveSession] = &effects[..] else {
        panic!("{effects:?}")
    };
    assert_eq!((nick.as_str(), since.as_deref()), ("alice2", Some("e1:lobby:3")));
    page.apply(ServerMsg::Joined {
        id: Some("rejoin:lobby".into()),
        room: "lobby".into(),
        nick: "alice2".into(),
        members: vec!["alice".into(), "alice2".into()],
        away: vec![],
        count: 2,
    });
    assert_eq!(page.room("lobby").unwrap().refused, None);

    // way out two: × removes the room at once, whatever the hub answers
    page.rooms[0].refused = Some("again".into());
    assert_eq!(
        page.leave("lobby"),
        [Effect::SaveSession, Effect::Send(ClientMsg::Leave { id: None, room: "lobby".into() })]
    );
    assert!(page.room("lobby").is_none());
    page.apply(ServerMsg::Error {
        id: None,
        code: ErrorCode::NotMember,
        message: "You are not in lobby.".into(),
        room: Some("lobby".into()),
        retry_after_ms: None,
    });
    assert!(page.join_error.is_none(), "a late refusal about a removed room shows nowhere");
    assert_eq!(page.session().rooms, []);
}

#[test]
fn an_invalid_cursor_or_a_double_join_on_a_rejoin_is_not_a_refusal() {
    let mut page = in_lobby();
    for code in [ErrorCode::InvalidCursor, ErrorCode::AlreadyJoined] {
        page.apply(ServerMsg::Error {
            id: Some("rejoin:lobby".into()),
            code,
            message: "not a refusal of the room".into(),
            room: Some("lobby".into()),
            retry_after_ms: None,
        });
        assert_eq!(page.room("lobby").unwrap().refused, None, "{code:?}");
    }
}

#[test]
fn who_is_typing_is_shown_without_ourselves_up_to_three_names() {
    let mut page = in_lobby();
    let typing = |nicks: &[&str]| ServerMsg::Typing {
        room: "lobby".into(),
        nicks: nicks.iter().map(|n| n.to_string()).collect(),
    };
    let line = |page: &PageModel| page.room("lobby").unwrap().typing_line();
    page.apply(typing(&["alice", "bob"]));
    assert_eq!(line(&page).as_deref(), Some("bob is typing…"), "never our own name");
    page.apply(typing(&["bob", "carol"]));
    assert_eq!(line(&page).as_deref(), Some("bob and carol are typing…"));
    page.apply(typing(&["bob", "carol", "dave"]));
    assert_eq!(line(&page).as_deref(), Some("bob, carol and dave are typing…"));
    page.apply(typing(&["bob", "carol", "dave", "erin"]));
    assert_eq!(line(&page).as_deref(), Some("Several people are typing…"));
    page.apply(presence(4, &[], &["erin"], &[], &[]));
    assert_eq!(line(&page).as_deref(), Some("bob, carol and dave are typing…"));
    page.apply(typing(&[]));
    assert_eq!(line(&page), None);
}

#[test]
fn typing_is_told_at_most_every_three_seconds_and_again_after_a_send() {
    let mut page = in_lobby();
    let told = |effects: Vec<Effect>| effects.iter().any(|e| matches!(e, Effect::Send(ClientMsg::Typing { .. })));
    assert!(told(page.typed("lobby", 10_000)));
    assert!(!told(page.typed("lobby", 11_000)));
    assert!(!told(page.typed("lobby", 12_999)));
    assert!(told(page.typed("lobby", 13_000)));
    page.say("lobby", "hi", "c-5".into()).unwrap();
    assert!(told(page.typed("lobby", 13_100)), "a send cleared it on the hub");
    page.connection_lost(1006, String::new(), true);
    assert!(!told(page.typed("lobby", 20_000)), "not while disconnected");
}

#[test]
fn away_members_are_marked_and_the_page_tells_the_hub_when_it_is_hidden() {
    let mut page = in_lobby();
    page.apply(presence(2, &["bob"], &[], &[], &[]));
    page.apply(presence(2, &[], &[], &["bob"], &[]));
    assert_eq!(page.room("lobby").unwrap().away, ["bob"]);
    page.apply(presence(2, &[], &[], &[], &["bob"]));
    assert!(page.room("lobby").unwrap().away.is_empty());

    assert_eq!(page.set_hidden(true), [Effect::Send(ClientMsg::Visibility { hidden: true })]);
    assert_eq!(page.set_hidden(true), [], "only changes are told");
    page.connection_lost(1006, String::new(), true);
    assert_eq!(page.set_hidden(false), []);
    page.set_hidden(true);
    page.connected();
    assert_eq!(page.rejoins(TOKEN)[0], ClientMsg::Visibility { hidden: true }, "told first after a reconnect");
}

#[test]
fn members_come_and_go_with_a_notice_and_leaving_picks_another_room() {
    let mut page = in_lobby();
    page.apply(presence(3, &["alice", "Bob", "carol"], &[], &[], &[]));
    assert_eq!(page.room("lobby").unwrap().members, ["alice", "Bob", "carol"]);
    page.apply(presence(2, &[], &["Bob"], &[], &[]));
    assert_eq!(page.room("lobby").unwrap().members, ["alice", "carol"]);
    page.apply(presence(5, &["dave", "erin", "frank"], &[], &[], &[]));
    page.apply(presence(9, &["g", "h", "i", "j"], &[], &[], &[]));
    page.apply(presence(9, &["carol", "dave"], &["nobody-we-saw"], &[], &[]));
    assert_eq!(
        notices(&page)[1..],
        ["Bob and carol joined.", "Bob left.", "dave, erin and frank joined.", "g, h and 2 others joined."],
        "our own arrival is not news, nor people the list has, nor leaves of people it never had"
    );

    page.request_join("rust", "alice", TOKEN);
    page.apply(ServerMsg::Joined {
        id: None,
        room: "rust".into(),
        nick: "alice".into(),
        members: vec![],
        away: vec![],
        count: 1,
    });
    assert_eq!(page.active_room(), Some("rust"));
    assert_eq!(page.apply(ServerMsg::Left { id: None, room: "rust".into() }), [Effect::SaveSession]);
    assert_eq!(page.active_room(), Some("lobby"));
    assert_eq!(page.session().rooms, [("lobby".to_owned(), "alice".to_owned())]);
}

#[test]
fn a_frame_with_a_message_type_from_a_newer_hub_still_delivers_the_rest() {
    let mut page = in_lobby();
    let known = encode(&ServerMsg::Message(msg("lobby", 1, "bob", None)));
    let later = encode(&ServerMsg::Message(msg("lobby", 2, "bob", None)));
    let frame = format!(r#"[{known},{{"type":"reaction","room":"lobby","emoji":"👍"}},{later}]"#);
    let (_, skipped) = page.receive(&frame);
    assert_eq!(skipped.len(), 1, "the unknown item is skipped and reported");
    assert_eq!(seqs(&page, "lobby"), [1, 2]);

    let (effects, skipped) = page.receive("not json at all");
    assert_eq!((effects.len(), skipped.len()), (0, 1));
    let (_, skipped) = page.receive(&encode(&ServerMsg::Message(msg("lobby", 3, "bob", None))));
    assert!(skipped.is_empty());
    assert_eq!(seqs(&page, "lobby"), [1, 2, 3]);
}

#[test]
fn the_session_and_outbox_survive_local_storage_including_what_an_older_page_saved() {
    let session = Session {
        rooms: vec![("lobby".into(), "ä \"q\"".into()), ("rust".into(), "bob".into())],
        active: Some("rust".into()),
    };
    assert_eq!(Session::from_json(&session.to_json()), Some(session));
    let outbox = vec![
        Pending { id: "c-1".into(), room: "lobby".into(), text: "line\nnext 😀".into(), failed: None },
        Pending { id: "c-2".into(), room: "lobby".into(), text: "x".into(), failed: Some("too long".into()) },
    ];
    assert_eq!(Pending::list_from_json(&Pending::list_to_json(&outbox)), Some(outbox));

    // as serde wrote them, before the page dropped it
    let older = Session::from_json(r#"{"rooms":[["lobby","alice"]],"active":null}"#);
    assert_eq!(older, Some(Session { rooms: vec![("lobby".into(), "alice".into())], active: None }));
    let older = Pending::list_from_json(r#"[{"id":"c","room":"lobby","text":"t","failed":null}]"#);
    assert_eq!(older.map(|o| o.len()), Some(1));
    // anything else is forgotten rather than half-read
    for text in ["", "[", r#"{"rooms":[["lobby"]]}"#, r#"{"rooms":"x"}"#, "[1]"] {
        assert_eq!(Session::from_json(text), None, "{text}");
        assert_eq!(Pending::list_from_json(text), None, "{text}");
    }
}

#[test]
fn a_page_restored_from_its_session_rejoins_its_rooms_from_scratch() {
    let session = Session { rooms: vec![("lobby".into(), "alice".into())], active: Some("lobby".into()) };
    let outbox = vec![Pending { id: "c-9".into(), room: "lobby".into(), text: "kept".into(), failed: None }];
    let page = PageModel::new(session, outbox);
    assert_eq!(
        page.rejoins(TOKEN),
        [ClientMsg::Join {
            id: Some("rejoin:lobby".into()),
            room: "lobby".into(),
            nick: "alice".into(),
            since: None,
            token: Some(TOKEN.into())
        }]
    );
    assert_eq!(page.resends().len(), 1);
    assert_eq!(page.active_room(), Some("lobby"));
}

#[test]
fn the_log_keeps_the_newest_entries_only() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=(MAX_LOG as u64 + 20), true));
    let log = &page.room("lobby").unwrap().log;
    assert_eq!(log.len(), MAX_LOG);
    assert_eq!(log.last().unwrap().seq(), Some(MAX_LOG as u64 + 20));
}

#[test]
fn a_big_room_loads_its_member_list_in_pages_and_newcomers_past_the_loaded_part_wait_for_it() {
    let mut page = in_lobby();
    let names = |range: std::ops::Range<u32>| range.map(|i| format!("p{i:03}")).collect::<Vec<_>>();
    page.apply(ServerMsg::Members {
        id: None,
        room: "lobby".into(),
        after: None,
        members: names(0..100),
        away: vec!["p005".into()],
        count: 300,
        more: true,
    });
    let room = page.room("lobby").unwrap();
    assert_eq!((room.members.len(), room.members_not_loaded(), &room.away[..]), (100, 200, &["p005".to_owned()][..]));

    // someone joins who sorts within what is loaded, someone past it
    page.apply(presence(302, &["a-new", "zed"], &[], &[], &[]));
    let room = page.room("lobby").unwrap();
    assert_eq!((room.members[0].as_str(), room.members.len(), room.member_count), ("a-new", 101, 302));
    assert!(!room.members.contains(&"zed".to_owned()), "zed comes with the page that reaches him");

    let effects = page.load_more_members("lobby");
    assert_eq!(
        effects,
        [Effect::Send(ClientMsg::Members { id: None, room: "lobby".into(), after: Some("p099".into()), limit: None })]
    );
    let mut rest = names(100..300);
    rest.push("zed".into());
    page.apply(ServerMsg::Members {
        id: None,
        room: "lobby".into(),
        after: Some("p099".into()),
        members: rest,
        away: vec![],
        count: 302,
        more: false,
    });
    let room = page.room("lobby").unwrap();
    assert_eq!((room.members.len(), room.members_not_loaded()), (302, 0));
    assert_eq!(page.load_more_members("lobby"), [], "nothing more to load");

    // a fresh first page (after missed changes) replaces the list
    page.apply(ServerMsg::Members {
        id: None,
        room: "lobby".into(),
        after: None,
        members: names(0..100),
        away: vec![],
        count: 250,
        more: true,
    });
    assert_eq!(page.room("lobby").unwrap().members, names(0..100));
}

// ---- sign-in mode ------------------------------------------------------------------------

fn welcome_with_sign_in() -> ServerMsg {
    let auth = Some(hubbub_shared::AuthInfo { token_url: Some("/chat-token".into()) });
    ServerMsg::Welcome { protocol: 2, epoch: "e1".into(), limits: LIMITS, auth }
}

#[test]
fn signed_in_joins_use_the_tokens_name_whatever_the_form_says() {
    let mut page = PageModel::new(Session::default(), Vec::new());
    page.apply(welcome_with_sign_in());
    assert!(page.sign_in_required);
    // before `authed` the page does not know who it is: no join with a made-up name
    assert!(page.request_join("lobby", "mallory", TOKEN).is_empty());
    assert!(page.join_error.as_deref().is_some_and(|e| e.contains("signing in")), "{:?}", page.join_error);

    page.apply(ServerMsg::Authed { id: None, name: "Ada Lovelace".into(), expires_at: 1_800_000_000_000 });
    assert_eq!(page.signed_in, Some(SignedIn { name: "Ada Lovelace".into(), expires_at: 1_800_000_000_000 }));
    // an empty nickname field is fine, and a name with a space (not a valid typed nickname) too
    let effects = page.request_join("lobby", "", TOKEN);
    let Some(Effect::Send(ClientMsg::Join { nick, room, .. })) = effects.first() else { panic!("{effects:?}") };
    assert_eq!((nick.as_str(), room.as_str()), ("Ada Lovelace", "lobby"));
    assert_eq!(page.join_error, None);
}

#[test]
fn a_refresh_moves_the_expiry_and_a_reconnect_keeps_the_name_until_the_hub_says_otherwise() {
    let mut page = PageModel::new(Session::default(), Vec::new());
    page.apply(welcome_with_sign_in());
    page.apply(ServerMsg::Authed { id: None, name: "ada".into(), expires_at: 1_000 });
    page.apply(ServerMsg::Authed { id: None, name: "ada".into(), expires_at: 61_000 });
    assert_eq!(page.signed_in.as_ref().map(|s| s.expires_at), Some(61_000));
    // reconnecting to a hub that still wants sign-in: the name stays on screen meanwhile
    page.connection_lost(close::GOING_AWAY, String::new(), true);
    page.apply(welcome_with_sign_in());
    assert_eq!(page.signed_in.as_ref().map(|s| s.name.as_str()), Some("ada"));
    // a hub in anonymous mode: back to typing a nickname
    page.apply(ServerMsg::Welcome { protocol: 2, epoch: "e1".into(), limits: LIMITS, auth: None });
    assert!(!page.sign_in_required);
    assert_eq!(page.signed_in, None);
    assert!(page.request_join("lobby", "", TOKEN).is_empty(), "an empty nickname is refused again");
}

#[test]
fn the_log_groups_each_authors_run_and_places_entries_again_when_older_ones_load_above() {
    let mut page = in_lobby();
    let at = |seq, author, ts| ServerMsg::Message(ChatMessage { ts, ..msg("lobby", seq, author, None) });
    page.apply(at(5, "bob", 0));
    page.apply(at(6, "bob", 60_000));
    page.apply(at(7, "alice", 120_000));
    page.apply(at(8, "alice", 120_000 + GROUP_WINDOW_MS));
    let placed = |page: &PageModel| -> Vec<(u64, bool, Option<String>)> {
        let log = &page.room("lobby").unwrap().log;
        log.iter().filter_map(|e| Some((e.seq()?, e.place.continued, e.place.day.clone()))).collect()
    };
    let today = Some("Today".to_owned());
    assert_eq!(placed(&page), [(5, false, today.clone()), (6, true, None), (7, false, None), (8, false, None)]);
    let key_of =
        |page: &PageModel, seq| page.room("lobby").unwrap().log.iter().find(|e| e.seq() == Some(seq)).unwrap().key;
    let (key5, key6) = (key_of(&page, 5), key_of(&page, 6));

    // older messages load above (bob's, at the same time): seq 5 joins their run, so it is
    // placed again under a new key; seq 6 is where it was
    page.apply(history("lobby", [3, 4], true));
    assert_eq!(placed(&page)[..3], [(3, false, today), (4, true, None), (5, true, None)]);
    assert_ne!(key_of(&page, 5), key5, "rendered again in its new place");
    assert_eq!(key_of(&page, 6), key6, "unchanged, not rendered again");
    let keys: std::collections::BTreeSet<u64> = page.room("lobby").unwrap().log.iter().map(|e| e.key).collect();
    assert_eq!(keys.len(), page.room("lobby").unwrap().log.len(), "keys stay unique");
}

#[test]
fn an_edit_and_a_deletion_change_their_message_in_place_and_count_for_resuming() {
    let mut page = in_lobby();
    page.apply(ServerMsg::Message(msg("lobby", 1, "alice", Some("c-1"))));
    page.apply(ServerMsg::Message(msg("lobby", 2, "bob", None)));
    let entry = |page: &PageModel| page.room("lobby").unwrap().log.iter().find(|e| e.seq() == Some(1)).unwrap().clone();
    let before = entry(&page);

    // asking: sent at once with its id; empty text refused before it leaves
    let effects = page.change_message("lobby", 1, Some("fixed"), "e-1".into()).unwrap();
    assert_eq!(
        effects,
        [Effect::Send(ClientMsg::Edit { id: Some("e-1".into()), room: "lobby".into(), seq: 1, text: "fixed".into() })]
    );
    assert!(page.change_message("lobby", 1, Some("  "), "e-2".into()).is_err());

    // the hub's change: the message gets the text, under a new key; no line of its own
    let edit =
        ChatMessage { edits: Some(1), edited: true, text: "fixed".into(), ..msg("lobby", 3, "alice", Some("e-1")) };
    page.apply(ServerMsg::Message(edit.clone()));
    let after = entry(&page);
    assert!(matches!(&after.kind, EntryKind::Message { text, edited: true, deleted: false, .. } if text == "fixed"));
    assert_ne!(after.key, before.key, "rendered again");
    assert_eq!(seqs(&page, "lobby"), [1, 2]);
    assert_eq!(page.room("lobby").unwrap().last_seq, 3, "a resume starts after the change");
    page.apply(ServerMsg::Message(edit));
    assert_eq!(entry(&page).key, after.key, "the same change twice changes nothing");

    // a deletion
    let delete = ChatMessage { edits: Some(1), deleted: true, text: String::new(), ..msg("lobby", 4, "alice", None) };
    page.apply(ServerMsg::Message(delete));
    assert!(matches!(&entry(&page).kind, EntryKind::Message { text, deleted: true, .. } if text.is_empty()));
    let delete_msg = page.change_message("lobby", 2, None, "d-1".into()).unwrap();
    assert_eq!(delete_msg, [Effect::Send(ClientMsg::Delete { id: Some("d-1".into()), room: "lobby".into(), seq: 2 })]);

    // offline, nothing is sent
    page.connection_lost(1006, String::new(), true);
    assert!(page.change_message("lobby", 2, None, "d-2".into()).is_err());
}

#[test]
fn alt_arrows_move_between_rooms_round_the_ends() {
    let mut page = in_lobby();
    for room in ["rust", "random"] {
        let Some(Effect::Send(ClientMsg::Join { id, .. })) = page.request_join(room, "alice", TOKEN).first().cloned()
        else {
            panic!()
        };
        page.apply(ServerMsg::Joined {
            id,
            room: room.into(),
            nick: "alice".into(),
            members: vec!["alice".into()],
            away: vec![],
            count: 1,
        });
    }
    assert_eq!(page.active_room(), Some("random"), "the last joined is shown");
    let mut visited = Vec::new();
    for forward in [true, true, false, false, false] {
        assert_eq!(page.switch_room(forward), [Effect::SaveSession]);
        visited.push(page.active_room().unwrap().to_owned());
    }
    assert_eq!(visited, ["lobby", "rust", "lobby", "random", "rust"]);
}

#[test]
fn a_rooms_entries_are_its_log_then_its_pending_messages_under_keys_that_change_when_they_fail() {
    let mut page = in_lobby();
    page.apply(ServerMsg::Message(msg("lobby", 1, "bob", None)));
    page.say("lobby", "first", "c-1".into()).unwrap();
    page.say("lobby", "second", "c-2".into()).unwrap();
    let pending = |page: &PageModel| -> Vec<(u64, String, bool)> {
        page.room_entries("lobby")
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.kind {
                EntryKind::Pending { text, failed, .. } => Some((e.key, text, failed.is_some())),
                _ => None,
            })
            .collect()
    };
    let entries = page.room_entries("lobby").unwrap();
    assert_eq!(entries.len(), page.room("lobby").unwrap().log.len() + 2, "the log, then the two");
    assert!(matches!(entries.last().unwrap().kind, EntryKind::Pending { ref text, .. } if text == "second"));
    let before = pending(&page);
    assert_ne!(before[0].0, before[1].0, "keys of their own");
    assert!(entries.iter().filter(|e| e.seq().is_some()).all(|e| e.key < 1 << 63), "apart from the log's");

    // refused: the same message under a new key (rendered again, with Retry); retried: again
    page.apply(ServerMsg::Error {
        id: Some("c-1".into()),
        code: ErrorCode::TextTooLong,
        message: "too long".into(),
        room: Some("lobby".into()),
        retry_after_ms: None,
    });
    let failed = pending(&page);
    assert!(failed[0].2 && failed[0].0 != before[0].0);
    assert_eq!(failed[1], before[1], "the other one is untouched");
    page.retry("c-1");
    assert_eq!(pending(&page)[0], before[0]);
    assert_eq!(page.room_entries("nowhere"), None);
}

#[test]
fn browsing_asks_the_hub_and_keeps_its_answer_and_a_join_from_it_uses_the_nickname_on_screen() {
    let mut page = in_lobby();
    assert_eq!(page.browse_rooms(), [Effect::Send(ClientMsg::Rooms { id: None })]);
    let rooms = vec![
        hubbub_shared::RoomSize { room: "rust".into(), count: 4 },
        hubbub_shared::RoomSize { room: "lobby".into(), count: 1 },
    ];
    page.apply(ServerMsg::Rooms { id: None, rooms: rooms.clone() });
    assert_eq!(page.browse, Some(rooms));
    let list: Vec<(String, Option<u64>)> = page.room_list().into_iter().map(|l| (l.name, l.size)).collect();
    assert_eq!(list, [("lobby".to_owned(), None), ("rust".to_owned(), Some(4))], "joined, then the others");
    assert_eq!(page.current_nick("remembered"), "alice", "the lobby's");
    assert_eq!(PageModel::new(Session::default(), Vec::new()).current_nick("remembered"), "remembered");
    page.connection_lost(1006, String::new(), true);
    assert!(page.browse_rooms().is_empty(), "offline: nothing to ask");
}

/// What the log shows, in order: a message's seq, or "gap".
fn log_shape(page: &PageModel, room: &str) -> Vec<String> {
    let r = page.room(room).unwrap();
    r.log
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Message { seq, .. } => Some(seq.to_string()),
            EntryKind::Gap { .. } => Some("gap".into()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_search_shows_what_the_hub_found_and_its_refusal_and_closes() {
    let mut page = in_lobby();
    let effects = page.search("  deplo build ");
    assert_eq!(
        effects,
        [Effect::Send(ClientMsg::Search {
            id: Some("search".into()),
            query: "deplo build".into(),
            room: None,
            limit: None
        })]
    );
    assert_eq!(page.search.as_ref().unwrap().found, None, "waiting");
    let found = vec![msg("lobby", 7, "bob", None)];
    page.apply(ServerMsg::Found { id: Some("search".into()), terms: vec!["deplo".into()], messages: found.clone() });
    let search = page.search.clone().unwrap();
    assert_eq!((search.query.as_str(), search.terms, search.found), ("deplo build", vec!["deplo".into()], Some(found)));
    // a refusal is shown in the search view, not in a room
    page.search("?!");
    page.apply(ServerMsg::Error {
        id: Some("search".into()),
        code: ErrorCode::QueryEmpty,
        message: "Search for at least one word.".into(),
        room: None,
        retry_after_ms: None,
    });
    assert_eq!(page.search.as_ref().unwrap().problem.as_deref(), Some("Search for at least one word."));
    page.close_search();
    assert_eq!(page.search, None);
}

#[test]
fn opening_a_result_the_log_holds_reveals_it_at_once() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=30, false));
    page.search("m");
    assert_eq!(page.open_at("lobby", 12), [Effect::SaveSession, Effect::Reveal { seq: 12 }]);
    assert_eq!(page.search, None, "the search view closes");
}

#[test]
fn opening_an_older_result_fetches_the_messages_around_it_and_marks_the_gap_to_the_rest() {
    // Arrange: the log holds messages 91–100 of the lobby
    let mut page = in_lobby();
    page.apply(history("lobby", 91..=100, false));

    // Act: open message 40, found by a search
    let effects = page.open_at("lobby", 40);
    let around = ClientMsg::History { id: Some("around".into()), room: "lobby".into(), before: 51, limit: Some(21) };
    assert_eq!(effects, [Effect::SaveSession, Effect::Send(around)]);
    let messages: Vec<ChatMessage> = (30..=50).map(|s| msg("lobby", s, "bob", None)).collect();
    let effects = page.apply(ServerMsg::History {
        id: Some("around".into()),
        room: "lobby".into(),
        messages,
        recovered: true,
        more: true,
    });

    // Assert: the window, a gap, the rest; then the result is revealed
    let mut want: Vec<String> = (30..=50).map(|s| s.to_string()).collect();
    want.push("gap".into());
    want.extend((91..=100).map(|s| s.to_string()));
    assert_eq!(log_shape(&page, "lobby"), want);
    assert_eq!(effects, [Effect::Reveal { seq: 40 }]);
    // loading the gap's newest page shrinks it; live messages still land at the end
    page.apply(history("lobby", 41..=90, true));
    assert!(!log_shape(&page, "lobby").contains(&"gap".to_owned()), "nothing missing any more");
    page.apply(ServerMsg::Message(msg("lobby", 101, "bob", None)));
    assert_eq!(log_shape(&page, "lobby").last().map(String::as_str), Some("101"));
}

// ---- direct conversations and unread counts -------------------------------------------------

const DM: &str = "@0123456789abcdef01234567";

fn read(room: &str, seq: u64, unread: u64, up_to: u64) -> ServerMsg {
    ServerMsg::Read { room: room.into(), seq, unread, up_to }
}

fn listed(page: &PageModel, room: &str) -> Listed {
    page.room_list().into_iter().find(|l| l.name == room).expect("listed")
}

/// Joins `room` as the hub answers a join the page made by itself (a conversation's).
fn joined_by_hub(page: &mut PageModel, room: &str, nick: &str) -> Vec<Effect> {
    page.apply(ServerMsg::Joined {
        id: Some(rejoin_id(room)),
        room: room.into(),
        nick: nick.into(),
        members: vec![],
        away: vec![],
        count: 2,
    })
}

#[test]
fn a_conversation_someone_starts_is_joined_and_listed_under_their_name_without_taking_the_screen() {
    let mut page = in_lobby().with_identity(TOKEN);
    let conversation = Conversation { room: DM.into(), with: "bob".into() };
    let effects = page.apply(ServerMsg::Conversations { id: None, conversations: vec![conversation] });
    assert!(
        matches!(sends(&effects)[..], [ClientMsg::Join { room, token: Some(t), .. }] if room == DM && t == TOKEN),
        "{effects:?}"
    );
    joined_by_hub(&mut page, DM, "alice");
    assert_eq!(page.active.as_deref(), Some("lobby"), "bob's conversation waits in the list");
    assert_eq!(listed(&page, DM).label, "@bob");
    // a message from bob there is unread until the person opens it
    page.apply(read(DM, 0, 0, 0));
    page.apply(ServerMsg::Message(msg(DM, 1, "bob", None)));
    assert_eq!(listed(&page, DM).unread, 1);
    let effects = page.select(DM);
    assert!(sends(&effects).contains(&&ClientMsg::Read { room: DM.into(), seq: 1 }), "{effects:?}");
    assert_eq!(listed(&page, DM).unread, 0);
}

#[test]
fn asking_for_a_conversation_opens_it_once_joined() {
    let mut page = in_lobby().with_identity(TOKEN);
    let effects = page.message_person("lobby", "bob");
    assert_eq!(
        sends(&effects),
        vec![&ClientMsg::Dm { id: Some("dm".into()), room: "lobby".into(), nick: "bob".into() }]
    );
    // the asking tab hears of it as one of the person's tabs, then as the answer: one join
    let conversation = Conversation { room: DM.into(), with: "bob".into() };
    let told = page.apply(ServerMsg::Conversations { id: None, conversations: vec![conversation.clone()] });
    let answer = page.apply(ServerMsg::Conversations { id: Some("dm".into()), conversations: vec![conversation] });
    assert_eq!(sends(&told).len() + sends(&answer).len(), 1, "{told:?} {answer:?}");
    joined_by_hub(&mut page, DM, "alice");
    assert_eq!(page.active.as_deref(), Some(DM));
    assert_eq!(page.room(DM).unwrap().label(), "@bob");
}

#[test]
fn unread_counts_follow_the_hubs_position_and_the_new_messages_line_marks_where_reading_stopped() {
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=5, false));
    // the page is hidden: the hub counted two unread up to 5 (seq 4 and 5); then 6 arrives live
    page.set_hidden(true);
    page.apply(read("lobby", 3, 2, 5));
    assert_eq!(page.room("lobby").unwrap().unread(), 2);
    page.apply(ServerMsg::Message(msg("lobby", 6, "bob", None)));
    page.apply(ServerMsg::Message(msg("lobby", 7, "alice", None)));
    assert_eq!(page.room("lobby").unwrap().unread(), 3, "one's own message is never unread");
    // hidden, the page reads nothing; shown, the room on screen is read
    assert!(page.read_now().is_empty());
    let effects = page.set_hidden(false);
    assert!(sends(&effects).contains(&&ClientMsg::Read { room: "lobby".into(), seq: 7 }), "{effects:?}");
    assert_eq!(page.room("lobby").unwrap().unread(), 0);
    // another tab read further: the count follows the hub
    page.apply(ServerMsg::Message(msg("lobby", 8, "bob", None)));
    page.select("lobby");
    page.apply(read("lobby", 8, 0, 8));
    assert_eq!(page.room("lobby").unwrap().unread(), 0);

    // opened with something unread, the line goes before the first message not read, and
    // stays while the room is on screen (what it shows counts as read at once)
    let mut page = in_lobby();
    page.apply(history("lobby", 1..=4, false));
    let effects = page.apply(read("lobby", 2, 2, 4));
    assert_eq!(sends(&effects), vec![&ClientMsg::Read { room: "lobby".into(), seq: 4 }]);
    let entries = page.room_entries("lobby").unwrap();
    let line = entries.iter().position(|e| e.kind == EntryKind::NewMessages).expect("a line");
    assert_eq!(entries[line + 1].seq(), Some(3));
}

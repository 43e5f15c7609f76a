//! Direct conversations (`dm`) and read positions (`read`): what two people see, what a third
//! person cannot reach whatever they send, and unread counts that every tab of a person agrees
//! on.

use crate::helpers::{Client, TestApp, spawn_app};
use hubbub_shared::{ChatMessage, ClientMsg, Conversation, ErrorCode, ServerMsg};

/// The next `conversations` message with one conversation in it (skipping the list a first
/// join brings, which may be empty).
async fn started(c: &mut Client) -> (Option<String>, Conversation) {
    loop {
        match c.next_news().await {
            ServerMsg::Conversations { id, conversations } if conversations.len() == 1 => {
                return (id, conversations.into_iter().next().expect("one"));
            }
            ServerMsg::Conversations { conversations, .. } if conversations.is_empty() => continue,
            ServerMsg::Read { .. } => continue,
            other => panic!("expected a conversation, got {other:?}"),
        }
    }
}

/// The next `read` about `room`, as (seq, unread, up_to).
async fn read_of(c: &mut Client, room: &str) -> (u64, u64, u64) {
    loop {
        match c.next_news().await {
            ServerMsg::Read { room: r, seq, unread, up_to } if r == room => return (seq, unread, up_to),
            _ => continue,
        }
    }
}

/// A join with the identity `token`; the `joined` nick, or the refusal.
async fn join(c: &mut Client, room: &str, nick: &str, token: Option<&str>) -> Result<String, (ErrorCode, String)> {
    let token = token.map(str::to_owned);
    c.send(&ClientMsg::Join { id: None, room: room.into(), nick: nick.into(), since: None, token }).await;
    match c.next().await {
        ServerMsg::Joined { nick, .. } => {
            assert!(matches!(c.next().await, ServerMsg::History { .. }));
            Ok(nick)
        }
        ServerMsg::Error { code, message, .. } => Err((code, message)),
        other => panic!("expected joined or a refusal, got {other:?}"),
    }
}

async fn dm(c: &mut Client, room: &str, nick: &str) -> Result<Conversation, ErrorCode> {
    let id = format!("dm-{nick}");
    c.send(&ClientMsg::Dm { id: Some(id.clone()), room: room.into(), nick: nick.into() }).await;
    let answer = c
        .first_of(|m| match m {
            ServerMsg::Conversations { id: got, .. } | ServerMsg::Error { id: got, .. } => got.as_deref() == Some(&id),
            _ => false,
        })
        .await;
    match answer {
        ServerMsg::Conversations { mut conversations, .. } => Ok(conversations.remove(0)),
        ServerMsg::Error { code, .. } => Err(code),
        other => unreachable!("picked {other:?}"),
    }
}

async fn say_acked(c: &mut Client, room: &str, text: &str, id: &str) -> u64 {
    say_acked_msg(c, &ClientMsg::Send { id: Some(id.into()), room: room.into(), text: text.into() }, id).await
}

/// Sends `msg` (a send or a change, with client id `id`) and waits for its ack.
async fn say_acked_msg(c: &mut Client, msg: &ClientMsg, id: &str) -> u64 {
    c.send(msg).await;
    loop {
        match c.next().await {
            ServerMsg::Ack { id: got, seq, .. } if got == id => return seq,
            ServerMsg::Message(_) | ServerMsg::Typing { .. } => continue,
            other => panic!("expected the ack of {id}, got {other:?}"),
        }
    }
}

/// The next chat message (who is typing, which may come between, is read past).
async fn next_message(c: &mut Client) -> ChatMessage {
    loop {
        match c.next().await {
            ServerMsg::Message(m) => return m,
            ServerMsg::Typing { .. } => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// alice and bob in the lobby with identities; alice started a conversation with bob, and both
/// know its name.
async fn alice_and_bob_in_a_conversation(app: &TestApp) -> (Client, Client, String) {
    let mut alice = app.person("alice", "alice-secret").await;
    let mut bob = app.person("bob", "bob-secret").await;
    let theirs = dm(&mut alice, "lobby", "bob").await.expect("bob is in the lobby");
    assert_eq!(theirs.with, "bob");
    let (id, told) = started(&mut bob).await;
    assert_eq!((id, told.room.as_str(), told.with.as_str()), (None, theirs.room.as_str(), "alice"));
    (alice, bob, theirs.room)
}

#[tokio::test]
async fn two_people_start_a_conversation_from_a_shared_room_and_talk_with_acks_history_and_resume() {
    let app = spawn_app().await;
    let (mut alice, mut bob, room) = alice_and_bob_in_a_conversation(&app).await;
    assert!(room.starts_with('@') && room.len() == 25, "{room}");

    // both join it like a room, each under the name they had where it began
    assert_eq!(join(&mut alice, &room, "ignored", Some("alice-secret")).await, Ok("alice".into()));
    assert_eq!(join(&mut bob, &room, "anything", Some("bob-secret")).await, Ok("bob".into()));
    let seq = say_acked(&mut alice, &room, "just between us", "c1").await;
    let seen = next_message(&mut bob).await;
    assert_eq!(
        (seen.room.as_str(), seen.author.as_str(), seen.text.as_str()),
        (room.as_str(), "alice", "just between us")
    );

    // asking again, from either side, finds the same conversation
    assert_eq!(dm(&mut bob, "lobby", "ALICE").await.map(|c| c.room), Ok(room.clone()));

    // another tab of alice: the list of her conversations comes with her first join, and the
    // conversation's history and resume work as a room's
    let mut tab = app.client().await;
    assert_eq!(join(&mut tab, "kitchen", "alice", Some("alice-secret")).await, Ok("alice".into()));
    let list = loop {
        if let ServerMsg::Conversations { conversations, .. } = tab.next_news().await {
            break conversations;
        }
    };
    assert_eq!(list, vec![Conversation { room: room.clone(), with: "bob".into() }]);
    tab.send(&ClientMsg::Join {
        id: None,
        room: room.clone(),
        nick: "alice".into(),
        since: None,
        token: Some("alice-secret".into()),
    })
    .await;
    assert!(matches!(tab.next().await, ServerMsg::Joined { .. }));
    match tab.next().await {
        ServerMsg::History { messages, .. } => assert_eq!(messages.last().map(|m| m.seq), Some(seq)),
        other => panic!("expected history, got {other:?}"),
    }
    // typing works there too, and is bob's only
    bob.send(&ClientMsg::Typing { room: room.clone() }).await;
    loop {
        if let ServerMsg::Typing { nicks, .. } = tab.next().await {
            assert_eq!(nicks, vec!["bob".to_owned()]);
            break;
        }
    }
    // alice fixes her message: bob sees the edit live, and a resume from before it gives it
    let edit =
        ClientMsg::Edit { id: Some("e1".into()), room: room.clone(), seq, text: "just between the two of us".into() };
    let edit_seq = say_acked_msg(&mut alice, &edit, "e1").await;
    let seen = next_message(&mut bob).await;
    assert_eq!((seen.edits, seen.text.as_str()), (Some(seq), "just between the two of us"));
    let since = hubbub_shared::cursor::Cursor::new(&app.epoch().await, &room, seq - 1).to_string();
    bob.send(&ClientMsg::Resume { id: Some("r".into()), room: room.clone(), since }).await;
    match bob.next().await {
        ServerMsg::History { messages, recovered: true, .. } => {
            let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, vec![seq, edit_seq]);
            assert!(messages[0].edited && messages[0].text == "just between the two of us");
        }
        other => panic!("expected the resumed history, got {other:?}"),
    }
}

#[tokio::test]
async fn a_third_person_cannot_join_read_send_to_or_search_a_conversation_and_learns_nothing() {
    let app = spawn_app().await;
    let (mut alice, mut bob, room) = alice_and_bob_in_a_conversation(&app).await;
    join(&mut alice, &room, "alice", Some("alice-secret")).await.expect("hers");
    join(&mut bob, &room, "bob", Some("bob-secret")).await.expect("his");
    say_acked(&mut alice, &room, "the secret plan", "c1").await;
    let mut carol = app.person("carol", "carol-secret").await;

    // the real name and a made-up one get the same answer
    let real = join(&mut carol, &room, "alice", Some("carol-secret")).await.expect_err("not hers");
    let made_up = "@00112233445566778899aabb";
    let fake = join(&mut carol, made_up, "alice", Some("carol-secret")).await.expect_err("nobody's");
    assert_eq!(real.0, ErrorCode::NoSuchConversation);
    assert_eq!(real.0, fake.0);
    assert_eq!(real.1.replace(&room, "NAME"), fake.1.replace(made_up, "NAME"), "nothing tells them apart");
    // forging alice's nickname or sending no identity changes nothing
    let mut anonymous = app.client().await;
    assert_eq!(join(&mut anonymous, &room, "alice", None).await.map_err(|e| e.0), Err(ErrorCode::NoSuchConversation));

    // and everything else needs the join first
    let asks = [
        ClientMsg::History { id: Some("h".into()), room: room.clone(), before: 10, limit: None },
        ClientMsg::Send { id: Some("s".into()), room: room.clone(), text: "hi".into() },
        ClientMsg::Search { id: Some("q".into()), query: "secret".into(), room: Some(room.clone()), limit: None },
        ClientMsg::Resume {
            id: Some("r".into()),
            room: room.clone(),
            since: format!("{}:{room}:0", app.epoch().await),
        },
    ];
    for ask in asks {
        carol.send(&ask).await;
        match carol.next().await {
            ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::NotMember, "{ask:?}"),
            other => panic!("{ask:?}: expected a refusal, got {other:?}"),
        }
    }
    // her search of her own rooms finds nothing of theirs; nor does the room list show it
    carol.send(&ClientMsg::Search { id: Some("q".into()), query: "secret plan".into(), room: None, limit: None }).await;
    assert!(matches!(carol.next().await, ServerMsg::Found { messages, .. } if messages.is_empty()));
    carol.send(&ClientMsg::Rooms { id: None }).await;
    match carol.next().await {
        ServerMsg::Rooms { rooms, .. } => assert!(rooms.iter().all(|r| !r.room.starts_with('@')), "{rooms:?}"),
        other => panic!("expected rooms, got {other:?}"),
    }
    // while alice's own search does find it
    alice.send(&ClientMsg::Search { id: Some("q".into()), query: "secret".into(), room: None, limit: None }).await;
    loop {
        match alice.next().await {
            ServerMsg::Found { messages, .. } => break assert_eq!(messages.len(), 1),
            ServerMsg::Message(_) => continue,
            other => panic!("expected found, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_conversation_needs_someone_else_in_the_room_and_an_identity() {
    let app = spawn_app().await;
    let mut alice = app.person("alice", "alice-secret").await;
    let (mut anonymous, _) = app.joined("lobby", "anon").await;
    assert_eq!(dm(&mut alice, "lobby", "nobody").await, Err(ErrorCode::NoSuchMember));
    assert_eq!(dm(&mut alice, "lobby", "Alice").await, Err(ErrorCode::NoSuchMember), "not oneself");
    assert_eq!(dm(&mut alice, "kitchen", "anon").await, Err(ErrorCode::NotMember), "only from one's rooms");
    assert_eq!(dm(&mut anonymous, "lobby", "alice").await, Err(ErrorCode::NoSuchMember), "no identity");
    if app.hubs() == 1 {
        // the other hub's anonymous members are only known by their claim
        assert_eq!(dm(&mut alice, "lobby", "anon").await, Err(ErrorCode::NoSuchMember), "they have no identity");
    }
}

#[tokio::test]
async fn a_read_position_is_the_persons_every_tab_hears_it_move_and_counts_only_others_messages() {
    let app = spawn_app().await;
    let mut bob = app.person("bob", "bob-secret").await;
    assert_eq!(read_of(&mut bob, "lobby").await, (0, 0, 0));
    let mut tab1 = app.person("alice", "alice-secret").await;
    assert_eq!(read_of(&mut tab1, "lobby").await, (0, 0, 0));
    // a first join starts at the room's newest message: what came before is not unread
    let mut carol = app.person("carol", "carol-secret").await;
    assert_eq!(read_of(&mut carol, "lobby").await, (0, 0, 0));
    say_acked(&mut bob, "lobby", "before carol came", "b0").await;
    let mut carol_later = app.person("carol", "carol-secret").await;
    assert_eq!(read_of(&mut carol_later, "lobby").await, (0, 1, 1), "carol's second tab: bob's message unread");
    let mut dave = app.person("dave", "dave-secret").await;
    assert_eq!(read_of(&mut dave, "lobby").await, (1, 0, 1), "dave came after it: nothing unread");
    let mut tab2 = app.person("alice", "alice-secret").await;
    assert_eq!(read_of(&mut tab2, "lobby").await, (0, 1, 1), "the same position in alice's second tab");

    let first = say_acked(&mut bob, "lobby", "one", "b1").await;
    let _ = say_acked(&mut bob, "lobby", "two", "b2").await;
    say_acked(&mut tab1, "lobby", "mine is never unread", "a1").await;
    // a third tab counts what is unread now
    let mut tab3 = app.person("alice", "alice-secret").await;
    assert_eq!(read_of(&mut tab3, "lobby").await, (0, 3, 4));

    // reading in one tab moves it in every tab
    tab1.send(&ClientMsg::Read { room: "lobby".into(), seq: first }).await;
    for tab in [&mut tab1, &mut tab2, &mut tab3] {
        assert_eq!(read_of(tab, "lobby").await, (first, 1, 4));
    }
    // never back, never past the newest message
    tab2.send(&ClientMsg::Read { room: "lobby".into(), seq: 1 }).await;
    assert_eq!(read_of(&mut tab3, "lobby").await, (first, 1, 4));
    tab2.send(&ClientMsg::Read { room: "lobby".into(), seq: 1_000_000 }).await;
    assert_eq!(read_of(&mut tab3, "lobby").await, (4, 0, 4));
    // bob's position is his own: he has read nothing since he came, and only alice's is unread
    drop(bob);
    let mut bob = app.person("bob", "bob-secret").await;
    assert_eq!(read_of(&mut bob, "lobby").await, (0, 1, 4));
}

#[tokio::test]
async fn a_conversation_starts_unread_for_the_one_who_was_away() {
    let app = spawn_app().await;
    let (mut alice, bob, room) = alice_and_bob_in_a_conversation(&app).await;
    drop(bob);
    join(&mut alice, &room, "alice", Some("alice-secret")).await.expect("hers");
    say_acked(&mut alice, &room, "are you there?", "c1").await;
    say_acked(&mut alice, &room, "call me", "c2").await;

    // bob comes back later: his conversation waits with both messages unread
    let mut bob = app.person("bob", "bob-secret").await;
    let (_, told) = loop {
        if let ServerMsg::Conversations { id, conversations } = bob.next_news().await {
            break (id, conversations);
        }
    };
    assert_eq!(told.iter().map(|c| c.room.as_str()).collect::<Vec<_>>(), vec![room.as_str()]);
    join(&mut bob, &room, "bob", Some("bob-secret")).await.expect("his");
    assert_eq!(read_of(&mut bob, &room).await, (0, 2, 2));
}

#[tokio::test]
async fn a_signed_in_persons_second_device_finds_their_conversations_and_the_same_read_positions() {
    use crate::auth::{hs256, now, signed_in_app};
    let app = signed_in_app().await;
    // each device its own browser identity; the host application's `sub` makes them one person
    let device = |sub: &'static str, name: &'static str, browser: &'static str| {
        let app = &app;
        async move {
            let mut c = app.client().await;
            c.send(&ClientMsg::Auth { id: None, token: hs256(sub, name, now() + 600) }).await;
            assert!(matches!(c.next().await, ServerMsg::Authed { .. }));
            assert_eq!(join(&mut c, "lobby", "ignored", Some(browser)).await, Ok(name.to_owned()));
            c
        }
    };
    let mut laptop = device("u-alice", "alice", "laptop-secret").await;
    let mut bob = device("u-bob", "bob", "bob-secret").await;
    let room = dm(&mut laptop, "lobby", "bob").await.expect("bob is there").room;
    let seq = say_acked(&mut bob, "lobby", "hello alice", "b1").await;
    laptop.send(&ClientMsg::Read { room: "lobby".into(), seq }).await;
    loop {
        if read_of(&mut laptop, "lobby").await.0 == seq {
            break;
        }
    }

    // Act: alice signs in on her phone
    let mut phone = device("u-alice", "alice", "phone-secret").await;

    // Assert: the conversation with bob is in its list, and the lobby is read up to bob's message
    // (picked out of the news without dropping the `read` that may come first)
    let list = phone.first_of(|m| matches!(m, ServerMsg::Conversations { .. })).await;
    let ServerMsg::Conversations { conversations, .. } = list else { unreachable!() };
    assert_eq!(conversations, vec![Conversation { room: room.clone(), with: "bob".into() }]);
    assert_eq!(read_of(&mut phone, "lobby").await, (seq, 0, seq));
    assert_eq!(join(&mut phone, &room, "alice", Some("phone-secret")).await, Ok("alice".into()));
}

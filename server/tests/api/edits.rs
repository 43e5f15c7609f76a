//! Editing and deleting one's own messages: seen live by everyone, what history and resume give
//! afterwards, acknowledged and idempotent like sends, and refused (typed) for anyone else.

use crate::helpers::{Client, spawn_app};
use hubbub_shared::{ChatMessage, ClientMsg, ErrorCode, ServerMsg, cursor::Cursor};
use std::time::Duration;

fn edit(id: &str, seq: u64, text: &str) -> ClientMsg {
    ClientMsg::Edit { id: Some(id.into()), room: "lobby".into(), seq, text: text.into() }
}

fn delete(id: &str, seq: u64) -> ClientMsg {
    ClientMsg::Delete { id: Some(id.into()), room: "lobby".into(), seq }
}

/// Sends with an id and returns the acknowledged seq (the sender's own copy is read first).
async fn send_acked(c: &mut Client, msg: &ClientMsg) -> (ChatMessage, u64) {
    c.send(msg).await;
    let ServerMsg::Message(own) = c.next().await else { panic!("own copy first") };
    let ServerMsg::Ack { seq, .. } = c.next().await else { panic!("then the ack") };
    assert_eq!(own.seq, seq);
    (own, seq)
}

async fn next_message(c: &mut Client) -> ChatMessage {
    match c.next().await {
        ServerMsg::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn refusal(c: &mut Client) -> (Option<String>, ErrorCode, Option<String>) {
    match c.next().await {
        ServerMsg::Error { id, code, room, .. } => (id, code, room),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_edit_and_a_deletion_reach_everyone_live_and_are_what_history_and_resume_give() {
    let app = spawn_app().await;
    let mut alice = app.person("alice", "alice-secret").await;
    let mut bob = app.person("bob", "bob-secret").await;
    let send = ClientMsg::Send { id: Some("m1".into()), room: "lobby".into(), text: "helo wrold".into() };
    let (_, first) = send_acked(&mut alice, &send).await;
    assert_eq!(next_message(&mut bob).await.text, "helo wrold");

    // Act: alice fixes her typo
    let (own, edit_seq) = send_acked(&mut alice, &edit("e1", first, "hello world")).await;

    // Assert: everyone gets the change, ordered after what came before it
    let seen = next_message(&mut bob).await;
    assert_eq!(seen, own);
    assert_eq!((seen.seq, seen.edits, seen.edited, seen.deleted), (first + 1, Some(first), true, false));
    assert_eq!((seen.author.as_str(), seen.text.as_str()), ("alice", "hello world"));
    assert_eq!(edit_seq, first + 1);

    // the same edit sent again (a resend after a reconnect): acknowledged again, applied once
    alice.send(&edit("e1", first, "hello world")).await;
    assert!(matches!(alice.next().await, ServerMsg::Ack { seq, .. } if seq == edit_seq));
    assert!(bob.is_quiet_for(Duration::from_millis(300)).await, "nothing new for the others");

    // a deletion: the text is gone for everyone
    let (_, delete_seq) = send_acked(&mut alice, &delete("d1", first)).await;
    let gone = next_message(&mut bob).await;
    assert_eq!((gone.seq, gone.edits, gone.deleted, gone.text.as_str()), (delete_seq, Some(first), true, ""));

    // what a newcomer's history says: the message as it is now, then the changes in order
    let mut carol = app.client().await;
    let (_, history) = carol.join_since("lobby", "carol", None).await;
    let ServerMsg::History { messages, .. } = history else { unreachable!() };
    let summary: Vec<_> = messages.iter().map(|m| (m.seq, m.edits, m.deleted, m.text.as_str())).collect();
    assert_eq!(
        summary,
        [(first, None, true, ""), (edit_seq, Some(first), false, "hello world"), (delete_seq, Some(first), true, "")]
    );
    assert!(messages[0].edited, "it was edited before it was deleted");

    // and a resume from just after the original message brings both changes
    let since = Cursor::new(&app.epoch().await, "lobby", first).to_string();
    let mut dave = app.client().await;
    let (_, resumed) = dave.join_since("lobby", "dave", Some(since)).await;
    let ServerMsg::History { messages, recovered, .. } = resumed else { unreachable!() };
    assert!(recovered);
    assert_eq!(
        messages.iter().map(|m| (m.seq, m.edits)).collect::<Vec<_>>(),
        [(edit_seq, Some(first)), (delete_seq, Some(first))]
    );
}

/// A newcomer's first page (which the hub keeps in memory for busy rooms) and an older-page
/// request one longer than a page (which it reads from the database) must agree, message for
/// message, before and after an edit and a deletion.
#[tokio::test]
async fn a_joins_first_page_is_what_the_database_holds_through_edits_and_deletions() {
    let app = spawn_app().await;
    let mut alice = app.person("alice", "alice-secret").await;
    let mut seqs = Vec::new();
    for i in 0..60 {
        // every third without an id: those have none in history either
        let id = (i % 3 != 0).then(|| format!("m{i}"));
        alice.send(&ClientMsg::Send { id: id.clone(), room: "lobby".into(), text: format!("message {i}") }).await;
        seqs.push(next_message(&mut alice).await.seq);
        if id.is_some() {
            assert!(matches!(alice.next().await, ServerMsg::Ack { .. }));
        }
    }
    let (first, last) = (seqs[0], seqs[59]);

    async fn both_pages(app: &crate::helpers::TestApp, nick: &str, head: u64) -> (Vec<ChatMessage>, Vec<ChatMessage>) {
        let mut c = app.client().await;
        let (_, joined_page) = c.join_since("lobby", nick, None).await;
        let ServerMsg::History { messages: page, .. } = joined_page else { panic!("history after joined") };
        c.send(&ClientMsg::History { id: None, room: "lobby".into(), before: head + 1, limit: Some(51) }).await;
        let ServerMsg::History { messages: read, .. } = c.next().await else { panic!("an older page") };
        (page, read)
    }

    let (page, read) = both_pages(&app, "bob", last).await;
    assert_eq!(page.len(), 50);
    assert_eq!(page[..], read[1..], "the newest 50 as the database has them");
    assert_eq!(page[49].text, "message 59");

    // an edit rewrites an older message: the next newcomer sees the new text
    let (_, edit_seq) = send_acked(&mut alice, &edit("e1", last - 2, "changed")).await;
    let (page, read) = both_pages(&app, "carol", edit_seq).await;
    assert_eq!(page[..], read[1..]);
    let edited = page.iter().find(|m| m.seq == last - 2).expect("on the first page");
    assert_eq!((edited.text.as_str(), edited.edited), ("changed", true));

    // and a deletion; then one more newcomer, whose page the hub has kept since carol's
    let (_, delete_seq) = send_acked(&mut alice, &delete("d1", last)).await;
    let _ = both_pages(&app, "dave", delete_seq).await;
    let (page, read) = both_pages(&app, "erin", delete_seq).await;
    assert_eq!(page[..], read[1..]);
    assert!(page.iter().any(|m| m.seq == last && m.deleted && m.text.is_empty()));
    assert_eq!(page.last().map(|m| m.seq), Some(delete_seq));
    assert!(first < page[0].seq);
}

#[tokio::test]
async fn only_the_author_changes_a_message_and_every_refusal_is_typed_and_tells_no_one_else() {
    let app = spawn_app().await;
    let mut alice = app.person("alice", "alice-secret").await;
    let mut bob = app.person("bob", "bob-secret").await;
    let send = ClientMsg::Send { id: Some("m1".into()), room: "lobby".into(), text: "mine".into() };
    let (_, first) = send_acked(&mut alice, &send).await;
    next_message(&mut bob).await;
    let lobby = Some("lobby".to_owned());

    // Act + Assert: bob may not touch alice's message, whatever he sends
    bob.send(&edit("b1", first, "pwned")).await;
    assert_eq!(refusal(&mut bob).await, (Some("b1".into()), ErrorCode::NotAuthor, lobby.clone()));
    bob.send(&delete("b2", first)).await;
    assert_eq!(refusal(&mut bob).await, (Some("b2".into()), ErrorCode::NotAuthor, lobby.clone()));
    // a message that does not exist, and a change (not a message) as the target
    bob.send(&delete("b3", 999)).await;
    assert_eq!(refusal(&mut bob).await, (Some("b3".into()), ErrorCode::NoSuchMessage, lobby.clone()));
    let (_, edit_seq) = send_acked(&mut alice, &edit("e1", first, "still mine")).await;
    next_message(&mut bob).await;
    alice.send(&edit("e2", edit_seq, "an edit of an edit")).await;
    assert_eq!(refusal(&mut alice).await, (Some("e2".into()), ErrorCode::NoSuchMessage, lobby.clone()));
    // the rules of sends: a room one is not in, an empty text
    alice
        .send(&ClientMsg::Edit { id: Some("e3".into()), room: "elsewhere".into(), seq: first, text: "x".into() })
        .await;
    assert!(matches!(refusal(&mut alice).await, (Some(id), ErrorCode::NotMember, _) if id == "e3"));
    alice.send(&edit("e4", first, "   ")).await;
    assert!(matches!(refusal(&mut alice).await, (Some(id), ErrorCode::TextEmpty, _) if id == "e4"));
    assert!(bob.is_quiet_for(Duration::from_millis(300)).await, "no refusal reached anyone else");

    // someone else under alice's name, once she left, is still not her
    alice.send(&ClientMsg::Leave { id: None, room: "lobby".into() }).await;
    assert!(matches!(alice.next().await, ServerMsg::Left { .. }));
    drop(alice);
    // (across hubs the name is released through Redis a moment after the leave)
    let mut impostor = app.client().await;
    for attempt in 0.. {
        let join = ClientMsg::Join {
            id: None,
            room: "lobby".into(),
            nick: "alice".into(),
            since: None,
            token: Some("another-secret".into()),
        };
        impostor.send(&join).await;
        match impostor.next().await {
            ServerMsg::Joined { .. } => break,
            ServerMsg::Error { code: ErrorCode::NickTaken, .. } if attempt < 50 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(impostor.next().await, ServerMsg::History { .. }));
    impostor.send(&delete("i1", first)).await;
    assert_eq!(refusal(&mut impostor).await, (Some("i1".into()), ErrorCode::NotAuthor, lobby.clone()));

    // while alice herself, back in another tab (the same identity), may
    let mut alice_again = app.person("alice2", "alice-secret").await;
    let (gone, _) = send_acked(&mut alice_again, &delete("a1", first)).await;
    assert!(gone.deleted);
    alice_again.send(&edit("a2", first, "back from the dead")).await;
    assert_eq!(refusal(&mut alice_again).await, (Some("a2".into()), ErrorCode::NoSuchMessage, lobby));
}

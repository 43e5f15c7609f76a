//! `rooms`: the rooms people are in right now, for a "browse rooms" view, from any hub.

use crate::helpers::{Client, spawn_app};
use hubbub_shared::{ClientMsg, RoomSize, ServerMsg};
use std::time::{Duration, Instant};

/// Asks until the answer is `want` (other hubs' people arrive with their next view).
async fn sees_rooms(c: &mut Client, want: &[(&str, u64)]) {
    let want: Vec<RoomSize> =
        want.iter().map(|(room, count)| RoomSize { room: (*room).into(), count: *count }).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.send(&ClientMsg::Rooms { id: Some("r".into()) }).await;
        let rooms = loop {
            match c.next().await {
                ServerMsg::Rooms { id, rooms } => {
                    assert_eq!(id.as_deref(), Some("r"));
                    break rooms;
                }
                ServerMsg::History { .. } | ServerMsg::Members { .. } => continue,
                other => panic!("expected rooms, got {other:?}"),
            }
        };
        if rooms == want {
            return;
        }
        assert!(Instant::now() < deadline, "rooms {rooms:?}, wanted {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn anyone_can_list_the_rooms_people_are_in_biggest_first_each_person_once() {
    let app = spawn_app().await;
    let _alice = app.person_in(&["lobby", "rust"], "alice", "alice-secret").await;
    let _bob = app.person_in(&["lobby"], "bob", "bob-secret").await;
    // bob's second tab: still one person in the lobby
    let _bob_again = app.person_in(&["lobby", "zoo"], "bob", "bob-secret").await;
    let mut carol = app.person_in(&["quiet"], "carol", "carol-secret").await;
    carol.send(&ClientMsg::Leave { id: None, room: "quiet".into() }).await;
    assert!(matches!(carol.next().await, ServerMsg::Left { .. }));

    // Act + Assert: someone in no room at all asks (with two hubs, on the hub that holds only
    // bob's tab of the lobby: rust and zoo are known to it through the other hub's views)
    let _other_hub = app.client().await;
    let mut dave = app.client().await;
    sees_rooms(&mut dave, &[("lobby", 2), ("rust", 1), ("zoo", 1)]).await;

    // a room empties: it is no longer listed
    drop(_alice);
    let mut dave_in = app.person_in(&["lobby"], "dave", "dave-secret").await;
    sees_rooms(&mut dave_in, &[("lobby", 2), ("zoo", 1)]).await;
}

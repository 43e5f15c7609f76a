//! Presence: the rooms, the people in them (each person once, however many tabs), whether they
//! are away, and who is typing.
//!
//! [`Presence`] is the seam: today's engine is [`LocalPresence`], the rooms of this one process;
//! a cluster engine (nickname ownership, per-person connection counts per hub and per-hub
//! heartbeats in Redis) plugs in beside it, chosen at start-up (`crate::app`).
//!
//! **People, not connections.** A member is a person in a room: a nickname and the identity
//! secret the page sent in `join` (`token`). Any number of connections with the same identity
//! and nickname are one member: every connection gets every event of the room, and the room
//! hears of the person once. A person joins when their first connection arrives; they leave at
//! once when they leave on purpose from their last connection, or when every connection of
//! theirs has been gone for the grace period (a reload or a blip announces nothing). A join
//! without an identity is a person of its own.
//!
//! `LocalPresence` keeps all state behind one `std::sync::Mutex` that is never held across an
//! `.await`: every operation is a short, synchronous critical section. Replies and broadcasts
//! are pushed into the members' outbound queues *inside* that section, so everyone sees a room's
//! events in the same order, and a joiner's `joined` reply always precedes the room's next
//! message. Time-driven changes (grace expiry, away, typing expiry) happen in [`Presence::tick`],
//! which the application calls a few times a second.

use super::nick_rules;
use crate::net::{ConnId, Outbound};
use hubbub_shared::{ChatMessage, ErrorCode, Invalid, Nick, RoomName, ServerMsg, encode};
use std::{collections::HashMap, sync::Mutex, time::Duration};
use tokio::time::Instant;

/// The durations presence works with (`--presence-grace-ms`, `--away-after-ms`,
/// `--typing-ttl-ms`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PresenceTimes {
    /// How long a person stays after their last connection is gone; zero: they leave at once.
    pub(crate) grace: Duration,
    /// How long every connection of a person must be hidden before they are away.
    pub(crate) away_after: Duration,
    /// How long a typing signal lasts without a refresh.
    pub(crate) typing_ttl: Duration,
}

/// A connection asking to be a member of a room.
#[derive(Debug)]
pub(crate) struct JoinRequest<'a> {
    pub(crate) conn: ConnId,
    pub(crate) room: &'a RoomName,
    /// Canonical already ([`nick_rules::canonical`]).
    pub(crate) nick: Nick,
    /// The person's secret from `join`: connections with the same one are the same person.
    pub(crate) identity: Option<String>,
    /// Whether the page on this connection is hidden right now.
    pub(crate) hidden: bool,
    /// Where the `joined` reply and the room's events go.
    pub(crate) out: &'a Outbound,
    /// The request id the `joined` reply echoes.
    pub(crate) reply_id: Option<String>,
}

/// Who is in which room, and telling them when that changes.
pub(crate) trait Presence: Send + Sync + std::fmt::Debug {
    /// Adds the connection to the room (creating it): as another connection of a member with
    /// the same identity and nickname, or as a new member, announced to the others with
    /// `member_joined`. Replies `joined` with the member list; or refuses (nickname taken by
    /// someone else, or confusable with theirs).
    fn join(&self, request: JoinRequest<'_>) -> Result<(), Invalid>;

    /// Removes `conn` from `room`. With `reply` it is a leave on purpose: the connection gets
    /// `left`, and when it was the person's last one, the room hears `member_left` at once.
    /// Without (the connection closed), a person with no connection left leaves after the grace.
    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>);

    /// The person on `conn` is typing in `room` (`true`), or stopped by sending (`false`).
    fn typing(&self, conn: ConnId, room: &RoomName, typing: bool);

    /// The page on `conn` became hidden or visible.
    fn visibility(&self, conn: ConnId, room: &RoomName, hidden: bool);

    /// Applies what time decides: people whose grace ran out leave, people become away or
    /// active, typing signals expire.
    fn tick(&self, now: Instant);

    /// Number of rooms with at least one member (for `/metrics`).
    fn room_count(&self) -> usize;
}

/// The rooms of this process. Also what [`crate::broker::local::LocalFanout`] delivers through.
#[derive(Debug)]
pub(crate) struct LocalPresence {
    rooms: Mutex<HashMap<RoomName, Room>>,
    times: PresenceTimes,
}

/// A member's number within its room.
type MemberId = u64;

#[derive(Debug, Default)]
struct Room {
    members: HashMap<MemberId, Member>,
    /// Every connection in the room, flat: a broadcast walks this map alone (as it did before
    /// people had several connections), and members in their grace period cost it nothing.
    conns: HashMap<ConnId, RoomConn>,
    next_member: MemberId,
    /// The names the last `typing` frame carried: a frame goes out only when this changes.
    typing_sent: Vec<String>,
}

#[derive(Debug)]
struct Member {
    nick: Nick,
    /// [`nick_rules::look_alike_key`] of `nick`, computed once: every join compares against it.
    look_alike: String,
    /// The person's secret, if their page sent one; `None` makes every connection a person.
    identity: Option<String>,
    /// The person's connections in this room (keys of [`Room::conns`]); usually one or two.
    conns: Vec<ConnId>,
    /// Since when the person has had no connection here: they leave when the grace runs out.
    gone_since: Option<Instant>,
    /// Whether the room was last told the person is away.
    away: bool,
    /// Until when the person counts as typing.
    typing_until: Option<Instant>,
}

#[derive(Debug)]
struct RoomConn {
    member: MemberId,
    out: Outbound,
    /// Since when the page on this connection has been hidden.
    hidden_since: Option<Instant>,
}

impl Room {
    fn names(&self, filter: impl Fn(&Member) -> bool) -> Vec<String> {
        let mut names: Vec<String> = self.members.values().filter(|m| filter(m)).map(|m| m.nick.to_string()).collect();
        names.sort_by_key(|n| n.to_lowercase());
        names
    }

    /// The member whose nickname looks like `look_alike`, if any.
    fn holder_of(&self, look_alike: &str) -> Option<MemberId> {
        self.members.iter().find(|(_, m)| m.look_alike == look_alike).map(|(id, _)| *id)
    }

    fn should_be_away(&self, member: &Member, now: Instant, away_after: Duration) -> bool {
        !member.conns.is_empty()
            && member.conns.iter().all(|c| {
                self.conns
                    .get(c)
                    .and_then(|c| c.hidden_since)
                    .is_some_and(|t| now.saturating_duration_since(t) >= away_after)
            })
    }

    /// Serialises a chat message once and queues the same bytes for every connection, as a
    /// live (droppable, catch-up-able) frame.
    fn broadcast_live(&self, message: ChatMessage) {
        let (room, seq) = (message.room.clone(), message.seq);
        let frame = axum::extract::ws::Message::Text(encode(&ServerMsg::Message(message)).into());
        for conn in self.conns.values() {
            conn.out.push_live(&room, seq, frame.clone());
        }
    }

    /// Serialises once and queues the same bytes for every connection except those of `skip`.
    fn broadcast(&self, msg: &ServerMsg, skip: Option<MemberId>) {
        let frame = axum::extract::ws::Message::Text(encode(msg).into());
        for conn in self.conns.values() {
            if Some(conn.member) != skip {
                conn.out.push_frame(frame.clone());
            }
        }
    }

    /// Removes a member (with any connections left) and tells the others.
    fn remove_member(&mut self, room: &RoomName, id: MemberId) {
        if let Some(member) = self.members.remove(&id) {
            for conn in &member.conns {
                self.conns.remove(conn);
            }
            self.broadcast(&ServerMsg::MemberLeft { room: room.to_string(), nick: member.nick.to_string() }, None);
        }
    }

    /// Sends the typing set when it changed since the last frame. Droppable: a reader who is
    /// behind misses it and gets the next one.
    fn send_typing(&mut self, room: &RoomName, now: Instant) {
        let typing = self.names(|m| m.typing_until.is_some_and(|until| until > now));
        if typing == self.typing_sent {
            return;
        }
        let frame = typing_frame(room, &typing);
        for conn in self.conns.values() {
            conn.out.push_ephemeral(frame.clone());
        }
        self.typing_sent = typing;
    }

    /// Tells the room when a member became away or active.
    fn update_away(&mut self, room: &RoomName, id: MemberId, now: Instant, away_after: Duration) {
        let Some(member) = self.members.get(&id) else { return };
        let away = self.should_be_away(member, now, away_after);
        if away != member.away {
            let msg = ServerMsg::MemberState { room: room.to_string(), nick: member.nick.to_string(), away };
            self.members.get_mut(&id).expect("found just now").away = away;
            self.broadcast(&msg, None);
        }
    }
}

/// The `typing` frame naming `nicks`, encoded once for every connection it goes to.
fn typing_frame(room: &RoomName, nicks: &[String]) -> axum::extract::ws::Message {
    axum::extract::ws::Message::Text(
        encode(&ServerMsg::Typing { room: room.to_string(), nicks: nicks.to_vec() }).into(),
    )
}

impl LocalPresence {
    pub(crate) fn new(times: PresenceTimes) -> Self {
        LocalPresence { rooms: Mutex::default(), times }
    }

    /// Delivers a committed message to every connection in its room here, the author's included.
    pub(crate) fn deliver(&self, message: ChatMessage) {
        let Ok(room) = RoomName::parse(&message.room) else { return };
        let rooms = self.lock();
        if let Some(entry) = rooms.get(&room) {
            entry.broadcast_live(message);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, Room>> {
        // A panic while holding the lock cannot leave a room half-updated in a way later
        // operations would trip over, so a poisoned lock is still usable.
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the member `conn` belongs to in `room`, if any.
    fn with_member(&self, conn: ConnId, room: &RoomName, change: impl FnOnce(&mut Room, MemberId)) {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        let Some(id) = entry.conns.get(&conn).map(|c| c.member) else { return };
        change(entry, id);
    }
}

impl Presence for LocalPresence {
    fn join(&self, request: JoinRequest<'_>) -> Result<(), Invalid> {
        let JoinRequest { conn, room, nick, identity, hidden, out, reply_id } = request;
        let identity = identity.filter(|i| !i.is_empty());
        let now = Instant::now();
        let mut rooms = self.lock();
        let entry = rooms.entry(room.clone()).or_default();
        let look_alike = nick_rules::look_alike_key(&nick);
        let id = match entry.holder_of(&look_alike) {
            // the same person, from another tab (or back within the grace): one member
            Some(id)
                if identity.is_some()
                    && entry.members[&id].identity == identity
                    && entry.members[&id].nick.key() == nick.key() =>
            {
                let member = entry.members.get_mut(&id).expect("found just now");
                member.conns.push(conn);
                member.gone_since = None;
                id
            }
            Some(id) => {
                let holder = &entry.members[&id];
                let (code, reason) = if holder.nick.key() == nick.key() {
                    (ErrorCode::NickTaken, format!("Someone in {room} is already called {nick}."))
                } else {
                    (
                        ErrorCode::NickConfusable,
                        format!("{nick} looks too much like {}, who is in {room}.", holder.nick),
                    )
                };
                // an empty room was just created by `entry`: do not leave it behind
                if entry.members.is_empty() {
                    rooms.remove(room);
                }
                return Err(Invalid { code, reason });
            }
            None => {
                let id = entry.next_member;
                entry.next_member += 1;
                let member = Member {
                    nick: nick.clone(),
                    look_alike,
                    identity,
                    conns: vec![conn],
                    gone_since: None,
                    away: false,
                    typing_until: None,
                };
                entry.members.insert(id, member);
                entry.broadcast(&ServerMsg::MemberJoined { room: room.to_string(), nick: nick.to_string() }, Some(id));
                id
            }
        };
        entry.conns.insert(conn, RoomConn { member: id, out: out.clone(), hidden_since: hidden.then_some(now) });
        out.push(&ServerMsg::Joined {
            id: reply_id,
            room: room.to_string(),
            nick: entry.members[&id].nick.to_string(),
            members: entry.names(|_| true),
            away: entry.names(|m| m.away),
        });
        // a visible tab makes an away person active again
        entry.update_away(room, id, now, self.times.away_after);
        if !entry.typing_sent.is_empty() {
            out.push_ephemeral(typing_frame(room, &entry.typing_sent));
        }
        Ok(())
    }

    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        let Some(RoomConn { member: id, .. }) = entry.conns.remove(&conn) else { return };
        if let Some((out, reply_id)) = &reply {
            out.push(&ServerMsg::Left { id: reply_id.clone(), room: room.to_string() });
        }
        let member = entry.members.get_mut(&id).expect("connections name members");
        member.conns.retain(|c| *c != conn);
        if member.conns.is_empty() {
            member.typing_until = None;
            if reply.is_some() || self.times.grace.is_zero() {
                entry.remove_member(room, id);
            } else {
                member.gone_since = Some(now);
            }
            entry.send_typing(room, now);
        } else {
            // the tabs left behind may all be hidden
            entry.update_away(room, id, now, self.times.away_after);
        }
        if entry.members.is_empty() {
            rooms.remove(room);
        }
    }

    fn typing(&self, conn: ConnId, room: &RoomName, typing: bool) {
        let now = Instant::now();
        let ttl = self.times.typing_ttl;
        self.with_member(conn, room, |entry, id| {
            let member = entry.members.get_mut(&id).expect("connections name members");
            let was_typing = member.typing_until.is_some_and(|until| until > now);
            member.typing_until = typing.then_some(now + ttl);
            // a refresh, or a send by someone not typing, changes nothing anyone sees
            if was_typing != typing {
                entry.send_typing(room, now);
            }
        });
    }

    fn visibility(&self, conn: ConnId, room: &RoomName, hidden: bool) {
        let now = Instant::now();
        let away_after = self.times.away_after;
        self.with_member(conn, room, |entry, id| {
            if let Some(c) = entry.conns.get_mut(&conn) {
                c.hidden_since = if hidden { c.hidden_since.or(Some(now)) } else { None };
            }
            entry.update_away(room, id, now, away_after);
        });
    }

    fn tick(&self, now: Instant) {
        let times = self.times;
        let mut rooms = self.lock();
        for (room, entry) in rooms.iter_mut() {
            let gone: Vec<MemberId> = entry
                .members
                .iter()
                .filter(|(_, m)| m.gone_since.is_some_and(|t| now.saturating_duration_since(t) >= times.grace))
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                entry.remove_member(room, id);
            }
            // only pages that are hidden can make anyone away (or keep them so)
            let maybe_away: Vec<MemberId> = entry
                .members
                .iter()
                .filter(|(_, m)| {
                    m.away || m.conns.iter().any(|c| entry.conns.get(c).is_some_and(|c| c.hidden_since.is_some()))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in maybe_away {
                entry.update_away(room, id, now, times.away_after);
            }
            if !entry.typing_sent.is_empty() {
                entry.send_typing(room, now);
            }
        }
        rooms.retain(|_, entry| !entry.members.is_empty());
    }

    fn room_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    //! The presence rules on tokio's paused clock, driven through the trait as the sessions
    //! and the ticker drive it.

    use super::*;
    use crate::{net::OutboundRx, stats::Stats};
    use std::sync::Arc;

    const GRACE: Duration = Duration::from_secs(15);
    const AWAY: Duration = Duration::from_secs(300);
    const TYPING: Duration = Duration::from_secs(6);

    fn presence() -> LocalPresence {
        LocalPresence::new(PresenceTimes { grace: GRACE, away_after: AWAY, typing_ttl: TYPING })
    }

    struct Tab {
        conn: ConnId,
        out: Outbound,
        rx: OutboundRx,
    }

    fn tab(conn: ConnId) -> Tab {
        let (out, rx, _) = Outbound::new(64, Arc::new(Stats::default()));
        Tab { conn, out, rx }
    }

    impl Tab {
        /// Every message queued for this tab so far.
        fn heard(&mut self) -> Vec<ServerMsg> {
            std::iter::from_fn(|| self.rx.try_recv())
                .map(|frame| hubbub_shared::decode_server(frame.to_text().unwrap()).unwrap())
                .collect()
        }
    }

    fn lobby() -> RoomName {
        RoomName::parse("lobby").unwrap()
    }

    fn join(p: &LocalPresence, tab: &Tab, nick: &str, identity: Option<&str>) -> Result<(), Invalid> {
        p.join(JoinRequest {
            conn: tab.conn,
            room: &lobby(),
            nick: Nick::parse(nick).unwrap(),
            identity: identity.map(Into::into),
            hidden: false,
            out: &tab.out,
            reply_id: None,
        })
    }

    fn left(nick: &str) -> ServerMsg {
        ServerMsg::MemberLeft { room: "lobby".into(), nick: nick.into() }
    }

    #[tokio::test(start_paused = true)]
    async fn two_tabs_of_one_person_are_one_member_and_closing_one_announces_nothing() {
        let p = presence();
        let (mut bob, mut tab1, mut tab2, mut stranger) = (tab(1), tab(2), tab(3), tab(4));
        join(&p, &bob, "bob", Some("b")).unwrap();
        join(&p, &tab1, "alice", Some("a")).unwrap();
        join(&p, &tab2, "alice", Some("a")).unwrap();
        let ServerMsg::Joined { members, .. } = tab2.heard().remove(0) else { panic!() };
        assert_eq!(members, ["alice", "bob"], "alice once");
        let err = join(&p, &stranger, "alice", Some("someone else")).unwrap_err();
        assert_eq!(err.code, ErrorCode::NickTaken);
        assert!(stranger.heard().is_empty());
        assert_eq!(bob.heard().len(), 2, "joined, then alice joined once: {:?}", bob.heard());

        p.leave(tab1.conn, &lobby(), None);
        tokio::time::advance(GRACE * 2).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty(), "alice still has a tab open");
        tab1.heard();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_within_the_grace_announces_nothing_and_gone_for_longer_is_a_leave() {
        let p = presence();
        let (mut bob, alice, alice_again) = (tab(1), tab(2), tab(3));
        join(&p, &bob, "bob", Some("b")).unwrap();
        join(&p, &alice, "alice", Some("a")).unwrap();
        bob.heard();

        p.leave(alice.conn, &lobby(), None);
        tokio::time::advance(GRACE / 2).await;
        p.tick(Instant::now());
        join(&p, &alice_again, "alice", Some("a")).unwrap();
        tokio::time::advance(GRACE * 2).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty(), "the reload was quiet");

        p.leave(alice_again.conn, &lobby(), None);
        tokio::time::advance(GRACE - Duration::from_millis(1)).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty(), "still within the grace");
        tokio::time::advance(Duration::from_millis(1)).await;
        p.tick(Instant::now());
        assert_eq!(bob.heard(), [left("alice")]);
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_on_purpose_from_the_last_tab_is_announced_at_once() {
        let p = presence();
        let (mut bob, mut alice) = (tab(1), tab(2));
        join(&p, &bob, "bob", None).unwrap();
        join(&p, &alice, "alice", None).unwrap();
        bob.heard();
        alice.heard();
        p.leave(alice.conn, &lobby(), Some((&alice.out, None)));
        assert_eq!(alice.heard(), [ServerMsg::Left { id: None, room: "lobby".into() }]);
        assert_eq!(bob.heard(), [left("alice")]);
        p.leave(bob.conn, &lobby(), None);
        tokio::time::advance(GRACE).await;
        p.tick(Instant::now());
        assert_eq!(p.room_count(), 0, "an empty room is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn every_tab_hidden_for_five_minutes_is_away_and_one_visible_tab_is_back() {
        let p = presence();
        let (mut bob, tab1, tab2) = (tab(1), tab(2), tab(3));
        join(&p, &bob, "bob", Some("b")).unwrap();
        join(&p, &tab1, "alice", Some("a")).unwrap();
        join(&p, &tab2, "alice", Some("a")).unwrap();
        bob.heard();
        let state = |away| ServerMsg::MemberState { room: "lobby".into(), nick: "alice".into(), away };

        p.visibility(tab1.conn, &lobby(), true);
        tokio::time::advance(AWAY * 2).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty(), "one tab is still visible");

        p.visibility(tab2.conn, &lobby(), true);
        tokio::time::advance(AWAY - Duration::from_secs(1)).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty(), "not yet five minutes for the second tab");
        tokio::time::advance(Duration::from_secs(1)).await;
        p.tick(Instant::now());
        assert_eq!(bob.heard(), [state(true)]);

        let mut late = tab(4);
        join(&p, &late, "carol", None).unwrap();
        let ServerMsg::Joined { away, .. } = late.heard().remove(0) else { panic!() };
        assert_eq!(away, ["alice"], "a joiner sees who is away");
        bob.heard();

        p.visibility(tab1.conn, &lobby(), false);
        assert_eq!(bob.heard(), [state(false)], "back at once");
    }

    #[tokio::test(start_paused = true)]
    async fn typing_is_shown_to_the_room_cleared_by_a_send_and_expires_without_a_refresh() {
        let p = presence();
        let (mut bob, alice) = (tab(1), tab(2));
        join(&p, &bob, "bob", None).unwrap();
        join(&p, &alice, "alice", None).unwrap();
        bob.heard();
        let typing = |nicks: &[&str]| ServerMsg::Typing {
            room: "lobby".into(),
            nicks: nicks.iter().map(|n| n.to_string()).collect(),
        };

        p.typing(alice.conn, &lobby(), true);
        assert_eq!(bob.heard(), [typing(&["alice"])]);
        p.typing(alice.conn, &lobby(), true);
        assert!(bob.heard().is_empty(), "a refresh changes nothing visible");
        p.typing(alice.conn, &lobby(), false);
        assert_eq!(bob.heard(), [typing(&[])], "cleared by the send");

        p.typing(alice.conn, &lobby(), true);
        bob.heard();
        tokio::time::advance(TYPING - Duration::from_millis(1)).await;
        p.tick(Instant::now());
        assert!(bob.heard().is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        p.tick(Instant::now());
        assert_eq!(bob.heard(), [typing(&[])], "expired after 6 s without a refresh");
    }
}

//! Presence: the rooms, the people in them (each person once, however many tabs), whether they
//! are away, and who is typing.
//!
//! [`Presence`] is the seam the chat sees; [`LocalPresence`] is its engine, the rooms of this
//! process, which in cluster mode also show the other hubs' people (their views arrive through
//! `crate::broker::redis`; see *Several hubs* below).
//!
//! **People, not connections.** A member is a person in a room: a nickname and the identity
//! secret the page sent in `join` (`token`). Any number of connections with the same identity
//! and nickname are one member: every connection gets every event of the room, and the room
//! hears of the person once. A person joins when their first connection arrives; they leave at
//! once when they leave on purpose from their last connection, or when every connection of
//! theirs has been gone for the grace period (a reload or a blip announces nothing). A join
//! without an identity is a person of its own.
//!
//! **Rooms of 10,000.** A join or a leave costs the room O(1) when it happens: the joiner gets
//! the member count and a first page of names (read in order from a sorted index), and the change
//! is only *noted*. [`Presence::tick`], a few times a second, sends each room whose member list
//! changed one `presence` frame with every join, leave and away change since the last one, so a
//! wave of 5,000 joins costs each member a few frames, not 5,000 notices. Those frames are
//! droppable like live messages: a reader who is behind misses one and gets a fresh first page
//! (an unasked `members`) at a later tick instead. `typing` works the same way.
//!
//! **Several hubs** (`--redis`). Each hub publishes its *view* of a room (the people it holds
//! there, away or not, and who of them is typing: [`HubView`]) whenever it changes and as a
//! heartbeat (`crate::broker::redis`); every hub merges the other hubs' views into what its rooms
//! show. A person is shown once whichever hubs their tabs are on, away only when away on every
//! one. The grace period runs on the person's own hub; a hub that stops refreshing its views
//! (killed) has them dropped after the heartbeat TTL, and its people leave then, unless they
//! reconnected elsewhere.
//!
//! `LocalPresence` keeps all state behind one `std::sync::Mutex` that is never held across an
//! `.await`: every operation is a short, synchronous critical section. Replies are pushed into
//! the members' outbound queues *inside* that section, so a joiner's `joined` reply always
//! precedes the room's next message.

use super::{nick_rules, people::People};
use crate::net::{
    ConnId, Outbound,
    deflate::Prepared,
    outbound::{Queued, Runs},
};
use hubbub_shared::{ChatMessage, ErrorCode, Invalid, Nick, RoomName, ServerMsg, encode, encode_batch};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
    sync::Mutex,
    time::Duration,
};
use tokio::time::Instant;
use tungstenite::Utf8Bytes;

/// Members in `joined` and in an unasked `members` snapshot; the default page of `members`.
pub(crate) const MEMBER_PAGE: usize = 100;
/// Most members one `members` request returns.
pub(crate) const MAX_MEMBER_PAGE: usize = 500;
/// A room this big hears of joins, leaves and away changes at most once per
/// [`BIG_ROOM_PRESENCE_EVERY`], and a frame that would name more than [`MEMBER_PAGE`] people is
/// a fresh first page instead. Each `presence` frame costs every member a write, and naming a
/// wave of thousands costs every member the whole wave: a storm of 19,000 joins sent each
/// member ~2 GB of names between them (`hubbub-bench storm`).
const BIG_ROOM: u64 = 1000;
const BIG_ROOM_PRESENCE_EVERY: Duration = Duration::from_secs(1);

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

/// What one hub shows of a room: the people it holds there (grace included) and who of them is
/// typing. Published to the other hubs in cluster mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HubView {
    /// (nickname, away) of each person, sorted by name.
    pub(crate) members: Vec<(String, bool)>,
    pub(crate) typing: Vec<String>,
}

/// A name shown because of other hubs' views.
#[derive(Debug)]
struct RemoteName {
    nick: String,
    /// How many hubs show it, and how many of those as away.
    hubs: u32,
    away: u32,
}

/// A connection asking to be a member of a room.
#[derive(Debug)]
pub(crate) struct JoinRequest<'a> {
    pub(crate) conn: ConnId,
    pub(crate) room: &'a RoomName,
    /// The nickname, canonical, with its look-alike key ([`nick_rules::canonical`]).
    pub(crate) name: nick_rules::Canonical,
    /// The person's secret from `join`: connections with the same one are the same person.
    pub(crate) identity: Option<String>,
    /// Who holds the nickname across hubs (cluster mode): a digest of the identity, never the
    /// secret itself; refreshed while the person is here, released when they leave.
    pub(crate) claim: String,
    /// Whether the page on this connection is hidden right now.
    pub(crate) hidden: bool,
    /// Cluster mode, first member of the room on this hub: the other hubs' views, so that the
    /// `joined` reply lists their people too.
    pub(crate) views: Vec<(String, HubView)>,
    /// Where the `joined` reply and the room's events go.
    pub(crate) out: &'a Outbound,
    /// The request id the `joined` reply echoes.
    pub(crate) reply_id: Option<String>,
}

/// A `members` request of a connection in the room.
#[derive(Debug)]
pub(crate) struct MembersRequest<'a> {
    pub(crate) room: &'a RoomName,
    /// The last name the client has; `None`: from the start.
    pub(crate) after: Option<String>,
    /// Clamped already to 1–[`MAX_MEMBER_PAGE`].
    pub(crate) limit: usize,
    pub(crate) out: &'a Outbound,
    pub(crate) reply_id: Option<String>,
}

/// Who is in which room, and telling them when that changes.
pub(crate) trait Presence: Send + Sync + std::fmt::Debug {
    /// Adds the connection to the room (creating it): as another connection of a member with
    /// the same identity and nickname, or as a new member, announced to the others in the next
    /// `presence`. Replies `joined` with the count and the first page of members; or refuses
    /// (nickname taken by someone else, or confusable with theirs).
    fn join(&self, request: JoinRequest<'_>) -> Result<(), Invalid>;

    /// Removes `conn` from `room`. With `reply` it is a leave on purpose: the connection gets
    /// `left`, and when it was the person's last one, the next `presence` names them as left.
    /// Without (the connection closed), a person with no connection left leaves after the grace.
    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>);

    /// Replies `members`: a page of the member list.
    fn members(&self, request: MembersRequest<'_>);

    /// The person on `conn` is typing in `room` (`true`), or stopped by sending (`false`).
    fn typing(&self, conn: ConnId, room: &RoomName, typing: bool);

    /// The page on `conn` became hidden or visible.
    fn visibility(&self, conn: ConnId, room: &RoomName, hidden: bool);

    /// Applies what time decides (people whose grace ran out leave, people become away or
    /// active, typing signals expire), then tells each room what changed since the last tick:
    /// one `presence` frame and one `typing` frame at most.
    fn tick(&self, now: Instant);

    /// Number of rooms with at least one member (for `/metrics`).
    fn room_count(&self) -> usize;

    /// Whether anyone is in `room` on this hub.
    fn holds(&self, room: &RoomName) -> bool;

    /// The rooms someone is in here, with how many people each has (in cluster mode counting
    /// the other hubs' people too): for `rooms`.
    fn sizes(&self) -> Vec<(String, u64)>;

    /// The member of `room` on this hub whose nickname is `nick` (ignoring case): their
    /// nickname as shown, their claim (the digest of their identity), and whether they have an
    /// identity at all (without one, every connection is a person of its own, for a while).
    fn member(&self, room: &RoomName, nick: &Nick) -> Option<(String, String, bool)>;

    /// Every person's connections on this hub.
    fn people(&self) -> &People;
}

/// The rooms of this process. Also what [`crate::broker::local::LocalFanout`] delivers through.
#[derive(Debug)]
pub(crate) struct LocalPresence {
    rooms: Mutex<HashMap<RoomName, Room>>,
    people: People,
    times: PresenceTimes,
    /// Cluster mode: the rooms are shared with other hubs (views, nickname claims).
    shared: std::sync::atomic::AtomicBool,
}

/// A member's number within its room.
type MemberId = u64;

#[derive(Debug, Default)]
struct Room {
    members: HashMap<MemberId, Member>,
    /// Members by [`Nick::key`] (unique in a room, since look-alikes are refused): sorted, so a
    /// page of names is a range read.
    by_name: BTreeMap<String, MemberId>,
    /// Members by [`nick_rules::look_alike_key`]: a join checks its nickname in O(1).
    by_look_alike: HashMap<String, MemberId>,
    /// Every connection in the room, flat: a broadcast walks this map alone (as it did before
    /// people had several connections), and members in their grace period cost it nothing.
    conns: HashMap<ConnId, RoomConn>,
    /// The members a tick must look at: in their grace period, away, or with a hidden tab (a
    /// superset: the tick drops those who are none of these). The tick walked every member
    /// twice, four times a second, under the presence lock: in a room of thousands that was
    /// O(members) per tick where joins and leaves are O(1) (`hubbub-bench storm`).
    watch: HashSet<MemberId>,
    next_member: MemberId,
    /// Names whose state changed since the last `presence` frame, by [`Nick::key`], with what
    /// the room was last told about them: [`Room::flush`] compares with now.
    pending: HashMap<String, Option<Shown>>,
    /// Who is typing, until when.
    typing: HashMap<MemberId, Instant>,
    /// The names the last `typing` frame carried: a frame goes out only when this changes.
    typing_sent: Vec<String>,
    /// Connections whose last `presence` frame was dropped (they read too slowly): each gets a
    /// fresh first page once its queue has room.
    stale: HashSet<ConnId>,
    /// Other hubs' views of the room (cluster mode), by hub, with when each was last refreshed.
    remote: HashMap<String, (HubView, Instant)>,
    /// The names those views show, by [`Nick::key`]: sorted, for paging beside `by_name`.
    remote_by_name: BTreeMap<String, RemoteName>,
    /// How many of `remote_by_name` are not in `by_name` too, kept as both change, so that the
    /// room's count stays O(1) per join (a join wave would otherwise be O(n²) again).
    remote_only: usize,
    /// Something this hub shows may have changed since its view was last taken.
    view_dirty: bool,
    /// This hub's view as last taken for publishing (`None`: never, as in the embedded mode).
    published: Option<HubView>,
    /// Nickname claims of people who left, to release across hubs: (look-alike key, claim,
    /// [`Nick::key`], since when).
    released: Vec<(String, String, String, Instant)>,
    /// Whether other hubs share this room (cluster mode): only then are claims released.
    shared: bool,
    /// When the room was last told of joins and leaves (for [`BIG_ROOM`]'s pace).
    presence_sent_at: Option<Instant>,
    /// The first page of members (what `joined` lists) of a [`BIG_ROOM`], kept until a name
    /// that sorts into it changes: in a storm of joins into a big room most joiners sort after
    /// it, and working the page out for each was a tenth of the hub's CPU (`hubbub-bench storm`,
    /// 19,000).
    first_page: Option<FirstPage>,
}

#[derive(Debug, Clone)]
struct FirstPage {
    names: Vec<String>,
    away: Vec<String>,
    /// The [`Nick::key`] of its last name (`None`: the room was empty). Whether more follow
    /// is asked afresh each time: a name after the page may have left.
    last_key: Option<String>,
}

/// What a room is shown of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    nick: String,
    away: bool,
}

#[derive(Debug)]
struct Member {
    nick: Nick,
    /// [`nick_rules::look_alike_key`] of `nick`, computed once.
    look_alike: String,
    /// The person's secret, if their page sent one; `None` makes every connection a person.
    identity: Option<String>,
    /// Their claim on the nickname across hubs ([`JoinRequest::claim`]).
    claim: String,
    /// The person's connections in this room (keys of [`Room::conns`]); usually one or two.
    conns: Vec<ConnId>,
    /// Since when the person has had no connection here: they leave when the grace runs out.
    gone_since: Option<Instant>,
    /// Whether the person is away now (what the next `presence` tells, if it changed).
    away: bool,
}

#[derive(Debug)]
struct RoomConn {
    member: MemberId,
    out: Outbound,
    /// Since when the page on this connection has been hidden.
    hidden_since: Option<Instant>,
}

/// The changes one `presence` frame carries.
#[derive(Debug, Default)]
struct Changes {
    joined: Vec<String>,
    left: Vec<String>,
    away: Vec<String>,
    back: Vec<String>,
}

impl Room {
    /// What the room is shown of the name with this key now: a person here, on other hubs, or
    /// both (away only when away everywhere).
    fn shown(&self, key: &str) -> Option<Shown> {
        let local = self.by_name.get(key).map(|id| &self.members[id]);
        let remote = self.remote_by_name.get(key);
        let away_elsewhere = remote.is_none_or(|r| r.away == r.hubs);
        match (local, remote) {
            (Some(m), _) => Some(Shown { nick: m.nick.to_string(), away: m.away && away_elsewhere }),
            (None, Some(r)) => Some(Shown { nick: r.nick.clone(), away: away_elsewhere }),
            (None, None) => None,
        }
    }

    /// Notes that the name with this key is about to change, remembering what the room was last
    /// told about it (the first time since the last `presence` frame only).
    fn touch(&mut self, key: String) {
        self.view_dirty = true;
        if let Some(page) = &self.first_page
            && (page.names.len() < MEMBER_PAGE || page.last_key.as_ref().is_none_or(|last| key <= *last))
        {
            self.first_page = None;
        }
        if !self.pending.contains_key(&key) {
            let before = self.shown(&key);
            self.pending.insert(key, before);
        }
    }

    /// [`Room::page`]'s first page of [`MEMBER_PAGE`] names, from [`Room::first_page`] when
    /// nothing in it changed since.
    fn first_page(&mut self) -> (Vec<String>, Vec<String>, bool) {
        if self.count() < BIG_ROOM {
            // small rooms work it out each time: the page is cheap, and an idle connection's
            // share of a kept one is not (`hubbub-bench idle`, rooms of ten)
            self.first_page = None;
            return self.page(None, MEMBER_PAGE);
        }
        if self.first_page.is_none() {
            let (names, away, _, last_key) = self.page_keyed(None, MEMBER_PAGE);
            self.first_page = Some(FirstPage { names, away, last_key });
        }
        let page = self.first_page.as_ref().expect("filled just now");
        let more = page.last_key.as_ref().is_some_and(|last| {
            let after = (Bound::Excluded(last.clone()), Bound::Unbounded);
            self.by_name.range(after.clone()).next().is_some() || self.remote_by_name.range(after).next().is_some()
        });
        (page.names.clone(), page.away.clone(), more)
    }

    /// Up to `limit` members sorting after `after` (a [`Nick::key`]), with those of them who
    /// are away, and whether more follow.
    fn page(&self, after: Option<&str>, limit: usize) -> (Vec<String>, Vec<String>, bool) {
        let (names, away, more, _) = self.page_keyed(after, limit);
        (names, away, more)
    }

    /// The same, with the key of the page's last name.
    fn page_keyed(&self, after: Option<&str>, limit: usize) -> (Vec<String>, Vec<String>, bool, Option<String>) {
        let start = after.map_or(Bound::Unbounded, |key| Bound::Excluded(key.to_owned()));
        // two sorted indexes, merged (the remote one is empty in the embedded mode)
        let mut local = self.by_name.range((start.clone(), Bound::Unbounded)).map(|(k, _)| k).peekable();
        let mut remote = self.remote_by_name.range((start, Bound::Unbounded)).map(|(k, _)| k).peekable();
        let mut names = Vec::new();
        let mut away = Vec::new();
        let mut last_key = None;
        while names.len() < limit {
            let key = match (local.peek(), remote.peek()) {
                (Some(l), Some(r)) if l == r => {
                    remote.next();
                    local.next()
                }
                (Some(l), Some(r)) if r < l => remote.next(),
                (Some(_), _) => local.next(),
                (None, Some(_)) => remote.next(),
                (None, None) => None,
            };
            let Some((key, shown)) = key.and_then(|k| Some((k, self.shown(k)?))) else { break };
            if shown.away {
                away.push(shown.nick.clone());
            }
            names.push(shown.nick);
            last_key = Some(key);
        }
        (names, away, local.peek().is_some() || remote.peek().is_some(), last_key.cloned())
    }

    fn count(&self) -> u64 {
        (self.members.len() + self.remote_only) as u64
    }

    /// What this hub shows of the room, for the other hubs.
    fn local_view(&self, now: Instant) -> HubView {
        let members =
            self.by_name.values().map(|id| (self.members[id].nick.to_string(), self.members[id].away)).collect();
        let mut typing: Vec<String> = self
            .typing
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, _)| self.members[id].nick.to_string())
            .collect();
        typing.sort_by_cached_key(|n| n.to_lowercase());
        HubView { members, typing }
    }

    /// Takes another hub's view in, in place of its last one. With `announce`, the next
    /// `presence` tells the room who came and went; without (the first views a hub reads when
    /// its first member joins), the connections here get a fresh first page instead, so that
    /// people who were there all along are not announced as just arrived.
    fn apply_view(&mut self, hub: &str, view: Option<HubView>, now: Instant, announce: bool) {
        // other hubs' names page beside this hub's: worked out afresh
        self.first_page = None;
        // a heartbeat that changes nothing only says the hub is alive
        if let (Some((known, seen)), Some(view)) = (self.remote.get_mut(hub), view.as_ref())
            && known == view
        {
            *seen = now;
            return;
        }
        let before = self.remote.remove(hub).map(|(v, _)| v.members).unwrap_or_default();
        let after: &[(String, bool)] = view.as_ref().map_or(&[], |v| &v.members);
        if announce {
            for (nick, _) in before.iter().chain(after) {
                self.touch(nick.to_lowercase());
            }
        } else {
            self.stale.extend(self.conns.keys().copied());
        }
        for (nick, away) in before {
            let key = nick.to_lowercase();
            if let Some(r) = self.remote_by_name.get_mut(&key) {
                r.hubs -= 1;
                r.away -= u32::from(away);
                if r.hubs == 0 {
                    self.remote_by_name.remove(&key);
                    if !self.by_name.contains_key(&key) {
                        self.remote_only -= 1;
                    }
                }
            }
        }
        for (nick, away) in after {
            let key = nick.to_lowercase();
            if !self.remote_by_name.contains_key(&key) && !self.by_name.contains_key(&key) {
                self.remote_only += 1;
            }
            let r =
                self.remote_by_name.entry(key).or_insert_with(|| RemoteName { nick: nick.clone(), hubs: 0, away: 0 });
            r.hubs += 1;
            r.away += u32::from(*away);
        }
        if let Some(view) = view {
            self.remote.insert(hub.to_owned(), (view, now));
        }
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

    /// Serialises a room's messages of one commit once, as one frame (a JSON array when there
    /// are several; cut where a writer's batch would be: [`Runs`]), compresses each frame at
    /// most once, and queues the same bytes for every connection as a live (droppable,
    /// catch-up-able) frame. One queue push per member per commit instead of one per message:
    /// under load a commit holds tens of messages (`hubbub-bench fanout`, closed loop).
    fn broadcast_live(&self, room: &str, messages: Vec<ChatMessage>) {
        // each run: its first seq (where a reader who misses it lags from), its messages
        let mut runs: Vec<(u64, Vec<String>)> = Vec::new();
        let mut cut = Runs::default();
        for message in messages {
            let seq = message.seq;
            let text = encode(&ServerMsg::Message(message));
            let new = cut.starts_new(text.len());
            match runs.last_mut() {
                Some((_, run)) if !new => run.push(text),
                _ => runs.push((seq, vec![text])),
            }
        }
        for (first_seq, run) in runs {
            let text: Utf8Bytes = encode_batch(run.iter().map(String::as_str)).into();
            // compressed at most once, for every member whose client agreed on permessage-deflate
            let prepared = Prepared::new();
            for conn in self.conns.values() {
                conn.out.push_live(room, first_seq, conn.out.shared_text(&text, &prepared));
            }
        }
    }

    fn add_member(&mut self, member: Member) -> MemberId {
        let id = self.next_member;
        self.next_member += 1;
        let key = member.nick.key();
        self.touch(key.clone());
        if self.remote_by_name.contains_key(&key) {
            self.remote_only -= 1;
        }
        self.by_name.insert(key, id);
        self.by_look_alike.insert(member.look_alike.clone(), id);
        self.members.insert(id, member);
        id
    }

    /// Removes a member (with any connections left); the next `presence` tells the room.
    fn remove_member(&mut self, id: MemberId) {
        let Some(key) = self.members.get(&id).map(|m| m.nick.key()) else { return };
        self.touch(key.clone());
        let member = self.members.remove(&id).expect("found just now");
        if self.shared {
            self.released.push((member.look_alike.clone(), member.claim.clone(), key.clone(), Instant::now()));
        }
        self.by_name.remove(&key);
        if self.remote_by_name.contains_key(&key) {
            self.remote_only += 1;
        }
        self.by_look_alike.remove(&member.look_alike);
        self.typing.remove(&id);
        self.watch.remove(&id);
        for conn in &member.conns {
            self.conns.remove(conn);
            self.stale.remove(conn);
        }
    }

    /// Marks a member away or active by what their connections say now.
    fn update_away(&mut self, id: MemberId, now: Instant, away_after: Duration) {
        let Some(member) = self.members.get(&id) else { return };
        let away = self.should_be_away(member, now, away_after);
        if away != member.away {
            self.touch(member.nick.key());
            self.members.get_mut(&id).expect("found just now").away = away;
        }
        if away {
            self.watch.insert(id);
        }
    }

    /// What changed for the names noted since the last frame, unsorted; clears the notes. A
    /// name that left and came back (or the reverse) within one tick is no change at all.
    fn changes(&mut self) -> Changes {
        let mut changes = Changes::default();
        let pending = std::mem::take(&mut self.pending);
        for (key, before) in pending {
            let after = self.shown(&key);
            match (before, after) {
                (None, None) => {}
                (Some(before), None) => changes.left.push(before.nick),
                (before, Some(after)) => {
                    let renamed = before.as_ref().is_some_and(|b| b.nick != after.nick);
                    if renamed {
                        changes.left.push(before.as_ref().expect("renamed").nick.clone());
                    }
                    if before.is_none() || renamed {
                        if after.away {
                            changes.away.push(after.nick.clone());
                        }
                        changes.joined.push(after.nick);
                    } else if before.is_some_and(|b| b.away != after.away) {
                        if after.away { changes.away.push(after.nick) } else { changes.back.push(after.nick) }
                    }
                }
            }
        }
        changes
    }

    /// Sends one `presence` frame with what changed since the last one (if anything did), the
    /// `typing` set if it changed, and a fresh first page to readers who missed a `presence`.
    /// A [`BIG_ROOM`] is told at its own pace, and a wave too long to name gets a first page.
    fn flush(&mut self, room: &RoomName, now: Instant) {
        let big = self.count() >= BIG_ROOM;
        let due =
            !big || self.presence_sent_at.is_none_or(|t| now.saturating_duration_since(t) >= BIG_ROOM_PRESENCE_EVERY);
        let Changes { mut joined, mut left, mut away, mut back } =
            if due { self.changes() } else { Changes::default() };
        let named = joined.len() + left.len() + away.len() + back.len();
        if named > MEMBER_PAGE && big {
            // every reader is owed a fresh first page, as one that missed a frame is (below)
            self.presence_sent_at = Some(now);
            self.stale.extend(self.conns.keys().copied());
        } else if named > 0 {
            // sorted only when named: a join wave's thousands of names are not (each key a
            // lower-cased copy, once per name, not once per comparison)
            for names in [&mut joined, &mut left, &mut away, &mut back] {
                names.sort_by_cached_key(|n| n.to_lowercase());
            }
            self.presence_sent_at = Some(now);
            let msg = ServerMsg::Presence { room: room.to_string(), count: self.count(), joined, left, away, back };
            let (text, prepared) = (encode(&msg).into(), Prepared::new());
            for (id, conn) in &self.conns {
                if !conn.out.push_ephemeral(conn.out.shared_text(&text, &prepared)) {
                    self.stale.insert(*id);
                }
            }
        }
        if !self.stale.is_empty() {
            let (members, away, more) = self.first_page();
            let snapshot = ServerMsg::Members {
                id: None,
                room: room.to_string(),
                after: None,
                members,
                away,
                count: self.count(),
                more,
            };
            let (text, prepared) = (encode(&snapshot).into(), Prepared::new());
            let conns = &self.conns;
            self.stale
                .retain(|id| conns.get(id).is_some_and(|c| !c.out.push_ephemeral(c.out.shared_text(&text, &prepared))));
        }
        let typing_here = self.typing.len();
        self.typing.retain(|_, until| *until > now);
        self.view_dirty |= typing_here != self.typing.len();
        let mut typing: Vec<String> = self.typing.keys().map(|id| self.members[id].nick.to_string()).collect();
        typing.extend(self.remote.values().flat_map(|(view, _)| view.typing.iter().cloned()));
        typing.sort_by_cached_key(|n| n.to_lowercase());
        typing.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        if typing != self.typing_sent {
            let (text, prepared) = (typing_text(room, &typing), Prepared::new());
            for conn in self.conns.values() {
                conn.out.push_ephemeral(conn.out.shared_text(&text, &prepared));
            }
            self.typing_sent = typing;
        }
    }
}

/// The `typing` frame naming `nicks`, encoded once for every connection it goes to.
fn typing_text(room: &RoomName, nicks: &[String]) -> Utf8Bytes {
    encode(&ServerMsg::Typing { room: room.to_string(), nicks: nicks.to_vec() }).into()
}

impl LocalPresence {
    pub(crate) fn new(times: PresenceTimes) -> Self {
        LocalPresence { rooms: Mutex::default(), people: People::default(), times, shared: Default::default() }
    }

    /// The rooms with at least one member here.
    pub(crate) fn room_names(&self) -> std::collections::HashSet<String> {
        self.lock().iter().filter(|(_, e)| !e.members.is_empty()).map(|(room, _)| room.to_string()).collect()
    }

    /// Delivers committed messages (commit order) to every connection in their rooms here, the
    /// authors' included: each room's share as one frame per member.
    pub(crate) fn deliver(&self, messages: Vec<ChatMessage>) {
        let mut by_room: Vec<(String, Vec<ChatMessage>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for message in messages {
            match index.get(&message.room) {
                Some(&i) => by_room[i].1.push(message),
                None => {
                    index.insert(message.room.clone(), by_room.len());
                    by_room.push((message.room.clone(), vec![message]));
                }
            }
        }
        let rooms = self.lock();
        for (room, messages) in by_room {
            let Ok(name) = RoomName::parse(&room) else { continue };
            if let Some(entry) = rooms.get(&name) {
                entry.broadcast_live(&room, messages);
            }
        }
    }

    /// Cluster mode: the rooms are shared with other hubs (`crate::broker::redis` says so at
    /// start-up), so the claims of people who leave are kept for [`LocalPresence::take_released`].
    pub(crate) fn share_with_other_hubs(&self) {
        self.shared.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// This hub's views of its rooms that changed since they were last taken (every room, for a
    /// heartbeat: `all`), to publish to the other hubs. A room whose last person here left gets
    /// an empty view once, so the others drop its people.
    pub(crate) fn take_views(&self, all: bool) -> Vec<(String, HubView)> {
        let now = Instant::now();
        let mut rooms = self.lock();
        let mut views = Vec::new();
        for (room, entry) in rooms.iter_mut() {
            if !(all || entry.view_dirty) {
                continue;
            }
            entry.view_dirty = false;
            let view = entry.local_view(now);
            if all || entry.published.as_ref() != Some(&view) {
                views.push((room.to_string(), view.clone()));
            }
            entry.published = Some(view);
        }
        views
    }

    /// Another hub's view of `room` (`None`: that hub holds nobody there any more). Rooms this
    /// hub holds nobody in are not kept. See [`Room::apply_view`] for `announce`.
    pub(crate) fn apply_view(&self, hub: &str, room: &str, view: Option<HubView>, announce: bool) {
        let Ok(room) = RoomName::parse(room) else { return };
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(&room) {
            let view = view.filter(|v| !v.members.is_empty() || !v.typing.is_empty());
            entry.apply_view(hub, view, Instant::now(), announce);
        }
    }

    /// Every nickname claim of the people here (grace included), as (room, look-alike key, claim,
    /// nickname): refreshed across hubs every heartbeat.
    pub(crate) fn claims(&self) -> Vec<(String, String, String, String)> {
        let rooms = self.lock();
        rooms
            .iter()
            .flat_map(|(room, entry)| {
                entry
                    .members
                    .values()
                    .map(move |m| (room.to_string(), m.look_alike.clone(), m.claim.clone(), m.nick.to_string()))
            })
            .collect()
    }

    /// The claims of people who left, as (room, look-alike key, claim), to release across hubs
    /// once nobody here holds the name again and no other hub shows the person (a person who
    /// left two hubs at once is shown by each to the other for a moment: those wait, up to
    /// `patience`, after which the claim has lapsed anyway).
    pub(crate) fn take_released(&self, patience: Duration) -> Vec<(String, String, String)> {
        let now = Instant::now();
        let mut rooms = self.lock();
        let mut released = Vec::new();
        for (room, entry) in rooms.iter_mut() {
            let mut waiting = Vec::new();
            for (key, claim, name, since) in std::mem::take(&mut entry.released) {
                if entry.by_look_alike.contains_key(&key) || now.saturating_duration_since(since) >= patience {
                    continue;
                }
                // the same person elsewhere has the very same name
                if entry.remote_by_name.contains_key(&name) {
                    waiting.push((key, claim, name, since));
                } else {
                    released.push((room.to_string(), key, claim));
                }
            }
            entry.released = waiting;
        }
        released
    }

    /// Drops the views of hubs that stopped refreshing them (killed, or cut off from Redis):
    /// their people leave at the next tick, unless they are shown from elsewhere too.
    pub(crate) fn expire_views(&self, ttl: Duration) {
        let now = Instant::now();
        let mut rooms = self.lock();
        for entry in rooms.values_mut() {
            let expired: Vec<String> = entry
                .remote
                .iter()
                .filter(|(_, (_, seen))| now.saturating_duration_since(*seen) >= ttl)
                .map(|(hub, _)| hub.clone())
                .collect();
            for hub in expired {
                entry.apply_view(&hub, None, now, true);
            }
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
        let JoinRequest { conn, room, name, identity, claim, hidden, views, out, reply_id } = request;
        let nick_rules::Canonical { nick, look_alike } = name;
        let identity = identity.filter(|i| !i.is_empty());
        let now = Instant::now();
        let mut rooms = self.lock();
        let entry = rooms.entry(room.clone()).or_default();
        entry.shared = self.shared.load(std::sync::atomic::Ordering::Relaxed);
        for (hub, view) in views {
            entry.apply_view(&hub, Some(view), now, false);
        }
        let id = match entry.by_look_alike.get(&look_alike).copied() {
            // the same person, from another tab (or back within the grace): one member
            Some(id)
                if identity.is_some()
                    && entry.members[&id].identity == identity
                    && entry.members[&id].nick.key() == nick.key() =>
            {
                let member = entry.members.get_mut(&id).expect("indexed");
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
                return Err(Invalid { code, reason });
            }
            None => entry.add_member(Member {
                nick: nick.clone(),
                look_alike,
                identity,
                claim,
                conns: vec![conn],
                gone_since: None,
                away: false,
            }),
        };
        entry.conns.insert(conn, RoomConn { member: id, out: out.clone(), hidden_since: hidden.then_some(now) });
        if hidden {
            entry.watch.insert(id);
        }
        // a visible tab makes an away person active again (before the reply, which shows it)
        entry.update_away(id, now, self.times.away_after);
        let (members, away, _) = entry.first_page();
        out.push(&ServerMsg::Joined {
            id: reply_id,
            room: room.to_string(),
            nick: entry.members[&id].nick.to_string(),
            members,
            away,
            count: entry.count(),
        });
        if !entry.typing_sent.is_empty() {
            out.push_ephemeral(Queued::Text(typing_text(room, &entry.typing_sent)));
        }
        Ok(())
    }

    fn leave(&self, conn: ConnId, room: &RoomName, reply: Option<(&Outbound, Option<String>)>) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else { return };
        let Some(RoomConn { member: id, .. }) = entry.conns.remove(&conn) else { return };
        entry.stale.remove(&conn);
        if let Some((out, reply_id)) = &reply {
            out.push(&ServerMsg::Left { id: reply_id.clone(), room: room.to_string() });
        }
        let member = entry.members.get_mut(&id).expect("connections name members");
        member.conns.retain(|c| *c != conn);
        if member.conns.is_empty() {
            entry.typing.remove(&id);
            if reply.is_some() || self.times.grace.is_zero() {
                entry.remove_member(id);
            } else {
                entry.members.get_mut(&id).expect("found just now").gone_since = Some(now);
                entry.watch.insert(id);
            }
        } else {
            // the tabs left behind may all be hidden
            entry.update_away(id, now, self.times.away_after);
        }
        // an empty room stays until the next tick has told anyone still to be told (nobody is
        // left to tell, so that tick forgets it)
    }

    fn members(&self, request: MembersRequest<'_>) {
        let MembersRequest { room, after, limit, out, reply_id } = request;
        let rooms = self.lock();
        let (members, away, more, count) = match rooms.get(room) {
            Some(entry) => {
                let (members, away, more) = entry.page(after.as_deref().map(str::to_lowercase).as_deref(), limit);
                (members, away, more, entry.count())
            }
            None => (Vec::new(), Vec::new(), false, 0),
        };
        out.push(&ServerMsg::Members { id: reply_id, room: room.to_string(), after, members, away, count, more });
    }

    fn typing(&self, conn: ConnId, room: &RoomName, typing: bool) {
        let until = Instant::now() + self.times.typing_ttl;
        self.with_member(conn, room, |entry, id| {
            // the next tick tells the room, if what it shows changed
            entry.view_dirty = true;
            if typing {
                entry.typing.insert(id, until);
            } else {
                entry.typing.remove(&id);
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
            if hidden {
                entry.watch.insert(id);
            }
            entry.update_away(id, now, away_after);
        });
    }

    fn tick(&self, now: Instant) {
        let times = self.times;
        let mut rooms = self.lock();
        for (room, entry) in rooms.iter_mut() {
            let watched: Vec<MemberId> = entry.watch.iter().copied().collect();
            for id in watched {
                let Some(member) = entry.members.get(&id) else {
                    entry.watch.remove(&id);
                    continue;
                };
                if member.gone_since.is_some_and(|t| now.saturating_duration_since(t) >= times.grace) {
                    entry.remove_member(id);
                    continue;
                }
                // only pages that are hidden can make anyone away (or keep them so)
                let hidden = member.conns.iter().any(|c| entry.conns.get(c).is_some_and(|c| c.hidden_since.is_some()));
                if member.away || hidden {
                    entry.update_away(id, now, times.away_after);
                }
                let member = &entry.members[&id];
                if member.gone_since.is_none() && !member.away && !hidden {
                    entry.watch.remove(&id);
                }
            }
            entry.flush(room, now);
        }
        // a room whose view went to other hubs stays until they were told it is empty
        // (and its people's nickname claims were released)
        rooms.retain(|_, entry| {
            !entry.members.is_empty()
                || entry.published.as_ref().is_some_and(|v| !v.members.is_empty())
                || !entry.released.is_empty()
        });
    }

    fn room_count(&self) -> usize {
        self.lock().values().filter(|entry| !entry.members.is_empty()).count()
    }

    fn holds(&self, room: &RoomName) -> bool {
        self.lock().get(room).is_some_and(|entry| !entry.members.is_empty())
    }

    fn sizes(&self) -> Vec<(String, u64)> {
        self.lock()
            .iter()
            .filter(|(_, entry)| !entry.members.is_empty())
            .map(|(room, entry)| (room.to_string(), entry.count()))
            .collect()
    }

    fn member(&self, room: &RoomName, nick: &Nick) -> Option<(String, String, bool)> {
        let rooms = self.lock();
        let entry = rooms.get(room)?;
        let member = &entry.members[entry.by_name.get(&nick.key())?];
        Some((member.nick.to_string(), member.claim.clone(), member.identity.is_some()))
    }

    fn people(&self) -> &People {
        &self.people
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
        let (out, rx) = Outbound::new(64, Arc::new(Stats::default()));
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
        let room = lobby();
        p.join(JoinRequest {
            identity: identity.map(Into::into),
            claim: identity.unwrap_or("anonymous").into(),
            ..request(tab, nick, &room)
        })
    }

    /// An anonymous join of `room`.
    fn request<'a>(tab: &'a Tab, nick: &str, room: &'a RoomName) -> JoinRequest<'a> {
        JoinRequest {
            conn: tab.conn,
            room,
            name: {
                let nick = Nick::parse(nick).unwrap();
                nick_rules::Canonical { look_alike: nick_rules::look_alike_key(&nick), nick }
            },
            identity: None,
            claim: "anonymous".into(),
            hidden: false,
            views: Vec::new(),
            out: &tab.out,
            reply_id: None,
        }
    }

    /// The `presence` frame of the lobby with `count` members and these changes.
    fn presence_of(count: u64, joined: &[&str], left: &[&str], away: &[&str], back: &[&str]) -> ServerMsg {
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

    async fn tick_after(p: &LocalPresence, wait: Duration) {
        tokio::time::advance(wait).await;
        p.tick(Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn two_tabs_of_one_person_are_one_member_and_closing_one_announces_nothing() {
        let p = presence();
        let (mut bob, mut tab1, mut tab2, mut stranger) = (tab(1), tab(2), tab(3), tab(4));
        join(&p, &bob, "bob", Some("b")).unwrap();
        tick_after(&p, Duration::ZERO).await;
        join(&p, &tab1, "alice", Some("a")).unwrap();
        join(&p, &tab2, "alice", Some("a")).unwrap();
        let ServerMsg::Joined { members, count, .. } = tab2.heard().remove(0) else { panic!() };
        assert_eq!((members, count), (vec!["alice".to_owned(), "bob".to_owned()], 2), "alice once");
        let err = join(&p, &stranger, "alice", Some("someone else")).unwrap_err();
        assert_eq!(err.code, ErrorCode::NickTaken);
        assert!(stranger.heard().is_empty());
        bob.heard();
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [presence_of(2, &["alice"], &[], &[], &[])], "alice joined once");

        p.leave(tab1.conn, &lobby(), None);
        tick_after(&p, GRACE * 2).await;
        assert!(bob.heard().is_empty(), "alice still has a tab open");
        tab1.heard();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_within_the_grace_announces_nothing_and_gone_for_longer_is_a_leave() {
        let p = presence();
        let (mut bob, alice, alice_again) = (tab(1), tab(2), tab(3));
        join(&p, &bob, "bob", Some("b")).unwrap();
        join(&p, &alice, "alice", Some("a")).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();

        p.leave(alice.conn, &lobby(), None);
        tick_after(&p, GRACE / 2).await;
        join(&p, &alice_again, "alice", Some("a")).unwrap();
        tick_after(&p, GRACE * 2).await;
        assert!(bob.heard().is_empty(), "the reload was quiet");

        p.leave(alice_again.conn, &lobby(), None);
        tick_after(&p, GRACE - Duration::from_millis(1)).await;
        assert!(bob.heard().is_empty(), "still within the grace");
        tick_after(&p, Duration::from_millis(1)).await;
        assert_eq!(bob.heard(), [presence_of(1, &[], &["alice"], &[], &[])]);
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_on_purpose_from_the_last_tab_is_announced_at_the_next_tick() {
        let p = presence();
        let (mut bob, mut alice) = (tab(1), tab(2));
        join(&p, &bob, "bob", None).unwrap();
        join(&p, &alice, "alice", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        alice.heard();
        p.leave(alice.conn, &lobby(), Some((&alice.out, None)));
        assert_eq!(alice.heard(), [ServerMsg::Left { id: None, room: "lobby".into() }]);
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [presence_of(1, &[], &["alice"], &[], &[])], "no grace for a leave on purpose");
        assert!(alice.heard().is_empty(), "a connection that left hears no more of the room");
        p.leave(bob.conn, &lobby(), Some((&bob.out, None)));
        assert_eq!(p.room_count(), 0, "an empty room is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_and_a_leave_within_one_tick_cancel_out_and_a_new_spelling_is_a_new_name() {
        let p = presence();
        let (mut bob, alice, alice2) = (tab(1), tab(2), tab(3));
        join(&p, &bob, "bob", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        join(&p, &alice, "alice", None).unwrap();
        p.leave(alice.conn, &lobby(), Some((&alice.out, None)));
        tick_after(&p, Duration::ZERO).await;
        assert!(bob.heard().is_empty(), "came and went between two ticks: nothing to tell");

        join(&p, &alice, "alice", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        p.leave(alice.conn, &lobby(), Some((&alice.out, None)));
        join(&p, &alice2, "Alice", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [presence_of(2, &["Alice"], &["alice"], &[], &[])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wave_into_a_big_room_is_one_first_page_later_news_comes_once_a_second_and_the_list_in_pages() {
        let p = presence();
        let mut bob = tab(0);
        join(&p, &bob, "bob", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        let people: Vec<Tab> = (1..=1000).map(tab).collect();
        for (i, t) in people.iter().enumerate() {
            join(&p, t, &format!("p{i:04}"), None).unwrap();
        }
        // the room is big now: its news comes a second after the last
        tick_after(&p, Duration::from_millis(250)).await;
        assert!(bob.heard().is_empty());
        tick_after(&p, BIG_ROOM_PRESENCE_EVERY).await;
        let heard = bob.heard();
        assert_eq!(heard.len(), 1, "one frame for a thousand joins");
        // too many to name: the room is big, so everyone gets a fresh first page instead
        let ServerMsg::Members { id: None, count, members, more, .. } = &heard[0] else { panic!("{heard:?}") };
        assert_eq!((*count, members.len(), *more), (1001, MEMBER_PAGE, true));
        assert_eq!(members[..2], ["bob", "p0000"]);

        let mut last = tab(2000);
        join(&p, &last, "zed", None).unwrap();
        let ServerMsg::Joined { members, count, .. } = last.heard().remove(0) else { panic!() };
        assert_eq!((members.len(), count), (MEMBER_PAGE, 1002), "a first page, and how many there are");
        assert_eq!(members[..2], ["bob", "p0000"]);
        // a room this big hears of a change at most once a second
        tick_after(&p, Duration::from_millis(250)).await;
        assert!(bob.heard().is_empty(), "a quarter of a second after the last news: not yet");
        tick_after(&p, Duration::from_secs(1)).await;
        assert_eq!(bob.heard(), [presence_of(1002, &["zed"], &[], &[], &[])]);
        last.heard();

        // page through the rest as the member panel does
        let mut all = members;
        loop {
            let after = all.last().cloned();
            p.members(MembersRequest {
                room: &lobby(),
                after: after.clone(),
                limit: 300,
                out: &last.out,
                reply_id: None,
            });
            let ServerMsg::Members { members, more, after: echoed, count, .. } = last.heard().remove(0) else {
                panic!()
            };
            assert_eq!((echoed, count), (after, 1002));
            all.extend(members);
            if !more {
                break;
            }
        }
        let mut sorted = all.clone();
        sorted.sort_by_key(|n| n.to_lowercase());
        sorted.dedup();
        assert_eq!((all.len(), sorted), (1002, all), "every member once, in order");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_missed_a_presence_frame_gets_a_fresh_first_page() {
        let p = presence();
        let (out, rx) = Outbound::new(1, Arc::new(Stats::default()));
        let (mut slow, alice) = (Tab { conn: 1, out, rx }, tab(2));
        join(&p, &slow, "slow", None).unwrap();
        // the `joined` reply is still unread: the queue is at its live capacity of one
        join(&p, &alice, "alice", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        let first = slow.heard();
        assert!(matches!(first[..], [ServerMsg::Joined { .. }]), "the presence frame was dropped: {first:?}");
        tick_after(&p, Duration::ZERO).await;
        let snapshot = ServerMsg::Members {
            id: None,
            room: "lobby".into(),
            after: None,
            members: vec!["alice".into(), "slow".into()],
            away: vec![],
            count: 2,
            more: false,
        };
        assert_eq!(slow.heard(), [snapshot]);
        tick_after(&p, Duration::ZERO).await;
        assert!(slow.heard().is_empty(), "once is enough");
    }

    #[tokio::test(start_paused = true)]
    async fn every_tab_hidden_for_five_minutes_is_away_and_one_visible_tab_is_back() {
        let p = presence();
        let (mut bob, tab1, tab2) = (tab(1), tab(2), tab(3));
        join(&p, &bob, "bob", Some("b")).unwrap();
        join(&p, &tab1, "alice", Some("a")).unwrap();
        join(&p, &tab2, "alice", Some("a")).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();

        p.visibility(tab1.conn, &lobby(), true);
        tick_after(&p, AWAY * 2).await;
        assert!(bob.heard().is_empty(), "one tab is still visible");

        p.visibility(tab2.conn, &lobby(), true);
        tick_after(&p, AWAY - Duration::from_secs(1)).await;
        assert!(bob.heard().is_empty(), "not yet five minutes for the second tab");
        tick_after(&p, Duration::from_secs(1)).await;
        assert_eq!(bob.heard(), [presence_of(2, &[], &[], &["alice"], &[])]);

        let mut late = tab(4);
        join(&p, &late, "carol", None).unwrap();
        let ServerMsg::Joined { away, .. } = late.heard().remove(0) else { panic!() };
        assert_eq!(away, ["alice"], "a joiner sees who is away");
        tick_after(&p, Duration::ZERO).await;
        bob.heard();

        p.visibility(tab1.conn, &lobby(), false);
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [presence_of(3, &[], &[], &[], &["alice"])], "back at the next tick");

        // a tick looks only at members who are away, have a hidden tab or are leaving: alice
        // until her other tab shows too, then nobody
        assert_eq!(p.lock()[&lobby()].watch.len(), 1);
        p.visibility(tab2.conn, &lobby(), false);
        tick_after(&p, Duration::ZERO).await;
        assert!(p.lock()[&lobby()].watch.is_empty(), "nobody left for the tick to look at");
        assert!(bob.heard().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn typing_is_shown_to_the_room_cleared_by_a_send_and_expires_without_a_refresh() {
        let p = presence();
        let (mut bob, alice) = (tab(1), tab(2));
        join(&p, &bob, "bob", None).unwrap();
        join(&p, &alice, "alice", None).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        let typing = |nicks: &[&str]| ServerMsg::Typing {
            room: "lobby".into(),
            nicks: nicks.iter().map(|n| n.to_string()).collect(),
        };

        p.typing(alice.conn, &lobby(), true);
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [typing(&["alice"])]);
        p.typing(alice.conn, &lobby(), true);
        tick_after(&p, Duration::ZERO).await;
        assert!(bob.heard().is_empty(), "a refresh changes nothing visible");
        p.typing(alice.conn, &lobby(), false);
        tick_after(&p, Duration::ZERO).await;
        assert_eq!(bob.heard(), [typing(&[])], "cleared by the send");

        p.typing(alice.conn, &lobby(), true);
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        tick_after(&p, TYPING - Duration::from_millis(1)).await;
        assert!(bob.heard().is_empty());
        tick_after(&p, Duration::from_millis(1)).await;
        assert_eq!(bob.heard(), [typing(&[])], "expired after 6 s without a refresh");
    }

    fn view(members: &[(&str, bool)], typing: &[&str]) -> HubView {
        HubView {
            members: members.iter().map(|(n, away)| (n.to_string(), *away)).collect(),
            typing: typing.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_hubs_people_are_shown_beside_ours_once_each_and_leave_with_their_view() {
        let p = presence();
        let mut alice = tab(1);
        join(&p, &alice, "alice", Some("a")).unwrap();
        p.tick(Instant::now());
        alice.heard();

        // another hub holds bob and carol (away), and alice in a tab of hers there
        p.apply_view("h2", "lobby", Some(view(&[("alice", false), ("bob", false), ("carol", true)], &["bob"])), true);
        p.tick(Instant::now());
        let heard = alice.heard();
        assert!(
            heard.iter().any(|m| matches!(m, ServerMsg::Presence { count: 3, joined, away, .. }
                if joined == &["bob", "carol"] && away == &["carol"])),
            "{heard:?}"
        );
        assert!(heard.iter().any(|m| matches!(m, ServerMsg::Typing { nicks, .. } if nicks == &["bob"])), "{heard:?}");

        // paging walks both lists in one order
        let page = |after: Option<&str>| {
            p.members(MembersRequest {
                room: &lobby(),
                after: after.map(Into::into),
                limit: 2,
                out: &alice.out,
                reply_id: None,
            });
        };
        page(None);
        page(Some("bob"));
        let pages: Vec<(Vec<String>, bool)> = alice
            .heard()
            .into_iter()
            .filter_map(|m| match m {
                ServerMsg::Members { members, more, .. } => Some((members, more)),
                _ => None,
            })
            .collect();
        assert_eq!(pages, [(vec!["alice".to_owned(), "bob".to_owned()], true), (vec!["carol".to_owned()], false)]);

        // bob opens a tab here too, then closes it: still one bob, the count never moves
        let bob_here = tab(2);
        join(&p, &bob_here, "bob", Some("b")).unwrap();
        p.leave(2, &lobby(), Some((&bob_here.out, None)));
        p.tick(Instant::now());
        assert!(
            !alice.heard().iter().any(|m| matches!(m, ServerMsg::Presence { .. })),
            "bob was shown all along: nothing to announce"
        );
        let dave = tab(3);
        join(&p, &dave, "dave", None).unwrap();
        p.tick(Instant::now());
        assert!(
            alice.heard().iter().any(|m| matches!(m, ServerMsg::Presence { count: 4, .. })),
            "alice, bob, carol and dave"
        );
        p.leave(3, &lobby(), Some((&dave.out, None)));
        p.tick(Instant::now());
        alice.heard();

        // that hub's view runs out: bob and carol leave, alice (here too) does not
        tokio::time::advance(Duration::from_secs(20)).await;
        p.expire_views(Duration::from_secs(15));
        p.tick(Instant::now());
        let heard = alice.heard();
        assert!(
            heard.iter().any(|m| matches!(m, ServerMsg::Presence { count: 1, left, .. } if left == &["bob", "carol"])),
            "{heard:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hub_shares_its_view_when_it_changes_and_all_of_it_on_a_heartbeat() {
        let p = presence();
        let (alice, bob) = (tab(1), tab(2));
        join(&p, &alice, "alice", None).unwrap();
        assert_eq!(p.take_views(false), [("lobby".to_owned(), view(&[("alice", false)], &[]))]);
        assert_eq!(p.take_views(false), [], "nothing changed");
        p.typing(1, &lobby(), true);
        assert_eq!(p.take_views(false), [("lobby".to_owned(), view(&[("alice", false)], &["alice"]))]);
        assert_eq!(p.take_views(true).len(), 1, "a heartbeat repeats it");
        // the last person leaves: the others are told once (an empty view), then the room goes
        join(&p, &bob, "bob", None).unwrap();
        p.leave(1, &lobby(), Some((&alice.out, None)));
        p.leave(2, &lobby(), Some((&bob.out, None)));
        p.tick(Instant::now());
        assert_eq!(p.take_views(false), [("lobby".to_owned(), view(&[], &[]))]);
        p.tick(Instant::now());
        assert_eq!(p.room_count(), 0);
        assert_eq!(p.take_views(true), [], "forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_commits_messages_reach_each_member_as_one_frame_in_seq_order() {
        let p = presence();
        let (mut bob, mut alice) = (tab(1), tab(2));
        join(&p, &bob, "bob", None).unwrap();
        join(&p, &alice, "alice", None).unwrap();
        let elsewhere = RoomName::parse("elsewhere").unwrap();
        p.join(request(&alice, "alice", &elsewhere)).unwrap();
        tick_after(&p, Duration::ZERO).await;
        bob.heard();
        alice.heard();
        let say = |room: &str, seq: u64| ChatMessage {
            room: room.into(),
            seq,
            author: "alice".into(),
            text: format!("number {seq}"),
            ts: 1,
            ..ChatMessage::default()
        };

        // one group commit: two lobby messages with one of another room between them
        p.deliver(vec![say("lobby", 7), say("elsewhere", 1), say("lobby", 8)]);

        let frames: Vec<String> =
            std::iter::from_fn(|| bob.rx.try_recv()).map(|f| f.to_text().unwrap().to_owned()).collect();
        assert_eq!(frames.len(), 1, "one frame for the commit's lobby messages: {frames:?}");
        let got = hubbub_shared::decode_server_frame(&frames[0]).unwrap();
        assert_eq!(got, [ServerMsg::Message(say("lobby", 7)), ServerMsg::Message(say("lobby", 8))]);
        let heard: Vec<ServerMsg> = std::iter::from_fn(|| alice.rx.try_recv())
            .flat_map(|f| hubbub_shared::decode_server_frame(f.to_text().unwrap()).unwrap())
            .collect();
        assert_eq!(
            heard,
            [
                ServerMsg::Message(say("lobby", 7)),
                ServerMsg::Message(say("lobby", 8)),
                ServerMsg::Message(say("elsewhere", 1))
            ],
            "each room's messages in order, each room apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_page_a_joiner_gets_follows_joins_and_leaves_that_sort_into_it() {
        // a big room: its first page is kept between joins
        let p = presence();
        let tabs: Vec<Tab> = (0..1100).map(|i| tab(i + 10)).collect();
        for (i, t) in tabs.iter().enumerate() {
            join(&p, t, &format!("a{i:04}"), None).unwrap();
        }
        let joined_names = |t: &mut Tab| match t.heard().remove(0) {
            ServerMsg::Joined { members, count, .. } => (members, count),
            other => panic!("expected joined, got {other:?}"),
        };
        let mut first = tab(1);
        join(&p, &first, "zed", None).unwrap();
        let (names, count) = joined_names(&mut first);
        assert_eq!(count, 1101);
        assert_eq!(names, (0..100).map(|i| format!("a{i:04}")).collect::<Vec<_>>());

        // one who sorts into the page leaves, one who sorts after it leaves, one joins into it
        p.leave(tabs[50].conn, &lobby(), Some((&tabs[50].out, None)));
        p.leave(tabs[1040].conn, &lobby(), Some((&tabs[1040].out, None)));
        let early = tab(2);
        join(&p, &early, "a0000b", None).unwrap();
        let mut second = tab(3);
        join(&p, &second, "zoe", None).unwrap();
        let (names, count) = joined_names(&mut second);
        assert_eq!(count, 1101);
        let mut expected: Vec<String> = (0..101).filter(|i| *i != 50).map(|i| format!("a{i:04}")).collect();
        expected.insert(1, "a0000b".into());
        expected.truncate(100);
        assert_eq!(names, expected, "a0000b in, a0050 out, the page still 100 long");
    }
}

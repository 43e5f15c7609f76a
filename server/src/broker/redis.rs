//! Fan-out between hubs through Redis pub/sub (`--redis`): a committed message goes to this
//! hub's members at once and to the other hubs through the room's channel; each hub delivers a
//! room's messages to its members in `seq` order, with no gap and no duplicate.
//!
//! **Channels.** `hubbub:room:{room}` carries `{"hub": ID, "message": …}`. A hub subscribes to a
//! room's channel while it has members there: the first local join waits for the subscription
//! ([`Fanout::watch`]) before the joiner's history is read, so every message committed after
//! that history read reaches the hub through the channel (or its own commits).
//!
//! **Order.** Publishes from several hubs to one room may cross in Redis, so every message, this
//! hub's own commits included, goes through the room's [`Sequencer`]: it delivers `seq` in order
//! and holds later ones back. A gap that does not fill within [`GAP_WAIT`] (a publish lost while
//! Redis was away, or a hub that died between commit and publish) is read from the message log,
//! the truth, and delivered in order. Redis holds nothing that must survive it.
//!
//! **People.** Each hub publishes its view of each of its rooms ([`HubView`]: the people it
//! holds there, away or not, and who is typing) on the room's channel when it changes (checked
//! every presence tick) and every `--redis-heartbeat-ms`, and keeps the latest in the hash
//! `hubbub:views:{room}` (field: the hub) so that a hub whose first member joins a room reads the
//! others' views at once instead of waiting for a heartbeat. A view not refreshed for three
//! heartbeats is dropped ([`LocalPresence::expire_views`]): that is how a killed hub's people
//! leave the others' member lists.
//!
//! **Nicknames.** A join first claims its nickname (its look-alike key) in the room across hubs:
//! `hubbub:nick:{room}:{key}` holds a digest of the person's identity, set by a Lua script only
//! when absent or already theirs, so two hubs never give one name to two people. Each hub
//! refreshes the claims of its people every heartbeat (they lapse after three) and releases a
//! person's claim when they leave and no hub shows them. With Redis away, a join waits at most
//! [`WATCH_WAIT`] for its claim, then goes on with the hub's own check only (and `/healthz`
//! says Redis is away): people can still join while it is down.
//!
//! **A person's news** (a conversation starting, a read position moving: [`Fanout::tell`])
//! goes to every hub on `hubbub:people` as `{"hub": ID, "person": DIGEST, "news": …}`; each hub
//! hands it to that person's connections it holds. It is best effort like a view: with Redis
//! away, the person's other tabs learn it at their next join (the list of conversations and
//! each room's read position come with it).
//!
//! **Redis away.** Sends still commit and are acknowledged, and this hub's members still get
//! them; publishes fail (counted in `hubbub_fanout_errors_total`, `/healthz` says `degraded`).
//! When the subscription connection is back, every watched room is read from the log from where
//! its sequencer stands, so the other hubs' members get what they missed.

use super::Fanout;
use crate::{
    chat::presence::{HubView, LocalPresence, Presence},
    stats::Stats,
    store::{MessageLog, Range},
};
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use hubbub_shared::{ChatMessage, RoomName, ServerMsg};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

/// How long a gap may stay open before the missing messages are read from the log: long enough
/// for two crossing publishes, short enough that nobody notices.
const GAP_WAIT: Duration = Duration::from_millis(200);
/// How often the subscriber looks for gaps to repair.
const GAP_CHECK: Duration = Duration::from_millis(50);
/// Longest wait of a first join for the room's subscription (Redis slow or away: the join goes
/// on, and the resync after reconnecting covers the room).
const WATCH_WAIT: Duration = Duration::from_secs(2);
/// Messages read from the log per repair step.
const REPAIR_PAGE: usize = 200;
/// How often a room that was busy lately is compared with the log's head: a hub that died
/// between a commit and its publish leaves no gap behind until the room's next message, so
/// without this check the other hubs' members would wait for that message to see the lost one.
const HEAD_CHECK: Duration = Duration::from_secs(1);
/// How often this hub looks for changed views of its rooms to share (the presence tick).
const VIEW_CHECK: Duration = Duration::from_millis(250);
/// How long after its last message a room is still checked that way.
const HEAD_CHECK_WINDOW: Duration = Duration::from_secs(30);

/// What travels on a room's channel: a message, or a hub's view of the room's people.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The publishing hub, so it skips its own messages (it delivered them already).
    hub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<ChatMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    view: Option<RoomView>,
    /// On `hubbub:people`: whom `news` is for (the digest of their identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    person: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    news: Option<ServerMsg>,
}

/// The channel of news for people ([`Fanout::tell`]), which every hub listens to.
const PEOPLE_CHANNEL: &str = "hubbub:people";

/// A hub's view of a room, on the channel and in `hubbub:views:{room}` (the same envelope).
#[derive(Debug, Serialize, Deserialize)]
struct RoomView {
    room: String,
    view: HubView,
    /// When the hub took it (ms since the epoch): a stored view older than the TTL is ignored.
    #[serde(default)]
    seen_ms: u64,
}

fn channel(room: &str) -> String {
    format!("hubbub:room:{room}")
}

/// A room's stored views as (hub, payload).
type StoredViews = Vec<(String, String)>;

fn views_key(room: &str) -> String {
    format!("hubbub:views:{room}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Takes a nickname: set (to the claim, a space and the name) when free or already this
/// person's, renewing its lease; answers '' when it is theirs, else the name of who holds it.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if (not held) or string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
  return ''
end
return string.sub(held, #ARGV[1] + 2)
";
/// Lets a nickname go, if it is still this person's.
const RELEASE: &str = r"
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ' ' then
  return redis.call('DEL', KEYS[1])
end
return 0
";
/// Claims refreshed per round trip.
const CLAIM_BATCH: usize = 500;

fn nick_key(room: &str, key: &str) -> String {
    format!("hubbub:nick:{room}:{key}")
}

/// What the publisher's connection does, in order.
#[derive(Debug)]
enum Command {
    Publish {
        channel: String,
        payload: String,
    },
    /// Publish a view and keep it in the room's hash (which lives three TTLs past its last write).
    ShareView {
        room: String,
        payload: String,
    },
    /// The room's stored views, as (hub, payload).
    LoadViews {
        room: String,
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// Every room's stored views (the `hubbub:views:*` hashes), as (room, [(hub, payload)]).
    ListViews {
        reply: oneshot::Sender<Vec<(String, StoredViews)>>,
    },
    /// Take a nickname ([`CLAIM`]): `Err` with the holder's name when someone else has it.
    Claim {
        key: String,
        claim: String,
        nick: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Renew the leases of these (Redis key, claim, nickname) triples.
    RefreshClaims {
        claims: Vec<(String, String, String)>,
    },
    /// Let these (Redis key, claim) pairs go.
    ReleaseClaims {
        claims: Vec<(String, String)>,
    },
    /// Who holds a nickname: (claim, nickname), if anyone does.
    Holder {
        key: String,
        reply: oneshot::Sender<Option<(String, String)>>,
    },
}

/// One room's delivery order on this hub.
#[derive(Debug, Default)]
struct Sequencer {
    /// The next seq to deliver; `None` until the room's head was read after subscribing.
    next: Option<u64>,
    /// Messages that arrived ahead of `next`.
    ahead: BTreeMap<u64, ChatMessage>,
    /// Since when `next` has been missing while later ones wait.
    gap_since: Option<Instant>,
    /// A read from the log is under way for this room.
    repairing: bool,
    /// When the room last had a message: quiet rooms are not compared with the log's head.
    last_message: Option<Instant>,
    /// The other hubs' stored views were read (after subscribing): until then a view from the
    /// channel shows people who were there all along, not arrivals.
    views_loaded: bool,
}

impl Sequencer {
    /// Takes a message in; returns the ones now deliverable, in order.
    fn offer(&mut self, message: ChatMessage) -> Vec<ChatMessage> {
        if self.next.is_some_and(|next| message.seq < next) {
            return Vec::new(); // delivered already (or in the joiner's history)
        }
        self.last_message = Some(Instant::now());
        self.ahead.insert(message.seq, message);
        self.drain()
    }

    fn drain(&mut self) -> Vec<ChatMessage> {
        let Some(mut next) = self.next else { return Vec::new() };
        let mut ready = Vec::new();
        // what an initial head read made stale
        self.ahead = self.ahead.split_off(&next);
        while let Some(message) = self.ahead.remove(&next) {
            ready.push(message);
            next += 1;
        }
        self.next = Some(next);
        self.gap_since = if self.ahead.is_empty() { None } else { self.gap_since.or(Some(Instant::now())) };
        ready
    }
}

/// Requests to the subscriber task.
#[derive(Debug)]
enum Control {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// What this hub knows of Redis, for `/healthz`.
#[derive(Debug, Default)]
struct Health {
    /// The last failure while Redis has not answered since; `None`: fine.
    problem: Mutex<Option<String>>,
}

impl Health {
    fn set(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

#[derive(Debug)]
pub(crate) struct RedisFanout {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// This process among the hubs: a random id.
    hub: String,
    local: Arc<LocalPresence>,
    rooms: Mutex<HashMap<String, Sequencer>>,
    /// Where gaps are read from; set once the log is open (the log needs the fan-out first).
    log: OnceLock<Arc<dyn MessageLog>>,
    publishes: mpsc::UnboundedSender<Command>,
    /// How often views and nickname claims are refreshed (see [`Inner::ttl`]).
    heartbeat: Duration,
    control: mpsc::UnboundedSender<Control>,
    health: Health,
    stats: Arc<Stats>,
}

impl RedisFanout {
    /// Checks the URL and starts the publisher and the subscriber tasks; they connect (and
    /// reconnect) by themselves.
    pub(crate) fn start(
        url: &str,
        local: Arc<LocalPresence>,
        stats: Arc<Stats>,
        heartbeat: Duration,
    ) -> anyhow::Result<RedisFanout> {
        let client = redis::Client::open(url)?;
        let (publishes, publish_queue) = mpsc::unbounded_channel();
        let (control, control_queue) = mpsc::unbounded_channel();
        local.share_with_other_hubs();
        let hub = format!("{:016x}", rand_id());
        let inner = Arc::new(Inner {
            hub,
            local,
            rooms: Mutex::default(),
            log: OnceLock::new(),
            publishes,
            heartbeat,
            control,
            health: Health::default(),
            stats,
        });
        tokio::spawn(publish_loop(client.clone(), publish_queue, inner.clone()));
        tokio::spawn(subscribe_loop(client, control_queue, Arc::downgrade(&inner)));
        tokio::spawn(view_loop(Arc::downgrade(&inner)));
        Ok(RedisFanout { inner })
    }

    /// The log that gaps are repaired from.
    pub(crate) fn set_log(&self, log: Arc<dyn MessageLog>) {
        let _ = self.inner.log.set(log);
    }
}

/// A random 64-bit number from the standard library's randomly seeded hasher: enough to tell
/// hubs apart, no extra crate.
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sequencer>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a view or a nickname claim lasts without a refresh: three heartbeats.
    fn ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    /// The other hubs' stored views of `room` that are fresh (refreshed within the TTL).
    async fn stored_views(&self, room: &str) -> Vec<(String, HubView)> {
        let (reply, stored) = oneshot::channel();
        let _ = self.publishes.send(Command::LoadViews { room: room.to_owned(), reply });
        let Ok(Ok(stored)) = tokio::time::timeout(WATCH_WAIT, stored).await else { return Vec::new() };
        let fresh_after = now_ms().saturating_sub(self.ttl().as_millis() as u64);
        let mut views = Vec::new();
        // stored as published: the envelope
        for (hub, payload) in stored {
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(Envelope { view: Some(v), .. }) if hub != self.hub && v.seen_ms >= fresh_after => {
                    views.push((hub, v.view));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%room, cause = %e, "an unreadable stored view"),
            }
        }
        views
    }

    /// Runs a message through its room's sequencer and delivers what is ready.
    fn offer(&self, message: ChatMessage) {
        let mut rooms = self.lock();
        let Some(sequencer) = rooms.get_mut(&message.room) else { return };
        self.local.deliver(sequencer.offer(message));
    }

    /// Reads `room` from the log after `next - 1` (up to the first message waiting, or to the
    /// head) and delivers it in order; for a gap, and for every room after a reconnect.
    async fn repair(self: Arc<Self>, room: String) {
        let Some(log) = self.log.get().cloned() else { return };
        let Ok(name) = RoomName::parse(&room) else { return };
        loop {
            let bounds = self.lock().get(&room).and_then(|s| Some((s.next?, s.ahead.keys().next().copied())));
            let Some((next, first_waiting)) = bounds else { break };
            let up_to = match first_waiting {
                Some(first) => first.saturating_sub(1),
                None => match log.head(&name).await {
                    Ok(head) => head,
                    Err(e) => break tracing::warn!(%room, cause = %e, "cannot read the room's head to catch up"),
                },
            };
            if up_to < next {
                break;
            }
            self.stats.gap_repairs.inc();
            let range = Range { after: next - 1, up_to, limit: REPAIR_PAGE, newest: false };
            match log.page(&name, range).await {
                Ok(page) if !page.is_empty() => {
                    tracing::debug!(%room, from = next, to = up_to, "delivering missed messages from the log");
                    for message in page {
                        self.offer(message);
                    }
                }
                // nothing stored there (a seq that never committed cannot happen: seqs are
                // allocated in the storing transaction), or the log is away: try again later
                Ok(_) => break,
                Err(e) => break tracing::warn!(%room, cause = %e, "cannot read missed messages"),
            }
        }
        if let Some(s) = self.lock().get_mut(&room) {
            s.repairing = false;
            if !s.ahead.is_empty() {
                s.gap_since = Some(Instant::now());
            }
        }
    }

    /// Starts a repair for every room whose gap has been open for [`GAP_WAIT`].
    fn repair_gaps(self: &Arc<Self>) {
        self.repair_where(|s, now| s.gap_since.is_some_and(|t| now.duration_since(t) >= GAP_WAIT));
    }

    /// Every watched room, read from the log from where it stands (after a reconnect); or,
    /// with `recent`, the rooms whose last message is within it but [`GAP_WAIT`] old: a room
    /// still busy shows a lost message as a gap soon enough.
    fn catch_up(self: &Arc<Self>, recent: Option<Duration>) {
        self.repair_where(|s, now| {
            s.next.is_some()
                && recent.is_none_or(|recent| {
                    s.last_message.is_some_and(|t| (GAP_WAIT..recent).contains(&now.duration_since(t)))
                })
        });
    }

    /// Starts a repair for every room `due` picks that has none under way.
    fn repair_where(self: &Arc<Self>, due: impl Fn(&Sequencer, Instant) -> bool) {
        let now = Instant::now();
        let rooms: Vec<String> = self
            .lock()
            .iter_mut()
            .filter(|(_, s)| !s.repairing && due(s, now))
            .map(|(room, s)| {
                s.repairing = true;
                room.clone()
            })
            .collect();
        for room in rooms {
            tokio::spawn(self.clone().repair(room));
        }
    }
}

impl Fanout for RedisFanout {
    /// Each message goes to its room's channel on its own (the other hubs sequence them one by
    /// one) and through this hub's sequencer to its members here.
    fn publish(&self, messages: Vec<ChatMessage>) {
        for message in messages {
            let envelope =
                Envelope { hub: self.inner.hub.clone(), message: Some(message), view: None, person: None, news: None };
            let payload = serde_json::to_string(&envelope).expect("a chat message always serialises");
            let Some(message) = envelope.message else { continue };
            let _ = self.inner.publishes.send(Command::Publish { channel: channel(&message.room), payload });
            self.inner.offer(message);
        }
    }

    fn watch(&self, room: &RoomName) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let room = room.to_string();
        let fresh = {
            let mut rooms = inner.lock();
            let fresh = !rooms.contains_key(&room);
            rooms.entry(room.clone()).or_default();
            fresh
        };
        async move {
            if !fresh {
                // another join subscribes: wait until it has read the head, so this joiner's
                // history and the live messages meet
                let deadline = Instant::now() + WATCH_WAIT;
                while Instant::now() < deadline && inner.lock().get(&room).is_some_and(|s| s.next.is_none()) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return;
            }
            let (done, subscribed) = oneshot::channel();
            let _ = inner.control.send(Control::Subscribe(channel(&room), done));
            if tokio::time::timeout(WATCH_WAIT, subscribed).await.is_err() {
                tracing::warn!(%room, "no subscription in time; the room catches up when Redis answers");
            }
            // subscribed: everything committed from now on comes through the channel; what came
            // before is the log's, up to its head
            let Some(log) = inner.log.get().cloned() else { return };
            let head = match RoomName::parse(&room) {
                Ok(name) => log.head(&name).await.unwrap_or(0),
                Err(_) => 0,
            };
            {
                let mut rooms = inner.lock();
                if let Some(s) = rooms.get_mut(&room)
                    && s.next.is_none()
                {
                    s.next = Some(head + 1);
                    inner.local.deliver(s.drain());
                }
            }
            // the other hubs' views again, now that their changes come through the channel:
            // what changed since the joiner's own read (before its `joined`) is not lost
            for (hub, view) in inner.stored_views(&room).await {
                inner.local.apply_view(&hub, &room, Some(view), false);
            }
            if let Some(s) = inner.lock().get_mut(&room) {
                s.views_loaded = true;
            }
        }
        .boxed()
    }

    fn sweep(&self) {
        // fan-out's lock before presence's, the order `offer` → `deliver` takes them: a room
        // watched by a join that is under way is in presence already
        let mut watched = self.inner.lock();
        let rooms = self.inner.local.room_names();
        let gone: Vec<String> = watched.keys().filter(|r| !rooms.contains(*r)).cloned().collect();
        for room in gone {
            watched.remove(&room);
            let _ = self.inner.control.send(Control::Unsubscribe(channel(&room)));
        }
    }

    fn problem(&self) -> Option<String> {
        self.inner.health.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Redis slow or away: the join goes on (this hub's own check still applies) rather than
    /// nobody being able to join while Redis is down.
    fn claim_nick(
        &self,
        room: &RoomName,
        key: &str,
        claim: &str,
        nick: &str,
    ) -> BoxFuture<'static, Result<(), String>> {
        let (reply, taken) = oneshot::channel();
        let (key, claim, nick) = (nick_key(room.as_str(), key), claim.to_owned(), nick.to_owned());
        let _ = self.inner.publishes.send(Command::Claim { key, claim, nick, reply });
        async move { tokio::time::timeout(WATCH_WAIT, taken).await.ok().and_then(Result::ok).unwrap_or(Ok(())) }.boxed()
    }

    fn tell(&self, person: &str, msg: &ServerMsg) {
        self.inner.local.people().tell(person, msg);
        let envelope = Envelope {
            hub: self.inner.hub.clone(),
            message: None,
            view: None,
            person: Some(person.to_owned()),
            news: Some(msg.clone()),
        };
        match serde_json::to_string(&envelope) {
            Ok(payload) => {
                let _ = self.inner.publishes.send(Command::Publish { channel: PEOPLE_CHANNEL.to_owned(), payload });
            }
            Err(e) => tracing::warn!(cause = %e, "cannot encode news for a person"),
        }
    }

    fn nick_holder(&self, room: &RoomName, key: &str) -> BoxFuture<'static, Option<(String, String)>> {
        let (reply, held) = oneshot::channel();
        let _ = self.inner.publishes.send(Command::Holder { key: nick_key(room.as_str(), key), reply });
        async move { tokio::time::timeout(WATCH_WAIT, held).await.ok().and_then(Result::ok).flatten() }.boxed()
    }

    /// Redis slow or away: only this hub's rooms are listed.
    fn remote_room_sizes(&self) -> BoxFuture<'static, Vec<(String, u64)>> {
        let inner = self.inner.clone();
        async move {
            let (reply, listed) = oneshot::channel();
            let _ = inner.publishes.send(Command::ListViews { reply });
            let Ok(Ok(listed)) = tokio::time::timeout(WATCH_WAIT, listed).await else { return Vec::new() };
            let fresh_after = now_ms().saturating_sub(inner.ttl().as_millis() as u64);
            let held = inner.local.room_names();
            listed
                .into_iter()
                .filter(|(room, _)| !held.contains(room))
                .filter_map(|(room, views)| {
                    // each person once, however many hubs show them
                    let mut people = std::collections::HashSet::new();
                    for (_, payload) in views {
                        if let Ok(Envelope { view: Some(v), .. }) = serde_json::from_str::<Envelope>(&payload)
                            && v.seen_ms >= fresh_after
                        {
                            people.extend(v.view.members.into_iter().map(|(nick, _)| nick.to_lowercase()));
                        }
                    }
                    (!people.is_empty()).then_some((room, people.len() as u64))
                })
                .collect()
        }
        .boxed()
    }

    fn load_views(&self, room: &RoomName) -> BoxFuture<'static, Vec<(String, HubView)>> {
        let inner = self.inner.clone();
        let room = room.to_string();
        async move { inner.stored_views(&room).await }.boxed()
    }
}

/// Runs the publisher's commands in order, one at a time; a failure is counted and reported,
/// and a lost message reaches the other hubs through their catch-up when Redis answers again (a
/// lost view, at the next heartbeat).
async fn publish_loop(client: redis::Client, mut queue: mpsc::UnboundedReceiver<Command>, inner: Arc<Inner>) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    while let Some(command) = queue.recv().await {
        if conn.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    inner.stats.fanout_errors.inc();
                    inner.health.set(Some(format!("redis: {e}")));
                    continue; // a LoadViews' reply is dropped: the join goes on without
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let done: redis::RedisResult<()> = match command {
            Command::Publish { channel, payload } => {
                redis::cmd("PUBLISH").arg(&channel).arg(&payload).query_async::<i64>(c).await.map(drop)
            }
            Command::ShareView { room, payload } => {
                let key = views_key(&room);
                redis::pipe()
                    .cmd("PUBLISH")
                    .arg(channel(&room))
                    .arg(&payload)
                    .ignore()
                    .cmd("HSET")
                    .arg(&key)
                    .arg(&inner.hub)
                    .arg(&payload)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg((inner.ttl() * 3).as_millis() as u64)
                    .ignore()
                    .query_async::<()>(c)
                    .await
            }
            Command::Claim { key, claim, nick, reply } => {
                let holder = redis::cmd("EVAL")
                    .arg(CLAIM)
                    .arg(1)
                    .arg(&key)
                    .arg(&claim)
                    .arg(&nick)
                    .arg(inner.ttl().as_millis() as u64)
                    .query_async::<String>(c)
                    .await;
                holder.map(|holder| {
                    let _ = reply.send(if holder.is_empty() { Ok(()) } else { Err(holder) });
                })
            }
            Command::RefreshClaims { claims } => {
                let ttl = inner.ttl();
                let mut result = Ok(());
                for batch in claims.chunks(CLAIM_BATCH) {
                    let mut pipe = redis::pipe();
                    for (key, claim, nick) in batch {
                        pipe.cmd("EVAL").arg(CLAIM).arg(1).arg(key).arg(claim).arg(nick).arg(ttl.as_millis() as u64);
                    }
                    match pipe.query_async::<Vec<String>>(c).await {
                        Ok(kept) => {
                            let lost = kept.iter().filter(|holder| !holder.is_empty()).count();
                            if lost > 0 {
                                // Redis lost them (restarted) and others took the names meanwhile
                                tracing::warn!(lost, "nickname claims now held by someone else");
                            }
                        }
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                result
            }
            Command::ReleaseClaims { claims } => {
                let mut pipe = redis::pipe();
                for (key, claim) in &claims {
                    pipe.cmd("EVAL").arg(RELEASE).arg(1).arg(key).arg(claim).ignore();
                }
                pipe.query_async::<()>(c).await
            }
            Command::ListViews { reply } => {
                // SCAN, not KEYS: a cluster's Redis may hold many rooms, and KEYS blocks it
                let mut keys: Vec<String> = Vec::new();
                let mut cursor = 0u64;
                let scanned: redis::RedisResult<()> = loop {
                    let step = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(views_key("*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async::<(u64, Vec<String>)>(c)
                        .await;
                    match step {
                        Ok((next, found)) => {
                            keys.extend(found);
                            if next == 0 {
                                break Ok(());
                            }
                            cursor = next;
                        }
                        Err(e) => break Err(e),
                    }
                };
                match scanned {
                    Ok(()) => {
                        let mut pipe = redis::pipe();
                        for key in &keys {
                            pipe.cmd("HGETALL").arg(key);
                        }
                        pipe.query_async::<Vec<HashMap<String, String>>>(c).await.map(|all| {
                            let rooms = keys
                                .iter()
                                .zip(all)
                                .filter_map(|(key, views)| {
                                    let room = key.strip_prefix(&views_key(""))?.to_owned();
                                    Some((room, views.into_iter().collect()))
                                })
                                .collect();
                            let _ = reply.send(rooms);
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Command::Holder { key, reply } => {
                let held = redis::cmd("GET").arg(&key).query_async::<Option<String>>(c).await;
                held.map(|held| {
                    // the claim, a space, the nickname (as `CLAIM` writes it)
                    let holder = held.and_then(|h| h.split_once(' ').map(|(c, n)| (c.to_owned(), n.to_owned())));
                    let _ = reply.send(holder);
                })
            }
            Command::LoadViews { room, reply } => {
                let views = redis::cmd("HGETALL").arg(views_key(&room)).query_async::<HashMap<String, String>>(c).await;
                views.map(|views| {
                    let _ = reply.send(views.into_iter().collect());
                })
            }
        };
        if let Err(e) = done {
            tracing::warn!(cause = %e, "a Redis command failed; other hubs catch up from the log");
            inner.stats.fanout_errors.inc();
            inner.health.set(Some(format!("redis: {e}")));
            conn = None;
        }
    }
}

/// Shares this hub's views of its rooms: the changed ones every presence tick, all of them every
/// heartbeat, and drops the other hubs' views that stopped being refreshed. Ends when the
/// fan-out is dropped.
async fn view_loop(inner: std::sync::Weak<Inner>) {
    let Some(heartbeat) = inner.upgrade().map(|me| me.heartbeat) else { return };
    let mut changes = tokio::time::interval(VIEW_CHECK);
    let mut beats = tokio::time::interval(heartbeat);
    loop {
        let all = tokio::select! {
            _ = changes.tick() => false,
            _ = beats.tick() => true,
        };
        let Some(me) = inner.upgrade() else { return };
        if all {
            me.local.expire_views(me.ttl());
            let claims: Vec<(String, String, String)> = me
                .local
                .claims()
                .into_iter()
                .map(|(room, key, claim, nick)| (nick_key(&room, &key), claim, nick))
                .collect();
            if !claims.is_empty() {
                let _ = me.publishes.send(Command::RefreshClaims { claims });
            }
        }
        let released: Vec<(String, String)> = me
            .local
            .take_released(me.ttl())
            .into_iter()
            .map(|(room, key, claim)| (nick_key(&room, &key), claim))
            .collect();
        if !released.is_empty() {
            let _ = me.publishes.send(Command::ReleaseClaims { claims: released });
        }
        for (room, view) in me.local.take_views(all) {
            let envelope = Envelope {
                hub: me.hub.clone(),
                message: None,
                view: Some(RoomView { room: room.clone(), view, seen_ms: now_ms() }),
                person: None,
                news: None,
            };
            let payload = serde_json::to_string(&envelope).expect("a view always serialises");
            let _ = me.publishes.send(Command::ShareView { room, payload });
        }
    }
}

/// Holds the subscriptions of the watched rooms, delivers what arrives, repairs gaps, and after
/// every reconnect subscribes again and catches every room up from the log. Ends when the
/// fan-out is dropped.
async fn subscribe_loop(
    client: redis::Client,
    mut control: mpsc::UnboundedReceiver<Control>,
    inner: std::sync::Weak<Inner>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = client.get_async_pubsub().await;
        let Some(me) = inner.upgrade() else { return };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(e) => {
                me.stats.fanout_errors.inc();
                me.health.set(Some(format!("redis: {e}")));
                drop(me);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut watched: Vec<String> = me.lock().keys().map(|r| channel(r)).collect();
        watched.push(PEOPLE_CHANNEL.to_owned());
        if sink.subscribe(&watched).await.is_err() {
            drop(me);
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        me.health.set(None);
        tracing::info!(rooms = watched.len() - 1, "subscribed to Redis");
        me.catch_up(None);
        drop(me);
        let mut gaps = tokio::time::interval(GAP_CHECK);
        let mut heads = tokio::time::interval(HEAD_CHECK);
        loop {
            tokio::select! {
                request = control.recv() => match request {
                    Some(Control::Subscribe(channel, done)) => {
                        if sink.subscribe(&channel).await.is_err() {
                            break;
                        }
                        let _ = done.send(());
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        if sink.unsubscribe(&channel).await.is_err() {
                            break;
                        }
                    }
                    None => return,
                },
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let Some(me) = inner.upgrade() else { return };
                    match msg.get_payload::<String>().map(|p| serde_json::from_str::<Envelope>(&p)) {
                        Ok(Ok(Envelope { hub, message, view, person, news })) if hub != me.hub => {
                            if let (Some(person), Some(news)) = (person, news) {
                                me.local.people().tell(&person, &news);
                            }
                            if let Some(message) = message {
                                me.offer(message);
                            }
                            if let Some(RoomView { room, view, .. }) = view {
                                let announce = me.lock().get(&room).is_some_and(|s| s.views_loaded);
                                me.local.apply_view(&hub, &room, Some(view), announce);
                            }
                        }
                        Ok(Ok(_)) => {} // our own, delivered at commit
                        Ok(Err(e)) => tracing::warn!(cause = %e, "an unreadable message on a room channel"),
                        Err(e) => tracing::warn!(cause = %e, "an unreadable Redis payload"),
                    }
                }
                _ = gaps.tick() => {
                    let Some(me) = inner.upgrade() else { return };
                    me.repair_gaps();
                }
                _ = heads.tick() => {
                    let Some(me) = inner.upgrade() else { return };
                    me.catch_up(Some(HEAD_CHECK_WINDOW));
                }
            }
        }
        if let Some(me) = inner.upgrade() {
            me.stats.fanout_errors.inc();
            me.health.set(Some("redis: the subscription connection was lost".into()));
        }
        tracing::warn!("Redis subscription lost; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: u64) -> ChatMessage {
        ChatMessage { room: "lobby".into(), seq, author: "a".into(), text: format!("{seq}"), ..ChatMessage::default() }
    }

    fn seqs(ms: Vec<ChatMessage>) -> Vec<u64> {
        ms.into_iter().map(|m| m.seq).collect()
    }

    #[tokio::test]
    async fn a_sequencer_delivers_in_order_once_and_holds_back_what_comes_early() {
        let mut s = Sequencer::default();
        assert_eq!(seqs(s.offer(m(5))), [] as [u64; 0], "nothing before the head is known");
        s.next = Some(4);
        assert_eq!(seqs(s.drain()), [] as [u64; 0], "4 is missing");
        assert!(s.gap_since.is_some());
        assert_eq!(seqs(s.offer(m(4))), [4, 5]);
        assert!(s.gap_since.is_none());
        assert_eq!(seqs(s.offer(m(5))), [] as [u64; 0], "a duplicate");
        assert_eq!(seqs(s.offer(m(7))), [] as [u64; 0], "crossed publishes: 6 is still on its way");
        assert_eq!(seqs(s.offer(m(6))), [6, 7]);
        let mut fresh = Sequencer::default();
        fresh.offer(m(2));
        fresh.offer(m(3));
        fresh.next = Some(3);
        assert_eq!(seqs(fresh.drain()), [3], "what the head read covers is dropped");
    }
}

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
//! **Redis away.** Sends still commit and are acknowledged, and this hub's members still get
//! them; publishes fail (counted in `hubbub_fanout_errors_total`, `/healthz` says `degraded`).
//! When the subscription connection is back, every watched room is read from the log from where
//! its sequencer stands, so the other hubs' members get what they missed.

use super::Fanout;
use crate::{
    chat::presence::LocalPresence,
    stats::Stats,
    store::{MessageLog, Range},
};
use futures_util::{FutureExt, StreamExt, future::BoxFuture};
use hubbub_shared::{ChatMessage, RoomName};
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
/// How long after its last message a room is still checked that way.
const HEAD_CHECK_WINDOW: Duration = Duration::from_secs(30);

/// What travels on a room's channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The publishing hub, so it skips its own messages (it delivered them already).
    hub: String,
    message: ChatMessage,
}

fn channel(room: &str) -> String {
    format!("hubbub:room:{room}")
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
    publishes: mpsc::UnboundedSender<(String, String)>,
    control: mpsc::UnboundedSender<Control>,
    health: Health,
    stats: Arc<Stats>,
}

impl RedisFanout {
    /// Checks the URL and starts the publisher and the subscriber tasks; they connect (and
    /// reconnect) by themselves.
    pub(crate) fn start(url: &str, local: Arc<LocalPresence>, stats: Arc<Stats>) -> anyhow::Result<RedisFanout> {
        let client = redis::Client::open(url)?;
        let (publishes, publish_queue) = mpsc::unbounded_channel();
        let (control, control_queue) = mpsc::unbounded_channel();
        let hub = format!("{:016x}", rand_id());
        let inner = Arc::new(Inner {
            hub,
            local,
            rooms: Mutex::default(),
            log: OnceLock::new(),
            publishes,
            control,
            health: Health::default(),
            stats,
        });
        tokio::spawn(publish_loop(client.clone(), publish_queue, inner.clone()));
        tokio::spawn(subscribe_loop(client, control_queue, Arc::downgrade(&inner)));
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

    /// Runs a message through its room's sequencer and delivers what is ready.
    fn offer(&self, message: ChatMessage) {
        let mut rooms = self.lock();
        let Some(sequencer) = rooms.get_mut(&message.room) else { return };
        for ready in sequencer.offer(message) {
            self.local.deliver(ready);
        }
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
    fn publish(&self, message: ChatMessage) {
        let envelope = Envelope { hub: self.inner.hub.clone(), message };
        let payload = serde_json::to_string(&envelope).expect("a chat message always serialises");
        let _ = self.inner.publishes.send((channel(&envelope.message.room), payload));
        self.inner.offer(envelope.message);
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
            let mut rooms = inner.lock();
            if let Some(s) = rooms.get_mut(&room)
                && s.next.is_none()
            {
                s.next = Some(head + 1);
                for ready in s.drain() {
                    inner.local.deliver(ready);
                }
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
}

/// Publishes in order, one command at a time; a failure is counted and reported, and the
/// message reaches the other hubs through their catch-up when Redis answers again.
async fn publish_loop(client: redis::Client, mut queue: mpsc::UnboundedReceiver<(String, String)>, inner: Arc<Inner>) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    while let Some((channel, payload)) = queue.recv().await {
        if conn.is_none() {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    inner.stats.fanout_errors.inc();
                    inner.health.set(Some(format!("redis: {e}")));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH").arg(&channel).arg(&payload).query_async(c).await;
        if let Err(e) = published {
            tracing::warn!(cause = %e, "publish to Redis failed; other hubs catch up from the log");
            inner.stats.fanout_errors.inc();
            inner.health.set(Some(format!("redis: {e}")));
            conn = None;
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
        let watched: Vec<String> = me.lock().keys().map(|r| channel(r)).collect();
        if !watched.is_empty() && sink.subscribe(&watched).await.is_err() {
            drop(me);
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        me.health.set(None);
        tracing::info!(rooms = watched.len(), "subscribed to Redis");
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
                        Ok(Ok(envelope)) if envelope.hub != me.hub => me.offer(envelope.message),
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
        ChatMessage { room: "lobby".into(), seq, author: "a".into(), text: format!("{seq}"), ts: 0, id: None }
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

//! What the page knows: connection state, joined rooms, their members and logs. Every server
//! message is applied here, in order, by [`Chat::apply`]; components only read these signals.

use crate::outbox::{self, Pending};
use futures::channel::mpsc::UnboundedSender;
use hubbub_shared::{
    ChatMessage, ChatText, ClientMsg, ErrorCode, Limits, Nick, RoomName, ServerMsg, close, cursor::Cursor,
};
use leptos::prelude::*;

/// Most entries kept per room log; older ones are dropped so a long session stays light.
const MAX_LOG: usize = 1000;

const SESSION_KEY: &str = "hubbub.session";

/// The rooms the page is in, remembered so that a refresh rejoins them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Session {
    /// (room, nickname), in join order.
    rooms: Vec<(String, String)>,
    active: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// The first connection attempt is under way.
    Connecting,
    Connected,
    /// The connection closed (code and reason of that close); retrying with backoff.
    Reconnecting {
        code: u16,
        reason: String,
    },
    /// Given up for good: the hub speaks another protocol version.
    Closed {
        code: u16,
        reason: String,
    },
    /// Not connected until the person joins a room (the hub closes sockets that join nothing).
    Idle,
}

impl ConnState {
    /// `data-state` of the status element, and the CSS hook.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting { .. } => "reconnecting",
            ConnState::Closed { .. } => "closed",
            ConnState::Idle => "idle",
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            ConnState::Connecting => "Connecting…".into(),
            ConnState::Connected => "Connected".into(),
            ConnState::Reconnecting { code, reason } => {
                format!("Connection closed: {} ({code}). Reconnecting…", reason_or_default(*code, reason))
            }
            ConnState::Closed { code, reason } => {
                format!("Connection closed: {} ({code}).", reason_or_default(*code, reason))
            }
            ConnState::Idle => "Not connected: join a room to connect.".into(),
        }
    }
}

fn reason_or_default(code: u16, reason: &str) -> String {
    if reason.is_empty() { close::describe(code).to_owned() } else { reason.to_owned() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Message {
        seq: u64,
        author: String,
        text: String,
        ts: u64,
        own: bool,
    },
    /// Joins, leaves, reconnects.
    Notice(String),
    /// A refusal from the hub concerning this room.
    Problem(String),
    /// Messages may be missing here (a resume found too large a gap); `before` is the first
    /// message after the gap, for loading what is missing.
    Gap {
        before: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Unique within the page's lifetime: the key of the keyed list.
    pub(crate) key: u64,
    pub(crate) kind: EntryKind,
}

/// One joined room. The fields are signals, so a new message re-renders only that room's log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Room {
    pub(crate) name: String,
    pub(crate) nick: RwSignal<String>,
    pub(crate) members: RwSignal<Vec<String>>,
    pub(crate) log: RwSignal<Vec<Entry>>,
    /// Highest sequence number in the log: where a reconnect resumes from.
    pub(crate) last_seq: RwSignal<u64>,
}

impl Room {
    fn new(name: String, nick: String) -> Self {
        Room {
            name,
            nick: RwSignal::new(nick),
            members: RwSignal::new(Vec::new()),
            log: RwSignal::new(Vec::new()),
            last_seq: RwSignal::new(0),
        }
    }
}

fn send_msg(p: &Pending) -> ClientMsg {
    ClientMsg::Send { id: Some(p.id.clone()), room: p.room.clone(), text: p.text.clone() }
}

/// The page's chat state, shared through context. `Copy`: every field is a signal handle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chat {
    pub(crate) conn: RwSignal<ConnState>,
    pub(crate) rooms: RwSignal<Vec<Room>>,
    pub(crate) active: RwSignal<Option<String>>,
    pub(crate) limits: RwSignal<Option<Limits>>,
    /// The hub's database epoch, from `welcome`: part of every resume cursor.
    epoch: RwSignal<Option<String>>,
    /// Refusal of the last join from the form, shown under it.
    pub(crate) join_error: RwSignal<Option<String>>,
    /// Own messages not yet acknowledged, oldest first (mirrored in local storage).
    pub(crate) outbox: RwSignal<Vec<Pending>>,
    /// Request id of the join the form is waiting for.
    pending_join: RwSignal<Option<String>>,
    next_key: StoredValue<u64>,
    outbound: StoredValue<UnboundedSender<ClientMsg>>,
}

impl Chat {
    /// The state, with the rooms and unsent messages remembered from the last visit.
    pub(crate) fn new(outbound: UnboundedSender<ClientMsg>) -> Self {
        let session: Session = crate::browser::load(SESSION_KEY).unwrap_or_default();
        let rooms = session.rooms.into_iter().map(|(name, nick)| Room::new(name, nick)).collect();
        Self {
            conn: RwSignal::new(ConnState::Connecting),
            rooms: RwSignal::new(rooms),
            active: RwSignal::new(session.active),
            outbox: RwSignal::new(outbox::load()),
            limits: RwSignal::new(None),
            epoch: RwSignal::new(None),
            join_error: RwSignal::new(None),
            pending_join: RwSignal::new(None),
            next_key: StoredValue::new(0),
            outbound: StoredValue::new(outbound),
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.with(|c| *c == ConnState::Connected)
    }

    pub(crate) fn room(&self, name: &str) -> Option<Room> {
        self.rooms.with_untracked(|rooms| rooms.iter().find(|r| r.name == name).cloned())
    }

    /// Queues a message; the connection task sends it once connected.
    fn send(&self, msg: ClientMsg) {
        self.outbound.with_value(|tx| {
            // the receiver lives as long as the page
            let _ = tx.unbounded_send(msg);
        });
    }

    /// Validates with the hub's own rules, then asks to join.
    pub(crate) fn request_join(&self, room: &str, nick: &str) {
        let parsed = RoomName::parse(room).and_then(|r| Nick::parse(nick).map(|n| (r, n)));
        let (room, nick) = match parsed {
            Ok(pair) => pair,
            Err(invalid) => return self.join_error.set(Some(invalid.reason)),
        };
        self.join_error.set(None);
        crate::browser::remember_nick(nick.as_str());
        if self.room(room.as_str()).is_some() {
            return self.select(room.as_str());
        }
        let id = format!("join-{}", self.take_key());
        self.pending_join.set(Some(id.clone()));
        let token = Some(crate::browser::client_token());
        self.send(ClientMsg::Join { id: Some(id), room: room.to_string(), nick: nick.to_string(), since: None, token });
    }

    pub(crate) fn leave(&self, room: &str) {
        self.send(ClientMsg::Leave { id: None, room: room.to_owned() });
    }

    /// Validates a chat message and puts it in the outbox (sent now when connected, else on
    /// reconnect); the refusal reason when it breaks a rule.
    pub(crate) fn say(&self, room: &str, text: &str) -> Result<(), String> {
        let max =
            self.limits.with_untracked(|l| l.map_or(hubbub_shared::validate::MAX_TEXT_CHARS, |l| l.max_text_chars));
        let text = ChatText::parse(text, max).map_err(|e| e.reason)?;
        let pending =
            Pending { id: crate::browser::new_id(), room: room.to_owned(), text: text.into_string(), failed: None };
        self.update_outbox(|o| o.push(pending.clone()));
        if self.is_connected() {
            self.send(send_msg(&pending));
        }
        Ok(())
    }

    /// Sends a failed message again.
    pub(crate) fn retry(&self, id: &str) {
        let mut again = None;
        self.update_outbox(|o| {
            if let Some(p) = o.iter_mut().find(|p| p.id == id) {
                p.failed = None;
                again = Some(p.clone());
            }
        });
        if let Some(p) = again.filter(|_| self.is_connected()) {
            self.send(send_msg(&p));
        }
    }

    /// Gives up on a failed message.
    pub(crate) fn discard(&self, id: &str) {
        self.update_outbox(|o| o.retain(|p| p.id != id));
    }

    /// Everything still waiting for an ack, to send after (re)joining: same ids, so the hub
    /// stores each message once however often it is sent.
    pub(crate) fn resends(&self) -> Vec<ClientMsg> {
        self.outbox.with_untracked(|o| o.iter().filter(|p| p.failed.is_none()).map(send_msg).collect())
    }

    /// Asks for the page of messages before `before`.
    pub(crate) fn load_older(&self, room: &str, before: u64) {
        self.send(ClientMsg::History { id: None, room: room.to_owned(), before, limit: None });
    }

    pub(crate) fn select(&self, room: &str) {
        self.active.set(Some(room.to_owned()));
        self.save_session();
    }

    fn update_outbox(&self, f: impl FnOnce(&mut Vec<Pending>)) {
        self.outbox.update(f);
        self.outbox.with_untracked(|o| outbox::save(o));
    }

    /// The acknowledged (or refused-for-good) message `id` no longer waits.
    fn settle(&self, id: &str) {
        if self.outbox.with_untracked(|o| o.iter().any(|p| p.id == id)) {
            self.update_outbox(|o| o.retain(|p| p.id != id));
        }
    }

    fn save_session(&self) {
        let rooms =
            self.rooms.with_untracked(|rooms| rooms.iter().map(|r| (r.name.clone(), r.nick.get_untracked())).collect());
        crate::browser::save(SESSION_KEY, &Session { rooms, active: self.active.get_untracked() });
    }

    /// The joins to send after a reconnect, one per room the page is in, each resuming from
    /// the last message the page has, so the hub sends exactly what was missed.
    pub(crate) fn rejoins(&self) -> Vec<ClientMsg> {
        let epoch = self.epoch.get_untracked();
        self.rooms.with_untracked(|rooms| {
            rooms
                .iter()
                .map(|r| {
                    let last = r.last_seq.get_untracked();
                    let since =
                        epoch.as_deref().filter(|_| last > 0).map(|e| Cursor::new(e, &r.name, last).to_string());
                    ClientMsg::Join {
                        id: None,
                        room: r.name.clone(),
                        nick: r.nick.get_untracked(),
                        since,
                        token: Some(crate::browser::client_token()),
                    }
                })
                .collect()
        })
    }

    /// Applies one message from the hub.
    pub(crate) fn apply(&self, msg: ServerMsg) {
        match msg {
            ServerMsg::Welcome { limits, epoch, .. } => {
                self.limits.set(Some(limits));
                self.epoch.set(Some(epoch));
            }
            ServerMsg::Joined { id, room, nick, members } => {
                if id.is_some() && id == self.pending_join.get_untracked() {
                    self.pending_join.set(None);
                }
                match self.room(&room) {
                    Some(existing) => {
                        let notice = if existing.log.with_untracked(Vec::is_empty) {
                            format!("You are in #{room} as {nick}.")
                        } else {
                            "Reconnected.".to_owned()
                        };
                        existing.nick.set(nick);
                        existing.members.set(members);
                        self.note(&existing, EntryKind::Notice(notice));
                    }
                    None => {
                        let joined = Room::new(room.clone(), nick.clone());
                        joined.members.set(members);
                        self.note(&joined, EntryKind::Notice(format!("You joined #{room} as {nick}.")));
                        self.rooms.update(|rooms| rooms.push(joined));
                        self.active.set(Some(room));
                        self.save_session();
                    }
                }
            }
            ServerMsg::Left { room, .. } => {
                self.rooms.update(|rooms| rooms.retain(|r| r.name != room));
                if self.active.get_untracked().as_deref() == Some(room.as_str()) {
                    let next = self.rooms.with_untracked(|rooms| rooms.last().map(|r| r.name.clone()));
                    self.active.set(next);
                }
                self.save_session();
            }
            ServerMsg::MemberJoined { room, nick } => {
                if let Some(r) = self.room(&room) {
                    r.members.update(|m| {
                        m.push(nick.clone());
                        m.sort_by_key(|n| n.to_lowercase());
                    });
                    self.note(&r, EntryKind::Notice(format!("{nick} joined.")));
                }
            }
            ServerMsg::MemberLeft { room, nick } => {
                if let Some(r) = self.room(&room) {
                    r.members.update(|m| m.retain(|n| *n != nick));
                    self.note(&r, EntryKind::Notice(format!("{nick} left.")));
                }
            }
            ServerMsg::Message(m) => {
                if let Some(id) = &m.id {
                    self.settle(id);
                }
                if let Some(r) = self.room(&m.room) {
                    self.add_message(&r, m);
                }
            }
            ServerMsg::History { room, messages, recovered, .. } => {
                if let Some(r) = self.room(&room) {
                    let resumed_from = r.last_seq.get_untracked();
                    let first = messages.first().map(|m| m.seq);
                    if let (true, false, Some(before)) = (resumed_from > 0, recovered, first) {
                        if before > resumed_from + 1 {
                            self.note(&r, EntryKind::Gap { before });
                        }
                    }
                    for m in messages {
                        if let Some(id) = &m.id {
                            self.settle(id);
                        }
                        self.add_message(&r, m);
                    }
                }
            }
            // normally settled by the message itself; a resend of a stored one gets only this
            ServerMsg::Ack { id, .. } => self.settle(&id),
            // the hub dropped live messages for us: fetch them from history
            ServerMsg::Lagged { room, .. } => {
                if let (Some(r), Some(epoch)) = (self.room(&room), self.epoch.get_untracked()) {
                    let since = Cursor::new(&epoch, &room, r.last_seq.get_untracked()).to_string();
                    self.send(ClientMsg::Resume { id: None, room, since });
                }
            }
            // the page sends no `add` requests
            ServerMsg::Sum { .. } => {}
            ServerMsg::Error { id, code, message, room, retry_after_ms } => {
                let pending =
                    id.as_deref().and_then(|id| self.outbox.with_untracked(|o| o.iter().find(|p| p.id == id).cloned()));
                if let (Some(p), ErrorCode::RateLimited) = (&pending, code) {
                    // not refused, only too fast (say, a long outbox resent at once): try again
                    let (chat, p) = (*self, p.clone());
                    let wait = retry_after_ms.unwrap_or(1000);
                    leptos::task::spawn_local(async move {
                        gloo_timers::future::sleep(std::time::Duration::from_millis(wait)).await;
                        if chat.is_connected() {
                            chat.send(send_msg(&p));
                        }
                    });
                } else if let Some(id) = pending.map(|p| p.id) {
                    // refused: it stays in the outbox, marked failed, until Retry or Discard
                    self.update_outbox(|o| {
                        if let Some(p) = o.iter_mut().find(|p| p.id == id) {
                            p.failed = Some(message.clone());
                        }
                    });
                } else if id.is_some() && id == self.pending_join.get_untracked() {
                    self.pending_join.set(None);
                    self.join_error.set(Some(message));
                } else if let Some(r) = room.as_deref().and_then(|name| self.room(name)) {
                    let text = match code {
                        ErrorCode::NickTaken => format!("Could not rejoin: {message}"),
                        _ => message,
                    };
                    self.note(&r, EntryKind::Problem(text));
                } else {
                    self.join_error.set(Some(message));
                }
            }
        }
    }

    /// Adds a chat message once, in sequence order: history and live delivery may overlap.
    fn add_message(&self, room: &Room, m: ChatMessage) {
        let seq = m.seq;
        let own = room.nick.with_untracked(|n| *n == m.author);
        let kind = EntryKind::Message { seq, author: m.author, text: m.text, ts: m.ts, own };
        let seq_of = |e: &Entry| match e.kind {
            EntryKind::Message { seq, .. } => Some(seq),
            _ => None,
        };
        if room.log.with_untracked(|log| log.iter().any(|e| seq_of(e) == Some(seq))) {
            return;
        }
        if seq > room.last_seq.get_untracked() {
            room.last_seq.set(seq);
            return self.note(room, kind);
        }
        let entry = Entry { key: self.take_key(), kind };
        room.log.update(|log| {
            let at = log.iter().position(|e| seq_of(e).is_some_and(|s| s > seq)).unwrap_or(log.len());
            log.insert(at, entry);
        });
    }

    fn note(&self, room: &Room, kind: EntryKind) {
        let entry = Entry { key: self.take_key(), kind };
        room.log.update(|log| {
            log.push(entry);
            if log.len() > MAX_LOG {
                log.drain(..log.len() - MAX_LOG);
            }
        });
    }

    fn take_key(&self) -> u64 {
        self.next_key.update_value(|k| *k += 1);
        self.next_key.get_value()
    }
}

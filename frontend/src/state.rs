//! What the page knows: connection state, joined rooms, their members and logs. Every server
//! message is applied here, in order, by [`Chat::apply`]; components only read these signals.

use futures::channel::mpsc::UnboundedSender;
use hubbub_shared::{
    ChatMessage, ChatText, ClientMsg, ErrorCode, Limits, Nick, RoomName, ServerMsg, close, cursor::Cursor,
};
use leptos::prelude::*;

/// Most entries kept per room log; older ones are dropped so a long session stays light.
const MAX_LOG: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// The first connection attempt is under way.
    Connecting,
    Connected,
    /// The connection closed (code and reason of that close); retrying with backoff.
    Reconnecting { code: u16, reason: String },
    /// Given up for good: the hub speaks another protocol version.
    Closed { code: u16, reason: String },
}

impl ConnState {
    /// `data-state` of the status element, and the CSS hook.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting { .. } => "reconnecting",
            ConnState::Closed { .. } => "closed",
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
        }
    }
}

fn reason_or_default(code: u16, reason: &str) -> String {
    if reason.is_empty() { close::describe(code).to_owned() } else { reason.to_owned() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Message { seq: u64, author: String, text: String, ts: u64, own: bool },
    /// Joins, leaves, reconnects.
    Notice(String),
    /// A refusal from the hub concerning this room.
    Problem(String),
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
    /// Request id of the join the form is waiting for.
    pending_join: RwSignal<Option<String>>,
    next_key: StoredValue<u64>,
    outbound: StoredValue<UnboundedSender<ClientMsg>>,
}

impl Chat {
    pub(crate) fn new(outbound: UnboundedSender<ClientMsg>) -> Self {
        Self {
            conn: RwSignal::new(ConnState::Connecting),
            rooms: RwSignal::new(Vec::new()),
            active: RwSignal::new(None),
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
            return self.active.set(Some(room.to_string()));
        }
        let id = format!("join-{}", self.take_key());
        self.pending_join.set(Some(id.clone()));
        self.send(ClientMsg::Join { id: Some(id), room: room.to_string(), nick: nick.to_string(), since: None });
    }

    pub(crate) fn leave(&self, room: &str) {
        self.send(ClientMsg::Leave { id: None, room: room.to_owned() });
    }

    /// Validates and sends a chat message; the refusal reason when it breaks a rule.
    pub(crate) fn say(&self, room: &str, text: &str) -> Result<(), String> {
        let max = self.limits.with_untracked(|l| l.map_or(hubbub_shared::validate::MAX_TEXT_CHARS, |l| l.max_text_chars));
        let text = ChatText::parse(text, max).map_err(|e| e.reason)?;
        self.send(ClientMsg::Send { id: None, room: room.to_owned(), text: text.into_string() });
        Ok(())
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
                    let since = epoch.as_deref().filter(|_| last > 0).map(|e| Cursor::new(e, &r.name, last).to_string());
                    ClientMsg::Join { id: None, room: r.name.clone(), nick: r.nick.get_untracked(), since }
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
                        existing.nick.set(nick);
                        existing.members.set(members);
                        self.note(&existing, EntryKind::Notice("Reconnected.".into()));
                    }
                    None => {
                        let joined = Room {
                            name: room.clone(),
                            nick: RwSignal::new(nick.clone()),
                            members: RwSignal::new(members),
                            log: RwSignal::new(Vec::new()),
                            last_seq: RwSignal::new(0),
                        };
                        self.note(&joined, EntryKind::Notice(format!("You joined #{room} as {nick}.")));
                        self.rooms.update(|rooms| rooms.push(joined));
                        self.active.set(Some(room));
                    }
                }
            }
            ServerMsg::Left { room, .. } => {
                self.rooms.update(|rooms| rooms.retain(|r| r.name != room));
                if self.active.get_untracked().as_deref() == Some(room.as_str()) {
                    let next = self.rooms.with_untracked(|rooms| rooms.last().map(|r| r.name.clone()));
                    self.active.set(next);
                }
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
                if let Some(r) = self.room(&m.room) {
                    self.add_message(&r, m);
                }
            }
            ServerMsg::History { room, messages, recovered, .. } => {
                if let Some(r) = self.room(&room) {
                    let resumed_from = r.last_seq.get_untracked();
                    if resumed_from > 0 && !recovered {
                        self.note(&r, EntryKind::Notice("Some messages were skipped while you were away.".into()));
                    }
                    for m in messages {
                        self.add_message(&r, m);
                    }
                }
            }
            // the page's sends carry no id yet, so no acks arrive
            ServerMsg::Ack { .. } => {}
            // the hub dropped live messages for us: fetch them from history
            ServerMsg::Lagged { room, .. } => {
                if let (Some(r), Some(epoch)) = (self.room(&room), self.epoch.get_untracked()) {
                    let since = Cursor::new(&epoch, &room, r.last_seq.get_untracked()).to_string();
                    self.send(ClientMsg::Resume { id: None, room, since });
                }
            }
            // the page sends no `add` requests
            ServerMsg::Sum { .. } => {}
            ServerMsg::Error { id, code, message, room } => {
                if id.is_some() && id == self.pending_join.get_untracked() {
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

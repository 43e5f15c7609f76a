//! What the page knows, as a plain value: connection state, joined rooms with their members and
//! logs, the outbox of unacknowledged messages. Every server message ([`PageModel::receive`],
//! [`PageModel::apply`]) and every user action (join, say, retry …) is a state transition that
//! returns the [`Effect`]s it needs (send this, save that); the page's reactive layer
//! (`frontend/src/state.rs`) holds the model in one signal and carries the effects out.
//!
//! Nothing here touches signals or the browser, so the rules (one copy per seq, pending → sent
//! by client id, lagged → resume, gaps and paging) are tested with plain `cargo test`.

mod layout;
mod room;

pub use layout::{Calendar, Day, GROUP_WINDOW_MS, Placement, Segment, place, segments, utc_day};
pub use room::{Entry, EntryKind, Room};

use hubbub_shared::{
    ChatMessage, ChatText, ClientMsg, Conversation, ErrorCode, Limits, Nick, RoomName, RoomSize, ServerMsg, close,
    cursor::Cursor,
    json::{self, Fields, ObjectWriter, Value},
    page_codec::decode_server_items,
};

/// Most entries kept per room log; older ones are dropped so a long session stays light.
pub const MAX_LOG: usize = 1000;

/// While the person types, the hub is told at most this often (ms); it forgets a signal that is
/// not refreshed within 6 s.
pub const TYPING_EVERY_MS: u64 = 3_000;

/// The key of a pending message in [`PageModel::room_entries`]: FNV-1a of its client id and
/// whether it failed, with the top bit set so that it never meets a log entry's key (those count
/// up from 1, and re-placed ones from 2^48).
fn pending_key(id: &str, failed: bool) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes().chain([u8::from(failed)]) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash | (1 << 63)
}

/// The request id of the rejoin of `room` after a reconnect: a refusal of it is told apart from
/// other errors about the room.
fn rejoin_id(room: &str) -> String {
    format!("rejoin:{room}")
}

/// The request id of the page's searches: the answer (or refusal) to the latest one fills
/// [`PageModel::search`].
const SEARCH_ID: &str = "search";
/// The request id of the page's `dm` requests: the conversation it answers with opens.
const DM_ID: &str = "dm";
/// The key of the "new messages" line in [`PageModel::room_entries`] (no log entry's key comes
/// near it: those count up from 1, re-placed ones from 2^48, pending ones have the top bit).
const NEW_MESSAGES_KEY: u64 = 1 << 62;
/// The request id of the history around a search result ([`PageModel::open_at`]).
const AROUND_ID: &str = "around";
/// How many messages before and after a search result are shown with it.
pub const AROUND: u64 = 10;

/// What a transition asks the outside world to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this to the hub (the connection task holds it until the hub has welcomed us).
    Send(ClientMsg),
    /// Call [`PageModel::resend`] with this id after the wait (the hub said `rate_limited`).
    RetryLater { id: String, after_ms: u64 },
    /// The rooms or the active room changed: save [`PageModel::session`].
    SaveSession,
    /// The outbox changed: save [`PageModel::outbox`].
    SaveOutbox,
    /// Bring message `seq` of the active room into view and give it the focus (once it is
    /// rendered): a search result the person chose.
    Reveal { seq: u64 },
}

/// The search view: what was asked and what the hub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    pub query: String,
    /// The words the hub looked for, lower case: the page highlights the words they begin
    /// ([`hubbub_shared::search::marks`]).
    pub terms: Vec<String>,
    /// Newest first; `None` while the answer is on its way.
    pub found: Option<Vec<ChatMessage>>,
    /// Why the hub refused to search.
    pub problem: Option<String>,
}

/// A line of the sidebar's list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listed {
    /// The room's name (what selecting or joining it takes).
    pub name: String,
    /// `#room`, or `@nickname` for a conversation.
    pub label: String,
    /// People in it, for a room of "browse rooms" the page is not in.
    pub size: Option<u64>,
    /// Messages of others not read yet, for a room the page is in.
    pub unread: u64,
}

/// The rooms the page is in, remembered so that a refresh rejoins them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// (room, nickname), in join order.
    pub rooms: Vec<(String, String)>,
    pub active: Option<String>,
}

/// A message typed but not yet acknowledged (kept in local storage by the page: a refresh or a
/// closed tab loses none of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The client id the hub acknowledges and deduplicates by.
    pub id: String,
    pub room: String,
    pub text: String,
    /// Why the hub refused it; a failed message waits for Retry or Discard.
    pub failed: Option<String>,
}

// Local storage keeps the session and the outbox as JSON, in the shapes serde wrote before the
// page dropped serde for its weight (`hubbub_shared::json`): what an older page saved is read.

impl Session {
    /// `{"rooms":[["lobby","alice"]],"active":"lobby"}`.
    pub fn to_json(&self) -> String {
        let rooms: Vec<String> = self.rooms.iter().map(|(room, nick)| json::str_array([room.as_str(), nick])).collect();
        ObjectWriter::new()
            .raw("rooms", &format!("[{}]", rooms.join(",")))
            .opt_str("active", self.active.as_deref())
            .finish()
    }

    /// `None` for anything [`Session::to_json`] would not write.
    pub fn from_json(text: &str) -> Option<Session> {
        let mut f = Fields::of(json::parse(text).ok()?)?;
        let rooms = f.list("rooms").ok()?.into_iter().map(|pair| {
            let Value::Array(pair) = pair else { return None };
            match <[Value; 2]>::try_from(pair).ok()? {
                [Value::String(room), Value::String(nick)] => Some((room, nick)),
                _ => None,
            }
        });
        Some(Session { rooms: rooms.collect::<Option<_>>()?, active: f.opt_string("active").ok()? })
    }
}

impl Pending {
    /// The outbox as saved: `[{"id":…,"room":…,"text":…,"failed":…},…]` (`failed` only when set).
    pub fn list_to_json(outbox: &[Pending]) -> String {
        let items: Vec<String> = outbox
            .iter()
            .map(|p| {
                ObjectWriter::new()
                    .str("id", &p.id)
                    .str("room", &p.room)
                    .str("text", &p.text)
                    .opt_str("failed", p.failed.as_deref())
                    .finish()
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// `None` for anything [`Pending::list_to_json`] would not write.
    pub fn list_from_json(text: &str) -> Option<Vec<Pending>> {
        let Value::Array(items) = json::parse(text).ok()? else { return None };
        items
            .into_iter()
            .map(|item| {
                let mut f = Fields::of(item)?;
                Some(Pending {
                    id: f.string("id").ok()?,
                    room: f.string("room").ok()?,
                    text: f.string("text").ok()?,
                    failed: f.opt_string("failed").ok()?,
                })
            })
            .collect()
    }

    fn send_msg(&self) -> ClientMsg {
        ClientMsg::Send { id: Some(self.id.clone()), room: self.room.clone(), text: self.text.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
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
    pub fn name(&self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Connected => "connected",
            ConnState::Reconnecting { .. } => "reconnecting",
            ConnState::Closed { .. } => "closed",
            ConnState::Idle => "idle",
        }
    }

    pub fn describe(&self) -> String {
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

/// Who the hub says we are, in sign-in mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The token's `name`: the nickname of every join.
    pub name: String,
    /// When the token runs out (ms since the epoch): the page fetches a fresh one before.
    pub expires_at: u64,
}

/// The page's chat state.
#[derive(Debug, Clone, PartialEq)]
pub struct PageModel {
    pub conn: ConnState,
    pub rooms: Vec<Room>,
    pub active: Option<String>,
    /// The hub's limits, from `welcome`.
    pub limits: Option<Limits>,
    /// The hub's database epoch, from `welcome`: part of every resume cursor.
    epoch: Option<String>,
    /// Refusal of the last join from the form, shown under it.
    pub join_error: Option<String>,
    /// The rooms people are in, biggest first, from the hub's last `rooms` answer ("browse
    /// rooms"); `None` until asked.
    pub browse: Option<Vec<RoomSize>>,
    /// The search view, while it is open.
    pub search: Option<Search>,
    /// The search result whose surroundings are being fetched, revealed when they arrive.
    reveal: Option<u64>,
    /// Own messages not yet acknowledged, oldest first.
    pub outbox: Vec<Pending>,
    /// Request id of the join the form is waiting for.
    pending_join: Option<String>,
    /// Sign-in mode (the hub's `welcome` has `auth`): every join uses the signed-in name.
    pub sign_in_required: bool,
    /// The name and expiry (ms since the epoch) of the last `authed`, kept across reconnects so
    /// the form does not flicker while the page signs in again.
    pub signed_in: Option<SignedIn>,
    /// Whether the page is hidden (the Page Visibility API); told to the hub.
    hidden: bool,
    /// The last entry key handed out: keys are unique for the page's lifetime.
    next_key: u64,
    /// The person's calendar (the page sets the browser's), for the log's day separators.
    pub calendar: Calendar,
    /// The browser's identity secret, for the joins the page makes by itself (a conversation
    /// someone started with us).
    identity: Option<String>,
    /// The person's direct conversations, as the hub listed them.
    pub conversations: Vec<Conversation>,
    /// A conversation this page asked for (`dm`): shown once joined.
    open_when_joined: Option<String>,
    /// Conversations the page sent a join for and has not heard `joined` of: the asking tab
    /// hears of a new one twice (as one of the person's tabs, and as the answer), and joins once.
    joining: Vec<String>,
}

impl PageModel {
    /// The state at page load, with the rooms and unsent messages remembered from the last visit.
    pub fn new(session: Session, outbox: Vec<Pending>) -> Self {
        let calendar = Calendar::default();
        let rooms = session.rooms.into_iter().map(|(name, nick)| Room::new(name, nick, calendar)).collect();
        PageModel {
            conn: ConnState::Connecting,
            rooms,
            active: session.active,
            limits: None,
            epoch: None,
            join_error: None,
            browse: None,
            search: None,
            reveal: None,
            outbox,
            pending_join: None,
            sign_in_required: false,
            signed_in: None,
            hidden: false,
            next_key: 0,
            calendar,
            identity: None,
            conversations: Vec::new(),
            open_when_joined: None,
            joining: Vec::new(),
        }
    }

    /// The browser's identity secret (the page's `token` in every join).
    pub fn with_identity(mut self, token: &str) -> Self {
        self.identity = Some(token.to_owned());
        self
    }

    /// Uses the person's calendar (the page gives the browser's clock and time zone).
    pub fn with_calendar(mut self, calendar: Calendar) -> Self {
        self.calendar = calendar;
        for room in &mut self.rooms {
            room.calendar = calendar;
        }
        self
    }

    /// What the page shows for `room`: its log, then the person's own messages there that are
    /// not acknowledged yet. A pending message's key changes when it fails or is retried, so the
    /// page renders it again; one list (one keyed list type in the page) for both.
    pub fn room_entries(&self, room: &str) -> Option<Vec<Entry>> {
        let r = self.room(room)?;
        let mut entries = r.log.clone();
        // "new messages" before the first message of others the person had not read
        let first_new = r.divider.and_then(|read| {
            entries.iter().position(|e| matches!(e.kind, EntryKind::Message { seq, own: false, .. } if seq > read))
        });
        if let Some(at) = first_new {
            entries
                .insert(at, Entry { key: NEW_MESSAGES_KEY, kind: EntryKind::NewMessages, place: Placement::default() });
        }
        entries.extend(self.outbox.iter().filter(|p| p.room == room).map(|p| Entry {
            key: pending_key(&p.id, p.failed.is_some()),
            kind: EntryKind::Pending { id: p.id.clone(), text: p.text.clone(), failed: p.failed.clone() },
            place: Placement::default(),
        }));
        Some(entries)
    }

    pub fn is_connected(&self) -> bool {
        self.conn == ConnState::Connected
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.name == name)
    }

    fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.iter_mut().find(|r| r.name == name)
    }

    /// The active room's name, when the page is in it.
    pub fn active_room(&self) -> Option<&str> {
        let active = self.active.as_deref()?;
        self.room(active).map(|r| r.name.as_str())
    }

    /// What to remember for the next visit.
    pub fn session(&self) -> Session {
        Session {
            rooms: self.rooms.iter().map(|r| (r.name.clone(), r.nick.clone())).collect(),
            active: self.active.clone(),
        }
    }

    // ---- the connection's life ----------------------------------------------------------

    /// The hub welcomed us (the connection task then rejoins and resends).
    pub fn connected(&mut self) {
        self.conn = ConnState::Connected;
    }

    /// A connection ended with `code` and `reason`; the page retries. While retries keep
    /// failing, the close that ended the last good connection stays on screen.
    pub fn connection_lost(&mut self, code: u16, reason: String, was_welcomed: bool) {
        // joins under way are lost with the connection: the next list asks again
        self.joining.clear();
        let keep = matches!(self.conn, ConnState::Reconnecting { .. }) && !was_welcomed;
        if !keep {
            self.conn = ConnState::Reconnecting { code, reason };
        }
    }

    /// Retrying cannot help (the hub speaks another protocol version).
    pub fn closed_for_good(&mut self, code: u16, reason: String) {
        self.conn = ConnState::Closed { code, reason };
    }

    /// Closed for joining nothing while the person is still on the join form: the page waits
    /// for a join before connecting again.
    pub fn idle(&mut self) {
        self.conn = ConnState::Idle;
    }

    /// What to send after a (re)connect: whether the page is hidden, then one join per room the
    /// page is in, each resuming from the last message the page has, so the hub sends exactly
    /// what was missed.
    pub fn rejoins(&self, token: &str) -> Vec<ClientMsg> {
        let visibility = self.hidden.then_some(ClientMsg::Visibility { hidden: true });
        visibility.into_iter().chain(self.rooms.iter().map(|r| self.rejoin(r, token))).collect()
    }

    fn rejoin(&self, r: &Room, token: &str) -> ClientMsg {
        let since =
            self.epoch.as_deref().filter(|_| r.last_seq > 0).map(|e| Cursor::new(e, &r.name, r.last_seq).to_string());
        ClientMsg::Join {
            id: Some(rejoin_id(&r.name)),
            room: r.name.clone(),
            nick: r.nick.clone(),
            since,
            token: Some(token.into()),
        }
    }

    /// Everything still waiting for an ack, to send after (re)joining: same ids, so the hub
    /// stores each message once however often it is sent.
    pub fn resends(&self) -> Vec<ClientMsg> {
        self.outbox.iter().filter(|p| p.failed.is_none()).map(Pending::send_msg).collect()
    }

    // ---- what the person does -------------------------------------------------------------

    /// Validates with the hub's own rules, then asks to join (or selects a room the page is in
    /// already). `Err` is the reason shown under the form.
    pub fn request_join(&mut self, room: &str, nick: &str, token: &str) -> Vec<Effect> {
        // signed in, the name is the token's (the hub uses it whatever the join says)
        let parsed = match (self.sign_in_required, &self.signed_in) {
            (false, _) => RoomName::parse(room).and_then(|r| Nick::parse(nick).map(|n| (r, n.to_string()))),
            (true, Some(me)) => RoomName::parse(room).map(|r| (r, me.name.clone())),
            (true, None) => {
                self.join_error = Some("Still signing in; try again in a moment.".into());
                return Vec::new();
            }
        };
        let (room, nick) = match parsed {
            Ok(pair) => pair,
            Err(invalid) => {
                self.join_error = Some(invalid.reason);
                return Vec::new();
            }
        };
        self.join_error = None;
        if self.room(room.as_str()).is_some() {
            return self.select(room.as_str());
        }
        let id = format!("join-{}", self.take_key());
        self.pending_join = Some(id.clone());
        let join =
            ClientMsg::Join { id: Some(id), room: room.to_string(), nick, since: None, token: Some(token.into()) };
        vec![Effect::Send(join)]
    }

    /// Removes the room from the page at once (whatever the hub answers: a room the hub would
    /// not take us back into is removed too) and tells the hub.
    pub fn leave(&mut self, room: &str) -> Vec<Effect> {
        self.forget_room(room);
        vec![Effect::SaveSession, Effect::Send(ClientMsg::Leave { id: None, room: room.to_owned() })]
    }

    fn forget_room(&mut self, room: &str) {
        self.rooms.retain(|r| r.name != room);
        if self.active.as_deref() == Some(room) {
            self.active = self.rooms.last().map(|r| r.name.clone());
        }
    }

    /// After a refused rejoin: try the room again under another nickname.
    pub fn rejoin_as(&mut self, room: &str, nick: &str, token: &str) -> Vec<Effect> {
        let nick = match Nick::parse(nick) {
            Ok(nick) => nick,
            Err(invalid) => {
                if let Some(r) = self.room_mut(room) {
                    r.refused = Some(invalid.reason);
                }
                return Vec::new();
            }
        };
        let Some(r) = self.room_mut(room) else { return Vec::new() };
        r.nick = nick.to_string();
        r.refused = None;
        let join = self.room(room).map(|r| self.rejoin(r, token));
        join.map(Effect::Send).into_iter().chain([Effect::SaveSession]).collect()
    }

    /// The person typed in the message box of `room` at `now_ms`: tells the hub, at most every
    /// [`TYPING_EVERY_MS`].
    pub fn typed(&mut self, room: &str, now_ms: u64) -> Vec<Effect> {
        let connected = self.is_connected();
        let Some(r) = self.room_mut(room) else { return Vec::new() };
        if !connected || r.refused.is_some() || r.typing_told_at.is_some_and(|t| now_ms < t + TYPING_EVERY_MS) {
            return Vec::new();
        }
        r.typing_told_at = Some(now_ms);
        vec![Effect::Send(ClientMsg::Typing { room: room.to_owned() })]
    }

    /// The page became hidden or visible.
    pub fn set_hidden(&mut self, hidden: bool) -> Vec<Effect> {
        if self.hidden == hidden {
            return Vec::new();
        }
        self.hidden = hidden;
        if !self.is_connected() {
            return Vec::new();
        }
        let mut effects = vec![Effect::Send(ClientMsg::Visibility { hidden })];
        effects.extend(self.read_now());
        effects
    }

    /// Shows `room`: a "new messages" line marks where the person stopped reading there (the
    /// room left behind forgets its line), and what it shows counts as read.
    pub fn select(&mut self, room: &str) -> Vec<Effect> {
        // what the room left behind showed until now was read
        let mut effects = self.read_now();
        if let Some(previous) = self.active.clone().filter(|p| p != room).and_then(|p| self.room_mut(&p)) {
            previous.divider = None;
        }
        self.active = Some(room.to_owned());
        if let Some(r) = self.room_mut(room)
            && r.divider.is_none()
            && r.unread() > 0
        {
            r.divider = Some(r.read);
        }
        effects.push(Effect::SaveSession);
        effects.extend(self.read_now());
        effects
    }

    /// Tells the hub the room on screen is read up to its newest message, when it moved and
    /// the page is visible (the page calls this every second or so, and on select and show).
    /// Changes the model only when it returns an effect.
    pub fn read_now(&mut self) -> Vec<Effect> {
        if self.hidden || !self.is_connected() {
            return Vec::new();
        }
        let Some(active) = self.active.clone() else { return Vec::new() };
        let seq = self.room_mut(&active).and_then(Room::read_all);
        seq.map(|seq| Effect::Send(ClientMsg::Read { room: active, seq })).into_iter().collect()
    }

    /// Starts (or opens) a direct conversation with `nick`, a member of `room`; it opens once
    /// the hub answers and the page has joined it.
    pub fn message_person(&mut self, room: &str, nick: &str) -> Vec<Effect> {
        vec![Effect::Send(ClientMsg::Dm { id: Some(DM_ID.into()), room: room.to_owned(), nick: nick.to_owned() })]
    }

    /// Searches every room the page is in; the answer fills [`PageModel::search`].
    pub fn search(&mut self, query: &str) -> Vec<Effect> {
        let query = query.trim().to_owned();
        self.search = Some(Search { query: query.clone(), ..Search::default() });
        vec![Effect::Send(ClientMsg::Search { id: Some(SEARCH_ID.into()), query, room: None, limit: None })]
    }

    pub fn close_search(&mut self) {
        self.search = None;
    }

    /// Opens `room` at message `seq` (a search result): the search closes, the room becomes the
    /// active one, and the message is revealed with those around it, which are fetched first
    /// when the log does not hold it (the log then shows a gap between them and the rest).
    pub fn open_at(&mut self, room: &str, seq: u64) -> Vec<Effect> {
        let Some(r) = self.room(room) else { return Vec::new() };
        let held = r.log.iter().any(|e| e.seq() == Some(seq));
        self.search = None;
        let mut effects = self.select(room);
        self.reveal = (!held).then_some(seq);
        effects.push(if held {
            Effect::Reveal { seq }
        } else {
            let (before, limit) = (seq + AROUND + 1, Some(2 * AROUND as u32 + 1));
            Effect::Send(ClientMsg::History { id: Some(AROUND_ID.into()), room: room.to_owned(), before, limit })
        });
        effects
    }

    /// Asks the hub which rooms people are in (the answer fills [`PageModel::browse`]).
    pub fn browse_rooms(&mut self) -> Vec<Effect> {
        if self.is_connected() { vec![Effect::Send(ClientMsg::Rooms { id: None })] } else { Vec::new() }
    }

    /// The sidebar's list: the joined rooms and conversations with their labels and unread
    /// counts (no size), then the rooms of the last "browse" answer this page is not in, with
    /// their sizes.
    pub fn room_list(&self) -> Vec<Listed> {
        let joined = self.rooms.iter().map(|r| Listed {
            name: r.name.clone(),
            label: r.label(),
            size: None,
            unread: r.unread(),
        });
        let others = self.browse.iter().flatten().filter(|b| self.room(&b.room).is_none());
        let others = others.map(|b| Listed {
            name: b.room.clone(),
            label: format!("#{}", b.room),
            size: Some(b.count),
            unread: 0,
        });
        joined.chain(others).collect()
    }

    /// The nickname to join another room with: the one used in the room on screen, else the
    /// first room's, else `remembered` (the join form's last one).
    pub fn current_nick<'a>(&'a self, remembered: &'a str) -> &'a str {
        let on_screen = self.active_room().and_then(|a| self.room(a)).or(self.rooms.first());
        on_screen.map_or(remembered, |r| r.nick.as_str())
    }

    /// The next room in the list (`forward`) or the previous one, round the end: the page's
    /// Alt+ArrowDown / Alt+ArrowUp.
    pub fn switch_room(&mut self, forward: bool) -> Vec<Effect> {
        let count = self.rooms.len();
        let Some(at) = self.active_room().and_then(|a| self.rooms.iter().position(|r| r.name == a)) else {
            return Vec::new();
        };
        let next = if forward { (at + 1) % count } else { (at + count - 1) % count };
        if next == at {
            return Vec::new();
        }
        let name = self.rooms[next].name.clone();
        self.select(&name)
    }

    /// Validates a chat message and puts it in the outbox under client id `id` (sent now when
    /// connected, else after the next rejoin). `Err` is the rule it breaks.
    pub fn say(&mut self, room: &str, text: &str, id: String) -> Result<Vec<Effect>, String> {
        let max = self.limits.map_or(hubbub_shared::validate::MAX_TEXT_CHARS, |l| l.max_text_chars);
        let text = ChatText::parse(text, max).map_err(|e| e.reason)?;
        let pending = Pending { id, room: room.to_owned(), text: text.into_string(), failed: None };
        // the hub clears typing on a send: the next keystroke says so again
        if let Some(r) = self.room_mut(room) {
            r.typing_told_at = None;
        }
        let mut effects = vec![Effect::SaveOutbox];
        if self.is_connected() {
            effects.push(Effect::Send(pending.send_msg()));
        }
        self.outbox.push(pending);
        Ok(effects)
    }

    /// Changes the text of one's own message `seq` (`Some` text) or deletes it (`None`). Sent
    /// at once with the client id `id`, never queued: a change needs the hub's word on who the
    /// author is, so it is offered only while connected. The hub's `message` with `edits`
    /// changes the log; a refusal shows in the room.
    pub fn change_message(
        &mut self,
        room: &str,
        seq: u64,
        text: Option<&str>,
        id: String,
    ) -> Result<Vec<Effect>, String> {
        if !self.is_connected() {
            return Err("Offline: messages can be changed once the connection is back.".to_owned());
        }
        let msg = match text {
            Some(text) => {
                let max = self.limits.map_or(hubbub_shared::validate::MAX_TEXT_CHARS, |l| l.max_text_chars);
                let text = ChatText::parse(text, max).map_err(|e| e.reason)?.into_string();
                ClientMsg::Edit { id: Some(id), room: room.to_owned(), seq, text }
            }
            None => ClientMsg::Delete { id: Some(id), room: room.to_owned(), seq },
        };
        Ok(vec![Effect::Send(msg)])
    }

    /// Sends a failed message again.
    pub fn retry(&mut self, id: &str) -> Vec<Effect> {
        let Some(p) = self.outbox.iter_mut().find(|p| p.id == id) else { return Vec::new() };
        p.failed = None;
        let send = p.send_msg();
        let mut effects = vec![Effect::SaveOutbox];
        if self.is_connected() {
            effects.push(Effect::Send(send));
        }
        effects
    }

    /// Sends a still-pending message again after a rate-limit wait, if connected.
    pub fn resend(&mut self, id: &str) -> Vec<Effect> {
        match self.outbox.iter().find(|p| p.id == id && p.failed.is_none()) {
            Some(p) if self.is_connected() => vec![Effect::Send(p.send_msg())],
            _ => Vec::new(),
        }
    }

    /// Gives up on a failed message.
    pub fn discard(&mut self, id: &str) -> Vec<Effect> {
        self.outbox.retain(|p| p.id != id);
        vec![Effect::SaveOutbox]
    }

    /// Asks for the next page of the member list, after the last name loaded.
    pub fn load_more_members(&mut self, room: &str) -> Vec<Effect> {
        let Some(r) = self.room(room) else { return Vec::new() };
        if r.members_not_loaded() == 0 {
            return Vec::new();
        }
        let after = r.members.last().cloned();
        vec![Effect::Send(ClientMsg::Members { id: None, room: room.to_owned(), after, limit: None })]
    }

    /// Asks for the page of messages before the oldest one the room's log has.
    pub fn load_older(&mut self, room: &str) -> Vec<Effect> {
        let Some(before) = self.room(room).and_then(Room::oldest_seq) else { return Vec::new() };
        vec![Effect::Send(ClientMsg::History { id: None, room: room.to_owned(), before, limit: None })]
    }

    /// Asks for the newest page of the messages missing at gap marker `key` (each answer
    /// shrinks the gap, so the next click asks for the page before it).
    pub fn load_gap(&mut self, room: &str, key: u64) -> Vec<Effect> {
        let Some(before) = self.room(room).and_then(|r| r.gap(key)).map(|(_, before)| before) else {
            return Vec::new();
        };
        vec![Effect::Send(ClientMsg::History { id: None, room: room.to_owned(), before, limit: None })]
    }

    // ---- what the hub says ------------------------------------------------------------

    /// Applies one frame from the hub: one message, or several in a JSON array, item by item.
    /// Items this page does not understand (a newer hub's) are skipped, and returned in the
    /// second place for the log; a frame that is not JSON at all is skipped whole.
    pub fn receive(&mut self, text: &str) -> (Vec<Effect>, Vec<String>) {
        let mut effects = Vec::new();
        let mut skipped = Vec::new();
        match decode_server_items(text) {
            Ok(items) => {
                for item in items {
                    match item {
                        Ok(msg) => effects.extend(self.apply(msg)),
                        Err(e) => skipped.push(e.detail),
                    }
                }
            }
            Err(e) => skipped.push(e.detail),
        }
        (effects, skipped)
    }

    /// Applies one message from the hub.
    pub fn apply(&mut self, msg: ServerMsg) -> Vec<Effect> {
        match msg {
            ServerMsg::Rooms { rooms, .. } => {
                self.browse = Some(rooms);
                Vec::new()
            }
            ServerMsg::Welcome { limits, epoch, auth, .. } => {
                self.limits = Some(limits);
                self.epoch = Some(epoch);
                self.sign_in_required = auth.is_some();
                if auth.is_none() {
                    self.signed_in = None;
                }
                Vec::new()
            }
            ServerMsg::Joined { id, room, nick, members, away, count } => {
                self.joined(id, room, nick, (members, away, count))
            }
            // the connection task fetched a token and sent `auth` (first, or to refresh it)
            ServerMsg::Authed { name, expires_at, .. } => {
                self.signed_in = Some(SignedIn { name, expires_at });
                Vec::new()
            }
            ServerMsg::Left { room, .. } => {
                self.forget_room(&room);
                vec![Effect::SaveSession]
            }
            ServerMsg::Presence { room, count, joined, left, away, back } => {
                let Some(r) = self.room_mut(&room) else { return Vec::new() };
                let notices = r.presence(count, joined, left, away, back);
                for notice in notices {
                    let key = self.take_key();
                    if let Some(r) = self.room_mut(&room) {
                        r.note(key, EntryKind::Notice(notice));
                    }
                }
                Vec::new()
            }
            ServerMsg::Members { room, after, members, away, count, .. } => {
                if let Some(r) = self.room_mut(&room) {
                    match after {
                        None => r.first_members(members, away, count),
                        Some(_) => r.more_members(members, away, count),
                    }
                }
                Vec::new()
            }
            ServerMsg::Typing { room, nicks } => {
                if let Some(r) = self.room_mut(&room) {
                    r.typing = nicks.into_iter().filter(|n| *n != r.nick).collect();
                }
                Vec::new()
            }
            ServerMsg::Message(m) => {
                let effects = m.id.as_deref().map(|id| self.settle(id)).unwrap_or_default();
                self.add_message(m);
                effects
            }
            // the messages around a search result: marked off from the rest, then revealed
            ServerMsg::History { id: Some(id), room, messages, .. } if id == AROUND_ID => {
                let (first, last) = (messages.first().map(|m| m.seq), messages.last().map(|m| m.seq));
                let mut effects = self.history(&room, messages, true);
                if let (Some(first), Some(last)) = (first, last) {
                    let key = self.take_key();
                    if let Some(r) = self.room_mut(&room) {
                        r.gap_after(last, key);
                    }
                    let wanted = self.reveal.take().filter(|seq| (first..=last).contains(seq));
                    effects.extend(wanted.map(|seq| Effect::Reveal { seq }));
                }
                effects
            }
            ServerMsg::History { room, messages, recovered, .. } => self.history(&room, messages, recovered),
            // normally settled by the message itself; a resend of a stored one gets only this
            ServerMsg::Ack { id, .. } => self.settle(&id),
            // the hub dropped live messages for us: fetch them from history
            ServerMsg::Lagged { room, .. } => match (self.room(&room), &self.epoch) {
                (Some(r), Some(epoch)) => {
                    let since = Cursor::new(epoch, &room, r.last_seq).to_string();
                    vec![Effect::Send(ClientMsg::Resume { id: None, room, since })]
                }
                _ => Vec::new(),
            },
            ServerMsg::Found { id, terms, messages } => {
                if let Some(search) = self.search.as_mut().filter(|_| id.as_deref() == Some(SEARCH_ID)) {
                    search.terms = terms;
                    search.found = Some(messages);
                }
                Vec::new()
            }
            ServerMsg::Conversations { id, conversations } => self.conversations_listed(id, conversations),
            ServerMsg::Read { room, seq, unread, up_to } => {
                let active = self.active.as_deref() == Some(room.as_str());
                let Some(r) = self.room_mut(&room) else { return Vec::new() };
                let first = !r.read_known;
                r.read_from_hub(seq, unread, up_to);
                // opened before the hub said where the person was: the line goes there now
                if active && first && r.divider.is_none() && r.unread() > 0 {
                    r.divider = Some(seq);
                }
                if active { self.read_now() } else { Vec::new() }
            }
            // the page sends no `add` requests
            ServerMsg::Sum { .. } => Vec::new(),
            ServerMsg::Error { id, code, message, room, retry_after_ms } => {
                self.refused(id, code, message, room, retry_after_ms)
            }
        }
    }

    /// The hub listed conversations (all of them, or one that just started): the page joins
    /// those it is not in; the one this page asked for opens once joined.
    fn conversations_listed(&mut self, id: Option<String>, conversations: Vec<Conversation>) -> Vec<Effect> {
        let mut effects = Vec::new();
        let asked = id.as_deref() == Some(DM_ID);
        for c in conversations {
            if let Some(r) = self.room_mut(&c.room) {
                r.with = Some(c.with.clone());
                if asked {
                    effects.extend(self.select(&c.room));
                }
            } else if let Some(token) = self.identity.clone().filter(|_| self.is_connected()) {
                if asked {
                    self.open_when_joined = Some(c.room.clone());
                }
                if !self.joining.contains(&c.room) {
                    self.joining.push(c.room.clone());
                    // the hub ignores the nickname of a conversation's join: each has theirs
                    let nick = self.current_nick("-").to_owned();
                    let (id, room) = (Some(rejoin_id(&c.room)), c.room.clone());
                    effects.push(Effect::Send(ClientMsg::Join { id, room, nick, since: None, token: Some(token) }));
                }
            }
            self.conversations.retain(|known| known.room != c.room);
            self.conversations.push(c);
        }
        effects
    }

    fn joined(
        &mut self,
        id: Option<String>,
        room: String,
        nick: String,
        (members, away, count): (Vec<String>, Vec<String>, u64),
    ) -> Vec<Effect> {
        if id.is_some() && id == self.pending_join {
            self.pending_join = None;
        }
        self.joining.retain(|r| *r != room);
        let key = self.take_key();
        match self.room_mut(&room) {
            Some(existing) => {
                let notice = if existing.log.is_empty() {
                    format!("You are in #{room} as {nick}.")
                } else {
                    "Reconnected.".to_owned()
                };
                existing.nick = nick;
                existing.first_members(members, away, count);
                existing.refused = None;
                existing.note(key, EntryKind::Notice(notice));
                Vec::new()
            }
            None => {
                let mut joined = Room::new(room.clone(), nick.clone(), self.calendar);
                joined.first_members(members, away, count);
                joined.with = self.conversations.iter().find(|c| c.room == room).map(|c| c.with.clone());
                let notice = match &joined.with {
                    Some(with) => format!("Direct messages between you ({nick}) and {with}."),
                    None => format!("You joined #{room} as {nick}."),
                };
                joined.note(key, EntryKind::Notice(notice));
                self.rooms.push(joined);
                // someone else's new conversation waits in the list; one's own opens
                let opens = !room.starts_with('@') || self.open_when_joined.as_deref() == Some(room.as_str());
                if opens {
                    self.open_when_joined = None;
                    return self.select(&room);
                }
                vec![Effect::SaveSession]
            }
        }
    }

    fn history(&mut self, room: &str, messages: Vec<ChatMessage>, recovered: bool) -> Vec<Effect> {
        let mut effects = Vec::new();
        for id in messages.iter().filter_map(|m| m.id.as_deref()) {
            effects.extend(self.settle(id));
        }
        let key = self.take_key();
        let Some(r) = self.rooms.iter_mut().find(|r| r.name == room) else { return effects };
        let resumed_from = r.last_seq;
        // a resume that could not continue from our cursor: messages may be missing between
        // what we have and what follows
        if let (true, false, Some(first)) = (resumed_from > 0, recovered, messages.first().map(|m| m.seq))
            && first > resumed_from + 1
        {
            r.note(key, EntryKind::Gap { after: resumed_from, before: first });
        }
        for m in messages {
            r.add_message(m, &mut self.next_key);
        }
        effects
    }

    fn refused(
        &mut self,
        id: Option<String>,
        code: ErrorCode,
        message: String,
        room: Option<String>,
        retry_after_ms: Option<u64>,
    ) -> Vec<Effect> {
        let pending = id.as_deref().and_then(|id| self.outbox.iter_mut().find(|p| p.id == id));
        match (pending, code) {
            // not refused, only too fast (say, a long outbox resent at once): try again
            (Some(p), ErrorCode::RateLimited) => {
                vec![Effect::RetryLater { id: p.id.clone(), after_ms: retry_after_ms.unwrap_or(1000) }]
            }
            // refused: it stays in the outbox, marked failed, until Retry or Discard
            (Some(p), _) => {
                p.failed = Some(message);
                vec![Effect::SaveOutbox]
            }
            (None, _) if id.as_deref() == Some(SEARCH_ID) => {
                if let Some(search) = &mut self.search {
                    search.problem = Some(message);
                }
                Vec::new()
            }
            (None, _) if id.is_some() && id == self.pending_join => {
                self.pending_join = None;
                self.join_error = Some(message);
                Vec::new()
            }
            // the hub would not take us back into a room: the room view offers the ways out
            // (a bad cursor still joins; a join queued while offline may meet its own rejoin)
            (None, code)
                if !matches!(code, ErrorCode::InvalidCursor | ErrorCode::AlreadyJoined)
                    && room.as_deref().is_some_and(|r| id.as_deref() == Some(rejoin_id(r).as_str())) =>
            {
                if let Some(r) = room.as_deref().and_then(|name| self.room_mut(name)) {
                    r.refused = Some(message);
                }
                Vec::new()
            }
            (None, _) => {
                let key = self.take_key();
                match room.as_deref() {
                    Some(name) => {
                        // about a room no longer on the page (a late answer to a leave): nothing to show
                        if let Some(r) = self.room_mut(name) {
                            r.note(key, EntryKind::Problem(message));
                        }
                    }
                    None => self.join_error = Some(message),
                }
                Vec::new()
            }
        }
    }

    /// Adds a chat message to its room once, in sequence order.
    fn add_message(&mut self, m: ChatMessage) {
        let room = m.room.clone();
        if let Some(r) = self.rooms.iter_mut().find(|r| r.name == room) {
            r.add_message(m, &mut self.next_key);
        }
    }

    /// The acknowledged message `id` no longer waits.
    fn settle(&mut self, id: &str) -> Vec<Effect> {
        if self.outbox.iter().any(|p| p.id == id) {
            self.outbox.retain(|p| p.id != id);
            vec![Effect::SaveOutbox]
        } else {
            Vec::new()
        }
    }

    fn take_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }
}

#[cfg(test)]
mod tests;

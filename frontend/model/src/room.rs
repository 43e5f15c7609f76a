//! One joined room: its members and its log, kept in sequence order with one copy per seq.

use crate::MAX_LOG;
use crate::layout::{self, Calendar, Placement};
use hubbub_shared::ChatMessage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Message {
        seq: u64,
        author: String,
        text: String,
        ts: u64,
        own: bool,
        /// Its author changed the text after sending it.
        edited: bool,
        /// Its author deleted it: the text is gone.
        deleted: bool,
    },
    /// Joins, leaves, reconnects.
    Notice(String),
    /// A refusal from the hub concerning this room.
    Problem(String),
    /// An own message not yet acknowledged (from the outbox, [`crate::PageModel::room_entries`]):
    /// sending, or refused with the reason (`failed`).
    Pending { id: String, text: String, failed: Option<String> },
    /// Messages `after < seq < before` may be missing here (a resume found too large a gap).
    /// Loading pages shrinks `before`; the marker goes once nothing is missing.
    Gap { after: u64, before: u64 },
    /// "New messages": where the person stopped reading, when they opened the room
    /// ([`crate::PageModel::room_entries`] places it).
    NewMessages,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique within the room's log: the key of the keyed list. It changes when the entry's
    /// placement does, so the page renders it again in its new place.
    pub key: u64,
    pub kind: EntryKind,
    /// Grouped under the message before it? A day separator before it? Kept by the room as the
    /// log changes.
    pub place: Placement,
}

impl Entry {
    /// The message's seq, for message entries.
    pub fn seq(&self) -> Option<u64> {
        match self.kind {
            EntryKind::Message { seq, .. } => Some(seq),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub name: String,
    /// The nickname the hub confirmed for us here.
    pub nick: String,
    /// The members the page has loaded, each person once, sorted as the hub sorts them
    /// (case-insensitively): the first page from `joined`, more with "show more". In a big room
    /// this is a prefix of the whole list plus anyone who joined within it.
    pub members: Vec<String>,
    /// How many people are in the room (all of them, loaded or not).
    pub member_count: u64,
    /// The loaded members shown as away.
    pub away: Vec<String>,
    /// Who else is typing here (never ourselves).
    pub typing: Vec<String>,
    pub log: Vec<Entry>,
    /// Highest sequence number in the log: where a reconnect resumes from.
    pub last_seq: u64,
    /// Why the hub refused to take us back in after a reconnect (the nickname was taken while we
    /// were away, say): the room view then offers another nickname, or removing the room.
    pub refused: Option<String>,
    /// When we last told the hub we are typing here (ms, the page's clock).
    pub(crate) typing_told_at: Option<u64>,
    /// A direct conversation: the other person's nickname (the room's name is `@…`).
    pub with: Option<String>,
    /// The person's read position (the hub's, kept for every tab): read up to this seq.
    pub read: u64,
    /// Whether the hub told us the position yet (only then does the page move it).
    pub(crate) read_known: bool,
    /// The hub's count of others' messages after `read` up to `read_up_to`.
    unread_counted: u64,
    read_up_to: u64,
    /// Where the "new messages" line goes while the room is open: after this seq.
    pub(crate) divider: Option<u64>,
    /// The person's calendar, for day separators.
    pub(crate) calendar: Calendar,
    /// Keys given to entries whose placement changed (counted from [`REKEYED`]).
    rekeyed: u64,
}

/// Keys of entries placed anew start here, far above the page's own counter.
const REKEYED: u64 = 1 << 48;

impl Room {
    pub(crate) fn new(name: String, nick: String, calendar: Calendar) -> Self {
        Room {
            name,
            nick,
            members: Vec::new(),
            member_count: 0,
            away: Vec::new(),
            typing: Vec::new(),
            log: Vec::new(),
            last_seq: 0,
            refused: None,
            typing_told_at: None,
            with: None,
            read: 0,
            read_known: false,
            unread_counted: 0,
            read_up_to: 0,
            divider: None,
            calendar,
            rekeyed: 0,
        }
    }

    /// "alice is typing…" for the message box: up to three names, then "several people".
    pub fn typing_line(&self) -> Option<String> {
        Some(match &self.typing[..] {
            [] => return None,
            [one] => format!("{one} is typing…"),
            [a, b] => format!("{a} and {b} are typing…"),
            [a, b, c] => format!("{a}, {b} and {c} are typing…"),
            _ => "Several people are typing…".to_owned(),
        })
    }

    /// What the room is called on screen: `#room`, or `@nickname` for a conversation.
    pub fn label(&self) -> String {
        match &self.with {
            Some(with) => format!("@{with}"),
            None => format!("#{}", self.name),
        }
    }

    /// Messages of others not read yet: the hub's count up to where it counted, and those
    /// that came after it.
    pub fn unread(&self) -> u64 {
        let after = self.read.max(self.read_up_to);
        let newer = self
            .log
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Message { seq, own: false, deleted: false, .. } if seq > after));
        self.unread_counted + newer.count() as u64
    }

    /// The hub's `read`: the person's position, from any of their tabs.
    pub(crate) fn read_from_hub(&mut self, seq: u64, unread: u64, up_to: u64) {
        self.read = seq;
        self.unread_counted = unread;
        self.read_up_to = up_to;
        self.read_known = true;
    }

    /// Everything the log holds has been read here (the room is on screen): the position to
    /// tell the hub, if it moved.
    pub(crate) fn read_all(&mut self) -> Option<u64> {
        if !self.read_known || self.last_seq <= self.read {
            return None;
        }
        self.read_from_hub(self.last_seq, 0, self.last_seq);
        Some(self.last_seq)
    }

    /// How many members the hub has that the page has not loaded yet.
    pub fn members_not_loaded(&self) -> u64 {
        self.member_count.saturating_sub(self.members.len() as u64)
    }

    /// A first page of members (from `joined`, or a fresh one for a page that missed changes):
    /// it replaces what was loaded.
    pub(crate) fn first_members(&mut self, members: Vec<String>, away: Vec<String>, count: u64) {
        self.members = members;
        self.away = away;
        self.member_count = count;
    }

    /// A further page of members, after the ones loaded.
    pub(crate) fn more_members(&mut self, members: Vec<String>, away: Vec<String>, count: u64) {
        for name in members {
            self.insert_member(name);
        }
        for name in away {
            if !self.away.contains(&name) {
                self.away.push(name);
            }
        }
        self.member_count = count;
    }

    /// Applies a `presence` frame; returns what to say in the log ("alice joined."), if
    /// anything. Not news: our own arrival, and anyone the list already had (a frame may repeat
    /// what the `joined` reply showed, for people who arrived within the same tick).
    pub(crate) fn presence(
        &mut self,
        count: u64,
        joined: Vec<String>,
        left: Vec<String>,
        away: Vec<String>,
        back: Vec<String>,
    ) -> Vec<String> {
        let all_loaded = self.members_not_loaded() == 0;
        let last_loaded = self.members.last().map(|n| n.to_lowercase());
        let listed = |name: &String| self.members.iter().any(|n| n.to_lowercase() == name.to_lowercase());
        // past the loaded part of a big room the page cannot tell: it says what the hub said
        let unknown =
            |name: &String| !all_loaded && last_loaded.as_ref().is_none_or(|last| name.to_lowercase() > *last);
        let news_joined: Vec<String> = joined.iter().filter(|n| **n != self.nick && !listed(n)).cloned().collect();
        let news_left: Vec<String> =
            left.iter().filter(|n| **n != self.nick && (listed(n) || unknown(n))).cloned().collect();
        let mut notices = Vec::new();
        for name in &left {
            self.members.retain(|n| n != name);
            self.away.retain(|n| n != name);
            self.typing.retain(|n| n != name);
        }
        // a newcomer beyond the loaded part of the list is fetched with that part, in order
        for name in &joined {
            if all_loaded || last_loaded.as_ref().is_some_and(|last| name.to_lowercase() <= *last) {
                self.insert_member(name.clone());
            }
        }
        self.member_count = count;
        self.away.retain(|n| !back.contains(n));
        for name in away {
            if self.members.contains(&name) && !self.away.contains(&name) {
                self.away.push(name);
            }
        }
        if let Some(names) = name_list(&news_joined) {
            notices.push(format!("{names} joined."));
        }
        if let Some(names) = name_list(&news_left) {
            notices.push(format!("{names} left."));
        }
        notices
    }

    fn insert_member(&mut self, name: String) {
        let key = name.to_lowercase();
        if let Err(at) = self.members.binary_search_by(|n| n.to_lowercase().cmp(&key)) {
            self.members.insert(at, name);
        }
    }

    /// The oldest message's seq, where "load older" continues from.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.log.iter().find_map(Entry::seq)
    }

    /// The gap marker with this key: (after, before).
    pub fn gap(&self, key: u64) -> Option<(u64, u64)> {
        self.log.iter().find(|e| e.key == key).and_then(|e| match e.kind {
            EntryKind::Gap { after, before } => Some((after, before)),
            _ => None,
        })
    }

    /// Adds a chat message once, in sequence order: history and live delivery may overlap.
    /// A message inside a gap shrinks it.
    /// A change (`edits`) is applied to the message it targets, when the log holds it, and takes
    /// no line of its own; its seq still counts for resuming and for gaps.
    pub(crate) fn add_message(&mut self, m: ChatMessage, next_key: &mut u64) {
        let seq = m.seq;
        if let Some(target) = m.edits {
            self.fill_gaps(seq);
            self.last_seq = self.last_seq.max(seq);
            return self.apply_change(target, m.text, m.deleted);
        }
        if self.log.iter().any(|e| e.seq() == Some(seq)) {
            return;
        }
        let own = self.nick == m.author;
        let (text, ts, edited, deleted) = (m.text, m.ts, m.edited, m.deleted);
        let kind = EntryKind::Message { seq, author: m.author, text, ts, own, edited, deleted };
        *next_key += 1;
        let entry = Entry { key: *next_key, kind, place: Placement::default() };
        self.fill_gaps(seq);
        if seq > self.last_seq {
            self.last_seq = seq;
            return self.push(entry);
        }
        let at = self.log.iter().position(|e| e.seq().is_some_and(|s| s > seq)).unwrap_or(self.log.len());
        self.log.insert(at, entry);
        self.place_from(at);
    }

    /// Gives message `target` its new text, or deletes it; under a new key, so the page renders
    /// it again. Applying the same change twice changes nothing more.
    fn apply_change(&mut self, target: u64, new_text: String, delete: bool) {
        let Some(at) = self.log.iter().position(|e| e.seq() == Some(target)) else { return };
        let EntryKind::Message { text, edited, deleted, .. } = &mut self.log[at].kind else { return };
        if *deleted || (*text == new_text && *edited && !delete) {
            return;
        }
        if delete {
            *deleted = true;
            text.clear();
        } else {
            *edited = true;
            *text = new_text;
        }
        self.rekeyed += 1;
        self.log[at].key = REKEYED + self.rekeyed;
    }

    /// Places the entries whose neighbours changed at `at`: from it up to the next message after
    /// it (placement depends only on the messages before an entry). A day label is written when
    /// its entry is placed, so "Today" stays as it is past midnight until the entry is placed
    /// again.
    fn place_from(&mut self, at: usize) {
        let today = (self.calendar.day_of)((self.calendar.now)());
        for i in at..self.log.len() {
            let place = layout::place_at(&self.log, i, self.calendar.day_of, today);
            if self.log[i].place != place {
                self.log[i].place = place;
                self.rekeyed += 1;
                self.log[i].key = REKEYED + self.rekeyed;
            }
            if i > at && self.log[i].seq().is_some() {
                break;
            }
        }
    }

    /// After a page of history that need not reach the messages after it (those around a
    /// search result): marks what may be missing between its newest message `last` and the next
    /// one the log holds.
    pub(crate) fn gap_after(&mut self, last: u64, key: u64) {
        let Some(at) = self.log.iter().position(|e| e.seq() == Some(last)) else { return };
        let Some(next) = self.log[at + 1..].iter().find_map(Entry::seq) else { return };
        // a gap already marked between them (the page before asked for this very window)
        let between = self.log[at + 1..].iter().take_while(|e| e.seq().is_none());
        let marked = between.into_iter().any(|e| matches!(e.kind, EntryKind::Gap { .. }));
        if next > last + 1 && !marked {
            let gap = Entry { key, kind: EntryKind::Gap { after: last, before: next }, place: Placement::default() };
            self.log.insert(at + 1, gap);
        }
    }

    /// `seq` arrived: any gap it falls in now ends at it; a gap with nothing left is removed.
    fn fill_gaps(&mut self, seq: u64) {
        for entry in &mut self.log {
            if let EntryKind::Gap { after, before } = &mut entry.kind
                && *after < seq
                && seq < *before
            {
                *before = seq;
            }
        }
        self.log.retain(|e| !matches!(e.kind, EntryKind::Gap { after, before } if before <= after + 1));
    }

    /// Appends a notice (or any entry) at the end of the log.
    pub(crate) fn note(&mut self, key: u64, kind: EntryKind) {
        self.push(Entry { key, kind, place: Placement::default() });
    }

    fn push(&mut self, entry: Entry) {
        self.log.push(entry);
        self.place_from(self.log.len() - 1);
        if self.log.len() > MAX_LOG {
            self.log.drain(..self.log.len() - MAX_LOG);
            // the new first message opens its day
            self.place_from(0);
        }
    }
}

/// "alice", "alice and bob", "alice, bob and carol", "alice, bob and 5 others".
fn name_list(names: &[String]) -> Option<String> {
    Some(match names {
        [] => return None,
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b} and {c}"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} others", rest.len()),
    })
}

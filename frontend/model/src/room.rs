//! One joined room: its members and its log, kept in sequence order with one copy per seq.

use crate::MAX_LOG;
use hubbub_shared::ChatMessage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
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
    /// Messages `after < seq < before` may be missing here (a resume found too large a gap).
    /// Loading pages shrinks `before`; the marker goes once nothing is missing.
    Gap {
        after: u64,
        before: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique within the page's lifetime: the key of the keyed list.
    pub key: u64,
    pub kind: EntryKind,
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
    /// Each person once, sorted as the hub sorts them.
    pub members: Vec<String>,
    /// The members shown as away.
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
}

impl Room {
    pub(crate) fn new(name: String, nick: String) -> Self {
        Room {
            name,
            nick,
            members: Vec::new(),
            away: Vec::new(),
            typing: Vec::new(),
            log: Vec::new(),
            last_seq: 0,
            refused: None,
            typing_told_at: None,
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
    pub(crate) fn add_message(&mut self, m: ChatMessage, next_key: &mut u64) {
        let seq = m.seq;
        if self.log.iter().any(|e| e.seq() == Some(seq)) {
            return;
        }
        let own = self.nick == m.author;
        let kind = EntryKind::Message { seq, author: m.author, text: m.text, ts: m.ts, own };
        *next_key += 1;
        let entry = Entry { key: *next_key, kind };
        self.fill_gaps(seq);
        if seq > self.last_seq {
            self.last_seq = seq;
            return self.push(entry);
        }
        let at = self.log.iter().position(|e| e.seq().is_some_and(|s| s > seq)).unwrap_or(self.log.len());
        self.log.insert(at, entry);
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
        self.push(Entry { key, kind });
    }

    fn push(&mut self, entry: Entry) {
        self.log.push(entry);
        if self.log.len() > MAX_LOG {
            self.log.drain(..self.log.len() - MAX_LOG);
        }
    }
}

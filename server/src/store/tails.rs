//! The newest page of busy rooms, in memory, for the embedded log: a join's history comes from
//! here instead of a read on the reader thread, so a storm of joins into one room costs no
//! hop to another thread each (and the `history` frame leaves with the `joined` one).
//!
//! Only the log's writer thread changes a tail, between its commits, so a tail is always what
//! the database holds: it fills one (reading on its own connection, which sees every commit)
//! when a read missed and asked for it, appends each new message it commits, and drops the
//! tail of a room where a message was changed (an edit or a deletion rewrites an older row;
//! the next read fills it again). Readers only copy. Bounded: 1,024 rooms, ~32 MiB.
//!
//! The SQLite log uses it because one process writes its file; PostgreSQL is shared by hubs,
//! whose commits this one never sees.

use super::Range;
use hubbub_shared::ChatMessage;
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
};

/// Rooms with a tail at most; past it a new tail replaces an arbitrary one.
const MAX_ROOMS: usize = 1024;
/// What the tails may weigh in all (see [`weight`]): 1,024 rooms of 50 of the longest texts would
/// be over 200 MB, so past this, arbitrary other rooms' tails go.
const MAX_BYTES: usize = 32 << 20;

/// About what a kept message costs in memory: its strings and the struct around them.
fn weight(m: &ChatMessage) -> usize {
    m.text.len() + m.author.len() + m.room.len() + m.id.as_ref().map_or(0, String::len) + 128
}

#[derive(Debug)]
pub(super) struct Tails {
    /// Messages a tail keeps: the first page a join gets (`--history-page`).
    len: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each room's newest `len` messages (all of them when it has fewer), oldest first.
    rooms: HashMap<String, Tail>,
    /// Rooms whose tail the writer was asked to fill (asked once, however many reads missed).
    wanted: HashSet<String>,
    /// The [`weight`] of every tail together.
    bytes: usize,
}

#[derive(Debug, Default)]
struct Tail {
    messages: VecDeque<ChatMessage>,
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, room: &str) {
        if let Some(tail) = self.rooms.remove(room) {
            self.bytes -= tail.bytes;
        }
    }

    /// Drops other rooms' tails (arbitrary ones) while there are too many or they weigh too
    /// much.
    fn make_room(&mut self, keep: &str) {
        while self.rooms.len() > MAX_ROOMS || self.bytes > MAX_BYTES {
            let Some(other) = self.rooms.keys().find(|r| r.as_str() != keep).cloned() else { break };
            self.remove(&other);
        }
    }
}

impl Tails {
    pub(super) fn new(len: usize) -> Self {
        Tails { len, inner: Mutex::default() }
    }

    /// Messages a tail keeps.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The page `range` asks for, when it is the newest `limit` ≤ `len` messages of a room
    /// whose tail is kept. `Err(true)`: not kept, and the caller should ask the writer to fill
    /// it (the first miss of a room); `Err(false)`: read the database.
    pub(super) fn page(&self, room: &str, range: Range) -> Result<Vec<ChatMessage>, bool> {
        if !range.newest || range.after != 0 || range.limit > self.len {
            return Err(false);
        }
        let mut inner = self.lock();
        match inner.rooms.get(room).map(|t| &t.messages) {
            Some(tail) if tail.back().is_none_or(|m| m.seq <= range.up_to) => {
                Ok(tail.iter().skip(tail.len().saturating_sub(range.limit)).cloned().collect())
            }
            Some(_) => Err(false),
            None => Err(inner.wanted.insert(room.to_owned())),
        }
    }

    /// Writer: `room`'s newest page as its database reads now (`None`: the read failed).
    pub(super) fn fill(&self, room: &str, newest: Option<Vec<ChatMessage>>) {
        let mut inner = self.lock();
        inner.wanted.remove(room);
        let Some(newest) = newest else { return };
        inner.remove(room);
        let bytes = newest.iter().map(weight).sum();
        inner.bytes += bytes;
        inner.rooms.insert(room.to_owned(), Tail { messages: newest.into(), bytes });
        inner.make_room(room);
    }

    /// Writer, after a commit: `message` was stored. A new message joins its room's tail (the
    /// next seq, always: seqs are gap-free); a change of an older one drops the tail.
    pub(super) fn stored(&self, message: &ChatMessage) {
        let mut inner = self.lock();
        let Some(tail) = inner.rooms.get_mut(&message.room) else { return };
        let follows = tail.messages.back().is_none_or(|last| last.seq + 1 == message.seq);
        if message.edits.is_some() || !follows {
            inner.remove(&message.room);
            return;
        }
        let added = weight(message);
        tail.messages.push_back(message.clone());
        let dropped = match tail.messages.len() > self.len {
            true => tail.messages.pop_front().map_or(0, |old| weight(&old)),
            false => 0,
        };
        tail.bytes = tail.bytes + added - dropped;
        inner.bytes = inner.bytes + added - dropped;
        inner.make_room(&message.room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64) -> ChatMessage {
        ChatMessage { room: "lobby".into(), seq, author: "ada".into(), text: format!("m{seq}"), ..Default::default() }
    }

    fn newest(limit: usize) -> Range {
        Range { after: 0, up_to: u64::MAX, limit, newest: true }
    }

    fn seqs(page: &[ChatMessage]) -> Vec<u64> {
        page.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_miss_asks_for_a_fill_once_and_new_messages_then_join_the_tail() {
        let tails = Tails::new(3);
        assert_eq!(tails.page("lobby", newest(3)), Err(true), "the first miss asks");
        assert_eq!(tails.page("lobby", newest(3)), Err(false), "later ones read the database meanwhile");
        tails.fill("lobby", Some(vec![message(1), message(2)]));
        assert_eq!(seqs(&tails.page("lobby", newest(3)).unwrap()), [1, 2]);
        for seq in 3..=5 {
            tails.stored(&message(seq));
        }
        assert_eq!(seqs(&tails.page("lobby", newest(3)).unwrap()), [3, 4, 5], "the newest three");
        assert_eq!(seqs(&tails.page("lobby", newest(2)).unwrap()), [4, 5]);
        assert_eq!(tails.page("lobby", newest(4)), Err(false), "more than a tail holds");
        let older = Range { after: 0, up_to: 4, limit: 3, newest: true };
        assert_eq!(tails.page("lobby", older), Err(false), "an older page is the database's");
    }

    #[test]
    fn tails_stay_within_their_weight() {
        let tails = Tails::new(50);
        let long = |room: &str, seq: u64| ChatMessage { room: room.into(), text: "x".repeat(4000), ..message(seq) };
        let rooms = MAX_BYTES / (50 * weight(&long("r0000", 1))) + 10;
        for r in 0..rooms {
            let room = format!("r{r:04}");
            tails.fill(&room, Some((1..=50).map(|seq| long(&room, seq)).collect()));
            tails.stored(&long(&room, 51));
        }
        let inner = tails.lock();
        let counted: usize = inner.rooms.values().flat_map(|t| &t.messages).map(weight).sum();
        assert_eq!(inner.bytes, counted, "the running total is the tails' weight");
        assert!(inner.bytes <= MAX_BYTES, "{} bytes kept", inner.bytes);
        assert!(inner.rooms.len() < rooms, "some rooms' tails went");
        assert!(inner.rooms.values().all(|t| t.messages.len() == 50));
    }

    #[test]
    fn a_change_or_a_gap_drops_the_tail_and_a_failed_fill_may_be_asked_again() {
        let tails = Tails::new(3);
        tails.fill("lobby", Some(vec![message(1)]));
        tails.stored(&ChatMessage { edits: Some(1), ..message(2) });
        assert_eq!(tails.page("lobby", newest(3)), Err(true), "an edit rewrote message 1: read again");
        tails.fill("lobby", Some(vec![message(1), message(2)]));
        tails.stored(&message(7));
        assert_eq!(tails.page("lobby", newest(3)), Err(true), "a gap: never guess");
        tails.fill("lobby", None);
        assert_eq!(tails.page("lobby", newest(3)), Err(true), "the failed fill is asked for again");
    }
}

//! Resume cursors: where a client's copy of a room ends, as `EPOCH:ROOM:SEQ` (the hub's
//! database epoch from `welcome`, the canonical room name, the last sequence number seen).
//! Room names never contain `:`, so the format is unambiguous.

/// A parsed cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub epoch: String,
    pub room: String,
    pub seq: u64,
}

impl Cursor {
    pub fn new(epoch: &str, room: &str, seq: u64) -> Self {
        Cursor { epoch: epoch.to_owned(), room: room.to_owned(), seq }
    }

    /// `None` for anything that is not `EPOCH:ROOM:SEQ` with a decimal `SEQ`.
    pub fn parse(text: &str) -> Option<Cursor> {
        let mut parts = text.splitn(3, ':');
        let (epoch, room, seq) = (parts.next()?, parts.next()?, parts.next()?);
        if epoch.is_empty() || room.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cursor { epoch: epoch.to_owned(), room: room.to_owned(), seq: seq.parse().ok()? })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.epoch, self.room, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let c = Cursor::new("ab12", "lobby", 42);
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for junk in [
            "",
            "ab12",
            "ab12:lobby",
            "ab12:lobby:-1",
            "ab12:lobby:1 OR 1=1",
            ":lobby:3",
            "e::3",
            "e:lobby:99999999999999999999999",
        ] {
            assert_eq!(Cursor::parse(junk), None, "{junk:?}");
        }
    }
}

//! The measurement token every sent text carries: `#<sender>.<seq>.<send-time-ns>`, padded to
//! the text length. Receivers scan whole frames for it, so one tool measures Hubbub's JSON
//! (one message or an array of them), gorilla's newline-joined batches and the axum
//! baseline's `name: text` lines alike.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch: comparable across the generator's processes.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Words a padded text is made of, taken from a different place for every message: a long
/// text then compresses about as much as people's chat does (a run of one letter would
/// flatter permessage-deflate).
const PADDING: &str = "so I was thinking we could meet at the station around six, unless the \
    train is late again, in which case grab a coffee and I will call you when I get there; \
    did anyone see the match last night? the second half was something else, honestly the \
    best game of the season, and the weather was perfect for it too. ";

/// A chat text of `len` bytes (at least the token's own length) carrying the token.
pub(crate) fn text(sender: u32, seq: u64, sent_ns: u64, len: usize) -> String {
    let mut text = format!("#{sender}.{seq}.{sent_ns} ");
    let mut at = (sender as usize * 7 + seq as usize * 13) % PADDING.len();
    while text.len() < len {
        let take = (len - text.len()).min(PADDING.len() - at);
        text.push_str(&PADDING[at..at + take]);
        at = (at + take) % PADDING.len();
    }
    text
}

/// One token found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) sender: u32,
    pub(crate) seq: u64,
    pub(crate) sent_ns: u64,
}

/// Calls `found` for every well-formed token in `frame`; anything else is skipped.
pub(crate) fn scan(frame: &str, mut found: impl FnMut(Token)) {
    let bytes = frame.as_bytes();
    let mut at = 0;
    while let Some(offset) = memchr::memchr(b'#', &bytes[at..]) {
        let start = at + offset + 1;
        let (fields, end) = numbers::<3>(&bytes[start..]);
        at = start + end;
        if let Some([sender, seq, sent_ns]) = fields
            && let Ok(sender) = u32::try_from(sender)
        {
            found(Token { sender, seq, sent_ns });
        }
    }
}

/// Reads `N` dot-separated decimal numbers; returns them and how many bytes were read.
fn numbers<const N: usize>(bytes: &[u8]) -> (Option<[u64; N]>, usize) {
    let mut out = [0u64; N];
    let mut i = 0;
    for (n, slot) in out.iter_mut().enumerate() {
        if n > 0 {
            if bytes.get(i) != Some(&b'.') {
                return (None, i);
            }
            i += 1;
        }
        let digits_start = i;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            *slot = slot.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        if i == digits_start {
            return (None, i);
        }
    }
    (Some(out), i)
}

/// What kinds of protocol messages besides chat messages a frame holds (Hubbub's `"type"`s);
/// one pass over the frame, however many messages it holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kinds {
    pub(crate) error: bool,
    pub(crate) lagged: bool,
    /// `presence`, or `members` (a big room's wave comes as a fresh first page).
    pub(crate) presence: bool,
}

pub(crate) fn kinds(frame: &str) -> Kinds {
    static TYPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(br#""type":""#));
    let bytes = frame.as_bytes();
    let mut kinds = Kinds::default();
    for at in TYPE.find_iter(bytes) {
        let rest = &bytes[at + 8..];
        kinds.error |= rest.starts_with(b"error\"");
        kinds.lagged |= rest.starts_with(b"lagged\"");
        kinds.presence |= rest.starts_with(b"presence\"") || rest.starts_with(b"members\"");
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(frame: &str) -> Vec<Token> {
        let mut v = Vec::new();
        scan(frame, |t| v.push(t));
        v
    }

    #[test]
    fn a_token_survives_every_peer_framing() {
        let t = text(7, 42, 1_763_000_000_123_456_789, 64);
        assert_eq!(t.len(), 64);
        let want = Token { sender: 7, seq: 42, sent_ns: 1_763_000_000_123_456_789 };
        let hubbub = format!(r#"{{"type":"message","room":"r","author":"b7","seq":3,"ts":1,"text":"{t}"}}"#);
        assert_eq!(all(&hubbub), vec![want]);
        let batch = format!("[{hubbub},{hubbub}]");
        assert_eq!(all(&batch), vec![want, want]);
        let gorilla = format!("{t}\n{}", text(8, 1, 5, 64));
        assert_eq!(all(&gorilla), vec![want, Token { sender: 8, seq: 1, sent_ns: 5 }]);
        assert_eq!(all(&format!("b7: {t}")), vec![want]);
    }

    #[test]
    fn a_frame_says_which_notices_it_holds() {
        let message = r#"{"type":"message","room":"r","text":"\"type\":\"error\""}"#;
        assert_eq!(kinds(message), Kinds::default(), "a text that quotes a type is not one");
        let frame =
            format!(r#"[{message},{{"type":"lagged","room":"r","from_seq":2}},{{"type":"members","room":"r"}}]"#);
        assert_eq!(kinds(&frame), Kinds { error: false, lagged: true, presence: true });
        assert!(kinds(r#"{"type":"error","code":"x"}"#).error);
        assert!(kinds(r#"{"type":"presence","room":"r"}"#).presence);
    }

    #[test]
    fn malformed_tokens_are_skipped() {
        assert!(all("#1.2 #.1.2 # #1..2 #a.b.c ##").is_empty());
        assert_eq!(all("#x #1.2.3"), vec![Token { sender: 1, seq: 2, sent_ns: 3 }]);
    }
}

//! Validated names and text ("parse, don't validate"): a `Nick`, `RoomName` or `ChatText` can
//! only be made by `parse`, so holding one proves the rules were checked. The page runs the same
//! functions before sending, so a person sees the same refusal the hub would give.

use crate::protocol::ErrorCode;
use std::fmt;

/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 32;
/// Longest chat text, in characters (the hub may be configured lower, never higher).
pub const MAX_TEXT_CHARS: usize = 1000;

/// A refusal: the wire code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    pub code: ErrorCode,
    pub reason: String,
}

impl Invalid {
    fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// Characters that are invisible or reorder text: they let one name look like another.
/// Covers bidi embeddings/overrides/isolates and marks, zero-width characters, invisible
/// operators, the BOM, Hangul fillers, interlinear annotations and tag characters.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// A nickname: trimmed, 1–32 characters, no control, bidi-override or zero-width characters.
/// Two nicknames clash when their [`Nick::key`]s are equal (case is ignored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nick(String);

impl Nick {
    pub fn parse(raw: &str) -> Result<Nick, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new(ErrorCode::NickEmpty, "Choose a nickname."));
        }
        if s.chars().count() > MAX_NICK_CHARS {
            return Err(Invalid::new(
                ErrorCode::NickTooLong,
                format!("A nickname has at most {MAX_NICK_CHARS} characters."),
            ));
        }
        if let Some(c) = s.chars().find(|&c| c.is_control() || is_invisible_or_bidi(c)) {
            return Err(Invalid::new(
                ErrorCode::NickForbiddenChar,
                format!("A nickname cannot contain the invisible or control character U+{:04X}.", c as u32),
            ));
        }
        Ok(Nick(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form compared for uniqueness within a room: `Alice` and `alice` clash.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room name: trimmed and lowercased (so `Lobby` and `lobby` are one room), 1–32 characters,
/// each a letter, a digit, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<RoomName, Invalid> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(Invalid::new(ErrorCode::RoomEmpty, "Choose a room."));
        }
        if s.chars().count() > MAX_ROOM_CHARS {
            return Err(Invalid::new(
                ErrorCode::RoomTooLong,
                format!("A room name has at most {MAX_ROOM_CHARS} characters."),
            ));
        }
        // a direct conversation's name: `@` is in no room name, so no room can pose as one
        if let Some(hex) = s.strip_prefix('@')
            && hex.len() == CONVERSATION_HEX_DIGITS
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(RoomName(s.to_ascii_lowercase()));
        }
        if s.chars().any(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
            return Err(Invalid::new(
                ErrorCode::RoomForbiddenChar,
                "A room name has only letters, digits, '-', '_' and '.'.",
            ));
        }
        Ok(RoomName(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of a direct conversation: `@` and the first [`CONVERSATION_HEX_DIGITS`] of
    /// `hex` (the hub makes it from a digest of the two people).
    pub fn conversation(hex: &str) -> RoomName {
        RoomName(format!("@{}", &hex[..CONVERSATION_HEX_DIGITS.min(hex.len())]).to_ascii_lowercase())
    }

    /// Whether this names a direct conversation rather than a room.
    pub fn is_conversation(&self) -> bool {
        self.0.starts_with('@')
    }
}

/// Hex digits in a direct conversation's name (after its `@`).
pub const CONVERSATION_HEX_DIGITS: usize = 24;

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Chat text: not blank, at most `max_chars` characters, no control characters but newline and
/// tab. Kept exactly as typed otherwise (no trimming: spacing can matter in a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatText(String);

impl ChatText {
    /// `max_chars` is the hub's configured limit, at most [`MAX_TEXT_CHARS`].
    pub fn parse(raw: &str, max_chars: usize) -> Result<ChatText, Invalid> {
        if raw.trim().is_empty() {
            return Err(Invalid::new(ErrorCode::TextEmpty, "A message cannot be empty."));
        }
        let max = max_chars.min(MAX_TEXT_CHARS);
        if raw.chars().count() > max {
            return Err(Invalid::new(ErrorCode::TextTooLong, format!("A message has at most {max} characters.")));
        }
        if raw.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(Invalid::new(ErrorCode::TextForbiddenChar, "A message cannot contain control characters."));
        }
        Ok(ChatText(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nick_code(s: &str) -> Option<ErrorCode> {
        Nick::parse(s).err().map(|e| e.code)
    }

    #[test]
    fn nicknames_are_trimmed_and_keep_their_case() {
        let n = Nick::parse("  Ada Lovelace \t").unwrap();
        assert_eq!(n.as_str(), "Ada Lovelace");
        assert_eq!(n.key(), "ada lovelace");
    }

    #[test]
    fn nickname_length_counts_characters_not_bytes() {
        assert!(Nick::parse(&"é".repeat(32)).is_ok());
        assert_eq!(nick_code(&"é".repeat(33)), Some(ErrorCode::NickTooLong));
        assert_eq!(nick_code("   "), Some(ErrorCode::NickEmpty));
        assert_eq!(nick_code(""), Some(ErrorCode::NickEmpty));
    }

    #[test]
    fn nicknames_with_invisible_or_reordering_characters_are_refused() {
        for bad in ["ali\u{202E}ecb", "a\u{200B}lice", "bell\u{0007}", "a\u{2066}b", "x\u{FEFF}", "a\nb"] {
            assert_eq!(nick_code(bad), Some(ErrorCode::NickForbiddenChar), "{bad:?}");
        }
        // ordinary non-Latin names and emoji are fine
        for good in ["Zoë", "李雷", "Åsa-Marie", "dev_42", "❤️"] {
            assert!(Nick::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn room_names_are_lowercased_and_restricted() {
        assert_eq!(RoomName::parse(" Lobby ").unwrap().as_str(), "lobby");
        assert_eq!(RoomName::parse("rust-lang.dev_2").unwrap().as_str(), "rust-lang.dev_2");
        assert_eq!(RoomName::parse("").unwrap_err().code, ErrorCode::RoomEmpty);
        assert_eq!(RoomName::parse("a b").unwrap_err().code, ErrorCode::RoomForbiddenChar);
        assert_eq!(RoomName::parse("'; DROP TABLE x;--").unwrap_err().code, ErrorCode::RoomForbiddenChar);
        assert_eq!(RoomName::parse(&"r".repeat(33)).unwrap_err().code, ErrorCode::RoomTooLong);
        // a conversation's name is `@` and exactly 24 hex digits; nothing else has an `@`
        let dm = RoomName::parse("@0123456789ABCDEF01234567").unwrap();
        assert!(dm.is_conversation() && dm.as_str() == "@0123456789abcdef01234567");
        assert_eq!(RoomName::conversation("0123456789abcdef0123456789"), dm);
        assert!(!RoomName::parse("lobby").unwrap().is_conversation());
        for fake in ["@0123456789abcdef0123456", "@0123456789abcdef012345678", "@0123456789abcdef0123456g", "@lobby"] {
            assert_eq!(RoomName::parse(fake).unwrap_err().code, ErrorCode::RoomForbiddenChar, "{fake}");
        }
    }

    #[test]
    fn chat_text_is_kept_verbatim_within_the_limit() {
        assert_eq!(ChatText::parse("  hi\n\tthere ", 1000).unwrap().as_str(), "  hi\n\tthere ");
        assert!(ChatText::parse(&"x".repeat(1000), 1000).is_ok());
        assert_eq!(ChatText::parse(&"x".repeat(1001), 1000).unwrap_err().code, ErrorCode::TextTooLong);
        assert_eq!(ChatText::parse("x".repeat(11).as_str(), 10).unwrap_err().code, ErrorCode::TextTooLong);
        assert_eq!(ChatText::parse(" \n ", 1000).unwrap_err().code, ErrorCode::TextEmpty);
        assert_eq!(ChatText::parse("a\u{0000}b", 1000).unwrap_err().code, ErrorCode::TextForbiddenChar);
        // markup is just text
        assert!(ChatText::parse("<img src=x onerror=alert(1)>", 1000).is_ok());
    }
}

//! What a search looks for, and where in a text it found it: one rule for the hub (which words
//! it indexes and asks its database for), the page and the CLI (which words they highlight), so
//! the words shown highlighted are exactly the ones that made a message a match.
//!
//! A word is a run of letters and digits (any script), compared in lower case. A query matches
//! a message when every one of its words begins a word of the message: `deplo` finds
//! "Deployed!", `rust 2024` needs both.

use std::ops::Range;

/// Most words one query may have; more are ignored (each is a prefix scan in the index).
pub const MAX_TERMS: usize = 8;
/// Longest word kept from a query, in characters (longer ones are cut to this prefix).
pub const MAX_TERM_CHARS: usize = 64;

/// The words of a text, in order, lower-cased (repeats kept).
fn words_of(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// The distinct words a query looks for, in the order given: at most [`MAX_TERMS`], each
/// at most [`MAX_TERM_CHARS`] characters. Empty when the query has no letters or digits.
pub fn terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in words_of(query) {
        let word: String = word.chars().take(MAX_TERM_CHARS).collect();
        if !terms.contains(&word) {
            terms.push(word);
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

/// The distinct words of a message as the hub indexes them, in first-seen order.
pub fn index_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for word in words_of(text) {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// Where `terms` match in `text`: the byte ranges of the words of `text` that begin with one
/// of them, in order. For highlighting: the text between them is shown as it is.
pub fn marks(text: &str, terms: &[String]) -> Vec<Range<usize>> {
    let mut marks = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain(std::iter::once((text.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                let word = text[from..at].to_lowercase();
                if terms.iter().any(|t| word.starts_with(t.as_str())) {
                    marks.push(from..at);
                }
                start = None;
            }
            _ => {}
        }
    }
    marks
}

/// `text` in order as pieces, each marked (`true`) when it is a word a term begins: what a
/// client shows, highlighting the marked pieces (as text).
pub fn highlight<'t>(text: &'t str, terms: &[String]) -> Vec<(&'t str, bool)> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for mark in marks(text, terms) {
        pieces.push((&text[from..mark.start], false));
        pieces.push((&text[mark.clone()], true));
        from = mark.end;
    }
    pieces.push((&text[from..], false));
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_its_distinct_lower_case_words() {
        assert_eq!(terms("  Rust, rust & WASM-32!"), ["rust", "wasm", "32"]);
        assert_eq!(terms("Größe café"), ["größe", "café"]);
        assert!(terms(" -- !? ").is_empty());
        let many: String = (0..20).map(|i| format!("w{i} ")).collect();
        assert_eq!(terms(&many).len(), MAX_TERMS);
        assert_eq!(terms(&"x".repeat(500))[0].chars().count(), MAX_TERM_CHARS);
    }

    #[test]
    fn a_message_is_indexed_by_its_distinct_words() {
        assert_eq!(
            index_words("Ship it, ship IT now: https://x.test/a_b"),
            ["ship", "it", "now", "https", "x", "test", "a", "b"]
        );
    }

    #[test]
    fn marks_are_the_words_a_term_begins() {
        let text = "Deployed the café; redeploy at 10:30, DEPLOY!";
        let terms = terms("deplo caf");
        let marked: Vec<&str> = marks(text, &terms).into_iter().map(|r| &text[r]).collect();
        assert_eq!(marked, ["Deployed", "café", "DEPLOY"], "a term marks words it begins, not words it is inside");
        assert!(marks("nothing here", &terms).is_empty());
        assert_eq!(
            highlight("Deployed the café", &terms),
            [("", false), ("Deployed", true), (" the ", false), ("café", true), ("", false)],
            "the pieces put back together are the text"
        );
        assert_eq!(marks("ünïcode", &["ünï".to_owned()]).len(), 1, "one word");
        assert_eq!(marks("ünïcode", &["ünï".to_owned()])[0], 0.."ünïcode".len());
    }
}

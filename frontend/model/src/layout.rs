//! How a room's log is laid out for reading, as chat apps do it: messages of one author within
//! five minutes under one name and time, a separator where the day changes (Today, Yesterday,
//! then dates), the full date and time for each message, and `http(s)` links found in text.
//! The page supplies the local calendar (the browser's clock and time zone); everything else is
//! here, so it is tested without a browser.

use crate::room::{Entry, EntryKind};

/// Messages of one author closer together than this share one header.
pub const GROUP_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A calendar day on the person's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub year: i32,
    /// 1–12
    pub month: u32,
    /// 1–31
    pub day: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

impl Day {
    /// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`), to tell "yesterday" across
    /// month and year ends.
    fn number(self) -> i64 {
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month = i64::from(self.month);
        let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn weekday(self) -> &'static str {
        // 1970-01-01 was a Thursday
        WEEKDAYS[(self.number() + 3).rem_euclid(7) as usize]
    }

    /// "Wednesday, 2 December 2026".
    pub fn long(self) -> String {
        let month = MONTHS.get(self.month.wrapping_sub(1) as usize).copied().unwrap_or("?");
        format!("{}, {} {month} {}", self.weekday(), self.day, self.year)
    }

    /// The separator's text: "Today", "Yesterday", else the date (without the year when it is
    /// this year's).
    pub fn label(self, today: Day) -> String {
        match today.number() - self.number() {
            0 => "Today".to_owned(),
            1 => "Yesterday".to_owned(),
            _ if self.year == today.year => {
                let long = self.long();
                long.strip_suffix(&format!(" {}", self.year)).map(str::to_owned).unwrap_or(long)
            }
            _ => self.long(),
        }
    }
}

/// The person's calendar: which day a time falls on, and what time it is. The page gives the
/// browser's clock and time zone; the default is UTC with the clock at the epoch (tests).
#[derive(Clone, Copy)]
pub struct Calendar {
    /// The local day of a time (ms since the Unix epoch).
    pub day_of: fn(u64) -> Day,
    /// Now, in ms since the Unix epoch.
    pub now: fn() -> u64,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar { day_of: utc_day, now: || 0 }
    }
}

// A calendar is the page's setting, not its state: models compare equal whatever theirs is.
impl PartialEq for Calendar {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Calendar {}
impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Calendar")
    }
}

/// The UTC day of a time (Howard Hinnant's `civil_from_days`, the inverse of [`Day::number`]).
pub fn utc_day(ts: u64) -> Day {
    let z = (ts / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Day { year: (year_of_era + era * 400 + i64::from(month <= 2)) as i32, month, day }
}

/// Where one log entry sits among its neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Placement {
    /// The same author's message just before, within [`GROUP_WINDOW_MS`] on the same day: no
    /// name and time of its own.
    pub continued: bool,
    /// A day separator before this entry, with its text.
    pub day: Option<String>,
}

/// The placement of each entry of `log`, in order.
pub fn place(log: &[Entry], calendar: Calendar) -> Vec<Placement> {
    let today = (calendar.day_of)((calendar.now)());
    (0..log.len()).map(|i| place_at(log, i, calendar.day_of, today)).collect()
}

/// The placement of `log[i]`: a separator when its day is not that of the message before it
/// (or it is the first), grouped when the entry just before is the same author's message
/// within [`GROUP_WINDOW_MS`] on the same day.
pub(crate) fn place_at(log: &[Entry], i: usize, day_of: fn(u64) -> Day, today: Day) -> Placement {
    let message = |entry: &Entry| match &entry.kind {
        EntryKind::Message { author, ts, .. } => Some((author.clone(), *ts)),
        _ => None,
    };
    let Some((author, ts)) = message(&log[i]) else { return Placement::default() };
    let day = day_of(ts);
    let before = log[..i].iter().rev().find_map(message);
    if before.as_ref().is_none_or(|(_, at)| day_of(*at) != day) {
        return Placement { continued: false, day: Some(day.label(today)) };
    }
    let continued =
        i > 0 && message(&log[i - 1]).is_some_and(|(by, at)| by == author && ts >= at && ts - at < GROUP_WINDOW_MS);
    Placement { continued, day: None }
}

/// A piece of a message's text: shown as text, or as a link to the address it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Link(String),
}

/// Splits text into plain parts and `http://` / `https://` addresses. An address runs to the
/// next space (or `<`, `>`, `"`); punctuation that ends a sentence after it is not part of it,
/// nor is a closing bracket it did not open. Nothing else (`javascript:`, `data:`, bare
/// domains) ever becomes a link.
pub fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut plain_from = 0;
    let mut at = 0;
    while let Some(found) = find_scheme(text, at) {
        let end = address_end(text, found);
        let scheme_len = if text.as_bytes()[found + 4].eq_ignore_ascii_case(&b's') { 8 } else { 7 };
        if end > found + scheme_len {
            if found > plain_from {
                out.push(Segment::Text(text[plain_from..found].to_owned()));
            }
            out.push(Segment::Link(text[found..end].to_owned()));
            plain_from = end;
        }
        at = end.max(found + scheme_len);
    }
    if plain_from < text.len() {
        out.push(Segment::Text(text[plain_from..].to_owned()));
    }
    out
}

/// The next `http://` or `https://` (any case) at or after `from` that starts a word.
fn find_scheme(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (from..bytes.len()).find(|&i| {
        let rest = &bytes[i..];
        let scheme = rest.len() >= 7 && rest[..7].eq_ignore_ascii_case(b"http://")
            || rest.len() >= 8 && rest[..8].eq_ignore_ascii_case(b"https://");
        scheme && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
    })
}

fn address_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    let mut end = start + rest.find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"')).unwrap_or(rest.len());
    loop {
        let address = &text[start..end];
        let Some(last) = address.chars().last() else { return end };
        let unopened = |open: char| address.matches(open).count() < address.matches(last).count();
        let trim = match last {
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' => true,
            ')' => unopened('('),
            ']' => unopened('['),
            _ => false,
        };
        if !trim {
            return end;
        }
        end -= last.len_utf8();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;
    const DAY_MS: u64 = 24 * 60 * MINUTE;

    fn message(key: u64, author: &str, ts: u64) -> Entry {
        Entry {
            key,
            kind: EntryKind::Message {
                seq: key,
                author: author.into(),
                text: String::new(),
                ts,
                own: false,
                edited: false,
                deleted: false,
            },
            place: Placement::default(),
        }
    }

    const TODAY: Day = Day { year: 2026, month: 12, day: 2 };
    const NOON_TODAY: u64 = 1_796_212_800_000; // 2026-12-02T12:00:00Z

    #[test]
    fn days_are_named_as_people_say_them() {
        assert_eq!(utc_day(NOON_TODAY), TODAY);
        assert_eq!(TODAY.long(), "Wednesday, 2 December 2026");
        assert_eq!(TODAY.label(TODAY), "Today");
        assert_eq!(Day { year: 2026, month: 12, day: 1 }.label(TODAY), "Yesterday");
        assert_eq!(Day { year: 2026, month: 11, day: 30 }.label(TODAY), "Monday, 30 November");
        // across a year's end and a leap day
        let new_year = Day { year: 2027, month: 1, day: 1 };
        assert_eq!(Day { year: 2026, month: 12, day: 31 }.label(new_year), "Yesterday");
        assert_eq!(Day { year: 2024, month: 2, day: 29 }.label(TODAY), "Thursday, 29 February 2024");
        assert_eq!(Day { year: 2024, month: 3, day: 1 }.label(Day { year: 2024, month: 3, day: 2 }), "Yesterday");
        assert_eq!(Day { year: 1970, month: 1, day: 1 }.long(), "Thursday, 1 January 1970");
    }

    #[test]
    fn one_authors_messages_within_five_minutes_share_a_header_and_days_are_separated() {
        let yesterday = NOON_TODAY - DAY_MS;
        let log = vec![
            message(1, "alice", yesterday),
            message(2, "alice", NOON_TODAY),
            message(3, "alice", NOON_TODAY + MINUTE),
            message(4, "alice", NOON_TODAY + MINUTE + GROUP_WINDOW_MS - 1),
            message(5, "bob", NOON_TODAY + 7 * MINUTE),
            message(6, "alice", NOON_TODAY + 8 * MINUTE),
            Entry { key: 7, kind: EntryKind::Notice("carol joined.".into()), place: Placement::default() },
            message(8, "alice", NOON_TODAY + 9 * MINUTE),
            message(9, "alice", NOON_TODAY + 20 * MINUTE),
        ];
        let placed = place(&log, Calendar { day_of: utc_day, now: || NOON_TODAY });
        let continued: Vec<bool> = placed.iter().map(|p| p.continued).collect();
        assert_eq!(continued, [false, false, true, true, false, false, false, false, false]);
        let days: Vec<Option<&str>> = placed.iter().map(|p| p.day.as_deref()).collect();
        assert_eq!(days, [Some("Yesterday"), Some("Today"), None, None, None, None, None, None, None]);
    }

    #[test]
    fn only_http_and_https_addresses_become_links_without_the_sentence_around_them() {
        let link = |s: &str| Segment::Link(s.into());
        let text = |s: &str| Segment::Text(s.into());
        assert_eq!(segments("no links here"), [text("no links here")]);
        assert_eq!(
            segments("see https://example.org/a?b=1#c, then (http://x.test/wiki/A_(b)) or HTTPS://Y.test."),
            [
                text("see "),
                link("https://example.org/a?b=1#c"),
                text(", then ("),
                link("http://x.test/wiki/A_(b)"),
                text(") or "),
                link("HTTPS://Y.test"),
                text("."),
            ]
        );
        for plain in [
            "javascript:alert(1)",
            "data:text/html,<b>x</b>",
            "example.org",
            "xhttps://example.org",
            "https:// nothing",
            "ftp://files.test",
            "HTTPS:// nothing either",
        ] {
            assert!(segments(plain).iter().all(|s| matches!(s, Segment::Text(_))), "{plain}");
            let joined: String = segments(plain)
                .into_iter()
                .map(|s| match s {
                    Segment::Text(t) | Segment::Link(t) => t,
                })
                .collect();
            assert_eq!(joined, plain, "nothing lost");
        }
        assert_eq!(segments("<https://a.test>"), [text("<"), link("https://a.test"), text(">")]);
        assert_eq!(segments("ünï https://ä.test/ü ok"), [text("ünï "), link("https://ä.test/ü"), text(" ok")]);
    }
}

//! Turns frames into lines for people.

use crate::Mode;
use hubbub_shared::{ServerMsg, decode_server_items};
use std::collections::{HashMap, HashSet};

/// Turns frames into lines, remembering who is in each room: a `presence` frame may name someone
/// the `joined` list already showed (they arrived within the same tick), and that is not news.
#[derive(Debug, Default)]
pub(crate) struct Renderer {
    /// This terminal's nickname: the room hearing of our own arrival is not news to us either.
    me: Option<String>,
    /// Per room, the (lower-cased) names already shown as present.
    known: HashMap<String, HashSet<String>>,
}

impl Renderer {
    pub(crate) fn new(me: Option<&str>) -> Renderer {
        Renderer { me: me.map(str::to_lowercase), known: HashMap::new() }
    }

    /// One readable line for a text frame, or `None` for frames not worth a line.
    pub(crate) fn readable(&mut self, mode: Mode, text: &str) -> Option<String> {
        match mode {
            Mode::Echo => Some(text.to_owned()),
            Mode::Add => {
                let reply: serde_json::Value = serde_json::from_str(text).ok()?;
                Some(match (&reply["Sum"], &reply["Error"]) {
                    (sum, _) if sum.is_i64() => sum.to_string(),
                    (_, serde_json::Value::String(error)) => {
                        format!("error {}: {error}", reply["Code"].as_str().unwrap_or("error"))
                    }
                    _ => text.to_owned(),
                })
            }
            // items of types this CLI does not know (a newer hub's) are skipped
            Mode::Chat => match decode_server_items(text) {
                Ok(items) => {
                    let lines: Vec<String> =
                        items.into_iter().flatten().filter_map(|msg| self.chat_line(msg)).collect();
                    (!lines.is_empty()).then(|| lines.join("\n"))
                }
                Err(_) => Some(text.to_owned()),
            },
        }
    }

    fn chat_line(&mut self, msg: ServerMsg) -> Option<String> {
        Some(match msg {
            ServerMsg::Welcome { .. } => return None,
            ServerMsg::Authed { name, .. } => format!("* signed in as {name}"),
            ServerMsg::Joined { room, nick, members, count, .. } => {
                let line = format!("* joined #{room} as {nick}; here: {}", name_list(&members, count));
                self.known.insert(room, members.iter().map(|n| n.to_lowercase()).collect());
                line
            }
            ServerMsg::Left { room, .. } => {
                self.known.remove(&room);
                format!("* left #{room}")
            }
            ServerMsg::Presence { room, joined, left, away, back, .. } => {
                let known = self.known.entry(room.clone()).or_default();
                let me = self.me.as_deref();
                let joined: Vec<String> = joined
                    .into_iter()
                    .filter(|n| me != Some(n.to_lowercase().as_str()) && known.insert(n.to_lowercase()))
                    .collect();
                for name in &left {
                    known.remove(&name.to_lowercase());
                }
                let lines: Vec<String> =
                    [(joined, "joined"), (left, "left"), (away, "is away in"), (back, "is back in")]
                        .into_iter()
                        .filter(|(names, _)| !names.is_empty())
                        .map(|(names, what)| format!("* {} {what} #{room}", name_list(&names, names.len() as u64)))
                        .collect();
                if lines.is_empty() {
                    return None;
                }
                lines.join("\n")
            }
            // a page of names asked for by a client that shows a member panel; not this one
            ServerMsg::Members { .. } => return None,
            // a terminal has no room to show who is typing without getting in the way
            ServerMsg::Typing { .. } => return None,
            ServerMsg::Message(m) => message_line(&m),
            ServerMsg::History { messages, .. } if messages.is_empty() => return None,
            ServerMsg::History { messages, .. } => messages.iter().map(message_line).collect::<Vec<_>>().join("\n"),
            ServerMsg::Ack { .. } => return None,
            ServerMsg::Lagged { room, from_seq } => {
                format!("* this terminal fell behind in #{room}: messages from #{from_seq} on were skipped")
            }
            ServerMsg::Sum { sum, .. } => sum.to_string(),
            ServerMsg::Rooms { rooms, .. } if rooms.is_empty() => "* nobody is in any room".to_owned(),
            ServerMsg::Rooms { rooms, .. } => {
                rooms.iter().map(|r| format!("* #{} ({})", r.room, r.count)).collect::<Vec<_>>().join("\n")
            }
            ServerMsg::Found { terms, messages, .. } => {
                let mut lines = vec![format!("* {} found for {}:", messages.len(), terms.join(" "))];
                lines.extend(messages.iter().map(|m| {
                    let pieces = hubbub_shared::search::highlight(&m.text, &terms);
                    let text = pieces.iter().map(|&(p, marked)| if marked { format!("*{p}*") } else { p.to_owned() });
                    message_line(&hubbub_shared::ChatMessage { text: text.collect(), ..m.clone() })
                }));
                lines.join("\n")
            }
            // a terminal joins without an identity: no conversations, no read positions
            ServerMsg::Conversations { .. } | ServerMsg::Read { .. } => return None,
            ServerMsg::Error { code, message, .. } => format!("! {}: {message}", code.as_str()),
        })
    }
}

/// Names for a line: all of a few, or the first ones and how many more.
/// A message, or a change to one: a terminal cannot rewrite a line it printed, so a change is
/// a line of its own that says which message it changed.
fn message_line(m: &hubbub_shared::ChatMessage) -> String {
    match (m.edits, m.deleted) {
        (Some(target), true) => format!("[#{}] * {} deleted message #{target}", m.room, m.author),
        (Some(target), false) => format!("[#{}] * {} edited message #{target}: {}", m.room, m.author, m.text),
        (None, true) => format!("[#{}] <{}> (message deleted)", m.room, m.author),
        (None, false) if m.edited => format!("[#{}] <{}> {} (edited)", m.room, m.author, m.text),
        (None, false) => format!("[#{}] <{}> {}", m.room, m.author, m.text),
    }
}

fn name_list(names: &[String], total: u64) -> String {
    const SHOWN: usize = 5;
    let shown = names.len().min(SHOWN);
    let list = names[..shown].join(", ");
    match total.saturating_sub(shown as u64) {
        0 => list,
        more => format!("{list} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_type_from_a_newer_hub_is_skipped_and_the_rest_of_the_frame_is_shown() {
        let frame = r#"[{"type":"member_joined","room":"lobby","nick":"bob"},{"type":"typing","room":"lobby","nicks":["bob"]},{"type":"message","room":"lobby","seq":8,"author":"bob","text":"hi","ts":1}]"#;
        assert_eq!(Renderer::new(Some("ada")).readable(Mode::Chat, frame).as_deref(), Some("[#lobby] <bob> hi"));
    }

    #[test]
    fn a_presence_frame_is_a_line_per_change_without_our_own_arrival() {
        let mut renderer = Renderer::new(Some("ada"));
        let joined = r#"{"type":"joined","room":"lobby","nick":"ada","members":["ada","Bob"],"count":2}"#;
        assert_eq!(renderer.readable(Mode::Chat, joined).as_deref(), Some("* joined #lobby as ada; here: ada, Bob"));
        let frame = r#"{"type":"presence","room":"lobby","count":9,"joined":["Ada","bob","c","d","e","f","g","h"],"left":["zed"],"away":["x"]}"#;
        assert_eq!(
            renderer.readable(Mode::Chat, frame).as_deref(),
            Some("* c, d, e, f, g and 1 more joined #lobby\n* zed left #lobby\n* x is away in #lobby"),
            "ada and bob were here already"
        );
        let again = r#"{"type":"presence","room":"lobby","count":9,"joined":["c"]}"#;
        assert_eq!(renderer.readable(Mode::Chat, again), None);
    }

    #[test]
    fn edits_and_deletions_are_lines_that_name_the_message_they_changed() {
        let mut renderer = Renderer::new(Some("ada"));
        let edit =
            r#"{"type":"message","room":"lobby","seq":9,"author":"bob","text":"hello","ts":1,"edits":8,"edited":true}"#;
        assert_eq!(renderer.readable(Mode::Chat, edit).as_deref(), Some("[#lobby] * bob edited message #8: hello"));
        let gone =
            r#"{"type":"message","room":"lobby","seq":10,"author":"bob","text":"","ts":1,"edits":8,"deleted":true}"#;
        assert_eq!(renderer.readable(Mode::Chat, gone).as_deref(), Some("[#lobby] * bob deleted message #8"));
        let history = r#"{"type":"history","room":"lobby","messages":[{"room":"lobby","seq":7,"author":"bob","text":"hi","ts":1,"edited":true},{"room":"lobby","seq":8,"author":"bob","text":"","ts":1,"deleted":true}],"recovered":false,"more":false}"#;
        assert_eq!(
            renderer.readable(Mode::Chat, history).as_deref(),
            Some("[#lobby] <bob> hi (edited)\n[#lobby] <bob> (message deleted)")
        );
    }

    #[test]
    fn search_results_are_lines_with_the_matches_marked() {
        let mut renderer = Renderer::new(None);
        let found = r#"{"type":"found","terms":["deplo"],"messages":[{"room":"lobby","seq":4,"author":"bob","text":"Deployed, redeploy later","ts":1}]}"#;
        assert_eq!(
            renderer.readable(Mode::Chat, found).as_deref(),
            Some("* 1 found for deplo:\n[#lobby] <bob> *Deployed*, redeploy later")
        );
    }

    #[test]
    fn the_list_of_rooms_is_a_line_per_room() {
        let mut renderer = Renderer::new(None);
        let rooms = r#"{"type":"rooms","rooms":[{"room":"lobby","count":3},{"room":"rust","count":1}]}"#;
        assert_eq!(renderer.readable(Mode::Chat, rooms).as_deref(), Some("* #lobby (3)\n* #rust (1)"));
        let none = r#"{"type":"rooms","rooms":[]}"#;
        assert_eq!(renderer.readable(Mode::Chat, none).as_deref(), Some("* nobody is in any room"));
    }
}

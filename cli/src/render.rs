//! Turns frames into lines for people.

use crate::Mode;
use hubbub_shared::{ServerMsg, decode_server_items};

/// One readable line for a text frame, or `None` for frames not worth a line.
pub(crate) fn readable(mode: Mode, text: &str) -> Option<String> {
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
                let lines: Vec<String> = items.into_iter().flatten().filter_map(chat_line).collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            Err(_) => Some(text.to_owned()),
        },
    }
}

fn chat_line(msg: ServerMsg) -> Option<String> {
    Some(match msg {
        ServerMsg::Welcome { .. } => return None,
        ServerMsg::Joined { room, nick, members, .. } => {
            format!("* joined #{room} as {nick}; here: {}", members.join(", "))
        }
        ServerMsg::Left { room, .. } => format!("* left #{room}"),
        ServerMsg::MemberJoined { room, nick } => format!("* {nick} joined #{room}"),
        ServerMsg::MemberLeft { room, nick } => format!("* {nick} left #{room}"),
        ServerMsg::MemberState { room, nick, away: true } => format!("* {nick} is away in #{room}"),
        ServerMsg::MemberState { room, nick, away: false } => format!("* {nick} is back in #{room}"),
        // a terminal has no room to show who is typing without getting in the way
        ServerMsg::Typing { .. } => return None,
        ServerMsg::Message(m) => format!("[#{}] <{}> {}", m.room, m.author, m.text),
        ServerMsg::History { messages, .. } if messages.is_empty() => return None,
        ServerMsg::History { messages, .. } => {
            messages.iter().map(|m| format!("[#{}] <{}> {}", m.room, m.author, m.text)).collect::<Vec<_>>().join("\n")
        }
        ServerMsg::Ack { .. } => return None,
        ServerMsg::Lagged { room, from_seq } => {
            format!("* this terminal fell behind in #{room}: messages from #{from_seq} on were skipped")
        }
        ServerMsg::Sum { sum, .. } => sum.to_string(),
        ServerMsg::Error { code, message, .. } => format!("! {}: {message}", code.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_type_from_a_newer_hub_is_skipped_and_the_rest_of_the_frame_is_shown() {
        let frame = r#"[{"type":"member_joined","room":"lobby","nick":"bob"},{"type":"typing","room":"lobby","nicks":["bob"]},{"type":"message","room":"lobby","seq":8,"author":"bob","text":"hi","ts":1}]"#;
        assert_eq!(readable(Mode::Chat, frame).as_deref(), Some("* bob joined #lobby\n[#lobby] <bob> hi"));
    }
}

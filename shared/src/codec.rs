//! Text frames in and out. The one seam where JSON is chosen: swapping the encoding later
//! means changing this file only.

use crate::protocol::{ClientMsg, ErrorCode, ServerMsg};
use serde::Serialize;

/// Why a frame could not be decoded into a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not JSON, or not a JSON object (includes nesting deeper than serde_json's limit).
    BadJson,
    /// A JSON object whose `type` is missing or unknown.
    UnknownType,
    /// A known `type` with missing or mistyped fields.
    InvalidMessage,
}

/// A frame that is not a valid message. Carries the request id when one could be read, so
/// the error reply can echo it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub id: Option<String>,
    pub detail: String,
}

impl DecodeError {
    /// The wire error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            DecodeErrorKind::BadJson => ErrorCode::BadJson,
            DecodeErrorKind::UnknownType => ErrorCode::UnknownType,
            DecodeErrorKind::InvalidMessage => ErrorCode::InvalidMessage,
        }
    }
}

/// Serialises a message into the text of one frame.
pub fn encode<T: Serialize>(msg: &T) -> String {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no floats.
    serde_json::to_string(msg).expect("protocol types always serialise")
}

/// Decodes a frame a client sent.
pub fn decode_client(text: &str) -> Result<ClientMsg, DecodeError> {
    serde_json::from_str(text).map_err(|e| classify(text, e))
}

/// Decodes a frame the hub sent (used by the page and by test clients).
pub fn decode_server(text: &str) -> Result<ServerMsg, DecodeError> {
    serde_json::from_str(text).map_err(|e| classify(text, e))
}

/// Decodes one frame the hub sent: a single message, or a JSON array of messages when several
/// were queued for the client at once (the hub coalesces them). Order is the array's order.
pub fn decode_server_frame(text: &str) -> Result<Vec<ServerMsg>, DecodeError> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| DecodeError {
            kind: DecodeErrorKind::InvalidMessage,
            id: None,
            detail: e.to_string(),
        })
    } else {
        decode_server(text).map(|msg| vec![msg])
    }
}

/// Decodes one frame the hub sent item by item: each item is a message or the error that item
/// alone gave (an unknown `type` from a newer hub, say), so one item a client does not know
/// never costs it the others. Only a frame that is not JSON (or not an object or an array of
/// them) fails as a whole. Order is the frame's order.
pub fn decode_server_items(text: &str) -> Result<Vec<Result<ServerMsg, DecodeError>>, DecodeError> {
    Ok(frame_items(text)?.into_iter().map(decode_server).collect())
}

/// The JSON text of each item of a frame the hub sent: the elements of an array frame, or the
/// frame itself. Fails only when an array frame is not valid JSON.
pub fn frame_items(text: &str) -> Result<Vec<&str>, DecodeError> {
    if !text.trim_start().starts_with('[') {
        return Ok(vec![text]);
    }
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).map_err(|e| DecodeError {
        kind: DecodeErrorKind::BadJson,
        id: None,
        detail: e.to_string(),
    })?;
    Ok(items.into_iter().map(|item| item.get()).collect())
}

/// Joins already-encoded frames into one: `[a,b,…]`; a single frame stays as it is. A part that
/// is itself a batch (`[…]`) gives its messages, not a nested array, so batches join flat.
pub fn encode_batch<'a>(encoded: impl IntoIterator<Item = &'a str>) -> String {
    let mut parts = encoded.into_iter();
    let Some(first) = parts.next() else { return "[]".into() };
    let Some(second) = parts.next() else { return first.to_owned() };
    let mut out = String::with_capacity(first.len() * 4);
    out.push('[');
    for part in [first, second].into_iter().chain(parts) {
        let items = match part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            Some(inner) => inner,
            None => part,
        };
        if items.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(items);
    }
    out.push(']');
    out
}

/// Sorts a serde error into the three kinds, reading the envelope a second time (only on this
/// error path) to find the `type` and `id`.
fn classify(text: &str, err: serde_json::Error) -> DecodeError {
    // Only a JSON object can be a message; a map view reads the envelope whatever the fields.
    let Ok(object) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) else {
        return DecodeError { kind: DecodeErrorKind::BadJson, id: None, detail: err.to_string() };
    };
    let id = object.get("id").and_then(|v| v.as_str()).map(str::to_owned);
    let known_type =
        object.get("type").is_some_and(|t| t.is_string()) && !err.to_string().starts_with("unknown variant");
    let kind = if known_type { DecodeErrorKind::InvalidMessage } else { DecodeErrorKind::UnknownType };
    DecodeError { kind, id, detail: err.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatMessage;

    #[test]
    fn an_unknown_item_in_a_batch_costs_only_itself() {
        let frame =
            r#"[{"type":"sum","id":"1","sum":3},{"type":"from_the_future","x":1},{"type":"sum","id":"2","sum":4}]"#;
        let items = decode_server_items(frame).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], Ok(ServerMsg::Sum { id: Some("1".into()), sum: 3 }));
        assert_eq!(items[1].as_ref().unwrap_err().kind, DecodeErrorKind::UnknownType);
        assert_eq!(items[2], Ok(ServerMsg::Sum { id: Some("2".into()), sum: 4 }));
        assert_eq!(decode_server_items("[1, oops").unwrap_err().kind, DecodeErrorKind::BadJson);
    }

    #[test]
    fn a_batch_frame_decodes_to_its_messages_in_order() {
        let a = ServerMsg::Lagged { room: "a".into(), from_seq: 1 };
        let b = ServerMsg::Lagged { room: "b".into(), from_seq: 2 };
        let (ea, eb) = (encode(&a), encode(&b));
        let batch = encode_batch([ea.as_str(), eb.as_str()]);
        assert!(batch.starts_with('[') && batch.ends_with(']'), "{batch}");
        assert_eq!(decode_server_frame(&batch).unwrap(), vec![a.clone(), b]);
        // one message is sent bare, as before batching existed
        assert_eq!(encode_batch([ea.as_str()]), ea);
        assert_eq!(decode_server_frame(&ea).unwrap(), vec![a.clone()]);
        assert_eq!(decode_server_frame("[]").unwrap(), vec![]);
        // batches (one commit's messages) join a writer's batch flat, empty ones vanish
        let c = ServerMsg::Lagged { room: "c".into(), from_seq: 3 };
        let ec = encode(&c);
        let joined = encode_batch([batch.as_str(), "[]", ec.as_str()]);
        assert_eq!(
            decode_server_frame(&joined).unwrap(),
            vec![a, ServerMsg::Lagged { room: "b".into(), from_seq: 2 }, c]
        );
        assert_eq!(decode_server_frame(r#"[{"type":"nope"}]"#).unwrap_err().kind, DecodeErrorKind::InvalidMessage);
        assert_eq!(decode_server_frame("[1,").unwrap_err().kind, DecodeErrorKind::InvalidMessage);
    }

    #[test]
    fn client_messages_round_trip() {
        let msgs = [
            ClientMsg::Join {
                id: Some("1".into()),
                room: "lobby".into(),
                nick: "ada".into(),
                since: None,
                token: None,
            },
            ClientMsg::Join {
                id: None,
                room: "lobby".into(),
                nick: "ada".into(),
                since: Some("e:lobby:3".into()),
                token: None,
            },
            ClientMsg::History { id: None, room: "lobby".into(), before: 40, limit: Some(10) },
            ClientMsg::Leave { id: None, room: "lobby".into() },
            ClientMsg::Send { id: None, room: "lobby".into(), text: "hi \"there\"\n".into() },
        ];
        for m in msgs {
            assert_eq!(decode_client(&encode(&m)).unwrap(), m);
        }
    }

    #[test]
    fn server_messages_round_trip_and_are_flat_objects() {
        let m = ServerMsg::Message(ChatMessage {
            room: "lobby".into(),
            seq: 7,
            author: "ada".into(),
            text: "<b>hi</b>".into(),
            ts: 1_700_000_000_000,
            id: None,
            ..ChatMessage::default()
        });
        let text = encode(&m);
        assert!(text.starts_with(r#"{"type":"message","room":"lobby","seq":7"#), "{text}");
        assert_eq!(decode_server(&text).unwrap(), m);
    }

    #[test]
    fn not_json_is_bad_json() {
        for text in ["{not json", "", "[1,2]", "\"join\"", "null"] {
            assert_eq!(decode_client(text).unwrap_err().kind, DecodeErrorKind::BadJson, "{text}");
        }
    }

    #[test]
    fn unknown_or_missing_type_is_unknown_type_and_keeps_the_id() {
        let e = decode_client(r#"{"type":"dance","id":"r1"}"#).unwrap_err();
        assert_eq!((e.kind, e.id.as_deref()), (DecodeErrorKind::UnknownType, Some("r1")));
        let e = decode_client(r#"{"room":"lobby"}"#).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnknownType);
        let e = decode_client(r#"{"type":7}"#).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::UnknownType);
    }

    #[test]
    fn wrong_or_missing_fields_are_invalid_message_and_keep_the_id() {
        let e = decode_client(r#"{"type":"send","id":"r2","room":"lobby","text":5}"#).unwrap_err();
        assert_eq!((e.kind, e.id.as_deref()), (DecodeErrorKind::InvalidMessage, Some("r2")));
        let e = decode_client(r#"{"type":"join","room":"lobby"}"#).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::InvalidMessage);
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(decode_client(&deep).unwrap_err().kind, DecodeErrorKind::BadJson);
        let deep_field =
            format!(r#"{{"type":"send","room":"a","text":{}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_client(&deep_field).is_err());
    }
}

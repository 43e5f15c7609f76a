//! The page's codec: the same frames as `codec.rs`, read and written with the small JSON module
//! instead of serde, so the page's `.wasm` carries no serde code (see `json.rs` for the
//! numbers). The hub and the test clients use `codec.rs`; this file's tests hold the two to
//! the same wire format, message by message.

use crate::codec::{DecodeError, DecodeErrorKind};
use crate::json::{self, Fields, ObjectWriter, Value};
use crate::protocol::{AuthInfo, ChatMessage, ClientMsg, Conversation, ErrorCode, Limits, RoomSize, ServerMsg};

/// Decodes one frame the hub sent item by item, like [`crate::codec::decode_server_items`]:
/// each item is a message or the error that item alone gave, so an item from a newer hub that
/// this page does not know never costs it the others. Only a frame that is not JSON (or not an
/// object or an array) fails as a whole.
pub fn decode_server_items(text: &str) -> Result<Vec<Result<ServerMsg, DecodeError>>, DecodeError> {
    match json::parse(text) {
        Ok(Value::Array(items)) => Ok(items.into_iter().map(server_msg).collect()),
        Ok(item @ Value::Object(_)) => Ok(vec![server_msg(item)]),
        Ok(_) => Err(error(DecodeErrorKind::BadJson, None, "not a JSON object or array".into())),
        Err(detail) => Err(error(DecodeErrorKind::BadJson, None, detail)),
    }
}

fn error(kind: DecodeErrorKind, id: Option<String>, detail: String) -> DecodeError {
    DecodeError { kind, id, detail }
}

/// One message from a parsed item.
fn server_msg(item: Value) -> Result<ServerMsg, DecodeError> {
    let Some(mut fields) = Fields::of(item) else {
        return Err(error(DecodeErrorKind::BadJson, None, "not a JSON object".into()));
    };
    let id = fields.peek_str("id").map(str::to_owned);
    let Some(Value::String(kind)) = fields.take("type") else {
        return Err(error(DecodeErrorKind::UnknownType, id, "missing field `type`".into()));
    };
    match variant(&kind, &mut fields) {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => Err(error(DecodeErrorKind::UnknownType, id, format!("unknown type `{kind}`"))),
        Err(detail) => Err(error(DecodeErrorKind::InvalidMessage, id, detail)),
    }
}

/// The message of type `kind` from its fields; `None` for a type this build does not know.
fn variant(kind: &str, f: &mut Fields) -> Result<Option<ServerMsg>, String> {
    match kind {
        "welcome" => Ok(Some(ServerMsg::Welcome {
            protocol: u32::try_from(f.u64("protocol")?).map_err(|_| "field `protocol` is too large".to_owned())?,
            epoch: f.string("epoch")?,
            limits: limits(f.required("limits")?)?,
            auth: f.take("auth").map(auth_info).transpose()?,
        })),
        "authed" => Ok(Some(ServerMsg::Authed {
            id: f.opt_string("id")?,
            name: f.string("name")?,
            expires_at: f.u64("expires_at")?,
        })),
        "joined" => Ok(Some(ServerMsg::Joined {
            id: f.opt_string("id")?,
            room: f.string("room")?,
            nick: f.string("nick")?,
            members: f.strings("members")?,
            away: f.strings("away")?,
            count: f.u64("count")?,
        })),
        "left" => Ok(Some(ServerMsg::Left { id: f.opt_string("id")?, room: f.string("room")? })),
        "members" => Ok(Some(ServerMsg::Members {
            id: f.opt_string("id")?,
            room: f.string("room")?,
            after: f.opt_string("after")?,
            members: f.strings("members")?,
            away: f.strings("away")?,
            count: f.u64("count")?,
            more: f.bool("more")?,
        })),
        "presence" => Ok(Some(ServerMsg::Presence {
            room: f.string("room")?,
            count: f.u64("count")?,
            joined: f.strings("joined")?,
            left: f.strings("left")?,
            away: f.strings("away")?,
            back: f.strings("back")?,
        })),
        "typing" => Ok(Some(ServerMsg::Typing { room: f.string("room")?, nicks: f.strings("nicks")? })),
        "message" => Ok(Some(ServerMsg::Message(chat_message(f)?))),
        "ack" => Ok(Some(ServerMsg::Ack { id: f.string("id")?, room: f.string("room")?, seq: f.u64("seq")? })),
        "history" => Ok(Some(ServerMsg::History {
            id: f.opt_string("id")?,
            room: f.string("room")?,
            messages: f.list("messages")?.into_iter().map(message_item).collect::<Result<_, _>>()?,
            recovered: f.bool("recovered")?,
            more: f.bool("more")?,
        })),
        "lagged" => Ok(Some(ServerMsg::Lagged { room: f.string("room")?, from_seq: f.u64("from_seq")? })),
        "rooms" => Ok(Some(ServerMsg::Rooms {
            id: f.opt_string("id")?,
            rooms: f.list("rooms")?.into_iter().map(room_size).collect::<Result<_, _>>()?,
        })),
        "found" => Ok(Some(ServerMsg::Found {
            id: f.opt_string("id")?,
            terms: f.strings("terms")?,
            messages: f.list("messages")?.into_iter().map(message_item).collect::<Result<_, _>>()?,
        })),
        "conversations" => Ok(Some(ServerMsg::Conversations {
            id: f.opt_string("id")?,
            conversations: f.list("conversations")?.into_iter().map(conversation).collect::<Result<_, _>>()?,
        })),
        "read" => Ok(Some(ServerMsg::Read {
            room: f.string("room")?,
            seq: f.u64("seq")?,
            unread: f.u64("unread")?,
            up_to: f.u64("up_to")?,
        })),
        "sum" => Ok(Some(ServerMsg::Sum { id: f.opt_string("id")?, sum: f.i64("sum")? })),
        "error" => {
            let code = f.string("code")?;
            Ok(Some(ServerMsg::Error {
                id: f.opt_string("id")?,
                code: ErrorCode::ALL
                    .into_iter()
                    .find(|c| c.as_str() == code)
                    .ok_or_else(|| format!("unknown error code `{code}`"))?,
                message: f.string("message")?,
                room: f.opt_string("room")?,
                retry_after_ms: f.opt_u64("retry_after_ms")?,
            }))
        }
        _ => Ok(None),
    }
}

fn chat_message(f: &mut Fields) -> Result<ChatMessage, String> {
    Ok(ChatMessage {
        room: f.string("room")?,
        seq: f.u64("seq")?,
        author: f.string("author")?,
        text: f.string("text")?,
        ts: f.u64("ts")?,
        id: f.opt_string("id")?,
        edits: f.opt_u64("edits")?,
        edited: f.opt_bool("edited")?,
        deleted: f.opt_bool("deleted")?,
    })
}

fn message_item(item: Value) -> Result<ChatMessage, String> {
    chat_message(&mut Fields::of(item).ok_or("a history message is not an object")?)
}

fn room_size(item: Value) -> Result<RoomSize, String> {
    let mut f = Fields::of(item).ok_or("a room is not an object")?;
    Ok(RoomSize { room: f.string("room")?, count: f.u64("count")? })
}

fn conversation(item: Value) -> Result<Conversation, String> {
    let mut f = Fields::of(item).ok_or("a conversation is not an object")?;
    Ok(Conversation { room: f.string("room")?, with: f.string("with")? })
}

fn limits(value: Value) -> Result<Limits, String> {
    let mut f = Fields::of(value).ok_or("field `limits` is not an object")?;
    let mut size =
        |key: &str| f.u64(key).and_then(|n| usize::try_from(n).map_err(|_| format!("field `{key}` is too large")));
    Ok(Limits {
        max_message_bytes: size("max_message_bytes")?,
        max_text_chars: size("max_text_chars")?,
        max_rooms: size("max_rooms")?,
    })
}

fn auth_info(value: Value) -> Result<AuthInfo, String> {
    let mut f = Fields::of(value).ok_or("field `auth` is not an object")?;
    Ok(AuthInfo { token_url: f.opt_string("token_url")? })
}

/// The text of one frame carrying `msg`, as [`crate::codec::encode`] writes it.
pub fn encode_client(msg: &ClientMsg) -> String {
    let typed = |kind: &str| ObjectWriter::new().str("type", kind);
    match msg {
        ClientMsg::Join { id, room, nick, since, token } => typed("join")
            .opt_str("id", id.as_deref())
            .str("room", room)
            .str("nick", nick)
            .opt_str("since", since.as_deref())
            .opt_str("token", token.as_deref()),
        ClientMsg::History { id, room, before, limit } => typed("history")
            .opt_str("id", id.as_deref())
            .str("room", room)
            .u64("before", *before)
            .opt_u64("limit", limit.map(u64::from)),
        ClientMsg::Members { id, room, after, limit } => typed("members")
            .opt_str("id", id.as_deref())
            .str("room", room)
            .opt_str("after", after.as_deref())
            .opt_u64("limit", limit.map(u64::from)),
        ClientMsg::Leave { id, room } => typed("leave").opt_str("id", id.as_deref()).str("room", room),
        ClientMsg::Resume { id, room, since } => {
            typed("resume").opt_str("id", id.as_deref()).str("room", room).str("since", since)
        }
        ClientMsg::Rooms { id } => typed("rooms").opt_str("id", id.as_deref()),
        ClientMsg::Search { id, query, room, limit } => typed("search")
            .opt_str("id", id.as_deref())
            .str("query", query)
            .opt_str("room", room.as_deref())
            .opt_u64("limit", limit.map(u64::from)),
        ClientMsg::Auth { id, token } => typed("auth").opt_str("id", id.as_deref()).str("token", token),
        ClientMsg::Add { id, a, b } => typed("add").opt_str("id", id.as_deref()).i64("a", *a).i64("b", *b),
        ClientMsg::Typing { room } => typed("typing").str("room", room),
        ClientMsg::Visibility { hidden } => typed("visibility").bool("hidden", *hidden),
        ClientMsg::Edit { id, room, seq, text } => {
            typed("edit").opt_str("id", id.as_deref()).str("room", room).u64("seq", *seq).str("text", text)
        }
        ClientMsg::Delete { id, room, seq } => {
            typed("delete").opt_str("id", id.as_deref()).str("room", room).u64("seq", *seq)
        }
        ClientMsg::Dm { id, room, nick } => {
            typed("dm").opt_str("id", id.as_deref()).str("room", room).str("nick", nick)
        }
        ClientMsg::Read { room, seq } => typed("read").str("room", room).u64("seq", *seq),
        ClientMsg::Send { id, room, text } => {
            typed("send").opt_str("id", id.as_deref()).str("room", room).str("text", text)
        }
    }
    .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn message(seq: u64, id: Option<&str>) -> ChatMessage {
        ChatMessage {
            room: "lobby".into(),
            seq,
            author: "ünï \"q\"".into(),
            text: "line\nnext 😀 \\ </script>".into(),
            ts: u64::MAX,
            id: id.map(str::to_owned),
            ..ChatMessage::default()
        }
    }

    /// Every variant, with its optional fields both present and absent.
    fn server_messages() -> Vec<ServerMsg> {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let limits = Limits { max_message_bytes: 65536, max_text_chars: 2000, max_rooms: 16 };
        let mut all = vec![
            ServerMsg::Welcome { protocol: 2, epoch: "e1".into(), limits, auth: None },
            ServerMsg::Welcome { protocol: 2, epoch: "e1".into(), limits, auth: Some(AuthInfo { token_url: None }) },
            ServerMsg::Welcome {
                protocol: 2,
                epoch: "e1".into(),
                limits,
                auth: Some(AuthInfo { token_url: Some("https://app.example/token".into()) }),
            },
            ServerMsg::Authed { id: None, name: "alice".into(), expires_at: 1_700_000_000_000 },
            ServerMsg::Authed { id: Some("a1".into()), name: "alice".into(), expires_at: 1 },
            ServerMsg::Joined {
                id: Some("j".into()),
                room: "lobby".into(),
                nick: "alice".into(),
                members: names(&["alice", "bob"]),
                away: names(&["bob"]),
                count: 2,
            },
            ServerMsg::Joined { id: None, room: "r".into(), nick: "n".into(), members: vec![], away: vec![], count: 0 },
            ServerMsg::Left { id: None, room: "lobby".into() },
            ServerMsg::Left { id: Some("l".into()), room: "lobby".into() },
            ServerMsg::Members {
                id: Some("m".into()),
                room: "lobby".into(),
                after: Some("bob".into()),
                members: names(&["carol"]),
                away: vec![],
                count: 3,
                more: true,
            },
            ServerMsg::Members {
                id: None,
                room: "lobby".into(),
                after: None,
                members: vec![],
                away: names(&["x"]),
                count: 0,
                more: false,
            },
            ServerMsg::Presence {
                room: "lobby".into(),
                count: 9,
                joined: names(&["a"]),
                left: names(&["b", "c"]),
                away: names(&["d"]),
                back: names(&["e"]),
            },
            ServerMsg::Presence {
                room: "lobby".into(),
                count: 1,
                joined: vec![],
                left: vec![],
                away: vec![],
                back: vec![],
            },
            ServerMsg::Typing { room: "lobby".into(), nicks: names(&["alice"]) },
            ServerMsg::Typing { room: "lobby".into(), nicks: vec![] },
            ServerMsg::Message(message(1, None)),
            ServerMsg::Message(message(2, Some("c-1"))),
            ServerMsg::Message(ChatMessage { edits: Some(2), edited: true, ..message(3, Some("c-2")) }),
            ServerMsg::Message(ChatMessage { edits: Some(2), deleted: true, text: String::new(), ..message(4, None) }),
            ServerMsg::Ack { id: "c-1".into(), room: "lobby".into(), seq: 2 },
            ServerMsg::History {
                id: None,
                room: "lobby".into(),
                messages: vec![message(1, None), message(2, Some("x"))],
                recovered: true,
                more: false,
            },
            ServerMsg::History {
                id: Some("h".into()),
                room: "lobby".into(),
                messages: vec![],
                recovered: false,
                more: true,
            },
            ServerMsg::Lagged { room: "lobby".into(), from_seq: 7 },
            ServerMsg::Rooms { id: None, rooms: vec![] },
            ServerMsg::Rooms {
                id: Some("r".into()),
                rooms: vec![RoomSize { room: "lobby".into(), count: 3 }, RoomSize { room: "rust".into(), count: 1 }],
            },
            ServerMsg::Found { id: None, terms: vec![], messages: vec![] },
            ServerMsg::Found {
                id: Some("f".into()),
                terms: vec!["ünï".into(), "next".into()],
                messages: vec![message(9, Some("c9")), message(3, None)],
            },
            ServerMsg::Conversations { id: None, conversations: vec![] },
            ServerMsg::Conversations {
                id: Some("d".into()),
                conversations: vec![Conversation {
                    room: "@0123456789abcdef01234567".into(),
                    with: "bob \"b\"".into(),
                }],
            },
            ServerMsg::Read { room: "lobby".into(), seq: 0, unread: 1000, up_to: u64::MAX },
            ServerMsg::Sum { id: None, sum: i64::MIN },
            ServerMsg::Sum { id: Some("s".into()), sum: i64::MAX },
        ];
        for code in ErrorCode::ALL {
            all.push(ServerMsg::Error { id: None, code, message: "why".into(), room: None, retry_after_ms: None });
        }
        all.push(ServerMsg::Error {
            id: Some("e".into()),
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            room: Some("lobby".into()),
            retry_after_ms: Some(250),
        });
        all
    }

    /// Every variant, with its optional fields both present and absent.
    fn client_messages() -> Vec<ClientMsg> {
        let id = |s: &str| Some(s.to_owned());
        vec![
            ClientMsg::Join { id: None, room: "lobby".into(), nick: "alice".into(), since: None, token: None },
            ClientMsg::Join {
                id: id("j"),
                room: "lobby".into(),
                nick: "ä \"q\"".into(),
                since: id("e:lobby:3"),
                token: id("00ff"),
            },
            ClientMsg::History { id: None, room: "lobby".into(), before: 10, limit: None },
            ClientMsg::History { id: id("h"), room: "lobby".into(), before: u64::MAX, limit: Some(u32::MAX) },
            ClientMsg::Members { id: None, room: "lobby".into(), after: None, limit: None },
            ClientMsg::Members { id: id("m"), room: "lobby".into(), after: id("bob"), limit: Some(70) },
            ClientMsg::Leave { id: None, room: "lobby".into() },
            ClientMsg::Leave { id: id("l"), room: "lobby".into() },
            ClientMsg::Resume { id: None, room: "lobby".into(), since: "e:lobby:0".into() },
            ClientMsg::Resume { id: id("r"), room: "lobby".into(), since: "e:lobby:0".into() },
            ClientMsg::Auth { id: None, token: "a.b.c".into() },
            ClientMsg::Auth { id: id("a"), token: "a.b.c".into() },
            ClientMsg::Add { id: None, a: i64::MIN, b: i64::MAX },
            ClientMsg::Add { id: id("s"), a: -1, b: 2 },
            ClientMsg::Rooms { id: None },
            ClientMsg::Rooms { id: id("r") },
            ClientMsg::Search { id: None, query: "a \"b\" ü".into(), room: None, limit: None },
            ClientMsg::Search { id: id("s"), query: "deploy".into(), room: Some("lobby".into()), limit: Some(5) },
            ClientMsg::Typing { room: "lobby".into() },
            ClientMsg::Visibility { hidden: true },
            ClientMsg::Visibility { hidden: false },
            ClientMsg::Edit { id: None, room: "lobby".into(), seq: 3, text: "fixed \"typo\"".into() },
            ClientMsg::Edit { id: id("e"), room: "lobby".into(), seq: u64::MAX, text: "x".into() },
            ClientMsg::Delete { id: None, room: "lobby".into(), seq: 1 },
            ClientMsg::Delete { id: id("d"), room: "lobby".into(), seq: 2 },
            ClientMsg::Dm { id: None, room: "lobby".into(), nick: "bob".into() },
            ClientMsg::Dm { id: id("d"), room: "lobby".into(), nick: "ü \"q\"".into() },
            ClientMsg::Read { room: "@0123456789abcdef01234567".into(), seq: 7 },
            ClientMsg::Send { id: None, room: "lobby".into(), text: "hi\n\t\u{1} 😀 \\ \"".into() },
            ClientMsg::Send { id: id("c-1"), room: "lobby".into(), text: "x".into() },
        ]
    }

    #[test]
    fn reads_every_message_as_serde_writes_it_one_by_one_and_in_batches() {
        let all = server_messages();
        for msg in &all {
            let text = codec::encode(msg);
            let items = decode_server_items(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(items, vec![Ok(msg.clone())], "{text}");
        }
        let batch = codec::encode_batch(all.iter().map(codec::encode).collect::<Vec<_>>().iter().map(String::as_str));
        let decoded: Vec<ServerMsg> =
            decode_server_items(&batch).expect("a valid frame").into_iter().map(|item| item.expect("known")).collect();
        assert_eq!(decoded, all);
    }

    #[test]
    fn writes_every_message_as_serde_reads_it() {
        for msg in client_messages() {
            let text = encode_client(&msg);
            assert_eq!(codec::decode_client(&text), Ok(msg), "{text}");
            assert_eq!(text, codec::encode(&codec::decode_client(&text).expect("valid")), "field order and absence");
        }
    }

    #[test]
    fn refuses_bad_items_as_serde_does_and_keeps_the_good_ones() {
        let good = codec::encode(&ServerMsg::Lagged { room: "lobby".into(), from_seq: 3 });
        let cases = [
            (r#"{"type":"from_the_future","id":"f","x":1}"#, DecodeErrorKind::UnknownType),
            (r#"{"id":"q","room":"lobby"}"#, DecodeErrorKind::UnknownType),
            (r#"{"type":"lagged","room":"lobby"}"#, DecodeErrorKind::InvalidMessage),
            (r#"{"type":"lagged","room":"lobby","from_seq":-1}"#, DecodeErrorKind::InvalidMessage),
            (r#"{"type":"lagged","room":"lobby","from_seq":1.5}"#, DecodeErrorKind::InvalidMessage),
            (r#"{"type":"lagged","room":7,"from_seq":1}"#, DecodeErrorKind::InvalidMessage),
            (r#"{"type":"error","id":"e","code":"no_such_code","message":"m"}"#, DecodeErrorKind::InvalidMessage),
            (
                r#"{"type":"history","room":"r","messages":[1],"recovered":true,"more":false}"#,
                DecodeErrorKind::InvalidMessage,
            ),
            ("5", DecodeErrorKind::BadJson),
        ];
        for (item, kind) in cases {
            let frame = format!("[{item},{good}]");
            let items = decode_server_items(&frame).expect("an array frame");
            assert!(codec::decode_server(item).is_err(), "serde refuses {item} too");
            assert_eq!(items[0].as_ref().map_err(|e| e.kind), Err(kind), "{item}");
            assert!(matches!(items[1], Ok(ServerMsg::Lagged { .. })), "the good item survives {item}");
        }
        // the request id comes back with the refusal, as the hub's codec gives it
        let items = decode_server_items(r#"{"type":"from_the_future","id":"f"}"#).expect("an object frame");
        assert_eq!(items[0].as_ref().map_err(|e| e.id.as_deref()), Err(Some("f")));
        // unknown fields are ignored, as serde does
        let extra = r#"{"type":"lagged","room":"lobby","from_seq":3,"later":{"x":[1]}}"#;
        assert_eq!(decode_server_items(extra).expect("valid"), vec![codec::decode_server(extra)]);
        for frame in ["", "not json", "[1,", "\"text\""] {
            assert_eq!(
                decode_server_items(frame).map(|_| ()).map_err(|e| e.kind),
                Err(DecodeErrorKind::BadJson),
                "{frame}"
            );
        }
    }
}

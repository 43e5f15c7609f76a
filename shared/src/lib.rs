//! Hubbub's wire contract: the JSON messages the page and the hub exchange, the codec that
//! turns them into text frames, the close codes, and the validation rules for nicknames, room
//! names and chat text. Both sides depend on this crate, so a rule lives here exactly once.
//!
//! It depends on serde only, so it builds unchanged for the server and for wasm32.
//! `docs/protocol.md` describes the same contract for people; its examples are parsed by the
//! tests in `tests/protocol_doc.rs`.

pub mod close;
pub mod codec;
pub mod cursor;
pub mod json;
pub mod page_codec;
pub mod protocol;
pub mod search;
pub mod validate;

pub use codec::{
    DecodeError, DecodeErrorKind, decode_client, decode_server, decode_server_frame, decode_server_items, encode,
    encode_batch, frame_items,
};
pub use protocol::{AuthInfo, ChatMessage, ClientMsg, Conversation, ErrorCode, Limits, RoomSize, ServerMsg};
pub use validate::{ChatText, Invalid, Nick, RoomName};

/// Version of this protocol, sent in `welcome` so a page can refuse a server it does not speak.
pub const PROTOCOL_VERSION: u32 = 2;

/// The WebSocket subprotocol the hub offers (`Sec-WebSocket-Protocol`).
pub const SUBPROTOCOL: &str = "hubbub.v2";

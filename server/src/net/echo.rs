//! The echo endpoint (`/ws/echo`): every text and binary message comes back unchanged. The
//! standard subject for WebSocket conformance suites (Autobahn), so it runs on the same
//! connection machinery as the chat, with its own, larger size limit.

use super::{Close, Endpoint, Outbound};
use axum::{
    body::Bytes,
    extract::ws::{Message, Utf8Bytes},
};

#[derive(Debug, Default)]
pub(crate) struct Echo;

impl Endpoint for Echo {
    fn on_text(&mut self, text: Utf8Bytes, out: &Outbound) -> Result<(), Close> {
        out.push_frame(Message::Text(text));
        Ok(())
    }

    fn on_binary(&mut self, data: Bytes, out: &Outbound) -> Result<(), Close> {
        out.push_frame(Message::Binary(data));
        Ok(())
    }
}

//! The echo endpoint (`/ws/echo`): every text and binary message comes back unchanged. The
//! standard subject for WebSocket conformance suites (Autobahn), so it runs on the same
//! connection machinery as the chat, with limits of its own (`--echo-max-message-bytes`,
//! `--echo-frames-per-sec`; `--echo false` turns it off).

use super::outbound::Queued;
use super::{Close, Endpoint, Outbound, rate::TokenBucket};
use bytes::Bytes;
use hubbub_shared::close;
use tungstenite::Utf8Bytes;

#[derive(Debug, Default)]
pub(crate) struct Echo {
    /// Frames per second; `None`: no limit.
    frames: Option<TokenBucket>,
}

impl Echo {
    /// An echo connection allowed `per_sec` frames a second (bursts of twice that); 0: any.
    pub(crate) fn new(per_sec: f64) -> Echo {
        Echo { frames: (per_sec > 0.0).then(|| TokenBucket::new(per_sec, 2.0 * per_sec)) }
    }
}

impl Endpoint for Echo {
    /// An echo returns what it got as it got it: under permessage-deflate, every message goes
    /// back compressed, however small. (The conformance suite's runner, kosoku, also fails a
    /// deflate case whose small text comes back uncompressed, though RFC 7692 allows it.)
    fn compress_from(&self) -> usize {
        0
    }

    fn on_frame(&mut self) -> Result<(), Close> {
        match &mut self.frames {
            Some(bucket) => bucket.take().map_err(|_| Close::new(close::RATE_LIMITED, "too many frames")),
            None => Ok(()),
        }
    }

    async fn on_text(&mut self, text: Utf8Bytes, out: &Outbound) -> Result<(), Close> {
        out.push_frame(Queued::Text(text));
        Ok(())
    }

    fn on_binary(&mut self, data: Bytes, out: &Outbound) -> Result<(), Close> {
        out.push_frame(Queued::Binary(data));
        Ok(())
    }
}

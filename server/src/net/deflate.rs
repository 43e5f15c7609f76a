//! permessage-deflate (RFC 7692): agreeing on it in the upgrade, and compressing what the hub
//! sends. Reading compressed messages is tungstenite's (Hubbub's copy in `vendor/tungstenite`,
//! told per connection through `WebSocketConfig::deflate`).
//!
//! The hub always answers with `server_no_context_takeover`: each message it sends is
//! compressed on its own, so one broadcast is compressed once and the same bytes go to every
//! member that agreed to the same window ([`Prepared`]). It always answers with
//! `client_no_context_takeover` too, which RFC 7692 (7.1.1.2) lets a server ask of any client:
//! the client then compresses each message alone, and the hub keeps no inflater (about 40 KiB)
//! per connection between messages; people send few messages, so making one each time is cheap.
//! Messages below [`MIN_BYTES`] are sent as they are: deflate saves nothing on a typing signal.

use crate::stats::Stats;
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use std::{cell::RefCell, sync::OnceLock};
use tungstenite::protocol::{
    DeflateConfig,
    frame::{
        Frame,
        coding::{Data, OpCode},
    },
};

/// Texts shorter than this are sent uncompressed (RFC 7692 lets each message choose): below a
/// few hundred bytes the deflate block's overhead eats most of the gain, and the CPU is spent on
/// every one of a busy room's small messages.
pub(crate) const MIN_BYTES: usize = 256;

/// The window the hub compresses with unless a client asks for a smaller one.
const DEFAULT_WINDOW_BITS: u8 = 15;

/// What the handshake agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The largest LZ77 window (as bits, 9–15) the client lets the hub use.
    pub(crate) window_bits: u8,
}

impl Agreed {
    /// How tungstenite reads this connection's compressed messages.
    pub(crate) fn reading(&self) -> DeflateConfig {
        DeflateConfig { peer_no_context_takeover: true }
    }

    /// The `Sec-WebSocket-Extensions` answer.
    pub(crate) fn response(&self) -> HeaderValue {
        let mut answer = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if self.window_bits != DEFAULT_WINDOW_BITS {
            answer.push_str(&format!("; server_max_window_bits={}", self.window_bits));
        }
        HeaderValue::from_str(&answer).expect("ASCII")
    }
}

/// The first permessage-deflate offer in the request the hub can honour, if any (RFC 7692
/// 5: offers are tried in order; one with an unknown or repeated parameter, or a value out of
/// range, is declined). An offer limiting the hub's window to 8 bits is declined too: zlib's
/// smallest raw window is 9 bits.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Agreed> {
    super::header_list(headers, header::SEC_WEBSOCKET_EXTENSIONS.as_str()).iter().find_map(|o| offer(o))
}

/// One offer (`name; param; param=value`), if it is an acceptable permessage-deflate one.
fn offer(text: &str) -> Option<Agreed> {
    let mut parts = text.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut agreed = Agreed { window_bits: DEFAULT_WINDOW_BITS };
    let mut seen = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        let bits = |v: &str| v.parse::<u8>().ok().filter(|b| (8..=15).contains(b) && !v.starts_with('0'));
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => {}
            // asked of every client anyway (see the top of this file)
            ("client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => agreed.window_bits = bits(v).filter(|b| *b >= 9)?,
            // the client may use a smaller window than asked: any it uses inflates here
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(agreed)
}

/// A text the hub sends, with its compressed form made on first need and kept: a broadcast
/// is compressed once, whoever it goes to.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The deflated text at the default window (what browsers agree to); `None` when deflate
    /// made the text no smaller.
    default_window: OnceLock<Option<Bytes>>,
}

impl Prepared {
    pub(crate) fn new() -> Self {
        Prepared { default_window: OnceLock::new() }
    }

    /// `text` deflated for a connection that agreed on `agreed` (the payload of a frame with
    /// RSV1 set: [`frame`]); `None` when it should go as it is (too short, or deflate made it
    /// no smaller). Counted in `stats.compressions` when it compresses.
    pub(crate) fn deflated(&self, text: &str, agreed: &Agreed, stats: &Stats) -> Option<Bytes> {
        if text.len() < MIN_BYTES {
            return None;
        }
        let compress = |bits| {
            stats.compressions.inc();
            deflated(text.as_bytes(), bits, false)
        };
        if agreed.window_bits != DEFAULT_WINDOW_BITS {
            // only clients that ask for a smaller window (test suites, not browsers): their own
            return compress(agreed.window_bits);
        }
        self.default_window.get_or_init(|| compress(DEFAULT_WINDOW_BITS)).clone()
    }
}

thread_local! {
    /// One compressor per thread and window, reset for every message (no context takeover):
    /// making one allocates its ~300 KiB of tables, too much to do per message.
    static COMPRESSORS: RefCell<Vec<(u8, flate2::Compress)>> = const { RefCell::new(Vec::new()) };
}

/// The final text (or binary) frame, RSV1 set, that carries a deflated message.
pub(crate) fn frame(payload: Bytes, binary: bool) -> Frame {
    let opcode = OpCode::Data(if binary { Data::Binary } else { Data::Text });
    let mut frame = Frame::message(payload, opcode, true);
    frame.header_mut().rsv1 = true;
    frame
}

/// `input` deflated on its own (RFC 7692 7.2.1: a sync flush, its `00 00 ff ff` tail removed);
/// `None` when that is not smaller than `input`, unless `always`.
pub(crate) fn deflated(input: &[u8], window_bits: u8, always: bool) -> Option<Bytes> {
    COMPRESSORS.with_borrow_mut(|compressors| {
        let at = match compressors.iter().position(|(bits, _)| *bits == window_bits) {
            Some(at) => at,
            None => {
                let level = flate2::Compression::fast();
                compressors.push((window_bits, flate2::Compress::new_with_window_bits(level, false, window_bits)));
                compressors.len() - 1
            }
        };
        let compressor = &mut compressors[at].1;
        compressor.reset();
        // room for the text and a little more: a deflated form that outgrows it is given up
        // (unless `always`), since it would go out larger than the text itself
        let mut out = Vec::with_capacity(input.len() + 16);
        loop {
            let before = compressor.total_in() as usize;
            let status = compressor
                .compress_vec(&input[before.min(input.len())..], &mut out, flate2::FlushCompress::Sync)
                .ok()?;
            let done = compressor.total_in() as usize == input.len() && out.len() < out.capacity();
            if done || status == flate2::Status::StreamEnd {
                break;
            }
            if out.len() >= input.len() + 16 && !always {
                return None;
            }
            out.reserve(256.max(out.len() / 2));
        }
        out.truncate(out.len().checked_sub(4).filter(|_| out.ends_with(&[0, 0, 0xff, 0xff]))?);
        (always || out.len() < input.len()).then(|| Bytes::from(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(offers: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for o in offers {
            h.append(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn a_browsers_offer_is_taken_and_answered_without_context_takeover_either_way() {
        // what Chromium sends
        let agreed = negotiate(&headers(&["permessage-deflate; client_max_window_bits"])).unwrap();
        assert_eq!(agreed, Agreed { window_bits: 15 });
        assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        assert_eq!(agreed.reading(), DeflateConfig { peer_no_context_takeover: true });
        let agreed = negotiate(&headers(&["permessage-deflate; client_no_context_takeover"])).unwrap();
        assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    }

    #[test]
    fn offers_the_hub_cannot_honour_are_declined_and_the_next_one_is_tried() {
        assert_eq!(negotiate(&headers(&[])), None);
        assert_eq!(negotiate(&headers(&["x-webkit-deflate-frame"])), None);
        for bad in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; mystery",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        ] {
            assert_eq!(negotiate(&headers(&[bad])), None, "{bad}");
        }
        let agreed = negotiate(&headers(&[
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
        ]))
        .unwrap();
        assert_eq!(agreed.window_bits, 10);
        assert_eq!(
            agreed.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        );
    }

    fn inflate(payload: &Bytes) -> String {
        let mut data = payload.to_vec();
        data.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        flate2::Decompress::new(false).decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_long_text_is_compressed_once_and_a_short_one_goes_as_it_is() {
        let text = format!("{{\"type\":\"message\",\"text\":\"{}\"}}", "hello hubbub ".repeat(100));
        let prepared = Prepared::new();
        let agreed = Agreed { window_bits: 15 };
        let stats = Stats::default();
        let deflated = prepared.deflated(&text, &agreed, &stats).expect("compressed");
        assert!(deflated.len() < text.len() / 5, "{} of {} bytes", deflated.len(), text.len());
        assert_eq!(inflate(&deflated), text);
        let again = prepared.deflated(&text, &agreed, &stats).unwrap();
        assert_eq!(again.as_ptr(), deflated.as_ptr(), "the same bytes, not compressed again");
        assert_eq!(stats.compressions.get(), 1);
        let small = Agreed { window_bits: 9 };
        assert_eq!(inflate(&prepared.deflated(&text, &small, &stats).unwrap()), text);
        assert!(Prepared::new().deflated("{\"type\":\"typing\"}", &agreed, &stats).is_none());
        let frame = frame(deflated, false);
        assert!(frame.header().rsv1 && frame.header().is_final);
        assert_eq!(frame.header().opcode, OpCode::Data(Data::Text));
    }

    #[test]
    fn a_text_deflate_cannot_shrink_goes_as_it_is() {
        // 300 bytes with no repeats: the deflated form is no smaller
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: String = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        let agreed = Agreed { window_bits: 15 };
        assert!(Prepared::new().deflated(&noise, &agreed, &Stats::default()).is_none());
        // unless asked to
        assert_eq!(inflate(&deflated(noise.as_bytes(), 15, true).unwrap()), noise);
        let empty = deflated(b"", 15, true).unwrap();
        assert_eq!(&empty[..], &[0x00], "RFC 7692 7.2.3.6: an empty message is one 0x00 byte");
    }
}

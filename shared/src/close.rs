//! WebSocket close codes the hub sends, and what each means for the person at the page.
//!
//! The 1xxx codes are RFC 6455's; the 4xxx codes are Hubbub's own (the range RFC 6455 leaves to
//! applications). `docs/protocol.md` lists the same table.

/// The client said goodbye, or the hub answered its close.
pub const NORMAL: u16 = 1000;
/// The server is shutting down (SIGINT/SIGTERM); reconnect later.
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the WebSocket protocol (bad framing, unmasked frame, reserved bits ...).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A binary frame on the chat socket, which speaks JSON text only.
pub const UNSUPPORTED_DATA: u16 = 1003;
/// The connection dropped without a close frame (never sent on the wire; browsers report it).
pub const ABNORMAL: u16 = 1006;
/// A text frame that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// A message larger than the hub's inbound limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The hub failed on its side; the client did nothing wrong.
pub const INTERNAL_ERROR: u16 = 1011;
/// Nothing (not even a pong) arrived within the idle timeout: the peer is presumed dead.
pub const IDLE_TIMEOUT: u16 = 4000;
/// The client read too slowly and its outbound queue filled up.
pub const SLOW_CONSUMER: u16 = 4001;
/// A write to the client did not complete within the write deadline.
pub const WRITE_TIMEOUT: u16 = 4002;
/// Connected to the chat socket but joined no room within the join deadline.
pub const NO_JOIN: u16 = 4004;
/// Too many messages or frames, long after being told (`rate_limited`) to slow down.
pub const RATE_LIMITED: u16 = 4003;
/// Sign-in mode: the connection's token was malformed, wrongly signed or expired.
pub const AUTH_FAILED: u16 = 4005;
/// Sign-in mode: the token expired while connected and no fresh one came (`auth` again).
pub const TOKEN_EXPIRED: u16 = 4006;

/// Every code the hub sends (1006 is a browser's report of a lost connection, never sent).
/// `docs/protocol.md`'s close-code table lists exactly these (checked by the server's tests).
pub const SENT: [u16; 14] = [
    NORMAL,
    GOING_AWAY,
    PROTOCOL_ERROR,
    UNSUPPORTED_DATA,
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    INTERNAL_ERROR,
    IDLE_TIMEOUT,
    SLOW_CONSUMER,
    WRITE_TIMEOUT,
    RATE_LIMITED,
    NO_JOIN,
    AUTH_FAILED,
    TOKEN_EXPIRED,
];

/// A short, human description of a close code, for the page's connection status.
pub fn describe(code: u16) -> &'static str {
    match code {
        NORMAL => "closed normally",
        GOING_AWAY => "server shutting down",
        PROTOCOL_ERROR => "protocol error",
        UNSUPPORTED_DATA => "unsupported data",
        ABNORMAL => "connection lost",
        INVALID_PAYLOAD => "invalid UTF-8",
        MESSAGE_TOO_BIG => "message too big",
        INTERNAL_ERROR => "server error",
        IDLE_TIMEOUT => "idle timeout",
        SLOW_CONSUMER => "too slow to keep up",
        WRITE_TIMEOUT => "write timeout",
        RATE_LIMITED => "too many messages",
        NO_JOIN => "no room joined in time",
        AUTH_FAILED => "sign-in refused",
        TOKEN_EXPIRED => "sign-in expired",
        _ => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_the_hub_sends_has_its_own_description() {
        let mut seen = std::collections::HashSet::new();
        for code in SENT {
            let text = describe(code);
            assert_ne!(text, "closed", "{code} has no description");
            assert!(seen.insert(text), "{code} shares its description");
        }
    }
}

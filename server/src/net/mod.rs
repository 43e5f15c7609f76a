//! The network layer: HTTP routes and the accept loop, the per-connection machinery (one
//! reader and one writer per WebSocket), each connection's outbound queue, the guards, and the
//! two small endpoints beside the chat (echo and add). Nothing here knows what a chat message
//! means: the chat plugs in as an [`Endpoint`].

pub(crate) mod accept;
pub(crate) mod add;
pub(crate) mod connection;
mod corked;
pub(crate) mod deflate;
pub(crate) mod echo;
pub(crate) mod guard;
mod halves;
pub(crate) mod outbound;
pub(crate) mod page;
mod page_files;
pub(crate) mod routes;
pub(crate) mod tls;
pub(crate) mod upgrade;

pub(crate) use connection::{Close, Endpoint};
pub(crate) use guard::rate;
pub(crate) use outbound::{Outbound, OutboundRx};

/// Every comma-separated value of every `name` header, in order, trimmed, empty ones skipped
/// (`X-Forwarded-For`, `Connection`, `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`).
pub(crate) fn header_list(headers: &axum::http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Identifies one WebSocket connection for the lifetime of the process.
pub(crate) type ConnId = u64;

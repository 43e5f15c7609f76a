//! Counters reported by `GET /healthz`. Plain atomics: incremented on hot paths, read rarely.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// WebSocket connections open right now.
    pub(crate) connections: Counter,
    /// Connections closed because control frames piled up unread (close code 4001).
    pub(crate) slow_consumer_evictions: Counter,
    /// Times a reader fell behind, had live messages dropped and was told to catch up.
    pub(crate) lagged_readers: Counter,
    /// Connections dropped because a write did not finish within the write deadline.
    pub(crate) write_timeouts: Counter,
    /// Handshakes refused for a foreign Origin (403).
    pub(crate) origin_refusals: Counter,
    /// Messages refused with `rate_limited`.
    pub(crate) rate_limited: Counter,
    /// Handshakes refused because the address had too many connections (429).
    pub(crate) ip_cap_refusals: Counter,
}

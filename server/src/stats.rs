//! What the hub counts, for `GET /healthz` (a few numbers as JSON) and `GET /metrics` (all of
//! them, Prometheus text format). Plain atomics, owned by `AppState` (no global recorder):
//! incremented on hot paths, read rarely.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the commit latency buckets.
const COMMIT_BUCKETS: [f64; 11] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

/// A Prometheus-style histogram of durations.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(COMMIT_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// WebSocket connections open right now.
    pub(crate) connections: Gauge,
    /// Frames waiting in outbound queues, all connections together.
    pub(crate) queued_frames: Gauge,
    /// Messages (text and binary) received from clients.
    pub(crate) messages_in: Counter,
    /// Frames written to clients.
    pub(crate) messages_out: Counter,
    /// Chat messages committed to the database.
    pub(crate) messages_stored: Counter,
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
    /// Connection tasks that panicked (caught, logged, counted; the process goes on).
    pub(crate) panics: Counter,
    /// Redis commands of the fan-out that failed (a publish the other hubs then read from the
    /// log, a lost subscription).
    pub(crate) fanout_errors: Counter,
    /// Ranges of a room read from the log because they did not arrive through Redis.
    pub(crate) gap_repairs: Counter,
    /// Connections that agreed on permessage-deflate.
    pub(crate) deflate_connections: Counter,
    /// Messages deflated (a broadcast counts once, however many members it went to).
    pub(crate) compressions: Counter,
    /// Frames written compressed.
    pub(crate) compressed_frames_out: Counter,
    /// Close frames the hub sent, by code.
    closes: Mutex<BTreeMap<u16, u64>>,
    /// Why the last group commit failed, while no commit has succeeded since: `/healthz` and
    /// `/readyz` report the database by what commits do, not only by whether it answers.
    commit_failure: Mutex<Option<String>>,
    /// How long group commits take (BEGIN to COMMIT, fsync included).
    pub(crate) commit_latency: Histogram,
}

impl Stats {
    /// Records how the last group commit went.
    pub(crate) fn commit_outcome(&self, failure: Option<String>) {
        *self.commit_failure.lock().unwrap_or_else(|p| p.into_inner()) = failure;
    }

    /// Why commits are failing right now, if they are.
    pub(crate) fn commit_failure(&self) -> Option<String> {
        self.commit_failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn closed_with(&self, code: u16) {
        *self.closes.lock().unwrap_or_else(|p| p.into_inner()).entry(code).or_insert(0) += 1;
    }

    /// Every single-valued series: (Prometheus name, type, help, value). One table, so
    /// `/metrics` and `/healthz` cannot drift apart. `rooms` comes from the hub.
    fn series(&self, rooms: usize) -> [(&'static str, &'static str, &'static str, i64); 18] {
        let count = |c: &Counter| c.get() as i64;
        [
            ("hubbub_connections", "gauge", "WebSocket connections open now.", self.connections.get()),
            ("hubbub_rooms", "gauge", "Rooms with at least one member.", rooms as i64),
            ("hubbub_queued_frames", "gauge", "Frames waiting in outbound queues.", self.queued_frames.get()),
            ("hubbub_messages_in_total", "counter", "Messages received from clients.", count(&self.messages_in)),
            ("hubbub_messages_out_total", "counter", "Frames written to clients.", count(&self.messages_out)),
            (
                "hubbub_messages_stored_total",
                "counter",
                "Chat messages committed to the database.",
                count(&self.messages_stored),
            ),
            (
                "hubbub_lagged_readers_total",
                "counter",
                "Readers that fell behind and were told to catch up.",
                count(&self.lagged_readers),
            ),
            (
                "hubbub_slow_consumer_evictions_total",
                "counter",
                "Connections closed 4001.",
                count(&self.slow_consumer_evictions),
            ),
            (
                "hubbub_write_timeouts_total",
                "counter",
                "Connections dropped at the write deadline.",
                count(&self.write_timeouts),
            ),
            ("hubbub_rate_limited_total", "counter", "Messages refused rate_limited.", count(&self.rate_limited)),
            ("hubbub_panics_total", "counter", "Connection tasks that panicked (should stay 0).", count(&self.panics)),
            (
                "hubbub_origin_refusals_total",
                "counter",
                "Handshakes refused for a foreign Origin.",
                count(&self.origin_refusals),
            ),
            (
                "hubbub_ip_cap_refusals_total",
                "counter",
                "Handshakes refused over the per-address cap.",
                count(&self.ip_cap_refusals),
            ),
            (
                "hubbub_fanout_errors_total",
                "counter",
                "Redis fan-out commands that failed (cluster mode).",
                count(&self.fanout_errors),
            ),
            (
                "hubbub_gap_repairs_total",
                "counter",
                "Room ranges read from the log because Redis did not bring them (cluster mode).",
                count(&self.gap_repairs),
            ),
            (
                "hubbub_deflate_connections_total",
                "counter",
                "Connections that agreed on permessage-deflate.",
                count(&self.deflate_connections),
            ),
            (
                "hubbub_compressions_total",
                "counter",
                "Messages deflated (a broadcast once, however many members).",
                count(&self.compressions),
            ),
            (
                "hubbub_compressed_frames_out_total",
                "counter",
                "Frames written compressed.",
                count(&self.compressed_frames_out),
            ),
        ]
    }

    /// The same values for `/healthz`, keyed by short names (`connections`, `rate_limited`, ...).
    pub(crate) fn summary(&self, rooms: usize) -> serde_json::Map<String, serde_json::Value> {
        self.series(rooms)
            .into_iter()
            .map(|(name, _, _, value)| {
                let key = name.trim_start_matches("hubbub_").trim_end_matches("_total");
                (key.to_owned(), value.into())
            })
            .collect()
    }

    /// The Prometheus text exposition (format 0.0.4); `rooms` comes from the hub.
    pub(crate) fn render(&self, rooms: usize) -> String {
        let mut out = String::new();
        for (name, kind, help, value) in self.series(rooms) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }

        let _ = writeln!(
            out,
            "# HELP hubbub_closes_total Close frames sent by the hub, by code.\n# TYPE hubbub_closes_total counter"
        );
        for (code, n) in self.closes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "hubbub_closes_total{{code=\"{code}\"}} {n}");
        }

        let h = &self.commit_latency;
        let _ =
            writeln!(out, "# HELP hubbub_commit_seconds Group commit latency.\n# TYPE hubbub_commit_seconds histogram");
        for (bucket, bound) in h.buckets.iter().zip(COMMIT_BUCKETS) {
            let _ = writeln!(out, "hubbub_commit_seconds_bucket{{le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "hubbub_commit_seconds_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(out, "hubbub_commit_seconds_sum {}", h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "hubbub_commit_seconds_count {}", h.count());
        out
    }
}

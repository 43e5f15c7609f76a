//! Every knob of the hub, as flags and `HUBBUB_*` environment variables (`hubbub --help`).
//! Tests build a `Config` with [`Config::for_tests`] and never read the process environment.

use clap::Parser;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Clone, Parser)]
#[command(name = "hubbub", version, about = "Hubbub: real-time chat in the browser")]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the chosen one is printed).
    #[arg(long, env = "HUBBUB_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// TLS certificate chain (PEM): with `--tls-key`, the hub serves `https://` and `wss://`.
    /// SIGHUP reads both files again, without dropping a connection.
    #[arg(long, env = "HUBBUB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of `--tls-cert`.
    #[arg(long, env = "HUBBUB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Sign-in mode with HS256 tokens signed by this shared secret (at least 32 bytes): `/ws`
    /// then requires an `auth` message whose token's `sub` is the person and `name` their
    /// nickname. Without this or `--auth-jwt-public-key`: anonymous, first come first served.
    #[arg(long, env = "HUBBUB_AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,

    /// Sign-in mode with RS256 or ES256 tokens, checked with this public key (PEM file).
    #[arg(long, env = "HUBBUB_AUTH_JWT_PUBLIC_KEY")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// Where pages get their sign-in token (the host application's endpoint), told to them in
    /// `welcome`.
    #[arg(long, env = "HUBBUB_AUTH_TOKEN_URL")]
    pub auth_token_url: Option<String>,

    /// Serve the page from this folder (trunk's output) instead of the one built into the
    /// binary; for development. Without it: the built-in page, or `dist` when none was built
    /// in. Unknown paths fall back to its index.html.
    #[arg(long, env = "HUBBUB_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// SQLite database file for the history (created with its folder); `:memory:` keeps
    /// nothing across restarts.
    #[arg(long, env = "HUBBUB_DB", default_value = "data/hubbub.db")]
    pub db: PathBuf,

    /// PostgreSQL for the history instead of the SQLite file (cluster mode: any number of hubs
    /// share it), e.g. `postgres://hubbub@db.internal/hubbub`. Without it: `--db`.
    #[arg(long, env = "HUBBUB_DATABASE")]
    pub database: Option<String>,

    /// Redis for fan-out between hubs (cluster mode, with `--database`), e.g.
    /// `redis://redis.internal:6379`. Without it: in-process fan-out (one hub).
    #[arg(long, env = "HUBBUB_REDIS")]
    pub redis: Option<String>,

    /// Cluster mode: how often each hub refreshes its view of its rooms' people in Redis. A
    /// hub silent for three times this (killed) has its people leave the other hubs' lists.
    #[arg(long, env = "HUBBUB_REDIS_HEARTBEAT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(50..))]
    pub redis_heartbeat_ms: u64,

    /// Durability of each commit: `full` fsyncs every group commit, so an acknowledged message
    /// survives power loss; `normal` survives a crash of the process only.
    #[arg(long, env = "HUBBUB_DB_SYNC", value_enum, default_value_t = crate::store::Durability::Full)]
    pub db_sync: crate::store::Durability,

    /// How long a commit waits for a database locked by someone else before the sender gets
    /// `storage_unavailable` (ms).
    #[arg(long, env = "HUBBUB_DB_BUSY_TIMEOUT_MS", default_value_t = 5_000)]
    pub db_busy_timeout_ms: u64,

    /// Messages in a history page: the one sent after `joined`, and the default for `history`.
    #[arg(long, env = "HUBBUB_HISTORY_PAGE", default_value_t = 50)]
    pub history_page: usize,

    /// Largest gap a resuming client gets in full; past it, it gets the latest page and
    /// `recovered: false`.
    #[arg(long, env = "HUBBUB_RESUME_GAP_LIMIT", default_value_t = 1000)]
    pub resume_gap_limit: u64,

    /// Extra origins allowed to open the chat socket, comma separated, e.g.
    /// `http://127.0.0.1:8080` for `trunk serve`; `*` allows any. The page's own origin (same
    /// host as the request) is always allowed, and so are clients that send no Origin at all.
    #[arg(long, env = "HUBBUB_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Reverse proxies (CIDRs or addresses, comma separated, e.g. `127.0.0.1,10.0.0.0/8`) whose
    /// `Forwarded` / `X-Forwarded-For` / `-Proto` / `-Host` headers name the real client, for
    /// the per-address cap, the Origin check and the logs. From anyone else those headers are
    /// ignored.
    #[arg(long, env = "HUBBUB_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// WebSocket connections one client IP address may hold at once; more get 429.
    #[arg(long, env = "HUBBUB_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    pub max_connections_per_ip: usize,

    /// Requests (any message) a chat connection (`/ws`) may send per second, on average ...
    /// (the echo and add sockets have no rate limit)
    #[arg(long, env = "HUBBUB_MESSAGES_PER_SEC", default_value_t = 10.0)]
    pub messages_per_sec: f64,

    /// ... and in a burst. Past it: `error` `rate_limited` with `retry_after_ms`.
    #[arg(long, env = "HUBBUB_MESSAGE_BURST", default_value_t = 30.0)]
    pub message_burst: f64,

    /// Refusals in a row (no accepted message between them) before a chat connection is
    /// closed for abuse (4003).
    #[arg(long, env = "HUBBUB_RATE_LIMIT_STRIKES", default_value_t = 50)]
    pub rate_limit_strikes: u32,

    /// WebSocket frames (pings included) a chat connection may send per second, on average,
    /// with a burst of twice that; a flood past it is closed (4003).
    #[arg(long, env = "HUBBUB_FRAMES_PER_SEC", default_value_t = 100.0)]
    pub frames_per_sec: f64,

    /// A chat connection that has joined no room this long after connecting is closed (4004):
    /// sockets are for chatting, not for holding.
    #[arg(long, env = "HUBBUB_JOIN_TIMEOUT_MS", default_value_t = 30_000)]
    pub join_timeout_ms: u64,

    /// Interval between the hub's pings to each client, in milliseconds.
    #[arg(long, env = "HUBBUB_PING_INTERVAL_MS", default_value_t = 54_000)]
    pub ping_interval_ms: u64,

    /// Close a connection (code 4000) when nothing, not even a pong, arrived for this long (ms).
    #[arg(long, env = "HUBBUB_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Give up on a client (code 4002) when one write takes longer than this (ms).
    #[arg(long, env = "HUBBUB_WRITE_TIMEOUT_MS", default_value_t = 10_000)]
    pub write_timeout_ms: u64,

    /// Live chat messages queued per connection: past it they are dropped for that reader only,
    /// who is told `lagged` and catches up with `resume`. Replies and acks are never dropped; a
    /// reader that lets 4 × this many pile up is closed as too slow (4001).
    #[arg(long, env = "HUBBUB_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    /// The same bound in bytes (live messages past it are dropped for that reader, who is told
    /// `lagged`; 16 × this in replies, acks and echoes closes it, 4001): a few large messages
    /// weigh as much as many small ones.
    #[arg(long, env = "HUBBUB_OUTBOUND_QUEUE_BYTES", default_value_t = 1024 * 1024)]
    pub outbound_queue_bytes: usize,

    /// Largest inbound WebSocket message in bytes; larger ones close the connection (1009).
    #[arg(long, env = "HUBBUB_MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Serve the echo socket, `/ws/echo` (the conformance suite's subject); `false`: 404.
    #[arg(long, env = "HUBBUB_ECHO", default_value_t = true, action = clap::ArgAction::Set)]
    pub echo: bool,

    /// Largest message on the echo socket, in bytes (larger: close 1009). The conformance test
    /// raises it to 16 MiB, which Autobahn's cases reach.
    #[arg(long, env = "HUBBUB_ECHO_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub echo_max_message_bytes: usize,

    /// Frames per second an echo connection may send, with a burst of twice that; past it the
    /// connection is closed (4003). 0: no limit (the conformance test).
    #[arg(long, env = "HUBBUB_ECHO_FRAMES_PER_SEC", default_value_t = 100.0)]
    pub echo_frames_per_sec: f64,

    /// Longest chat text in characters (at most 1000).
    #[arg(long, env = "HUBBUB_MAX_TEXT_CHARS", default_value_t = 1000)]
    pub max_text_chars: usize,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "HUBBUB_MAX_ROOMS_PER_CONNECTION", default_value_t = 16)]
    pub max_rooms_per_connection: usize,

    /// Agree to permessage-deflate (RFC 7692) with clients that offer it, as browsers do: texts
    /// of 256 bytes or more then go compressed, each broadcast compressed once for all its
    /// recipients. `false`: never agree (every frame goes as it is).
    #[arg(long, env = "HUBBUB_COMPRESSION", default_value_t = true, action = clap::ArgAction::Set)]
    pub compression: bool,

    /// Read buffer per connection in bytes (axum's default is 128 KiB, which idle sockets waste).
    #[arg(long, env = "HUBBUB_READ_BUFFER_BYTES", default_value_t = 1024)]
    pub read_buffer_bytes: usize,

    /// Close a connection whose request head has not fully arrived after this long (ms);
    /// defeats slowloris clients that trickle headers to hold sockets.
    #[arg(long, env = "HUBBUB_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// On SIGINT/SIGTERM, how long to wait for connections to finish closing (ms).
    #[arg(long, env = "HUBBUB_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// How long a person stays in a room after their last connection is gone (ms): a reload,
    /// a network blip or closing one of two tabs announces nothing. Leaving on purpose is
    /// announced at once.
    #[arg(long, env = "HUBBUB_PRESENCE_GRACE_MS", default_value_t = 15_000)]
    pub presence_grace_ms: u64,

    /// A member whose every connection has been hidden this long is shown as away (ms).
    #[arg(long, env = "HUBBUB_AWAY_AFTER_MS", default_value_t = 300_000)]
    pub away_after_ms: u64,

    /// A typing signal not refreshed for this long expires (ms).
    #[arg(long, env = "HUBBUB_TYPING_TTL_MS", default_value_t = 6_000)]
    pub typing_ttl_ms: u64,
}

impl Config {
    /// The defaults on a free loopback port, with a throwaway database and no rate limits:
    /// what integration tests start from.
    pub fn for_tests() -> Self {
        let mut config = Config::parse_from(["hubbub"]);
        config.listen = ([127, 0, 0, 1], 0).into();
        config.db = PathBuf::from(":memory:");
        // the functional tests send bursts on purpose; the rate-limit tests set their own
        config.messages_per_sec = 1e6;
        config.message_burst = 1e6;
        config.frames_per_sec = 1e6;
        // the tests of what a closed connection announces expect it at once; the presence
        // tests set their own grace
        config.presence_grace_ms = 0;
        config
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub(crate) fn presence(&self) -> crate::chat::presence::PresenceTimes {
        crate::chat::presence::PresenceTimes {
            grace: Duration::from_millis(self.presence_grace_ms),
            away_after: Duration::from_millis(self.away_after_ms),
            typing_ttl: Duration::from_millis(self.typing_ttl_ms),
        }
    }

    pub fn limits(&self) -> hubbub_shared::Limits {
        hubbub_shared::Limits {
            max_message_bytes: self.max_message_bytes,
            max_text_chars: self.max_text_chars.min(hubbub_shared::validate::MAX_TEXT_CHARS),
            max_rooms: self.max_rooms_per_connection,
        }
    }
}

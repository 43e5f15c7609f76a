//! Hubbub's hub: an axum server that serves the page, the chat WebSocket at `/ws`, the echo
//! and add sockets (`/ws/echo`, `/ws/add`) and `/healthz`. `main.rs` only parses the configuration and calls [`Application`].

mod add;
mod chat;
mod config;
mod connection;
mod csp;
mod echo;
mod hub;
mod ip_limit;
mod nick_rules;
mod origin;
mod outbox;
mod rate;
mod routes;
mod startup;
mod stats;
mod store;

pub use store::Sync as DbSync;

pub use config::Config;
pub use startup::Application;

use std::sync::Arc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Everything a request handler or connection needs; cheap to clone (all handles).
#[derive(Debug, Clone)]
pub struct AppState {
    config: Arc<Config>,
    hub: Arc<hub::Hub>,
    store: store::Store,
    origins: Arc<origin::OriginPolicy>,
    ip_limiter: Arc<ip_limit::IpLimiter>,
    stats: Arc<stats::Stats>,
    /// Cancelled when the process should stop; every connection watches it and sends 1001.
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Process start in ms since the epoch: makes server-made message ids unique across runs.
    started_at: u64,
}

impl AppState {
    fn new(config: Config) -> anyhow::Result<Self> {
        let hub: Arc<hub::Hub> = Arc::default();
        let stats: Arc<stats::Stats> = Arc::default();
        let store = store::Store::open(
            &config.db,
            config.db_sync,
            std::time::Duration::from_millis(config.db_busy_timeout_ms),
            stats.clone(),
            hub::on_commit(hub.clone()),
        )
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", config.db.display()))?;
        Ok(Self {
            origins: Arc::new(origin::OriginPolicy::new(&config.allowed_origins)),
            ip_limiter: Arc::new(ip_limit::IpLimiter::new(config.max_connections_per_ip)),
            config: Arc::new(config),
            hub,
            store,
            stats,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        })
    }
}

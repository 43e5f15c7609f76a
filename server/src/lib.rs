//! Hubbub's hub: an axum server that serves the page, the chat WebSocket at `/ws`, the echo
//! and add sockets (`/ws/echo`, `/ws/add`) and `/healthz`. `main.rs` only parses the configuration and calls [`Application`].

mod add;
mod chat;
mod config;
mod connection;
mod echo;
mod hub;
mod origin;
mod outbox;
mod routes;
mod startup;
mod stats;

pub use config::Config;
pub use startup::Application;

use std::sync::Arc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Everything a request handler or connection needs; cheap to clone (all handles).
#[derive(Debug, Clone)]
pub struct AppState {
    config: Arc<Config>,
    hub: Arc<hub::Hub>,
    origins: Arc<origin::OriginPolicy>,
    stats: Arc<stats::Stats>,
    /// Cancelled when the process should stop; every connection watches it and sends 1001.
    shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    tracker: TaskTracker,
}

impl AppState {
    fn new(config: Config) -> Self {
        Self {
            origins: Arc::new(origin::OriginPolicy::new(&config.allowed_origins)),
            config: Arc::new(config),
            hub: Arc::default(),
            stats: Arc::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }
}

//! Building and running the hub: bind, serve, and shut down in order.
//!
//! Shutdown order: the shutdown future resolves → `state.shutdown` is cancelled → axum stops
//! accepting and finishes plain HTTP requests, while every WebSocket writer sends close 1001 →
//! we wait (bounded by `shutdown_grace`) for the tracked connection tasks to finish their close
//! handshakes. axum's graceful shutdown alone would not wait for upgraded sockets.

use crate::{AppState, Config, routes};
use anyhow::Context;
use std::{future::Future, net::SocketAddr};
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds the listener; the server starts with [`Application::run_until`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        if !config.static_dir.join("index.html").is_file() {
            tracing::warn!(dir = %config.static_dir.display(), "no built page here; `make run` builds it");
        }
        Ok(Self { listener, state: AppState::new(config)? })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains as described in the module docs.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = self.state;
        let token = state.shutdown.clone();
        tokio::spawn(async move {
            shutdown.await;
            token.cancel();
        });
        let app = routes::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(state.shutdown.clone().cancelled_owned())
            .await
            .context("server error")?;
        state.tracker.close();
        let grace = state.config.shutdown_grace();
        if tokio::time::timeout(grace, state.tracker.wait()).await.is_err() {
            tracing::warn!(open = state.tracker.len(), "connections still open after the shutdown grace");
        }
        tracing::info!("shut down");
        Ok(())
    }
}

//! Building and running the hub: bind, serve, and shut down in order.
//!
//! We run the accept loop ourselves, with hyper-util, instead of `axum::serve`: the latter has
//! no header-read timeout, so a client trickling a request head could hold a socket forever.
//!
//! Shutdown order: the shutdown future resolves → the accept loop stops and the listener is
//! dropped (new connections are refused) → only then is `state.shutdown` cancelled, so every
//! WebSocket writer sends close 1001 while plain HTTP connections finish their requests → we
//! wait (bounded by `shutdown_grace`) for the tracked connection tasks to finish their close
//! handshakes. Graceful shutdown of HTTP
//! connections alone would not wait for upgraded sockets.

use crate::{AppState, Config, routes};
use anyhow::Context;
use axum::extract::{ConnectInfo, Request};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::{future::Future, net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request head accepted: browsers send a few KB, cookies included.
const MAX_REQUEST_HEAD: usize = 32 * 1024;

#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds the listener; the server starts with [`Application::run_until`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = listen(config.listen).with_context(|| format!("cannot listen on {}", config.listen))?;
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
        // first stop accepting, then tell the connections (below): once a client hears 1001,
        // nobody can connect any more
        let stop_accepting = CancellationToken::new();
        let trigger = stop_accepting.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.cancel();
        });
        let router = routes::router(state.clone());
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout())
            // request heads larger than this get 431 (hyper's default buffer is ~400 KB)
            .max_buf_size(MAX_REQUEST_HEAD);
        let graceful = GracefulShutdown::new();
        let header_timeout = state.config.header_read_timeout();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // out of file descriptors, say: back off instead of spinning
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop_accepting.cancelled() => break,
            };
            // what `into_make_service_with_connect_info` does: the peer address for handlers
            let service =
                tower::ServiceExt::map_request(router.clone(), move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
            // chat frames are small and already batched by the writer: send them now, not
            // after Nagle waits for the previous segment's ACK
            let _ = stream.set_nodelay(true);
            let (builder, watcher) = (builder.clone(), graceful.watcher());
            tokio::spawn(async move {
                // hyper's header timer starts at the first byte: a client that connects and
                // sends nothing is cut off here, after the same timeout
                let mut first = [0u8; 1];
                if !matches!(tokio::time::timeout(header_timeout, stream.peek(&mut first)).await, Ok(Ok(1))) {
                    tracing::debug!(%peer, "nothing received within the header-read timeout (or closed)");
                    return;
                }
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
                if let Err(e) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, cause = %e, "HTTP connection ended with an error");
                }
            });
        }
        // refuse new connections from here on; then every WebSocket writer sends 1001
        drop(self.listener);
        state.shutdown.cancel();
        let grace = state.config.shutdown_grace();
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("HTTP connections still open after the shutdown grace");
        }
        state.tracker.close();
        let grace = state.config.shutdown_grace();
        if tokio::time::timeout(grace, state.tracker.wait()).await.is_err() {
            tracing::warn!(open = state.tracker.len(), "connections still open after the shutdown grace");
        }
        tracing::info!("shut down");
        Ok(())
    }
}

/// Binds with a listen backlog of 4,096 (tokio's `bind` uses 1,024): in a connect storm, SYNs
/// beyond the backlog are dropped and those clients wait a full second to retry.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

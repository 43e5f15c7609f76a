//! The accept loop. We run it ourselves, with hyper-util, instead of `axum::serve`: the latter
//! has no header-read timeout, so a client trickling a request head could hold a socket forever.

use crate::Config;
use axum::{
    Router,
    extract::{ConnectInfo, Request},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Largest request head accepted: browsers send a few KB, cookies included.
const MAX_REQUEST_HEAD: usize = 32 * 1024;
/// Connections waiting to be accepted (tokio's `bind` uses 1,024): in a connect storm, SYNs
/// beyond the backlog are dropped and those clients wait a full second to retry.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with our backlog.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves every connection `listener` accepts with `router`, until `stop` is cancelled; then
/// drops the listener (new connections are refused) and returns the handle that drains the
/// HTTP connections still open.
pub(crate) async fn accept_until(
    listener: TcpListener,
    router: Router,
    config: &Config,
    tls: Option<super::tls::Tls>,
    stop: CancellationToken,
) -> GracefulShutdown {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        // request heads larger than this get 431 (hyper's default buffer is ~400 KB)
        .max_buf_size(MAX_REQUEST_HEAD);
    let graceful = GracefulShutdown::new();
    let header_timeout = config.header_read_timeout();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // out of file descriptors, say: back off instead of spinning
                    tracing::warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
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
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            // hyper's header timer starts at the first byte: a client that connects and
            // sends nothing is cut off here, after the same timeout
            let mut first = [0u8; 1];
            if !matches!(tokio::time::timeout(header_timeout, stream.peek(&mut first)).await, Ok(Ok(1))) {
                tracing::debug!(%peer, "nothing received within the header-read timeout (or closed)");
                return;
            }
            let service = TowerToHyperService::new(service);
            let served = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
                        .await
                }
                // the handshake under the same deadline as a request head
                Some(tls) => match tokio::time::timeout(header_timeout, tls.acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        watcher
                            .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
                            .await
                    }
                    Ok(Err(e)) => return tracing::debug!(%peer, cause = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, cause = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful
}

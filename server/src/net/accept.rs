//! The accept loop. We run it ourselves, with hyper's HTTP/1 connection, instead of
//! `axum::serve`: the latter has no header-read timeout, so a client trickling a request head
//! could hold a socket forever.
//!
//! Every system call here is paid once per connection, and a connect storm is thousands of them
//! a second (`hubbub-bench storm`), so the loop makes as few as it can: TCP_NODELAY is set once,
//! on the listening socket (Linux's accepted sockets inherit it); the wait for the first byte is
//! a readiness wait, not a `peek`; and HTTP/1 only (browsers speak HTTP/2 only over TLS, where
//! ALPN offers nothing but `http/1.1` here) saves hyper-util's `auto` builder's separate read of
//! the 24 bytes that would tell an HTTP/2 preface apart. With the 101 answer sent together with
//! the first frame (`net::corked`), a chat connection costs the hub 5 system calls where it cost
//! 10 (strace): accept, the request, 101 + `welcome`, the `join`, `joined` + `history`.

use crate::Config;
use axum::{
    Router,
    extract::{ConnectInfo, Request},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Largest request head accepted: browsers send a few KB, cookies included.
const MAX_REQUEST_HEAD: usize = 32 * 1024;
/// Connections waiting to be accepted (tokio's `bind` uses 1,024): in a connect storm, SYNs
/// beyond the backlog are dropped and those clients wait a full second to retry.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with our backlog.
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    // chat frames are small and already batched by the writer: send them now, not after Nagle
    // waits for the previous segment's ACK (accepted sockets inherit it on Linux; see `serve`)
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The HTTP connections still open when the listener closed (upgraded ones are the chat's, and
/// are tracked by the app): [`Draining::shutdown`] asks each to finish its request in hand and
/// close, and waits for them.
pub(crate) struct Draining {
    connections: TaskTracker,
    drain: CancellationToken,
}

impl Draining {
    pub(crate) async fn shutdown(self) {
        self.drain.cancel();
        self.connections.close();
        self.connections.wait().await;
    }
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
) -> Draining {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout())
        // request heads larger than this get 431 (hyper's default buffer is ~400 KB)
        .max_buf_size(MAX_REQUEST_HEAD);
    let draining = Draining { connections: TaskTracker::new(), drain: CancellationToken::new() };
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
        // inherited from the listener on Linux (see `listen`); one system call per connection
        // elsewhere
        #[cfg(not(target_os = "linux"))]
        let _ = stream.set_nodelay(true);
        let (builder, drain, tls) = (builder.clone(), draining.drain.clone(), tls.clone());
        draining.connections.spawn(async move {
            // hyper's header timer starts at the first byte: a client that connects and
            // sends nothing (or only closes) is cut off here, after the same timeout. A
            // readiness wait costs no system call: the reactor's next poll reports the bytes.
            if !matches!(tokio::time::timeout(header_timeout, stream.readable()).await, Ok(Ok(()))) {
                tracing::debug!(%peer, "nothing received within the header-read timeout");
                return;
            }
            let service = TowerToHyperService::new(service);
            let served = match tls {
                None => serve(&builder, super::corked::Corked::new(stream), service, drain).await,
                // the handshake under the same deadline as a request head
                Some(tls) => match tokio::time::timeout(header_timeout, tls.acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(&builder, stream, service, drain).await,
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
    draining
}

/// One HTTP/1 connection, upgrades allowed, until it ends; once `drain` is cancelled it finishes
/// the request in hand and closes (what hyper-util's `GracefulShutdown` does, which has no
/// hook for hyper's own HTTP/1 connection with upgrades).
async fn serve<I, S>(builder: &http1::Builder, io: I, service: S, drain: CancellationToken) -> hyper::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = axum::body::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return served,
        () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

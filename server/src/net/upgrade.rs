//! The WebSocket upgrade (RFC 6455 4.2), done here rather than by axum's `WebSocketUpgrade`:
//! that one can neither answer `Sec-WebSocket-Extensions` nor configure tungstenite per
//! connection, and permessage-deflate (`deflate.rs`) needs both. What it checks and answers is
//! axum's: GET, `Connection: upgrade`, `Upgrade: websocket`, version 13, a key; a 4xx with a
//! reason otherwise.

use super::{
    deflate::{self, Agreed},
    header_list,
};
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::{FutureExt, future::Either};
use hyper_util::rt::TokioIo;
use tungstenite::protocol::{Role, WebSocketConfig};

/// A WebSocket after the handshake.
pub(crate) type WebSocket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request to upgrade, checked; [`Upgrade::respond`] answers it and hands the socket on.
#[derive(Debug)]
pub(crate) struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
    /// The subprotocols the client offered, as sent.
    protocols: Vec<String>,
    /// The client's permessage-deflate offer the hub can take, if any.
    offered_deflate: Option<Agreed>,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let refuse = |status: StatusCode, why: &'static str| (status, why).into_response();
        if parts.method != Method::GET {
            return Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket upgrade is a GET\n"));
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") || !has_token(headers, header::UPGRADE, "websocket") {
            return Err(refuse(StatusCode::BAD_REQUEST, "Connection: upgrade and Upgrade: websocket are needed\n"));
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
            let mut response = refuse(StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13\n");
            response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            return Err(response);
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing\n"));
        };
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(refuse(StatusCode::UPGRADE_REQUIRED, "this connection cannot be upgraded\n"));
        };
        let protocols = header_list(headers, header::SEC_WEBSOCKET_PROTOCOL.as_str());
        Ok(Upgrade { key, on_upgrade, protocols, offered_deflate: deflate::negotiate(headers) })
    }
}

/// Whether a comma-separated header holds `token` (case-insensitively), as `Connection:
/// keep-alive, Upgrade` does.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    header_list(headers, name.as_str()).iter().any(|t| t.eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Answers 101 (with `protocol` if the client offered it, and permessage-deflate if it
    /// offered that and `compression` allows), then runs `serve` with the socket on a task of
    /// its own; `config` is tungstenite's, deflate added when agreed.
    pub(crate) fn respond<F, Fut>(
        self,
        protocol: &'static str,
        compression: bool,
        config: WebSocketConfig,
        serve: F,
    ) -> Response
    where
        F: FnOnce(WebSocket, Option<Agreed>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let agreed = self.offered_deflate.filter(|_| compression);
        let config = config.deflate(agreed.map(|a| a.reading()));
        tokio::spawn(connection_task(self.on_upgrade, config, agreed, serve));
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(axum::body::Body::empty())
            .expect("a valid response");
        if self.protocols.iter().any(|p| p == protocol) {
            response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        if let Some(agreed) = agreed {
            response.headers_mut().insert(header::SEC_WEBSOCKET_EXTENSIONS, agreed.response());
        }
        response
    }
}

/// What a connection's task runs: the upgrade, then `serve` with the socket.
///
/// Combinators, not an `async` block: a block keeps `serve` and the future it returns side by
/// side for the connection's whole life (6.5 KiB a chat connection's task where 2.9 do); each
/// `then` holds one step at a time.
fn connection_task<F, Fut>(
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: WebSocketConfig,
    agreed: Option<Agreed>,
    serve: F,
) -> impl Future<Output = ()> + Send + 'static
where
    F: FnOnce(WebSocket, Option<Agreed>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_upgrade.then(move |upgraded| match upgraded {
        Ok(upgraded) => Either::Left(
            WebSocket::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .then(move |socket| serve(socket, agreed)),
        ),
        Err(e) => {
            tracing::debug!(cause = %e, "the upgrade did not complete");
            Either::Right(std::future::ready(()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's task is its `serve` future and little more, not `serve`'s closure
    /// and the future it returned side by side (`hubbub-bench idle` counts every byte).
    #[test]
    fn a_connection_task_holds_one_step_at_a_time() {
        const STATE: usize = 4096;
        let state = [7u8; STATE];
        let serve = move |_socket: WebSocket, _deflate: Option<Agreed>| async move {
            std::hint::black_box(&state);
        };
        let upgrade = hyper::upgrade::on(axum::http::Request::new(()));
        let task = connection_task(upgrade, WebSocketConfig::default(), None, serve);
        let size = std::mem::size_of_val(&task);
        assert!(size < STATE + 1024, "a connection's task takes {size} bytes for {STATE} bytes of state");
    }
}

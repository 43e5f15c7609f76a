//! The client kit: what every Rust client of the hub needs, written once. The terminal client
//! (`hubbub-cli`), the load generator (`hubbub-bench`) and the server's tests use it.
//!
//! - [`socket_url`]: a hub address (`http://`, `ws://` …) to the WebSocket URL of a service.
//! - [`connect`]: the handshake, with extra headers, bounded in time, with typed failures.
//! - [`join`] and [`join_and_wait`]: join a room and read up to its `history`.
//! - [`read_listening_line`]: the address a `hubbub` process printed when it started.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_items, encode};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader, Lines},
    net::TcpStream,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        self, Message,
        client::IntoClientRequest,
        http::{HeaderName, HeaderValue},
    },
};

/// A client's socket to the hub.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The line a `hubbub` process prints on stdout once it listens (its only stdout line):
/// `hubbub listening on http://ADDR`.
pub const LISTENING_PREFIX: &str = "hubbub listening on http://";

/// How long [`connect`] waits for the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub's WebSocket services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `/ws`, the chat protocol (`docs/protocol.md`).
    Chat,
    /// `/ws/echo`: every message comes back.
    Echo,
    /// `/ws/add`: `{"A":3,"B":9}` → `{"Sum":12}`.
    Add,
}

impl Service {
    pub fn path(self) -> &'static str {
        match self {
            Service::Chat => "/ws",
            Service::Echo => "/ws/echo",
            Service::Add => "/ws/add",
        }
    }
}

/// Why a client could not get a socket.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address or a header is malformed: nothing was sent.
    #[error("{0}")]
    BadRequest(String),
    /// Nobody answered (refused, unreachable, timed out).
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The hub answered with an HTTP status instead of the upgrade (403 for a foreign Origin,
    /// 429 over the per-address cap ...).
    #[error("the server refused the connection: HTTP {status} {body}")]
    Refused { status: u16, body: String },
    /// The handshake failed in another way.
    #[error("handshake with {url} failed: {cause}")]
    Handshake { url: String, cause: String },
}

/// The WebSocket URL of `service` at `base` (`ws://`, `wss://`, `http://` or `https://`, the
/// latter two mapped to the former). A base with a path keeps it; without one the service's
/// path is added.
pub fn socket_url(base: &str, service: Service) -> Result<String, ConnectError> {
    let (scheme, rest) =
        base.split_once("://").ok_or_else(|| ConnectError::BadRequest(format!("not a URL: {base}")))?;
    let scheme = match scheme {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(ConnectError::BadRequest(format!("unsupported scheme {other}: use ws, wss, http or https")));
        }
    };
    let has_path = rest.find('/').is_some_and(|i| i + 1 < rest.len());
    let rest = rest.trim_end_matches('/');
    let path = if has_path { "" } else { service.path() };
    Ok(format!("{scheme}://{rest}{path}"))
}

/// Opens a socket to `url` with extra request headers (`("Origin", "https://…")`); a `wss://`
/// URL is checked against the system's root certificates.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, ConnectError> {
    connect_with_ca(url, headers, None).await
}

/// The TLS settings of a `wss://` connection: the system's roots, or only the certificate
/// authority in `ca` (a PEM file: a private CA, or a self-signed certificate).
fn tls_config(ca: Option<&std::path::Path>) -> Result<std::sync::Arc<rustls::ClientConfig>, ConnectError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ConnectError::BadRequest(format!("--ca {}: {e}", ca.display())))?;
            roots.add_parsable_certificates(certs);
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    // named, not picked by feature flags: the workspace may enable more than one provider
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::BadRequest(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// [`connect`], trusting only the certificate authority in `ca` for `wss://` when given.
pub async fn connect_with_ca(
    url: &str,
    headers: &[(&str, &str)],
    ca: Option<&std::path::Path>,
) -> Result<Socket, ConnectError> {
    let mut request = url.into_client_request().map_err(|e| ConnectError::BadRequest(format!("bad URL {url}: {e}")))?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| ConnectError::BadRequest(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| ConnectError::BadRequest(format!("header value {value:?}: {e}")))?;
        request.headers_mut().append(name, value);
    }
    let unreachable = |cause: String| ConnectError::Unreachable { url: url.to_owned(), cause };
    let connector = match url.starts_with("wss://") {
        true => Some(tokio_tungstenite::Connector::Rustls(tls_config(ca)?)),
        false => None,
    };
    // tungstenite zeroes its whole read chunk before every read; its 128 KiB default costs a
    // busy reader more than the frames it reads (the bench's generator spent half its CPU so)
    let config = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024);
    let handshake = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Err(_) => Err(unreachable("timed out".into())),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            Err(ConnectError::Refused { status: response.status().as_u16(), body: body.trim().to_owned() })
        }
        Ok(Err(tungstenite::Error::Io(e))) => Err(unreachable(e.to_string())),
        Ok(Err(e)) => Err(ConnectError::Handshake { url: url.to_owned(), cause: e.to_string() }),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// A plain `join`: no request id, no resume cursor, no client token.
pub fn join(room: &str, nick: &str) -> ClientMsg {
    ClientMsg::Join { id: None, room: room.into(), nick: nick.into(), since: None, token: None }
}

/// Why [`join_and_wait`] did not end with the room's history.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the hub refused the join: {0}")]
    Refused(String),
    #[error("the connection ended while joining: {0}")]
    Closed(String),
    #[error("no history within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Socket(#[from] tungstenite::Error),
}

/// Sends `join` and reads until the room's `history` arrived (the hub sends it after
/// `joined`): from then on every message of the room reaches this socket. Returns everything
/// read on the way, the `history` last.
pub async fn join_and_wait<S>(ws: &mut S, join: &ClientMsg, wait: Duration) -> Result<Vec<ServerMsg>, JoinError>
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Sink<Message, Error = tungstenite::Error> + Unpin,
{
    ws.send(Message::text(encode(join))).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.map_err(|_| JoinError::TimedOut(wait))?;
        match frame {
            None => return Err(JoinError::Closed("end of stream".into())),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Close(close))) => return Err(JoinError::Closed(format!("{close:?}"))),
            Some(Ok(Message::Text(text))) => {
                // items of types this kit does not know (a newer hub's) are skipped
                for msg in decode_server_items(&text).unwrap_or_default().into_iter().flatten() {
                    let done = matches!(msg, ServerMsg::History { .. });
                    if let ServerMsg::Error { message, .. } = &msg
                        && matches!(join, ClientMsg::Join { .. })
                        && seen.iter().all(|m| !matches!(m, ServerMsg::Joined { .. }))
                    {
                        return Err(JoinError::Refused(message.clone()));
                    }
                    seen.push(msg);
                    if done {
                        return Ok(seen);
                    }
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// The address in a [`LISTENING_PREFIX`] line (or its `https://` form, with TLS).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let line = line.trim();
    let addr = line.strip_prefix(LISTENING_PREFIX).or_else(|| line.strip_prefix("hubbub listening on https://"))?;
    addr.parse().ok()
}

/// Reads a starting `hubbub` process's stdout up to its listening line, within `wait`. Returns
/// the address and the rest of stdout (keep it open: a closed pipe would fail later prints).
pub async fn read_listening_line<R: AsyncRead + Unpin>(
    stdout: R,
    wait: Duration,
) -> std::io::Result<(SocketAddr, Lines<BufReader<R>>)> {
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(wait, lines.next_line())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "hubbub printed no address in time"))??
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "hubbub exited before listening"))?;
    let addr = listening_addr(&line).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a listening line: {line:?}"))
    })?;
    Ok((addr, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_map_schemes_and_add_the_service_path() {
        assert_eq!(socket_url("http://127.0.0.1:3000", Service::Chat).unwrap(), "ws://127.0.0.1:3000/ws");
        assert_eq!(socket_url("https://chat.example/", Service::Echo).unwrap(), "wss://chat.example/ws/echo");
        assert_eq!(socket_url("ws://h:1/custom", Service::Add).unwrap(), "ws://h:1/custom");
        assert!(matches!(socket_url("ftp://h", Service::Chat), Err(ConnectError::BadRequest(_))));
        assert!(matches!(socket_url("localhost:3000", Service::Chat), Err(ConnectError::BadRequest(_))));
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(listening_addr("hubbub listening on http://127.0.0.1:4321\n"), Some(([127, 0, 0, 1], 4321).into()));
        assert_eq!(listening_addr("something else"), None);
    }
}

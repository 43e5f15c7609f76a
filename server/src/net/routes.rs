//! HTTP surface: the chat socket, the health check, and the page itself.

use super::{add::Add, connection, echo::Echo, page::Page, upgrade::Upgrade};
use crate::{AppState, chat::session::ChatSession};
use axum::{
    Json, Router,
    extract::{ConnectInfo, MatchedPath, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hubbub_shared::SUBPROTOCOL;
use std::{net::SocketAddr, sync::Arc};
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};
use tracing::Instrument;

pub(crate) fn router(state: AppState) -> Router {
    let page = Arc::new(Page::load(state.config.static_dir.as_deref()));
    if page.index_html().is_none() {
        tracing::warn!(from = %page.source, "no built page; `make run` builds it");
    } else {
        tracing::info!(from = %page.source, "serving the page");
    }
    let policy = super::guard::csp::policy(page.index_html(), state.config.auth_token_url.as_deref());
    let csp = HeaderValue::from_str(&policy).expect("the policy is ASCII");
    let page = move |uri: Uri, headers: HeaderMap| {
        let page = page.clone();
        async move { page.respond(&uri, &headers) }
    };
    Router::new()
        .route("/ws", get(socket))
        .route("/ws/echo", get(socket))
        .route("/ws/add", get(socket))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(get(page))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, csp))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every WebSocket endpoint, told apart by the route that matched: `/ws` (the chat,
/// `docs/protocol.md`), `/ws/echo` (echoes everything; its size limit is its own, since
/// Autobahn sends up to 16 MiB) and `/ws/add` (the seed's add service in its own JSON shape).
async fn socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: MatchedPath,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    let config = &state.config;
    match path.as_str() {
        "/ws/echo" if !config.echo => (StatusCode::NOT_FOUND, "the echo socket is turned off\n").into_response(),
        "/ws/echo" => {
            let (max, per_sec) = (config.echo_max_message_bytes, config.echo_frames_per_sec);
            upgrade(state, peer, &headers, ws, "echo", max, move |_, _| Echo::new(per_sec))
        }
        "/ws/add" => {
            let max = config.max_message_bytes;
            upgrade(state, peer, &headers, ws, "add", max, |_, _| Add)
        }
        _ => {
            let max = config.max_message_bytes;
            upgrade(state, peer, &headers, ws, "chat", max, |state, conn| ChatSession::new(state.chat.clone(), conn))
        }
    }
}

/// The one way every endpoint upgrades: Origin check (403 before the upgrade), limits, a
/// tracked connection task that shutdown waits for.
fn upgrade<E: super::Endpoint + 'static>(
    state: AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    ws: Upgrade,
    endpoint: &'static str,
    max_message_bytes: usize,
    make_endpoint: impl FnOnce(&AppState, super::ConnId) -> E,
) -> Response {
    // behind a trusted reverse proxy, the client it speaks for; else the peer itself
    let client = state.proxies.client(peer.ip(), headers);
    let who = client.addr;
    if let Err(origin) = state.origins.check(headers, &client) {
        state.stats.origin_refusals.inc();
        tracing::warn!(client = %who, %peer, %origin, endpoint, "refused WebSocket from a foreign origin");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let Some(slot) = state.ip_limiter.acquire(who) else {
        state.stats.ip_cap_refusals.inc();
        tracing::warn!(client = %who, %peer, endpoint, "refused WebSocket: too many connections from this address");
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    };
    let conn = state.new_conn_id();
    // a debug-level span: at info level a span per connection would keep ~0.5 KiB of every idle
    // connection in the subscriber's registry (`hubbub-bench idle`); the connection's few
    // info-level events name it with `Who` instead
    let span = tracing::debug_span!("conn", id = conn, endpoint, client = %who, %peer);
    let named = connection::Who { conn, endpoint, client: who, peer };
    let tracker = state.tracker.clone();
    let read_buffer = state.config.read_buffer_bytes;
    let endpoint = make_endpoint(&state, conn);
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
        .read_buffer_size(read_buffer)
        .write_buffer_size(16 * 1024);
    let compression = state.config.compression;
    ws.respond(SUBPROTOCOL, compression, config, move |socket, deflate| {
        // tracked, so that shutdown waits for this connection's close handshake; the slot
        // under the per-address cap is held for as long as the connection lives
        let stats = state.stats.clone();
        // a bug must not take the process down with it, and must not go unnoticed; the
        // slot under the per-address cap is let go when the connection ends, either way
        // (combinators, not an `async` block, which would hold the connection's future twice)
        let served = std::panic::AssertUnwindSafe(connection::serve(socket, deflate, state, endpoint, named));
        let serve = futures_util::FutureExt::map(futures_util::FutureExt::catch_unwind(served), move |ended| {
            if ended.is_err() {
                stats.panics.inc();
                tracing::error!("connection task panicked");
            }
            drop(slot);
        });
        tracker.track_future(serve.instrument(span))
    })
}

/// Everything the hub counts, in Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.stats.render(state.chat.presence.room_count());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Whether the database works: it answers, and the last group commit did not fail.
async fn storage_problem(state: &AppState) -> Option<String> {
    if let Err(e) = state.chat.log.check().await {
        tracing::warn!(cause = %e, "health check: storage unavailable");
        return Some(e.to_string());
    }
    state.stats.commit_failure()
}

/// Whether a load balancer should send new connections here: 503 while draining (a shutdown
/// began) or while the database fails.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let reason =
        if state.draining.is_cancelled() { Some("draining".to_owned()) } else { storage_problem(&state).await };
    match reason {
        None => (StatusCode::OK, Json(serde_json::json!({ "ready": true }))),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "ready": false, "reason": reason })))
        }
    }
}

/// Liveness, storage and fan-out health and a few counters, as JSON. 503 when the database
/// fails (it does not answer, or the last group commit failed: nothing can be sent); 200 but
/// `degraded` when only fan-out between hubs is (Redis away: this hub still serves its members,
/// so a load balancer should keep it).
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let problem = storage_problem(&state).await;
    let fanout = state.chat.fanout.problem();
    let storage_ok = problem.is_none();
    let status = if storage_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut body = state.stats.summary(state.chat.presence.room_count());
    let healthy = storage_ok && fanout.is_none();
    body.insert("status".into(), if healthy { "ok" } else { "degraded" }.into());
    body.insert("storage".into(), if storage_ok { "ok" } else { "unavailable" }.into());
    body.insert("fanout".into(), fanout.unwrap_or_else(|| "ok".to_owned()).into());
    if let Some(problem) = problem {
        body.insert("storage_error".into(), problem.into());
    }
    let body = Json(serde_json::Value::Object(body));
    (status, body)
}

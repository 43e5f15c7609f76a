//! HTTP surface: the chat socket, the health check, and the page itself.

use crate::{AppState, connection};
use axum::{
    Json, Router,
    extract::{ConnectInfo, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use hubbub_shared::SUBPROTOCOL;
use std::net::SocketAddr;
use tower_http::{
    services::{ServeDir, ServeFile},
    trace::TraceLayer,
};
use tracing::Instrument;

pub(crate) fn router(state: AppState) -> Router {
    let static_dir = &state.config.static_dir;
    // unknown paths get index.html so that client-side routes survive a reload
    let page = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    Router::new()
        .route("/ws", get(chat_socket))
        .route("/healthz", get(healthz))
        .fallback_service(page)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Upgrades to the chat WebSocket after the Origin check.
async fn chat_socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(origin) = state.origins.check(&headers) {
        state.stats.origin_refusals.inc();
        tracing::warn!(%peer, %origin, "refused WebSocket from a foreign origin");
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let config = &state.config;
    let conn = state.hub.new_conn_id();
    let span = tracing::info_span!("conn", id = conn, %peer);
    let tracker = state.tracker.clone();
    ws.protocols([SUBPROTOCOL])
        .max_message_size(config.max_message_bytes)
        .max_frame_size(config.max_message_bytes)
        .read_buffer_size(config.read_buffer_bytes)
        .write_buffer_size(16 * 1024)
        .on_upgrade(move |socket| {
            // tracked, so that shutdown waits for this connection's close handshake
            tracker.track_future(connection::serve(socket, state, conn).instrument(span))
        })
}

/// Liveness plus a few counters, as JSON.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "connections": state.stats.connections.get(),
        "rooms": state.hub.room_count(),
        "slow_consumer_evictions": state.stats.slow_consumer_evictions.get(),
        "origin_refusals": state.stats.origin_refusals.get(),
    }))
}

//! The "what a Rust user would write first" baseline, in the style of axum's chat example
//! (axum 0.8, `examples/chat`), minus its HTML page: one `tokio::sync::broadcast` channel for
//! everyone; the first text is the user name; every text is broadcast as `name: text` to all,
//! the sender included; one `send` (write + flush) per message.
//!
//! Two changes from the example, or it could not hold the benchmark's 1,000 clients at all:
//! the example's channel of 100 with `while let Ok(msg) = rx.recv()` disconnects every client
//! that falls 100 messages behind, and 1,000 "joined" notices alone do that. Here the channel
//! holds 1,024 and a lagging receiver skips what it missed (`RecvError::Lagged`) and stays.
//!
//! `axum-broadcast -addr 127.0.0.1:PORT` (the flag spelled like gorilla's, so the bench starts
//! both the same way).

use axum::{
    Router,
    extract::{
        State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    response::IntoResponse,
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};
use tokio::sync::broadcast;

struct AppState {
    user_set: Mutex<HashSet<String>>,
    tx: broadcast::Sender<String>,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .iter()
        .position(|a| a == "-addr" || a == "--addr")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let (tx, _rx) = broadcast::channel(1024);
    let state = Arc::new(AppState { user_set: Mutex::new(HashSet::new()), tx });
    let app = Router::new().route("/ws", get(websocket_handler)).with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

async fn websocket_handler(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>) -> impl IntoResponse {
    ws.on_upgrade(|socket| websocket(socket, state))
}

async fn websocket(stream: WebSocket, state: Arc<AppState>) {
    let (mut sender, mut receiver) = stream.split();
    let mut username = String::new();
    while let Some(Ok(message)) = receiver.next().await {
        if let Message::Text(name) = message {
            check_username(&state, &mut username, name.as_str());
            if !username.is_empty() {
                break;
            }
            let _ = sender.send(Message::Text(Utf8Bytes::from_static("Username already taken."))).await;
            return;
        }
    }
    let mut rx = state.tx.subscribe();
    let _ = state.tx.send(format!("{username} joined."));
    let mut send_task = tokio::spawn(async move {
        loop {
            let msg = match rx.recv().await {
                Ok(msg) => msg,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if sender.send(Message::text(msg)).await.is_err() {
                break;
            }
        }
    });
    let tx = state.tx.clone();
    let name = username.clone();
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = receiver.next().await {
            let _ = tx.send(format!("{name}: {text}"));
        }
    });
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    };
    let _ = state.tx.send(format!("{username} left."));
    state.user_set.lock().unwrap_or_else(|p| p.into_inner()).remove(&username);
}

fn check_username(state: &AppState, string: &mut String, name: &str) {
    let mut user_set = state.user_set.lock().unwrap_or_else(|p| p.into_inner());
    if !user_set.contains(name) {
        user_set.insert(name.to_owned());
        string.push_str(name);
    }
}

//! The connection task: one WebSocket at a time, reconnected with backoff for as long as the
//! page is open. It is the only code that touches the socket; everything it receives goes
//! through [`Chat::receive`] in arrival order.
//!
//! Lifecycle: open → wait for `welcome` → rejoin every room the page is in (from its last seq)
//! → resend the unacknowledged outbox → pump queued
//! outbound messages and inbound frames → on close, record the close code and reason, wait a
//! full-jitter backoff (cut short by the browser's `online` event), and start over.

use crate::state::Chat;
use futures::{
    SinkExt, StreamExt,
    channel::mpsc::{UnboundedReceiver, unbounded},
    future::{Either, select},
};
use gloo_net::websocket::{Message, WebSocketError, futures::WebSocket};
use gloo_timers::future::sleep;
use hubbub_shared::{ClientMsg, PROTOCOL_VERSION, ServerMsg, close, decode_server_items, encode};
use leptos::{ev, prelude::*, task::spawn_local};
use std::time::Duration;

/// First retry waits up to this long (plus the floor); each further retry doubles it.
const BACKOFF_BASE_MS: f64 = 500.0;
const BACKOFF_CAP_MS: f64 = 20_000.0;
/// Never retry sooner than this, whatever the jitter says: no hot loop against a dead server.
const BACKOFF_FLOOR_MS: f64 = 250.0;

/// How a connection ended.
struct Ended {
    code: u16,
    reason: String,
    /// Whether the hub had welcomed us: if so the next retry starts from the short delay.
    was_welcomed: bool,
    /// Retrying cannot help (the hub speaks another protocol version).
    give_up: bool,
    /// The page was put away (hidden for navigation): reconnect when it is shown again.
    put_away: bool,
}

impl Ended {
    fn retry(code: u16, reason: String, was_welcomed: bool) -> Self {
        Ended { code, reason, was_welcomed, give_up: false, put_away: false }
    }
}

pub(crate) fn spawn(chat: Chat, mut outbound: UnboundedReceiver<ClientMsg>) {
    let (online_tx, mut online) = unbounded::<()>();
    // coming back online is the best moment to retry; the listener lives as long as the page
    let _ = window_event_listener(ev::online, move |_| {
        let _ = online_tx.unbounded_send(());
    });
    // A page the browser puts away (back/forward cache, or unloading) lets go of its socket:
    // otherwise the hub would count the person as present for as long as the browser keeps it.
    // `true`: the page is put away; `false`: it is shown again from the cache.
    let (page_tx, mut page_events) = unbounded::<bool>();
    let hide_tx = page_tx.clone();
    let _ = window_event_listener(ev::pagehide, move |_| {
        let _ = hide_tx.unbounded_send(true);
    });
    let _ = window_event_listener(ev::pageshow, move |e| {
        if e.persisted() {
            let _ = page_tx.unbounded_send(false);
        }
    });
    spawn_local(async move {
        let mut failures: u32 = 0;
        let mut first: Option<ClientMsg> = None;
        loop {
            let ended = run_once(chat, &mut outbound, &mut page_events, first.take()).await;
            if ended.put_away {
                chat.connection_lost(ended.code, ended.reason, ended.was_welcomed);
                // connect again (at once, resuming every room) when the page is shown again
                while page_events.next().await == Some(true) {}
                failures = 0;
                continue;
            }
            // closed for joining nothing while the person is still on the join form: stay
            // idle, and connect again the moment they join (that join goes first)
            if ended.code == close::NO_JOIN && chat.with_untracked(|m| m.rooms.is_empty()) {
                chat.idle();
                match outbound.next().await {
                    Some(msg) => {
                        first = Some(msg);
                        failures = 0;
                        continue;
                    }
                    None => return,
                }
            }
            if ended.give_up {
                chat.closed_for_good(ended.code, ended.reason);
                return;
            }
            failures = if ended.was_welcomed { 0 } else { failures + 1 };
            chat.connection_lost(ended.code, ended.reason, ended.was_welcomed);
            let delay = backoff_ms(failures);
            let wait = sleep(Duration::from_millis(delay as u64));
            futures::pin_mut!(wait);
            // drain stale `online` events, then wait for the timer or a fresh one
            while online.try_recv().is_ok() {}
            let _ = select(wait, online.next()).await;
        }
    });
}

/// Full jitter: uniform in [0, min(cap, base·2^n)), plus a floor.
fn backoff_ms(failures: u32) -> f64 {
    let ceiling = (BACKOFF_BASE_MS * 2f64.powi(failures.min(16) as i32)).min(BACKOFF_CAP_MS);
    BACKOFF_FLOOR_MS + crate::browser::random() * ceiling
}

/// One connection, from open to close.
async fn run_once(
    chat: Chat,
    outbound: &mut UnboundedReceiver<ClientMsg>,
    page_events: &mut UnboundedReceiver<bool>,
    first: Option<ClientMsg>,
) -> Ended {
    // No subprotocol is requested: trunk serve's proxy (0.21) never selects one, and a browser
    // that asked for one drops a connection whose answer lacks it. `welcome.protocol` is the
    // version check instead.
    let ws = match WebSocket::open(&crate::browser::socket_url("/ws")) {
        Ok(ws) => ws,
        Err(err) => {
            return Ended::retry(close::ABNORMAL, err.to_string(), false);
        }
    };
    let (mut sink, mut stream) = ws.split();
    let mut welcomed = false;
    loop {
        // outbound messages wait in the queue until the hub has welcomed us and we rejoined
        let next_out = async { if welcomed { outbound.next().await } else { futures::future::pending().await } };
        futures::pin_mut!(next_out);
        let put_away = async { while page_events.next().await == Some(false) {} };
        futures::pin_mut!(put_away);
        let next = match select(put_away, select(stream.next(), next_out)).await {
            Either::Left(_) => {
                let _ = sink.close().await;
                let reason = "page put away".to_owned();
                return Ended {
                    code: close::GOING_AWAY,
                    reason,
                    was_welcomed: welcomed,
                    give_up: false,
                    put_away: true,
                };
            }
            Either::Right((next, _)) => next,
        };
        match next {
            // until the `welcome`: check the version, then rejoin every room (resuming from its
            // last seq, under the epoch those seqs came from) and resend the outbox first
            Either::Left((Some(Ok(Message::Text(text))), _)) if !welcomed => {
                for msg in decode_server_items(&text).unwrap_or_default().into_iter().flatten() {
                    if let ServerMsg::Welcome { protocol, .. } = &msg {
                        if *protocol != PROTOCOL_VERSION {
                            let reason = format!("protocol {protocol} is not supported by this page; reload it");
                            return Ended {
                                code: close::PROTOCOL_ERROR,
                                reason,
                                was_welcomed: false,
                                give_up: true,
                                put_away: false,
                            };
                        }
                        welcomed = true;
                        chat.connected();
                        for msg in chat.after_welcome().into_iter().chain(first.clone()) {
                            if sink.send(Message::Text(encode(&msg))).await.is_err() {
                                break;
                            }
                        }
                    }
                    chat.apply(msg);
                }
            }
            // one message, or several queued together in a JSON array
            Either::Left((Some(Ok(Message::Text(text))), _)) => chat.receive(&text),
            // the hub never sends binary frames on the chat socket
            Either::Left((Some(Ok(Message::Bytes(_))), _)) => {}
            Either::Left((Some(Err(WebSocketError::ConnectionClose(event))), _)) => {
                return Ended::retry(event.code, event.reason, welcomed);
            }
            Either::Left((Some(Err(_)), _)) => {}
            Either::Left((None, _)) => {
                return Ended::retry(close::ABNORMAL, String::new(), welcomed);
            }
            Either::Right((Some(msg), _)) => {
                if sink.send(Message::Text(encode(&msg))).await.is_err() {
                    // the close event follows on the stream
                    continue;
                }
            }
            Either::Right((None, _)) => {
                return Ended::retry(close::NORMAL, String::new(), welcomed);
            }
        }
    }
}

//! The connection task: one WebSocket at a time, reconnected with backoff for as long as the
//! page is open. It is the only code that touches the socket; everything it receives goes
//! through [`Chat::receive`] in arrival order.
//!
//! Lifecycle: open → wait for `welcome` → in sign-in mode, fetch a token from the host
//! application (`welcome.auth.token_url`), send `auth` and wait for `authed`, then fetch a fresh
//! token two thirds into each token's life → rejoin every room the page is in (from its last seq)
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
use hubbub_shared::{
    ClientMsg, PROTOCOL_VERSION, ServerMsg, close, page_codec::decode_server_items, page_codec::encode_client as encode,
};
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

    /// Retrying cannot help: the page says why and stops.
    fn give_up(code: u16, reason: String) -> Self {
        Ended { code, reason, was_welcomed: false, give_up: true, put_away: false }
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

/// How far into a sign-in token's remaining life the page fetches the next one: two thirds, so
/// a slow host application (or a throttled background tab) still has a third of it to spare.
const REFRESH_AT: f64 = 2.0 / 3.0;
/// A failed refresh is tried again this soon, until the token runs out (the hub then closes
/// with 4006 and the next connection signs in afresh).
const REFRESH_RETRY_MS: f64 = 5_000.0;

/// What woke the connection loop.
enum Event {
    PutAway,
    RefreshToken,
    Frame(Option<Result<Message, WebSocketError>>),
    Out(Option<ClientMsg>),
}

/// One connection, from open to close.
async fn run_once(
    chat: Chat,
    outbound: &mut UnboundedReceiver<ClientMsg>,
    page_events: &mut UnboundedReceiver<bool>,
    mut first: Option<ClientMsg>,
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
    // outbound messages wait in the queue until the hub has welcomed us (and, in sign-in
    // mode, said `authed`) and we rejoined
    let mut ready = false;
    // sign-in mode: where tokens come from, when to fetch the next, and for which expiry
    let mut token_url: Option<String> = None;
    let mut refresh_at: Option<f64> = None;
    let mut planned_for: Option<u64> = None;
    loop {
        let next_out = async { if ready { outbound.next().await } else { futures::future::pending().await } };
        futures::pin_mut!(next_out);
        let put_away = async { while page_events.next().await == Some(false) {} };
        futures::pin_mut!(put_away);
        let refresh_due = refresh_at;
        let refresh = async move {
            match refresh_due {
                Some(at) => sleep(Duration::from_millis((at - crate::browser::now_ms()).max(0.0) as u64)).await,
                None => futures::future::pending().await,
            }
        };
        futures::pin_mut!(refresh);
        let event = match select(put_away, select(refresh, select(stream.next(), next_out))).await {
            Either::Left(_) => Event::PutAway,
            Either::Right((Either::Left(_), _)) => Event::RefreshToken,
            Either::Right((Either::Right((Either::Left((frame, _)), _)), _)) => Event::Frame(frame),
            Either::Right((Either::Right((Either::Right((out, _)), _)), _)) => Event::Out(out),
        };
        match event {
            Event::PutAway => {
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
            // before the hub said the token runs out: fetch a fresh one and hand it over
            // (`authed` moves the expiry, and the next refresh is planned from it)
            Event::RefreshToken => {
                let fetched = match &token_url {
                    Some(url) => crate::browser::fetch_token(url).await,
                    None => Err(String::new()),
                };
                refresh_at = match fetched {
                    Ok(token) => {
                        if sink.send(Message::Text(encode(&ClientMsg::Auth { id: None, token }))).await.is_err() {
                            continue;
                        }
                        None
                    }
                    Err(problem) => {
                        leptos::logging::debug_warn!("sign-in refresh failed: {problem}");
                        let now = crate::browser::now_ms();
                        planned_for.filter(|exp| (*exp as f64) > now).map(|_| now + REFRESH_RETRY_MS)
                    }
                };
            }
            // until ready: check the version, sign in when the hub asks for it, then rejoin
            // every room (resuming from its last seq, under the epoch those seqs came from)
            // and resend the outbox first
            Event::Frame(Some(Ok(Message::Text(text)))) if !ready => {
                for msg in decode_server_items(&text).unwrap_or_default().into_iter().flatten() {
                    let signing_in = match &msg {
                        ServerMsg::Welcome { protocol, .. } if *protocol != PROTOCOL_VERSION => {
                            let reason = format!("protocol {protocol} is not supported by this page; reload it");
                            return Ended::give_up(close::PROTOCOL_ERROR, reason);
                        }
                        ServerMsg::Welcome { auth, .. } => {
                            welcomed = true;
                            Some(auth.as_ref().map(|a| a.token_url.clone()))
                        }
                        _ => None,
                    };
                    let authed = matches!(msg, ServerMsg::Authed { .. });
                    chat.apply(msg);
                    let start = match signing_in {
                        // anonymous mode: go
                        Some(None) => true,
                        Some(Some(None)) => {
                            let reason = "this hub wants sign-in but names no address to get a token from".to_owned();
                            return Ended::give_up(close::AUTH_FAILED, reason);
                        }
                        // sign-in mode: the token first; everything else waits for `authed`
                        Some(Some(Some(url))) => {
                            match crate::browser::fetch_token(&url).await {
                                Ok(token) => {
                                    let auth = ClientMsg::Auth { id: None, token };
                                    let _ = sink.send(Message::Text(encode(&auth))).await;
                                }
                                Err(problem) => {
                                    let _ = sink.close().await;
                                    return Ended::retry(
                                        close::AUTH_FAILED,
                                        format!("cannot sign in: {problem}"),
                                        false,
                                    );
                                }
                            }
                            token_url = Some(url);
                            false
                        }
                        None => authed,
                    };
                    if start {
                        ready = true;
                        chat.connected();
                        plan_refresh(chat, &mut planned_for, &mut refresh_at);
                        for msg in chat.after_welcome().into_iter().chain(first.take()) {
                            if sink.send(Message::Text(encode(&msg))).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            // one message, or several queued together in a JSON array
            Event::Frame(Some(Ok(Message::Text(text)))) => {
                chat.receive(&text);
                if token_url.is_some() {
                    plan_refresh(chat, &mut planned_for, &mut refresh_at);
                }
            }
            // the hub never sends binary frames on the chat socket
            Event::Frame(Some(Ok(Message::Bytes(_)))) => {}
            Event::Frame(Some(Err(WebSocketError::ConnectionClose(event)))) => {
                return Ended::retry(event.code, event.reason, welcomed);
            }
            Event::Frame(Some(Err(_))) => {}
            Event::Frame(None) => {
                return Ended::retry(close::ABNORMAL, String::new(), welcomed);
            }
            Event::Out(Some(msg)) => {
                // on failure, the close event follows on the stream
                let _ = sink.send(Message::Text(encode(&msg))).await;
            }
            Event::Out(None) => {
                return Ended::retry(close::NORMAL, String::new(), welcomed);
            }
        }
    }
}

/// After an `authed` with a new expiry: plan the next token fetch.
fn plan_refresh(chat: Chat, planned_for: &mut Option<u64>, refresh_at: &mut Option<f64>) {
    let expires_at = chat.with_untracked(|m| m.signed_in.as_ref().map(|s| s.expires_at));
    if let Some(exp) = expires_at
        && expires_at != *planned_for
    {
        *planned_for = expires_at;
        let now = crate::browser::now_ms();
        *refresh_at = Some(now + (exp as f64 - now).max(0.0) * REFRESH_AT);
    }
}

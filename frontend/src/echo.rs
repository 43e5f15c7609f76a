//! The echo test page (`/echo`): one socket to `/ws/echo`, a box to send text, and a log of
//! what happened: connected, sent, received, and the close code when the connection ends.

use crate::components::on;
use futures::{
    SinkExt, StreamExt,
    channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded},
    future::{Either, poll_fn, select},
};
use gloo_net::websocket::{Message, State, WebSocketError, futures::WebSocket};
use hubbub_shared::close;
use leptos::{ev::SubmitEvent, prelude::*, task::spawn_local};
use std::pin::Pin;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    key: u64,
    /// `info`, `sent`, `received` or `closed`: the CSS class and the prefix.
    kind: &'static str,
    text: String,
}

#[derive(Debug, Clone, Copy)]
struct EchoLog {
    lines: RwSignal<Vec<Line>>,
    open: RwSignal<bool>,
}

impl EchoLog {
    fn push(&self, kind: &'static str, text: impl Into<String>) {
        let text = text.into();
        self.lines.update(|lines| {
            let key = lines.last().map_or(0, |l| l.key + 1);
            lines.push(Line { key, kind, text });
        });
    }
}

#[component]
pub(crate) fn EchoPage() -> impl IntoView {
    let log = EchoLog { lines: RwSignal::new(Vec::new()), open: RwSignal::new(false) };
    let sender: StoredValue<Option<UnboundedSender<String>>> = StoredValue::new(None);
    let connect = move || {
        let (tx, rx) = unbounded();
        sender.set_value(Some(tx));
        spawn_local(run(rx, log));
    };
    connect();

    // read when sent, then cleared (no signal per keystroke)
    let input = NodeRef::<leptos::html::Input>::new();
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let Some(el) = input.get_untracked() else { return };
        let typed = el.value();
        if typed.is_empty() {
            return;
        }
        sender.with_value(|tx| {
            if let Some(tx) = tx {
                let _ = tx.unbounded_send(typed);
            }
        });
        el.set_value("");
    };

    view! {
        <div class="app echo-page">
            <header class="topbar">
                <h1>"Hubbub · echo"</h1>
                <a class="nav" href="/">"Back to the chat"</a>
            </header>
            <main class="echo-main">
                <p class="hint">"Everything sent to " <code>"/ws/echo"</code> " comes back unchanged."</p>
                <form class="compose" on:submit=on(on_submit)>
                    <label for="echo-input">"Message"</label>
                    <div class="compose-row">
                        <input
                            id="echo-input"
                            autocomplete="off"
                            node_ref=input
                            disabled=move || !log.open.get()
                        />
                        <button type="submit" disabled=move || !log.open.get()>
                            "Send"
                        </button>
                        <button type="button" hidden=move || log.open.get() on:click=on(move |_| connect())>
                            "Reconnect"
                        </button>
                    </div>
                </form>
                <ol class="echo-log" role="log" aria-label="Echo log">
                    <For each=move || log.lines.get() key=|line| line.key let:line>
                        <li class=line.kind>{format!("{}: {}", line.kind, line.text)}</li>
                    </For>
                </ol>
            </main>
        </div>
    }
}

/// One echo connection, from open to close.
async fn run(mut outgoing: UnboundedReceiver<String>, log: EchoLog) {
    let url = crate::browser::socket_url("/ws/echo");
    let mut ws = match WebSocket::open(&url) {
        Ok(ws) => ws,
        Err(err) => return log.push("closed", format!("could not open {url}: {err}")),
    };
    // gloo's sink becomes ready when the socket leaves CONNECTING (open or failed)
    let _ = poll_fn(|cx| futures::Sink::<Message>::poll_ready(Pin::new(&mut ws), cx)).await;
    if matches!(ws.state(), State::Open) {
        log.open.set(true);
        log.push("info", format!("connected to {url}"));
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        match select(stream.next(), outgoing.next()).await {
            Either::Left((Some(Ok(Message::Text(text))), _)) => log.push("received", text),
            Either::Left((Some(Ok(Message::Bytes(bytes))), _)) => {
                log.push("received", format!("{} bytes of binary", bytes.len()))
            }
            Either::Left((Some(Err(WebSocketError::ConnectionClose(event))), _)) => {
                let reason =
                    if event.reason.is_empty() { close::describe(event.code).to_owned() } else { event.reason };
                log.push("closed", format!("{} {reason}", event.code));
                break;
            }
            Either::Left((Some(Err(_)), _)) => {}
            Either::Left((None, _)) => break,
            Either::Right((Some(text), _)) => {
                if sink.send(Message::Text(text.clone())).await.is_ok() {
                    log.push("sent", text);
                }
            }
            Either::Right((None, _)) => break,
        }
    }
    log.open.set(false);
}

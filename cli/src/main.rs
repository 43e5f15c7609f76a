//! `hubbub-cli`: Hubbub from a terminal, the counterpart of the seed's Go dialer.
//!
//! ```text
//! hubbub-cli ws://127.0.0.1:3000 --nick ada            # chat in #lobby; type lines to send
//! hubbub-cli ws://127.0.0.1:3000 --mode echo           # lines come back from /ws/echo
//! hubbub-cli ws://127.0.0.1:3000 --mode add            # "3 9" prints 12, via /ws/add
//! ```
//!
//! Exit codes: 0 stdin ended and the connection closed cleanly; 1 any other failure; 2 bad
//! arguments; 3 the server cannot be reached; 4 the server refused the handshake (an HTTP
//! status such as 403 for a foreign Origin); 5 the server closed the connection.

mod render;

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hubbub_shared::{ClientMsg, ServerMsg};
use std::time::Duration;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{
    self, Message,
    client::IntoClientRequest,
    http::{HeaderName, HeaderValue},
    protocol::{CloseFrame, frame::coding::CloseCode},
};

#[derive(Debug, Parser)]
#[command(name = "hubbub-cli", version, about = "Hubbub from a terminal: chat, echo and add")]
struct Args {
    /// The hub, e.g. ws://127.0.0.1:3000 (http:// works too). Without a path, the mode picks
    /// it: /ws for chat, /ws/echo, /ws/add.
    url: String,

    /// What to do with the lines typed on stdin.
    #[arg(short, long, value_enum, default_value_t = Mode::Chat)]
    mode: Mode,

    /// Nickname to join with (needed in chat mode).
    #[arg(short, long)]
    nick: Option<String>,

    /// Room to join (chat mode).
    #[arg(short, long, default_value = "lobby")]
    room: String,

    /// Extra request header for the handshake, `Name: value`; repeatable (e.g. an Origin).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Print every frame as the raw JSON (or text) that arrived, one per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Join a room; each line is a message; what the room says is printed.
    Chat,
    /// Each line goes to /ws/echo and comes back.
    Echo,
    /// Each line is two integers for /ws/add; their sum is printed.
    Add,
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let code = match run(args).await {
        Ok(()) => 0,
        Err(Failure { code, message }) => {
            eprintln!("hubbub-cli: {message}");
            code
        }
    };
    // exit here: returning would drop the runtime, which waits for the blocking read of a
    // stdin that may never end (the server closed while the person was still typing)
    std::process::exit(code.into());
}

/// The WebSocket URL for `mode`: scheme mapped to ws/wss, path added when there is none.
fn socket_url(url: &str, mode: Mode) -> Result<String, Failure> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| fail(2, format!("not a URL: {url}")))?;
    let scheme = match scheme {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => return Err(fail(2, format!("unsupported scheme {other}: use ws, wss, http or https"))),
    };
    let has_path = rest.find('/').is_some_and(|i| i + 1 < rest.len());
    let rest = rest.trim_end_matches('/');
    let path = match (has_path, mode) {
        (true, _) => "",
        (false, Mode::Chat) => "/ws",
        (false, Mode::Echo) => "/ws/echo",
        (false, Mode::Add) => "/ws/add",
    };
    Ok(format!("{scheme}://{rest}{path}"))
}

async fn run(args: Args) -> Result<(), Failure> {
    // checked here, not by clap: `required_if_eq` does not see a defaulted --mode
    if args.mode == Mode::Chat && args.nick.is_none() {
        return Err(fail(2, "chat mode needs --nick NAME"));
    }
    let url = socket_url(&args.url, args.mode)?;
    let mut request = url.as_str().into_client_request().map_err(|e| fail(2, format!("bad URL {url}: {e}")))?;
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').ok_or_else(|| fail(2, format!("header needs NAME: VALUE, got {header:?}")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| fail(2, format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| fail(2, format!("header value {value:?}: {e}")))?;
        request.headers_mut().append(name, value);
    }

    let connect = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(request));
    let (ws, _) = match connect.await {
        Err(_) => return Err(fail(3, format!("cannot reach {url}: timed out"))),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            return Err(fail(4, format!("the server refused the connection: HTTP {status} {}", body.trim())));
        }
        Ok(Err(tungstenite::Error::Io(e))) => return Err(fail(3, format!("cannot reach {url}: {e}"))),
        Ok(Err(e)) => return Err(fail(1, format!("handshake with {url} failed: {e}"))),
        Ok(Ok(ok)) => ok,
    };
    let (mut sink, mut stream) = ws.split();

    if args.mode == Mode::Chat {
        let nick = args.nick.clone().unwrap_or_default();
        let join = ClientMsg::Join { id: None, room: args.room.clone(), nick, since: None, token: None };
        sink.send(Message::text(hubbub_shared::encode(&join))).await.map_err(|e| fail(1, e.to_string()))?;
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let me = args.nick.as_deref().and_then(|n| hubbub_shared::Nick::parse(n).ok());
    // Requests sent whose reply has not arrived. Once stdin ends we close only after they
    // are in (or 5 s passed): after answering our close the server can send nothing more.
    let mut pending: usize = 0;
    let mut give_up_at: Option<Instant> = None; // set when stdin ends
    let mut close_sent_at: Option<Instant> = None;
    loop {
        if let (Some(give_up), None) = (give_up_at, close_sent_at)
            && (pending == 0 || Instant::now() >= give_up)
        {
            let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
            let _ = sink.send(Message::Close(Some(bye))).await;
            close_sent_at = Some(Instant::now());
        }
        let deadline = match (close_sent_at, give_up_at) {
            (Some(sent), _) => sent + Duration::from_secs(5),
            (None, Some(give_up)) => give_up,
            (None, None) => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            line = lines.next_line(), if give_up_at.is_none() => match line {
                Ok(Some(line)) => {
                    if let Some(frame) = outgoing(&args, &line) {
                        sink.send(Message::text(frame)).await.map_err(|e| fail(1, e.to_string()))?;
                        pending += 1;
                    }
                }
                Ok(None) | Err(_) => give_up_at = Some(Instant::now() + Duration::from_secs(5)),
            },
            frame = tokio::time::timeout_at(deadline, stream.next()) => match frame {
                Err(_) if close_sent_at.is_some() => return Ok(()),
                // replies overdue: the top of the loop sends the close now
                Err(_) => {}
                // the answer to our close (or the end of the connection after it)
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) if close_sent_at.is_some() => return Ok(()),
                Ok(Some(Ok(Message::Close(close)))) => {
                    let (code, reason) = close.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    let reason = if reason.is_empty() { hubbub_shared::close::describe(code).to_owned() } else { reason };
                    return Err(fail(5, format!("the server closed the connection: {code} {reason}")));
                }
                Ok(Some(Ok(msg))) => {
                    pending = pending.saturating_sub(answers(args.mode, me.as_ref(), &msg));
                    show(&args, msg);
                }
                Ok(Some(Err(e))) => return Err(fail(5, format!("the connection broke: {e}"))),
                Ok(None) => return Err(fail(5, "the server closed the connection".to_string())),
            },
        }
    }
}

/// How many replies to our lines `msg` carries: the echo, the sum, or (chat) our own
/// messages coming back from the room and refusals (a chat frame may carry several).
fn answers(mode: Mode, me: Option<&hubbub_shared::Nick>, msg: &Message) -> usize {
    let answers_one = |msg: &ServerMsg| match msg {
        ServerMsg::Message(m) => me.is_some_and(|me| me.as_str() == m.author),
        ServerMsg::Error { code, .. } => {
            !matches!(code.as_str(), c if c.starts_with("nick_") || c.starts_with("room_"))
        }
        _ => false,
    };
    match (mode, msg) {
        (Mode::Echo, Message::Text(_) | Message::Binary(_)) | (Mode::Add, Message::Text(_)) => 1,
        (Mode::Chat, Message::Text(text)) => {
            hubbub_shared::decode_server_frame(text).map_or(0, |msgs| msgs.iter().filter(|m| answers_one(m)).count())
        }
        _ => 0,
    }
}

/// The frame to send for one typed line, if any.
fn outgoing(args: &Args, line: &str) -> Option<String> {
    match args.mode {
        Mode::Chat if line.trim().is_empty() => None,
        Mode::Chat => {
            Some(hubbub_shared::encode(&ClientMsg::Send { id: None, room: args.room.clone(), text: line.to_owned() }))
        }
        Mode::Echo => Some(line.to_owned()),
        Mode::Add => {
            let numbers: Vec<i64> = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()
                .unwrap_or_default();
            match numbers[..] {
                [a, b] => Some(serde_json::json!({ "A": a, "B": b }).to_string()),
                _ => {
                    eprintln!("hubbub-cli: type two integers, like `3 9`");
                    None
                }
            }
        }
    }
}

fn show(args: &Args, msg: Message) {
    let line = match msg {
        // one JSON object per line, also when the hub sent several in one array frame
        Message::Text(text) if args.json && args.mode == Mode::Chat && text.starts_with('[') => {
            match hubbub_shared::decode_server_frame(&text) {
                Ok(msgs) => Some(msgs.iter().map(hubbub_shared::encode).collect::<Vec<_>>().join("\n")),
                Err(_) => Some(text.to_string()),
            }
        }
        Message::Text(text) if args.json => Some(text.to_string()),
        Message::Text(text) => render::readable(args.mode, &text),
        Message::Binary(data) => Some(format!("<{} bytes of binary>", data.len())),
        _ => None,
    };
    if let Some(line) = line {
        println!("{line}");
    }
}

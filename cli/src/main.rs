//! `hubbub-cli`: Hubbub from a terminal, the counterpart of the seed's Go dialer.
//!
//! ```text
//! hubbub-cli ws://127.0.0.1:3000 --nick ada            # chat in #lobby; type lines to send
//!                                                       # (`/search WORDS`, `/rooms`: see below)
//! hubbub-cli ws://127.0.0.1:3000 --mode echo           # lines come back from /ws/echo
//! hubbub-cli ws://127.0.0.1:3000 --mode add            # "3 9" prints 12, via /ws/add
//! ```
//!
//! Exit codes: 0 stdin ended and the connection closed cleanly; 1 any other failure; 2 bad
//! arguments; 3 the server cannot be reached; 4 the server refused the handshake (an HTTP
//! status such as 403 for a foreign Origin); 5 the server closed the connection.

mod render;

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt, stream::SplitSink, stream::SplitStream};
use hubbub_client::{ConnectError, Service, Socket};
use hubbub_shared::{ClientMsg, ServerMsg};
use std::time::Duration;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    time::Instant,
};
use tokio_tungstenite::tungstenite::{
    Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

/// Once stdin ends, how long replies to what we sent may take before we close anyway.
const REPLY_GRACE: Duration = Duration::from_secs(5);
/// After our close, how long the server's close reply may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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

    /// For `wss://`: trust only this certificate authority (PEM), e.g. a self-signed hub's
    /// certificate; without it, the system's root certificates.
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Join a room; each line is a message; what the room says is printed. Two lines are
    /// commands: `/search WORDS` prints the room's messages with those words (matches between
    /// `*`), `/rooms` the rooms people are in.
    Chat,
    /// Each line goes to /ws/echo and comes back.
    Echo,
    /// Each line is two integers for /ws/add; their sum is printed.
    Add,
}

impl Mode {
    fn service(self) -> Service {
        match self {
            Mode::Chat => Service::Chat,
            Mode::Echo => Service::Echo,
            Mode::Add => Service::Add,
        }
    }
}

/// The process's exit codes (documented in the README and `--help`'s module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// stdin ended and the connection closed cleanly.
    Done = 0,
    /// Any other failure.
    Failed = 1,
    /// Bad arguments.
    BadArguments = 2,
    /// The server cannot be reached.
    Unreachable = 3,
    /// The server refused the handshake (an HTTP status such as 403).
    Refused = 4,
    /// The server closed the connection.
    ClosedByServer = 5,
}

/// A failure, with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    exit: Exit,
    message: String,
}

fn fail(exit: Exit, message: impl Into<String>) -> Failure {
    Failure { exit, message: message.into() }
}

impl From<ConnectError> for Failure {
    fn from(e: ConnectError) -> Self {
        let exit = match e {
            ConnectError::BadRequest(_) => Exit::BadArguments,
            ConnectError::Unreachable { .. } => Exit::Unreachable,
            ConnectError::Refused { .. } => Exit::Refused,
            ConnectError::Handshake { .. } => Exit::Failed,
        };
        fail(exit, e.to_string())
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let exit = match run(args).await {
        Ok(()) => Exit::Done,
        Err(Failure { exit, message }) => {
            eprintln!("hubbub-cli: {message}");
            exit
        }
    };
    // exit here: returning would drop the runtime, which waits for the blocking read of a
    // stdin that may never end (the server closed while the person was still typing)
    std::process::exit(exit as i32);
}

async fn run(args: Args) -> Result<(), Failure> {
    // checked here, not by clap: `required_if_eq` does not see a defaulted --mode
    if args.mode == Mode::Chat && args.nick.is_none() {
        return Err(fail(Exit::BadArguments, "chat mode needs --nick NAME"));
    }
    let url = hubbub_client::socket_url(&args.url, args.mode.service())?;
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':').ok_or_else(|| fail(Exit::BadArguments, format!("header needs NAME: VALUE, got {h:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ws = hubbub_client::connect_with_ca(&url, &headers, args.ca.as_deref()).await?;
    let (mut sink, stream) = ws.split();
    if args.mode == Mode::Chat {
        let join = hubbub_client::join(&args.room, args.nick.as_deref().unwrap_or_default());
        sink.send(Message::text(hubbub_shared::encode(&join))).await.map_err(|e| fail(Exit::Failed, e.to_string()))?;
    }
    let renderer = render::Renderer::new(args.nick.as_deref());
    Session { args: &args, sink, stream, pending: 0, give_up_at: None, close_sent_at: None, renderer }.run().await
}

/// The conversation after the handshake: typed lines out, frames in, until stdin ends and the
/// replies are in.
struct Session<'a> {
    args: &'a Args,
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    /// Requests sent whose reply has not arrived. Once stdin ends we close only after they are
    /// in (or [`REPLY_GRACE`] passed): after answering our close the server can send nothing.
    pending: usize,
    /// Set when stdin ends.
    give_up_at: Option<Instant>,
    close_sent_at: Option<Instant>,
    renderer: render::Renderer,
}

impl Session<'_> {
    async fn run(mut self) -> Result<(), Failure> {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let me = self.args.nick.as_deref().and_then(|n| hubbub_shared::Nick::parse(n).ok());
        loop {
            if let (Some(give_up), None) = (self.give_up_at, self.close_sent_at)
                && (self.pending == 0 || Instant::now() >= give_up)
            {
                let bye = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
                let _ = self.sink.send(Message::Close(Some(bye))).await;
                self.close_sent_at = Some(Instant::now());
            }
            let deadline = match (self.close_sent_at, self.give_up_at) {
                (Some(sent), _) => sent + CLOSE_GRACE,
                (None, Some(give_up)) => give_up,
                (None, None) => Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                line = lines.next_line(), if self.give_up_at.is_none() => match line {
                    Ok(Some(line)) => self.typed(&line).await?,
                    Ok(None) | Err(_) => self.give_up_at = Some(Instant::now() + REPLY_GRACE),
                },
                frame = tokio::time::timeout_at(deadline, self.stream.next()) => {
                    if self.received(frame, me.as_ref())? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Sends what a typed line asks for, if anything.
    async fn typed(&mut self, line: &str) -> Result<(), Failure> {
        if let Some(frame) = outgoing(self.args, line) {
            self.sink.send(Message::text(frame)).await.map_err(|e| fail(Exit::Failed, e.to_string()))?;
            self.pending += 1;
        }
        Ok(())
    }

    /// Handles one read; `Ok(true)` when the conversation is over.
    fn received(
        &mut self,
        frame: Result<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>, tokio::time::error::Elapsed>,
        me: Option<&hubbub_shared::Nick>,
    ) -> Result<bool, Failure> {
        let closing = self.close_sent_at.is_some();
        match frame {
            Err(_) if closing => Ok(true),
            // replies overdue: the top of the loop sends the close now
            Err(_) => Ok(false),
            // the answer to our close (or the end of the connection after it)
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) if closing => Ok(true),
            Ok(Some(Ok(Message::Close(close)))) => {
                let (code, reason) =
                    close.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                let reason = if reason.is_empty() { hubbub_shared::close::describe(code).to_owned() } else { reason };
                Err(fail(Exit::ClosedByServer, format!("the server closed the connection: {code} {reason}")))
            }
            Ok(Some(Ok(msg))) => {
                self.pending = self.pending.saturating_sub(answers(self.args.mode, me, &msg));
                show(self.args, &mut self.renderer, msg);
                Ok(false)
            }
            Ok(Some(Err(e))) => Err(fail(Exit::ClosedByServer, format!("the connection broke: {e}"))),
            Ok(None) => Err(fail(Exit::ClosedByServer, "the server closed the connection")),
        }
    }
}

/// How many replies to our lines `msg` carries: the echo, the sum, or (chat) our own
/// messages coming back from the room and refusals (a chat frame may carry several).
fn answers(mode: Mode, me: Option<&hubbub_shared::Nick>, msg: &Message) -> usize {
    let answers_one = |msg: &ServerMsg| match msg {
        ServerMsg::Message(m) => me.is_some_and(|me| me.as_str() == m.author),
        ServerMsg::Found { .. } | ServerMsg::Rooms { .. } => true,
        ServerMsg::Error { code, .. } => {
            !matches!(code.as_str(), c if c.starts_with("nick_") || c.starts_with("room_"))
        }
        _ => false,
    };
    match (mode, msg) {
        (Mode::Echo, Message::Text(_) | Message::Binary(_)) | (Mode::Add, Message::Text(_)) => 1,
        (Mode::Chat, Message::Text(text)) => {
            // items of types this CLI does not know (a newer hub's) are skipped
            hubbub_shared::decode_server_items(text)
                .map_or(0, |items| items.iter().flatten().filter(|m| answers_one(m)).count())
        }
        _ => 0,
    }
}

/// The frame to send for one typed line, if any.
fn outgoing(args: &Args, line: &str) -> Option<String> {
    match args.mode {
        Mode::Chat if line.trim().is_empty() => None,
        Mode::Chat if line.trim() == "/rooms" => Some(hubbub_shared::encode(&ClientMsg::Rooms { id: None })),
        Mode::Chat if line.starts_with("/search ") => Some(hubbub_shared::encode(&ClientMsg::Search {
            id: None,
            query: line["/search ".len()..].to_owned(),
            room: Some(args.room.clone()),
            limit: None,
        })),
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

fn show(args: &Args, renderer: &mut render::Renderer, msg: Message) {
    let line = match msg {
        // one JSON object per line, also when the hub sent several in one array frame
        Message::Text(text) if args.json && args.mode == Mode::Chat && text.starts_with('[') => {
            match hubbub_shared::frame_items(&text) {
                Ok(items) => Some(items.join("\n")),
                Err(_) => Some(text.to_string()),
            }
        }
        Message::Text(text) if args.json => Some(text.to_string()),
        Message::Text(text) => renderer.readable(args.mode, &text),
        Message::Binary(data) => Some(format!("<{} bytes of binary>", data.len())),
        _ => None,
    };
    if let Some(line) = line {
        println!("{line}");
    }
}

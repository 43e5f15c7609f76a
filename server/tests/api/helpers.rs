//! Starts a real hub on 127.0.0.1:0 and talks to it the way a client would: WebSocket frames
//! over TCP (tokio-tungstenite) and raw HTTP/1.1. Every wait is bounded by a timeout.

use futures_util::{SinkExt, StreamExt};
use hubbub_server::{Application, Config};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_frame, encode};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};
use tokio_tungstenite::{MaybeTlsStream, tungstenite::Message};

pub use hubbub_client::{ConnectError, Socket as Ws};

/// Long enough for a loaded 2-core CI machine, short enough to fail fast.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestApp {
    /// The hub (the first one, with `HUBBUB_TEST_HUBS=2`): HTTP requests and raw handshakes go
    /// here.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
    /// With `HUBBUB_TEST_HUBS=2`: the second hub and the services both run on.
    cluster: Option<Box<Cluster>>,
    /// Clients made so far: with two hubs they alternate between them.
    clients: std::sync::atomic::AtomicUsize,
}

/// The second hub of a two-hub test app, on its own real PostgreSQL and `redis-server`
/// (dropped after the hub: fields drop in order).
struct Cluster {
    b: TestApp,
    _redis: crate::redis::Redis,
    _pg: crate::pg::Postgres,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `HUBBUB_TEST_HUBS=2` runs the tests that use [`spawn_app`] against a cluster: two hubs on one
/// real PostgreSQL and one real Redis, clients alternating between them (`make test` runs the
/// behaviour suites that way too: the same tests, both modes).
fn two_hubs() -> bool {
    std::env::var("HUBBUB_TEST_HUBS").is_ok_and(|n| n == "2")
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::for_tests();
    configure(&mut config);
    // a test that picks its own SQLite file (or database) is about that: it keeps one hub
    if two_hubs() && config.database.is_none() && config.db == std::path::Path::new(":memory:") {
        let (pg, redis) = (crate::pg::Postgres::start(), crate::redis::Redis::start());
        config.database = Some(pg.database().await);
        config.redis = Some(redis.url());
        config.redis_heartbeat_ms = 500;
        let b = start_hub(config.clone()).await;
        let mut a = start_hub(config).await;
        a.cluster = Some(Box::new(Cluster { b, _redis: redis, _pg: pg }));
        return a;
    }
    start_hub(config).await
}

/// One hub whatever `HUBBUB_TEST_HUBS` says: for tests of one hub's own machinery (how its
/// writer batches what is queued), which two hubs would measure differently.
pub async fn spawn_one_hub() -> TestApp {
    start_hub(Config::for_tests()).await
}

async fn start_hub(config: Config) -> TestApp {
    let app = Application::build(config).await.expect("the hub starts");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp { addr, stop: Some(stop), task, cluster: None, clients: Default::default() }
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A client that has read its `welcome` (with two hubs: on each in turn).
    pub async fn client(&self) -> Client {
        let n = self.clients.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = match &self.cluster {
            Some(cluster) if n % 2 == 1 => cluster.b.ws_url(),
            _ => self.ws_url(),
        };
        Client::connect(&url, &[]).await.expect("the handshake succeeds")
    }

    /// How many hubs the clients are spread over (1, or 2 with `HUBBUB_TEST_HUBS=2`).
    pub fn hubs(&self) -> usize {
        if self.cluster.is_some() { 2 } else { 1 }
    }

    /// A client that has joined `room` as `nick`, with the member list it got.
    pub async fn joined(&self, room: &str, nick: &str) -> (Client, Vec<String>) {
        let mut c = self.client().await;
        let members = c.join(room, nick).await;
        (c, members)
    }

    /// A person (browser identity `token`) in the lobby as `nick`; `joined` and `history` read.
    pub async fn person(&self, nick: &str, token: &str) -> Client {
        self.person_in(&["lobby"], nick, token).await
    }

    /// A person (browser identity `token`) in each of `rooms` as `nick`, in order.
    pub async fn person_in(&self, rooms: &[&str], nick: &str, token: &str) -> Client {
        let mut c = self.client().await;
        for room in rooms {
            let join = ClientMsg::Join {
                id: None,
                room: (*room).into(),
                nick: nick.into(),
                since: None,
                token: Some(token.into()),
            };
            c.send(&join).await;
            assert!(matches!(c.next().await, ServerMsg::Joined { .. }));
            assert!(matches!(c.next().await, ServerMsg::History { .. }));
        }
        c
    }

    /// Starts the shutdown, as SIGTERM does for the binary (of every hub).
    pub fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(cluster) = &mut self.cluster {
            cluster.b.shut_down();
        }
    }

    /// GET `/healthz`, parsed.
    pub async fn health(&self) -> serde_json::Value {
        let (status, _, body) = http_get(self.addr, "/healthz", &[]).await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("healthz is JSON")
    }

    /// The hub's database epoch, as a new connection's `welcome` states it.
    pub async fn epoch(&self) -> String {
        match Client::raw(&self.ws_url()).await.next().await {
            ServerMsg::Welcome { epoch, .. } => epoch,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// After the test's clients are gone: no connection or room is left, and nothing panicked.
    pub async fn assert_settled(&self) {
        self.wait_for_health("connections", 0).await;
        self.wait_for_health("rooms", 0).await;
        assert_eq!(self.health().await["panics"], 0, "a connection task panicked");
    }

    /// Polls `/healthz` until `field` equals `want` or the wait runs out.
    pub async fn wait_for_health(&self, field: &str, want: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // with two hubs: the sum of both (connections, messages …)
            let mut got = self.health().await[field].as_u64();
            if let Some(cluster) = &self.cluster {
                got = got.zip(cluster.b.health().await[field].as_u64()).map(|(a, b)| a + b);
            }
            if got == Some(want) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{field} stayed {got:?}, wanted {want}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Client {
    pub ws: Ws,
    /// Messages read ahead while waiting for a particular one (see `join`).
    pending: std::collections::VecDeque<ServerMsg>,
    /// `presence` frames, kept apart: they come at the hub's next tick, batched, in an order
    /// relative to other messages no test should depend on (see `next_presence`).
    presence: std::collections::VecDeque<ServerMsg>,
    /// A person's news (`conversations`, `read`), kept apart likewise: it follows a join or a
    /// read from its own task, in no fixed order with the room's messages (see `next_news`).
    news: std::collections::VecDeque<ServerMsg>,
}

impl Client {
    /// Opens the socket with extra request headers and reads the `welcome`.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, ConnectError> {
        let ws = hubbub_client::connect(url, headers).await?;
        let mut client =
            Client { ws, pending: Default::default(), presence: Default::default(), news: Default::default() };
        match client.next().await {
            ServerMsg::Welcome { .. } => Ok(client),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// A connection whose `welcome` is still unread.
    pub async fn raw(url: &str) -> Client {
        Client::from_ws(hubbub_client::connect(url, &[]).await.expect("handshake"))
    }

    /// Wraps a socket that has already been greeted.
    pub fn from_ws(ws: Ws) -> Client {
        Client { ws, pending: Default::default(), presence: Default::default(), news: Default::default() }
    }

    /// A client whose socket buffers little, so the hub's queue for it fills quickly.
    pub async fn connect_with_small_receive_buffer(addr: SocketAddr) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
        let mut client =
            Client { ws, pending: Default::default(), presence: Default::default(), news: Default::default() };
        assert!(matches!(client.next().await, ServerMsg::Welcome { .. }));
        client
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_raw(&encode(msg)).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn say(&mut self, room: &str, text: &str) {
        self.send(&ClientMsg::Send { id: None, room: room.into(), text: text.into() }).await;
    }

    /// Joins and returns the member list; the `history` that follows is read too (live
    /// messages that arrive before it are kept for `next`).
    pub async fn join(&mut self, room: &str, nick: &str) -> Vec<String> {
        self.join_since(room, nick, None).await.0
    }

    /// Joins with an optional resume cursor; returns the members and the `history` reply.
    pub async fn join_since(&mut self, room: &str, nick: &str, since: Option<String>) -> (Vec<String>, ServerMsg) {
        self.send(&ClientMsg::Join { id: None, room: room.into(), nick: nick.into(), since, token: None }).await;
        let members = match self.next().await {
            ServerMsg::Joined { members, .. } => members,
            other => panic!("expected joined, got {other:?}"),
        };
        let mut ahead = std::collections::VecDeque::new();
        loop {
            match self.next().await {
                history @ ServerMsg::History { .. } => {
                    // what came before the history is read first, then what came with it
                    let after = std::mem::replace(&mut self.pending, ahead);
                    self.pending.extend(after);
                    return (members, history);
                }
                other => ahead.push_back(other),
            }
        }
    }

    /// The next frame, whatever it is (pings included).
    pub async fn next_frame(&mut self) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame within the wait")
    }

    /// The next protocol message other than `presence`, skipping pings and pongs; panics on a
    /// close.
    pub async fn next(&mut self) -> ServerMsg {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return msg;
            }
            self.read().await;
        }
    }

    /// The next `conversations` or `read` message (other messages read meanwhile wait for
    /// `next`).
    pub async fn next_news(&mut self) -> ServerMsg {
        loop {
            if let Some(msg) = self.news.pop_front() {
                return msg;
            }
            self.read().await;
        }
    }

    /// The first message, news included, that `wanted` picks (the others wait for `next` and
    /// `next_news`).
    pub async fn first_of(&mut self, wanted: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
        loop {
            for queue in [&mut self.pending, &mut self.news] {
                if let Some(at) = queue.iter().position(&wanted) {
                    return queue.remove(at).expect("found");
                }
            }
            self.read().await;
        }
    }

    /// The next `presence` frame (other messages read meanwhile wait for `next`).
    pub async fn next_presence(&mut self) -> ServerMsg {
        loop {
            if let Some(msg) = self.presence.pop_front() {
                return msg;
            }
            self.read().await;
        }
    }

    /// Reads `presence` frames until one names `nick` among those who joined; returns the
    /// room's count it gave.
    pub async fn sees_join(&mut self, nick: &str) -> u64 {
        self.sees(|msg| {
            matches!(msg, ServerMsg::Presence { joined, count, .. } if joined.iter().any(|n| n == nick))
                .then(|| count_of(msg))
        })
        .await
    }

    /// Reads `presence` frames until one names `nick` among those who left.
    pub async fn sees_leave(&mut self, nick: &str) -> u64 {
        self.sees(|msg| {
            matches!(msg, ServerMsg::Presence { left, .. } if left.iter().any(|n| n == nick)).then(|| count_of(msg))
        })
        .await
    }

    /// Reads `presence` frames until one names `nick` as away (`true`) or back (`false`).
    pub async fn sees_state(&mut self, nick: &str, to_away: bool) {
        self.sees(|msg| match msg {
            ServerMsg::Presence { away, back, .. } => {
                (if to_away { away } else { back }).iter().any(|n| n == nick).then_some(0)
            }
            _ => None,
        })
        .await;
    }

    async fn sees(&mut self, wanted: impl Fn(&ServerMsg) -> Option<u64>) -> u64 {
        loop {
            let msg = self.next_presence().await;
            if let Some(count) = wanted(&msg) {
                return count;
            }
        }
    }

    /// Reads one frame (waiting for it): its messages go to `pending` or `presence`.
    async fn read(&mut self) {
        loop {
            match self.next_frame().await {
                Some(Ok(Message::Text(t))) => {
                    // a frame may carry several messages (a JSON array)
                    for msg in decode_server_frame(&t).expect("the hub sends valid messages") {
                        match msg {
                            ServerMsg::Presence { .. } => self.presence.push_back(msg),
                            ServerMsg::Conversations { .. } | ServerMsg::Read { .. } => self.news.push_back(msg),
                            other => self.pending.push_back(other),
                        }
                    }
                    return;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Reads until the hub's close frame and returns its code; skips other frames.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            match self.next_frame().await {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// True when nothing but pings and `presence` frames arrives within `quiet` (those are kept:
    /// see `presence_so_far`).
    pub async fn is_quiet_for(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let msgs = decode_server_frame(&t).expect("the hub sends valid messages");
                    if msgs.iter().all(|m| matches!(m, ServerMsg::Presence { .. })) {
                        self.presence.extend(msgs);
                        continue;
                    }
                    if msgs.iter().all(|m| matches!(m, ServerMsg::Conversations { .. } | ServerMsg::Read { .. })) {
                        self.news.extend(msgs);
                        continue;
                    }
                    eprintln!("unexpected frame: {t}");
                    return false;
                }
                Ok(other) => {
                    eprintln!("unexpected frame: {other:?}");
                    return false;
                }
            }
        }
    }

    /// The `presence` frames read and not yet taken.
    pub fn presence_so_far(&mut self) -> Vec<ServerMsg> {
        self.presence.drain(..).collect()
    }
}

fn count_of(msg: &ServerMsg) -> u64 {
    match msg {
        ServerMsg::Presence { count, .. } => *count,
        _ => 0,
    }
}

/// A WebSocket handshake to `/ws` at `to` from the loopback source address `source` (to stand
/// for several clients), with extra request headers; its `welcome` is still unread.
pub async fn handshake_from(
    source: std::net::Ipv4Addr,
    to: SocketAddr,
    headers: &[(&'static str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let stream = socket.connect(to).await.unwrap();
    let mut request = format!("ws://{to}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
    Ok(ws)
}

/// A bare HTTP/1.1 GET; returns status, raw header block and body.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (status, head, body) = http_get_bytes(addr, path, headers).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// The same, with the body as bytes (compressed bodies are not text).
pub async fn http_get_bytes(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.expect("response in time").expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |at| at + 4);
    let head = String::from_utf8_lossy(&raw[..split]).trim_end().to_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, head, raw[split..].to_vec())
}

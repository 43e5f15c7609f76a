//! Drives `hubbub-cli` as a person would: a spawned process, lines on its stdin, lines read
//! from its stdout, and its exit code. The hub runs in-process on 127.0.0.1:0.

use futures_util::{SinkExt, StreamExt};
use hubbub_server::{Application, Config};
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_frame, encode};
use std::{process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
    sync::oneshot,
};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

struct Hub {
    url: String,
    stop: Option<oneshot::Sender<()>>,
}

async fn start_hub() -> Hub {
    let app = Application::build(Config::for_tests()).await.unwrap();
    let url = format!("ws://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    Hub { url, stop: Some(stop) }
}

struct Cli {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

fn cli(args: &[&str]) -> Cli {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub-cli"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hubbub-cli starts");
    let out = BufReader::new(child.stdout.take().unwrap()).lines();
    Cli { child, out }
}

impl Cli {
    async fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.out.next_line()).await.expect("a line in time").unwrap().expect("output")
    }

    /// Closes stdin and returns (exit code, stderr).
    async fn finish(mut self) -> (i32, String) {
        drop(self.child.stdin.take());
        let output = tokio::time::timeout(WAIT, self.child.wait_with_output()).await.expect("exits in time").unwrap();
        (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A second participant speaking the protocol directly; its `welcome`, `joined` and `history`
/// are still unread.
async fn peer(hub: &Hub, nick: &str) -> Ws {
    let mut ws = hubbub_client::connect(&format!("{}/ws", hub.url), &[]).await.unwrap();
    ws.send(Message::text(encode(&hubbub_client::join("lobby", nick)))).await.unwrap();
    ws
}

use hubbub_client::Socket as Ws;

/// The next message; a frame may carry several (a JSON array), the rest wait in `pending`.
/// The next message other than `presence` (those come batched at the hub's tick: see
/// `sees_presence`).
async fn next_msg(ws: &mut Ws, pending: &mut std::collections::VecDeque<ServerMsg>) -> ServerMsg {
    loop {
        match pending.pop_front() {
            Some(ServerMsg::Presence { .. }) => continue,
            Some(msg) => return msg,
            None => read_frame(ws, pending).await,
        }
    }
}

/// Reads until a `presence` frame names `nick` among those who joined (or left); other messages
/// read meanwhile stay in `pending`.
async fn sees_presence(ws: &mut Ws, pending: &mut std::collections::VecDeque<ServerMsg>, nick: &str, joined: bool) {
    loop {
        while let Some(at) = pending.iter().position(|m| matches!(m, ServerMsg::Presence { .. })) {
            let Some(ServerMsg::Presence { joined: j, left, .. }) = pending.remove(at) else { unreachable!() };
            if (if joined { j } else { left }).iter().any(|n| n == nick) {
                return;
            }
        }
        read_frame(ws, pending).await;
    }
}

async fn read_frame(ws: &mut Ws, pending: &mut std::collections::VecDeque<ServerMsg>) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => return pending.extend(decode_server_frame(&t).unwrap()),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn typed_lines_reach_the_room_and_the_room_is_printed() {
    let hub = start_hub().await;
    let mut bob = peer(&hub, "bob").await;
    let mut bob_pending = std::collections::VecDeque::new();
    assert!(matches!(next_msg(&mut bob, &mut bob_pending).await, ServerMsg::Welcome { .. }));
    assert!(matches!(next_msg(&mut bob, &mut bob_pending).await, ServerMsg::Joined { .. }));
    assert!(matches!(next_msg(&mut bob, &mut bob_pending).await, ServerMsg::History { .. }));

    let mut ada = cli(&[&hub.url, "--nick", "ada"]);
    assert_eq!(ada.line().await, "* joined #lobby as ada; here: ada, bob");
    sees_presence(&mut bob, &mut bob_pending, "ada", true).await;

    ada.type_line("hello from a terminal").await;
    let ServerMsg::Message(m) = next_msg(&mut bob, &mut bob_pending).await else { panic!("expected a message") };
    assert_eq!((m.author.as_str(), m.text.as_str()), ("ada", "hello from a terminal"));
    assert_eq!(ada.line().await, "[#lobby] <ada> hello from a terminal");

    bob.send(Message::text(encode(&ClientMsg::Send { id: None, room: "lobby".into(), text: "hi ada".into() })))
        .await
        .unwrap();
    assert_eq!(ada.line().await, "[#lobby] <bob> hi ada");

    assert!(
        matches!(next_msg(&mut bob, &mut bob_pending).await, ServerMsg::Message(m) if m.text == "hi ada"),
        "bob's own copy"
    );

    let (code, _) = ada.finish().await;
    assert_eq!(code, 0, "stdin ended: clean close");
    sees_presence(&mut bob, &mut bob_pending, "ada", false).await;
}

/// The next printed JSON line that is not a `presence` frame (those come at the hub's tick).
async fn json_except_presence(cli: &mut Cli) -> serde_json::Value {
    loop {
        let line: serde_json::Value = serde_json::from_str(&cli.line().await).unwrap();
        if line["type"] != "presence" {
            return line;
        }
    }
}

#[tokio::test]
async fn json_mode_prints_the_raw_frames_and_refusals_are_shown() {
    let hub = start_hub().await;
    let mut ada = cli(&[&hub.url, "--nick", "ada", "--room", "kitchen", "--json"]);
    let welcome: serde_json::Value = serde_json::from_str(&ada.line().await).unwrap();
    assert_eq!(welcome["type"], "welcome");
    let joined: serde_json::Value = serde_json::from_str(&ada.line().await).unwrap();
    assert_eq!((joined["type"].as_str(), joined["room"].as_str()), (Some("joined"), Some("kitchen")));
    let history = json_except_presence(&mut ada).await;
    assert_eq!((history["type"].as_str(), history["messages"].as_array().map(Vec::len)), (Some("history"), Some(0)));
    ada.type_line(&"x".repeat(1001)).await;
    let refusal = json_except_presence(&mut ada).await;
    assert_eq!(refusal["code"], "text_too_long");
    assert_eq!(ada.finish().await.0, 0);
}

#[tokio::test]
async fn echo_and_add_modes_answer_each_line_even_when_stdin_ends_at_once() {
    let hub = start_hub().await;
    let mut echo = cli(&[&hub.url, "--mode", "echo"]);
    echo.type_line("ping ✓").await;
    echo.type_line("{not json}").await;
    drop(echo.child.stdin.take()); // the replies must still arrive before the CLI closes
    assert_eq!(echo.line().await, "ping ✓");
    assert_eq!(echo.line().await, "{not json}");
    assert_eq!(echo.finish().await.0, 0);

    let mut add = cli(&[&hub.url.replace("ws://", "http://"), "--mode", "add"]);
    add.type_line("3 9").await;
    add.type_line("-5, 2").await;
    add.type_line("9223372036854775807 1").await;
    drop(add.child.stdin.take());
    assert_eq!(add.line().await, "12");
    assert_eq!(add.line().await, "-3");
    assert!(add.line().await.starts_with("error overflow:"));
    assert_eq!(add.finish().await.0, 0);
}

#[tokio::test]
async fn an_unreachable_server_exits_3_with_a_clear_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, stderr) = cli(&[&format!("ws://127.0.0.1:{port}"), "--nick", "ada"]).finish().await;
    assert_eq!(code, 3);
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[tokio::test]
async fn a_refused_origin_exits_4_with_the_status() {
    let hub = start_hub().await;
    let (code, stderr) = cli(&[&hub.url, "-n", "ada", "-H", "Origin: https://evil.example"]).finish().await;
    assert_eq!(code, 4);
    assert!(stderr.contains("403"), "{stderr}");
    // the same header with an allowed value gets in
    let own = hub.url.replace("ws://", "http://");
    let mut ok = cli(&[&hub.url, "-n", "ada", "-H", &format!("Origin: {own}")]);
    assert!(ok.line().await.starts_with("* joined #lobby"));
    assert_eq!(ok.finish().await.0, 0);
}

#[tokio::test]
async fn a_server_that_closes_the_connection_exits_5_with_the_code() {
    let mut hub = start_hub().await;
    let mut ada = cli(&[&hub.url, "-n", "ada"]);
    assert!(ada.line().await.starts_with("* joined"));
    let _ = hub.stop.take().unwrap().send(());
    // hold stdin open: `Child::wait` would close it, and a CLI whose input ended exits 0
    let _stdin = ada.child.stdin.take();
    let status = tokio::time::timeout(WAIT, ada.child.wait()).await.expect("exits in time").unwrap();
    assert_eq!(status.code(), Some(5));
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(ada.child.stderr.as_mut().unwrap(), &mut stderr).await.unwrap();
    assert!(stderr.contains("1001 server shutting down"), "{stderr}");
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    let (code, stderr) = cli(&["ws://127.0.0.1:1"]).finish().await; // chat mode needs --nick
    assert_eq!(code, 2);
    assert!(stderr.contains("--nick"), "{stderr}");
    let (code, _) = cli(&["ftp://x", "--mode", "echo"]).finish().await;
    assert_eq!(code, 2);
}

#[tokio::test]
async fn wss_works_with_the_hubs_own_certificate_as_ca_and_fails_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("hub.pem"), dir.path().join("hub.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let mut config = Config::for_tests();
    config.tls_cert = Some(cert_path.clone());
    config.tls_key = Some(key_path);
    let app = Application::build(config).await.unwrap();
    let url = format!("wss://{}", app.local_addr());
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let mut ada = cli(&[&url, "--nick", "ada", "--ca", cert_path.to_str().unwrap()]);
    assert_eq!(ada.line().await, "* joined #lobby as ada; here: ada");
    ada.type_line("over tls").await;
    assert_eq!(ada.line().await, "[#lobby] <ada> over tls");
    assert_eq!(ada.finish().await.0, 0);

    // the system's roots do not know a self-signed hub: a clear failure, not a hang
    let (code, stderr) = cli(&[&url, "--nick", "bob"]).finish().await;
    assert_ne!(code, 0);
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}

//! The servers under test, each started as a real process on 127.0.0.1, pinned to its CPUs, and
//! the little each one needs from a client (join a room, frame a chat text).

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// This repository's hub (`target/release/hubbub`).
    Hubbub,
    /// gorilla/websocket's examples/chat, built from Debian's source (`scripts/build-peers.sh`).
    Gorilla,
    /// A plain axum + tokio::sync::broadcast hub in the style of axum's chat example (`axum-broadcast`).
    AxumBroadcast,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Hubbub => "hubbub",
            Kind::Gorilla => "gorilla",
            Kind::AxumBroadcast => "axum-broadcast",
        }
    }

    /// Whether the server has rooms; the peers broadcast everything to everyone.
    pub(crate) fn has_rooms(self) -> bool {
        self == Kind::Hubbub
    }
}

/// Where the binaries are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Binaries {
    /// The hubbub binary (build it with --release).
    #[arg(long, default_value = "target/release/hubbub", global = true)]
    pub(crate) server_bin: PathBuf,
    /// gorilla's chat example, built by scripts/build-peers.sh.
    #[arg(long, default_value = "target/peers/gorilla-chat", global = true)]
    pub(crate) gorilla_bin: PathBuf,
    /// The axum + broadcast baseline (this crate's `axum-broadcast` binary).
    #[arg(long, default_value = "target/release/axum-broadcast", global = true)]
    pub(crate) axum_bin: PathBuf,
    /// CPUs (taskset list) for the server under test.
    #[arg(long, default_value = "0", global = true)]
    pub(crate) server_cpus: String,
    /// CPUs (taskset list) for the generator's worker processes.
    #[arg(long, default_value = "1", global = true)]
    pub(crate) generator_cpus: String,
}

/// A server under test, killed when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) kind: Kind,
    pub(crate) pid: u32,
    pub(crate) addr: SocketAddr,
    _child: Child,
    /// The hub's database folder, removed when the server is dropped.
    _dir: Option<tempfile::TempDir>,
}

pub(crate) async fn start(kind: Kind, bins: &Binaries) -> anyhow::Result<Running> {
    start_with(kind, bins, &[]).await
}

/// The same, with more flags for Hubbub (a cluster hub's `--database` and `--redis`).
pub(crate) async fn start_with(kind: Kind, bins: &Binaries, extra: &[String]) -> anyhow::Result<Running> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &bins.server_cpus]).stdin(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let (child, addr, dir) = match kind {
        Kind::Hubbub => {
            let dir = tempfile::Builder::new().prefix("hubbub-bench-").tempdir()?;
            cmd.arg(existing(&bins.server_bin)?)
                .args(["--listen", "127.0.0.1:0", "--db"])
                .arg(dir.path().join("bench.db"))
                // a benchmark floods and crowds on purpose: no rate limits, no per-IP cap
                .args(["--messages-per-sec", "100000000", "--message-burst", "100000000"])
                .args(["--frames-per-sec", "100000000", "--max-connections-per-ip", "1000000"])
                // each step's clients leave for good before the next step's join: without this
                // every step would share its room with the last steps' people for 15 s
                .args(["--presence-grace-ms", "0"])
                .args(extra)
                .stdout(Stdio::piped());
            let mut child = cmd.spawn().context("starting hubbub under taskset")?;
            let stdout = child.stdout.take().context("stdout")?;
            let (addr, _) = hubbub_client::read_listening_line(stdout, Duration::from_secs(10)).await?;
            (child, addr, Some(dir))
        }
        Kind::Gorilla | Kind::AxumBroadcast => {
            let addr = free_port()?;
            let bin = if kind == Kind::Gorilla { &bins.gorilla_bin } else { &bins.axum_bin };
            cmd.arg(existing(bin)?).arg("-addr").arg(addr.to_string()).stdout(Stdio::null());
            if kind == Kind::Gorilla {
                // it serves home.html from its working directory; not needed for /ws
                cmd.current_dir(bin.parent().unwrap_or(Path::new(".")));
            }
            let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
            wait_listening(addr).await?;
            (child, addr, None)
        }
    };
    let pid = child.id().context("server exited at once")?;
    Ok(Running { kind, pid, addr, _child: child, _dir: dir })
}

fn existing(bin: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(bin)
        .with_context(|| format!("{} is missing: run `make bench` (it builds the servers and peers)", bin.display()))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("nothing listens on {addr} after 5 s")
}

/// The WebSocket URL of the chat endpoint (all three serve `/ws`).
pub(crate) fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

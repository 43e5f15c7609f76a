//! Fixtures shared by the test binaries that run the real `hubbub` process.
// each test binary uses part of these fixtures
#![allow(unreachable_pub, dead_code)]

pub mod certificate;
pub mod nginx;
pub use certificate::Certificate;
pub mod postgres;
pub mod redis;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::process::{Child, Command};

/// A database path in a new temporary folder, removed (with the database) when dropped.
/// Derefs to the path.
pub struct TempDb {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TempDb {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

pub fn fresh_db() -> TempDb {
    let dir = tempfile::Builder::new().prefix("hubbub-proc-").tempdir().expect("a temporary folder");
    TempDb { path: dir.path().join("hubbub.db"), _dir: dir }
}

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real binary on a free port; killed on drop.
pub struct Hub {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The database of [`Hub::start`], removed after the hub.
    _db: Option<TempDb>,
}

impl Hub {
    /// Starts `hubbub --listen 127.0.0.1:0 --db <a fresh file> ARGS…` and reads the address
    /// it printed.
    pub async fn start(args: &[&str]) -> Hub {
        let db = fresh_db();
        let mut hub = Self::start_on(&db, args).await;
        hub._db = Some(db);
        hub
    }

    /// The same on a given database file (to restart on it).
    pub async fn start_on(db: &std::path::Path, args: &[&str]) -> Hub {
        Self::start_at(db, "127.0.0.1:0", args).await
    }

    /// The same on a given address too (to restart where the pages will reconnect).
    pub async fn start_at(db: &std::path::Path, listen: &str, args: &[&str]) -> Hub {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub"))
            .args(["--listen", listen, "--db"])
            .arg(db)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("hubbub starts");
        let stdout = child.stdout.take().unwrap();
        let (addr, _) = hubbub_client::read_listening_line(stdout, WAIT).await.expect("hubbub prints its address");
        // with a certificate it listens for https:// (the line says so too)
        let scheme = if args.contains(&"--tls-cert") { "https" } else { "http" };
        Hub { child, url: format!("{scheme}://{addr}"), _db: None }
    }

    /// SIGTERM, as a service manager stops it; returns the exit code.
    /// SIGKILL: no shutdown at all, as in a crash or an OOM kill.
    pub fn kill(&mut self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        assert!(status.success());
    }

    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, self.child.wait()).await.expect("exits in time").unwrap();
        exit.code()
    }
}

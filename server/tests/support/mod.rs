//! Fixtures shared by the test binaries that run the real `hubbub` process.
// each test binary uses part of these fixtures
#![allow(unreachable_pub, dead_code)]

use std::{path::PathBuf, process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A database path in a new temporary folder.
pub fn fresh_db_path() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("hubbub-proc-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("hubbub.db")
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
}

impl Hub {
    /// Starts `hubbub --listen 127.0.0.1:0 --db <a fresh file> ARGS…` and reads the address
    /// it printed.
    pub async fn start(args: &[&str]) -> Hub {
        let db = fresh_db_path();
        Self::start_on(&db, args).await
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
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("hubbub prints its address in time")
            .unwrap()
            .expect("a line");
        let url = line.strip_prefix("hubbub listening on ").expect("the address line").to_owned();
        Hub { child, url }
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

//! A real, throwaway `redis-server` for the cluster tests: on a free loopback port, in a
//! temporary folder, killed by PID on drop (Debian's `redis-server`, installed by
//! `scripts/setup.sh test`). Redis holds nothing Hubbub needs to survive, so it runs without
//! persistence.
#![allow(unreachable_pub, dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Redis {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new().prefix("hubbub-redis-").tempdir().expect("a temporary folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { dir, port, child: None };
        redis.restart();
        redis
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh test)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: an outage with every connection cut.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

//! A real, throwaway PostgreSQL for the tests of the cluster mode: `initdb` in a temporary
//! folder, the server on a free loopback port, stopped (and its folder removed) on drop.
//! Debian's `postgresql` package (installed by `scripts/setup.sh test`) provides the binaries.
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user the package
//! made (see `../shared/notes/services.md`).
#![allow(unreachable_pub, dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// One PostgreSQL server of its own.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/N/bin`, or `HUBBUB_PG_BIN`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HUBBUB_PG_BIN") {
        return PathBuf::from(dir);
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/setup.sh test installs Debian's postgresql)");
    let newest = versions
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version in /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{newest}/bin"))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program args…`, as the `postgres` user when we are root; panics with its output on failure.
fn run(bin: &Path, program: &str, args: &[&str]) {
    let program = bin.join(program);
    let output = if is_root() {
        Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
    } else {
        Command::new(&program).args(args).output()
    }
    .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    /// initdb (about 1.5 s) and start on a free port; `trust` authentication for user `hubbub`.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("hubbub-pg-").tempdir().expect("a temporary folder");
        if is_root() {
            let status = Command::new("chown").arg("postgres").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown postgres {}", dir.path().display());
        }
        let data = dir.path().join("data");
        run(&bin, "initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "hubbub", "--no-sync"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { dir, bin, port };
        pg.run_server();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn run_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        run(&self.bin, "pg_ctl", &["-D", &self.data(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
    }

    /// A new, empty database on this server; its URL.
    pub async fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await.expect("connect as hubbub");
        let driver = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a database");
        drop(client);
        let _ = driver.await;
        self.url(&name)
    }

    /// The postmaster's PID (its backends are its children).
    pub fn pid(&self) -> Option<u32> {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        std::fs::read_to_string(pid_file).ok()?.lines().next()?.trim().parse().ok()
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://hubbub@127.0.0.1:{}/{database}", self.port)
    }

    /// An outage: an immediate shutdown (no checkpoint; the next start recovers from the WAL,
    /// as after a crash). Every connection breaks.
    pub fn stop(&self) {
        run(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// Back after [`Postgres::stop`], on the same port and data.
    pub fn restart(&self) {
        self.run_server();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // by PID, however the test ended; then the folder goes with `dir`
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file).ok().and_then(|s| s.lines().next().map(str::to_owned)) {
            let _ = Command::new("kill").args(["-QUIT", &pid]).status();
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

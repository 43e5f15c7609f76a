//! A real nginx (Debian's package, installed by `scripts/setup.sh test`) in front of a hub, with
//! the very configuration `docs/operations.md` prints (between its `<!-- nginx -->` markers),
//! only the ports changed. On a free loopback port, in a temporary folder, killed by PID on drop.
#![allow(unreachable_pub, dead_code)]

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const OPERATIONS: &str = include_str!("../../../docs/operations.md");

pub struct Nginx {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

/// The documented configuration block.
pub fn documented_config() -> &'static str {
    let block = OPERATIONS.split("<!-- nginx -->").nth(1).expect("docs/operations.md has an nginx block");
    let block = block.split("<!-- /nginx -->").next().unwrap();
    block.split("```nginx").nth(1).unwrap().split("```").next().unwrap()
}

impl Nginx {
    /// nginx on a free port of 127.0.0.1, proxying to `hub`.
    pub fn start(hub: SocketAddr) -> Nginx {
        let dir = tempfile::Builder::new().prefix("hubbub-nginx-").tempdir().expect("a temporary folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let site = documented_config()
            .replace("server 127.0.0.1:3000;", &format!("server {hub};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        assert!(
            site.contains(&hub.to_string()) && site.contains(&port.to_string()),
            "the documented block changed shape"
        );
        let d = dir.path().display();
        // what a packaged nginx.conf provides around a site; `user root` only because the test
        // folder belongs to root (ignored when not running as root)
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{site}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx is installed (scripts/setup.sh test)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { _dir: dir, port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // the master's PID: SIGTERM is nginx's fast shutdown, which takes the workers with it
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

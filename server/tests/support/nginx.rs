//! A real nginx (Debian's package, installed by `scripts/setup.sh test`) in front of a hub, with
//! the very configuration `docs/operations.md` prints (between its `<!-- nginx -->` markers),
//! only the ports and the certificate's paths changed (a certificate made here for 127.0.0.1).
//! On free loopback ports, in a temporary folder, killed by PID on drop.
#![allow(unreachable_pub, dead_code)]

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const OPERATIONS: &str = include_str!("../../../docs/operations.md");

pub struct Nginx {
    _dir: tempfile::TempDir,
    /// The proxying `server` block's port (https, or http for [`Nginx::start_plain`]).
    pub port: u16,
    /// The plain-http `server` block's port, which redirects to https.
    pub redirect_port: u16,
    tls: bool,
    /// The certificate it serves (made for 127.0.0.1).
    pub certificate: super::Certificate,
    child: Child,
}

/// The documented configuration block.
pub fn documented_config() -> &'static str {
    let block = OPERATIONS.split("<!-- nginx -->").nth(1).expect("docs/operations.md has an nginx block");
    let block = block.split("<!-- /nginx -->").next().unwrap();
    block.split("```nginx").nth(1).unwrap().split("```").next().unwrap()
}

impl Nginx {
    /// nginx proxying to `hub` over https on a free port of 127.0.0.1, as documented.
    pub fn start(hub: SocketAddr) -> Nginx {
        Self::start_with(hub, true)
    }

    /// The same `server` block without TLS, for tests that speak the protocol from several
    /// source addresses with a plain WebSocket client.
    pub fn start_plain(hub: SocketAddr) -> Nginx {
        Self::start_with(hub, false)
    }

    fn start_with(hub: SocketAddr, tls: bool) -> Nginx {
        let dir = tempfile::Builder::new().prefix("hubbub-nginx-").tempdir().expect("a temporary folder");
        let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, redirect_port) = (free_port(), free_port());
        let certificate = super::Certificate::make(dir.path(), "site");
        let (cert_path, key_path) = (&certificate.cert, &certificate.key);
        let listen = if tls { format!("listen 127.0.0.1:{port} ssl;") } else { format!("listen 127.0.0.1:{port};") };
        let site = documented_config()
            .replace("server 127.0.0.1:3000;", &format!("server {hub};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{redirect_port};"))
            .replace("listen 443 ssl;", &listen)
            .replace("/etc/ssl/hubbub/fullchain.pem", &cert_path.display().to_string())
            .replace("/etc/ssl/hubbub/privkey.pem", &key_path.display().to_string());
        assert!(
            [hub.to_string(), port.to_string(), redirect_port.to_string(), cert_path.display().to_string()]
                .iter()
                .all(|changed| site.contains(changed.as_str())),
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
        Nginx { _dir: dir, port, redirect_port, tls, certificate, child }
    }

    /// `https://127.0.0.1:PORT` (or `http://` for [`Nginx::start_plain`]).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.port)
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

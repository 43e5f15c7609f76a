//! Which web pages may open the chat socket. Browsers always send `Origin` on a WebSocket
//! handshake, and cookies/credentials of the hub's site would ride along with a foreign page's
//! request, so a foreign origin is refused with 403 before the upgrade.

use super::proxy::Client;
use axum::http::{HeaderMap, header};

#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    /// Lowercased `scheme://host[:port]` entries from `--allowed-origins`.
    allowed: Vec<String>,
    any: bool,
}

impl OriginPolicy {
    pub(crate) fn new(allowed: &[String]) -> Self {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        let any = allowed.iter().any(|o| o == "*");
        Self { allowed, any }
    }

    /// `Ok` when the request may be upgraded; `Err` carries the refused origin for the log.
    ///
    /// Allowed: no `Origin` header (curl, the CLI, server-to-server clients: they are not a
    /// victim's browser); an origin on the allow-list; an `http`/`https` origin whose host and
    /// port equal the request's `Host` (the page the hub itself served). Behind a trusted proxy
    /// the host (and the scheme) are the ones the client used, as the proxy says.
    pub(crate) fn check(&self, headers: &HeaderMap, client: &Client) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("<not ascii>").to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return Ok(());
        }
        let host = client
            .host
            .clone()
            .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_ascii_lowercase));
        let same_host = match (origin.split_once("://"), host) {
            (Some((scheme @ ("http" | "https"), authority)), Some(host)) => {
                authority == host && client.proto.as_deref().is_none_or(|proto| proto == scheme)
            }
            _ => false,
        };
        if same_host { Ok(()) } else { Err(origin) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Whether `p` lets in a request straight from a client (no proxy).
    fn allows(p: &OriginPolicy, origin: Option<&str>, host: &str) -> bool {
        let client = Client { addr: [192, 0, 2, 1].into(), host: None, proto: None };
        p.check(&headers(origin, host), &client).is_ok()
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn same_host_and_no_origin_are_allowed_foreign_ones_are_not() {
        let p = OriginPolicy::new(&[]);
        assert!(allows(&p, None, "127.0.0.1:3000"));
        assert!(allows(&p, Some("http://127.0.0.1:3000"), "127.0.0.1:3000"));
        assert!(allows(&p, Some("https://Chat.Example"), "chat.example"));
        for bad in [
            "https://evil.example",
            "null",
            "http://chat.example.evil.com",
            "ftp://chat.example",
            "http://chat.example:81",
        ] {
            assert!(!allows(&p, Some(bad), "chat.example"), "{bad}");
        }
    }

    #[test]
    fn the_allow_list_and_wildcard_extend_the_policy() {
        let p = OriginPolicy::new(&["http://127.0.0.1:8080/".into()]);
        assert!(allows(&p, Some("http://127.0.0.1:8080"), "127.0.0.1:3000"));
        assert!(!allows(&p, Some("http://127.0.0.1:8081"), "127.0.0.1:3000"));
        let any = OriginPolicy::new(&["*".into()]);
        assert!(allows(&any, Some("https://anything.example"), "x"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_host_and_scheme_the_client_used_count() {
        let p = OriginPolicy::new(&[]);
        let proxied =
            Client { addr: [192, 0, 2, 1].into(), host: Some("chat.example".into()), proto: Some("https".into()) };
        // the proxy reaches the hub as 127.0.0.1:3000; the page came from https://chat.example
        let h = headers(Some("https://chat.example"), "127.0.0.1:3000");
        assert!(p.check(&h, &proxied).is_ok());
        assert!(p.check(&headers(Some("http://chat.example"), "127.0.0.1:3000"), &proxied).is_err(), "wrong scheme");
        assert!(p.check(&headers(Some("https://127.0.0.1:3000"), "127.0.0.1:3000"), &proxied).is_err());
    }
}

//! Who the client is behind a reverse proxy (`--trusted-proxies`).
//!
//! Behind nginx every connection comes from nginx's address: the per-address cap would count the
//! whole site as one client, logs would show the proxy, and the Origin check would compare with
//! whatever `Host` the proxy passed on. The proxy says who the client is in `Forwarded`
//! (RFC 7239) or `X-Forwarded-For` / `-Proto` / `-Host`, but anyone can send those headers, so
//! they count only when the direct peer is a trusted proxy. In a chain of proxies, the client is
//! the rightmost address that is not a trusted proxy: entries left of it were written by the
//! client itself and prove nothing.

use crate::net::header_list;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The networks whose requests may speak for the client.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

/// Who and where the request is from, as far as it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client's address: the direct peer, or what a trusted proxy said.
    pub(crate) addr: IpAddr,
    /// The host (and port) the client asked for, when a trusted proxy said it.
    pub(crate) host: Option<String>,
    /// `http` or `https` as the client used it, when a trusted proxy said it.
    pub(crate) proto: Option<String>,
}

impl TrustedProxies {
    /// From `--trusted-proxies`: CIDRs (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
    pub(crate) fn new(list: &[String]) -> Result<TrustedProxies, String> {
        let nets = list
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("--trusted-proxies: {s:?} is not an address or CIDR range"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    fn trusts(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The client behind `peer`, reading the forwarding headers only when `peer` is trusted.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> Client {
        let direct = Client { addr: peer, host: None, proto: None };
        if !self.trusts(peer) {
            return direct;
        }
        let forwarded = forwarded_elements(headers);
        let (chain, host, proto) = if forwarded.is_empty() {
            let chain: Vec<String> = header_list(headers, "x-forwarded-for");
            let last = |name| header_list(headers, name).pop();
            (chain, last("x-forwarded-host"), last("x-forwarded-proto"))
        } else {
            let value = |e: &Vec<(String, String)>, key: &str| e.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            let chain = forwarded.iter().filter_map(|e| value(e, "for")).collect();
            let last = forwarded.last();
            (chain, last.and_then(|e| value(e, "host")), last.and_then(|e| value(e, "proto")))
        };
        // rightmost first: the nearest hop wrote it; stop at the first one not a trusted proxy
        let mut addr = peer;
        for hop in chain.iter().rev() {
            let Some(hop) = parse_node(hop) else { break };
            addr = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        Client {
            addr,
            host: host.map(|h| h.to_ascii_lowercase()),
            proto: proto.map(|p| p.to_ascii_lowercase()).filter(|p| p == "http" || p == "https"),
        }
    }
}

/// RFC 7239 `Forwarded`: one element per hop, each `key=value` pairs joined by `;`.
fn forwarded_elements(headers: &HeaderMap) -> Vec<Vec<(String, String)>> {
    header_list(headers, "forwarded")
        .iter()
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_owned()))
                })
                .collect()
        })
        .collect()
}

/// An address from `X-Forwarded-For` or `for=`: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`
/// or `[2001:db8::1]:4711`; `unknown` and obfuscated names are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':').and_then(|(ip, _port)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_a_trusted_peer() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-host", "evil.example")]);
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &spoofed),
            Client { addr: ip("203.0.113.9"), host: None, proto: None }
        );

        let via_nginx = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "Chat.Example"),
        ]);
        let client = proxies.client(ip("127.0.0.1"), &via_nginx);
        assert_eq!(client.addr, ip("198.51.100.7"), "the rightmost untrusted hop, not what the client wrote");
        assert_eq!((client.host.as_deref(), client.proto.as_deref()), (Some("chat.example"), Some("https")));

        let two_proxies = headers(&[("x-forwarded-for", "198.51.100.7, 10.1.2.3")]);
        assert_eq!(proxies.client(ip("127.0.0.1"), &two_proxies).addr, ip("198.51.100.7"));
    }

    #[test]
    fn rfc_7239_forwarded_wins_over_the_x_headers_and_bad_values_fall_back_to_the_peer() {
        let proxies = TrustedProxies::new(&["127.0.0.1/32".into()]).unwrap();
        let h = headers(&[
            ("forwarded", r#"for=6.6.6.6, for="[2001:db8::7]:4711";proto=https;host=chat.example"#),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let client = proxies.client(ip("127.0.0.1"), &h);
        assert_eq!(
            client,
            Client { addr: ip("2001:db8::7"), host: Some("chat.example".into()), proto: Some("https".into()) }
        );
        let garbage = headers(&[("x-forwarded-for", "unknown"), ("x-forwarded-proto", "gopher")]);
        assert_eq!(
            proxies.client(ip("127.0.0.1"), &garbage),
            Client { addr: ip("127.0.0.1"), host: None, proto: None }
        );
        assert!(TrustedProxies::new(&["not-a-net".into()]).is_err());
    }
}

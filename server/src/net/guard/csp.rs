//! The Content-Security-Policy sent with every response. It forbids inline script, except the
//! exact inline scripts of the built `index.html` (trunk boots the app from one), allowed by
//! their SHA-256 hashes computed at start-up. Chat text is rendered as text anyway; this makes
//! an injection that slipped through inert.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The policy for a page whose `index.html` is this (none yet: then no inline script is
/// allowed at all). `token_url` is `--auth-token-url`: when it is on another origin, the page
/// may fetch from that origin too (and only from it), else sign-in could never work.
pub(crate) fn policy(index_html: Option<&[u8]>, token_url: Option<&str>) -> String {
    let html = String::from_utf8_lossy(index_html.unwrap_or_default());
    let hashes: String = inline_scripts(&html)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
        })
        .collect();
    let token_origin: String = token_url.and_then(origin).map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'{token_origin}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// `https://app.example:8443` of an absolute `http(s)` URL; `None` for a path on the page's own
/// origin (or anything else, which `--auth-token-url` refuses at start-up).
pub(crate) fn origin(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| matches!(*s, "http" | "https"))?;
    // no user:password@ in a policy
    let authority = uri.authority().filter(|a| !a.as_str().contains('@'))?;
    Some(format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()))
}

/// The bodies of `<script>` elements without a `src`, exactly as written.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find("<script")?;
            let open_end = start + rest[start..].find('>')? + 1;
            let close = open_end + rest[open_end..].find("</script>")?;
            let (tag, body) = (&rest[start..open_end], &rest[open_end..close]);
            rest = &rest[close + "</script>".len()..];
            if !tag.contains(" src=") {
                return Some(body);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inline_scripts_are_hashed() {
        let html = r#"<script src="/a.js"></script><script type="module">boot()</script><p>x</p>"#;
        assert_eq!(inline_scripts(html).collect::<Vec<_>>(), ["boot()"]);
    }

    #[test]
    fn the_policy_allows_the_page_scripts_by_hash_and_nothing_inline_else() {
        let policy = policy(Some(b"<script>alert(1)</script>"), None);
        // sha256("alert(1)"), base64
        assert!(policy.contains("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"), "{policy}");
        assert!(!policy.contains("unsafe-inline"));
        assert!(!super::policy(None, None).contains("sha256"));
    }

    #[test]
    fn the_page_may_fetch_its_sign_in_token_from_the_configured_origin_only() {
        let policy = policy(None, Some("https://App.example:8443/chat-token?x=1"));
        assert!(policy.contains("connect-src 'self' https://app.example:8443;"), "{policy}");
        // a path is on the page's own origin: nothing to add
        assert!(super::policy(None, Some("/chat-token")).contains("connect-src 'self';"));
        for refused in ["javascript:alert(1)", "ftp://x.example/t", "https://u:p@x.example/t", "chat-token"] {
            assert_eq!(origin(refused), None, "{refused}");
        }
    }
}

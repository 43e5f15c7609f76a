//! The Content-Security-Policy sent with every response. It forbids inline script, except the
//! exact inline scripts of the built `index.html` (trunk boots the app from one), allowed by
//! their SHA-256 hashes computed at start-up. Chat text is rendered as text anyway; this makes
//! an injection that slipped through inert.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The policy for a page whose `index.html` is this (none yet: then no inline script is
/// allowed at all).
pub(crate) fn policy(index_html: Option<&[u8]>) -> String {
    let html = String::from_utf8_lossy(index_html.unwrap_or_default());
    let hashes: String = inline_scripts(&html)
        .map(|script| {
            let digest = Sha256::digest(script.as_bytes());
            format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
        })
        .collect();
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{hashes}; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
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
        let policy = policy(Some(b"<script>alert(1)</script>"));
        // sha256("alert(1)"), base64
        assert!(policy.contains("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"), "{policy}");
        assert!(!policy.contains("unsafe-inline"));
        assert!(!super::policy(None).contains("sha256"));
    }
}

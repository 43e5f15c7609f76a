//! The page (trunk's build: `index.html` and hashed `.wasm`, `.js`, `.css` files), served from
//! memory: built into the binary (`build.rs`), or read from `--static-dir` at start-up.
//!
//! Why our own handler rather than `tower_http::services::ServeDir`: the page is not a folder
//! beside the binary any more, and it needs what ServeDir leaves to us: hashed assets cached for
//! a year as `immutable`, `index.html` revalidated (`no-cache` + ETag → 304), and the big files
//! sent compressed (brotli or gzip, by `Accept-Encoding`), each compressed once, on first
//! request, and kept.

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    sync::{Arc, OnceLock},
};

include!(concat!(env!("OUT_DIR"), "/embedded_page.rs"));

/// Files smaller than this are sent as they are: compressing them gains nothing.
const COMPRESS_FROM_BYTES: usize = 1024;

/// Every file of the page, by path without the leading `/`.
#[derive(Debug, Default)]
pub(crate) struct Page {
    files: HashMap<String, Arc<Asset>>,
    /// Where it came from, for the start-up log.
    pub(crate) source: String,
}

#[derive(Debug)]
struct Asset {
    bytes: bytes::Bytes,
    content_type: &'static str,
    etag: String,
    cache_control: &'static str,
    brotli: OnceLock<Option<bytes::Bytes>>,
    gzip: OnceLock<Option<bytes::Bytes>>,
}

impl Page {
    /// The page from `dir`, or the one built into the binary when `dir` is `None` (or nothing
    /// was built in: then the `dist` folder, where `make run` builds it).
    pub(crate) fn load(dir: Option<&Path>) -> Page {
        match dir {
            Some(dir) => Page::from_dir(dir),
            None if !EMBEDDED.is_empty() => Page::from_files(
                EMBEDDED.iter().map(|(name, bytes)| ((*name).to_owned(), bytes::Bytes::from_static(bytes))),
                "built into the binary".into(),
            ),
            None => Page::from_dir(Path::new("dist")),
        }
    }

    fn from_dir(dir: &Path) -> Page {
        let files = super::page_files::files_under(dir)
            .into_iter()
            .filter_map(|(name, path)| Some((name, bytes::Bytes::from(std::fs::read(path).ok()?))));
        Page::from_files(files, dir.display().to_string())
    }

    fn from_files(files: impl IntoIterator<Item = (String, bytes::Bytes)>, source: String) -> Page {
        let files = files
            .into_iter()
            .map(|(name, bytes)| {
                let digest = Sha256::digest(&bytes);
                let etag = format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
                let asset = Asset {
                    content_type: content_type(&name),
                    cache_control: cache_control(&name),
                    etag,
                    bytes,
                    brotli: OnceLock::new(),
                    gzip: OnceLock::new(),
                };
                (name, Arc::new(asset))
            })
            .collect();
        Page { files, source }
    }

    /// The built `index.html`, if there is one (for the Content-Security-Policy's hashes).
    pub(crate) fn index_html(&self) -> Option<&[u8]> {
        self.files.get("index.html").map(|a| a.bytes.as_ref())
    }

    /// The response for `uri`: the file, or `index.html` for paths that name none (client-side
    /// routes survive a reload).
    pub(crate) fn respond(&self, uri: &Uri, request: &HeaderMap) -> Response {
        let path = uri.path().trim_start_matches('/');
        let Some(asset) = self.files.get(path).or_else(|| self.files.get("index.html")) else {
            return (StatusCode::NOT_FOUND, "the page is not built: run `make run`\n").into_response();
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(asset.cache_control));
        headers.insert(header::ETAG, HeaderValue::from_str(&asset.etag).expect("hex in quotes"));
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        let unchanged = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
        if unchanged {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        let accepts = |coding: &str| {
            request.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(',').any(|c| {
                    let mut parts = c.split(';');
                    let name = parts.next().unwrap_or_default().trim();
                    let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
                    name.eq_ignore_ascii_case(coding) && !refused
                })
            })
        };
        let body = if accepts("br")
            && let Some(br) = asset.brotli()
        {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
            br
        } else if accepts("gzip")
            && let Some(gz) = asset.gzip()
        {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            gz
        } else {
            asset.bytes.clone()
        };
        (StatusCode::OK, headers, Body::from(body)).into_response()
    }
}

impl Asset {
    fn compressible(&self) -> bool {
        self.bytes.len() >= COMPRESS_FROM_BYTES && !self.content_type.starts_with("image/png")
    }

    fn brotli(&self) -> Option<bytes::Bytes> {
        self.brotli
            .get_or_init(|| {
                self.compressible().then(|| {
                    let mut out = Vec::new();
                    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
                    let _ = brotli::BrotliCompress(&mut self.bytes.as_ref(), &mut out, &params);
                    bytes::Bytes::from(out)
                })
            })
            .clone()
    }

    fn gzip(&self) -> Option<bytes::Bytes> {
        self.gzip
            .get_or_init(|| {
                self.compressible().then(|| {
                    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                    let _ = gz.write_all(&self.bytes);
                    bytes::Bytes::from(gz.finish().unwrap_or_default())
                })
            })
            .clone()
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// trunk names every asset after its content (`name-0123456789abcdef.js`, `…_bg.wasm`): such a
/// file never changes, so browsers may keep it for a year; anything else is revalidated.
fn cache_control(name: &str) -> &'static str {
    let stem = name.rsplit('/').next().unwrap_or(name).split('.').next().unwrap_or_default();
    let stem = stem.strip_suffix("_bg").unwrap_or(stem);
    let hashed = stem.rsplit_once('-').is_some_and(|(_, h)| h.len() >= 12 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hashed { "public, max-age=31536000, immutable" } else { "no-cache" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_hashed_names_are_immutable_and_the_rest_revalidated() {
        for hashed in [
            "hubbub-frontend-9779cc7a429c44ce.js",
            "hubbub-frontend-9779cc7a429c44ce_bg.wasm",
            "style-803b031807b6c40.css",
        ] {
            assert_eq!(cache_control(hashed), "public, max-age=31536000, immutable", "{hashed}");
        }
        for plain in ["index.html", "favicon.svg", "my-page.js"] {
            assert_eq!(cache_control(plain), "no-cache", "{plain}");
        }
    }
}

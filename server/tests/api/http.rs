//! The HTTP side: Origin policy, subprotocol, the page and health.

use crate::helpers::*;

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let wrong_scheme = format!("ftp://{}", app.addr);
    for origin in ["https://evil.example", "null", "http://127.0.0.1.evil.com", &wrong_scheme] {
        let err = Client::connect(&app.ws_url(), &[("origin", origin)]).await.err().expect("refused");
        let ConnectError::Refused { status, .. } = err else { panic!("{err:?}") };
        assert_eq!(status, 403, "{origin}");
    }
    assert_eq!(app.health().await["origin_refusals"], 4);

    // the hub's own page, and a client without Origin (CLI tools), are let in
    let same = format!("http://{}", app.addr);
    assert!(Client::connect(&app.ws_url(), &[("origin", &same)]).await.is_ok());
    assert!(Client::connect(&app.ws_url(), &[]).await.is_ok());
}

#[tokio::test]
async fn an_origin_on_the_allow_list_is_let_in() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["http://127.0.0.1:8080".into()]).await;
    assert!(Client::connect(&app.ws_url(), &[("origin", "http://127.0.0.1:8080")]).await.is_ok());
    assert!(Client::connect(&app.ws_url(), &[("origin", "http://127.0.0.1:8081")]).await.is_err());
}

#[tokio::test]
async fn the_hubbub_subprotocol_is_selected_when_offered() {
    let app = spawn_app().await;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(app.ws_url()).unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "hubbub.v2".parse().unwrap());
    let (_ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "hubbub.v2");
}

#[tokio::test]
async fn the_page_is_served_with_its_types_and_unknown_paths_fall_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>Hubbub</title>").unwrap();
    std::fs::write(dir.path().join("app.wasm"), b"\0asm").unwrap();
    let static_dir = dir.path().to_owned();
    let app = spawn_app_with(move |c| c.static_dir = Some(static_dir)).await;

    let (status, head, body) = http_get(app.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: text/html"), "{head}");
    let csp = head.lines().find(|l| l.to_lowercase().starts_with("content-security-policy:")).expect("a CSP header");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(body.contains("<title>Hubbub</title>"));

    let (status, head, _) = http_get(app.addr, "/app.wasm", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: application/wasm"), "{head}");

    let (status, _, body) = http_get(app.addr, "/rooms/lobby", &[]).await;
    assert_eq!((status, body.contains("<title>Hubbub</title>")), (200, true), "SPA fallback");

    let (status, _, body) = http_get(app.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ok""#), "{body}");
}

#[tokio::test]
async fn hashed_assets_are_cached_for_a_year_compressed_by_accept_encoding_and_index_html_is_revalidated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>Hubbub</title>").unwrap();
    let script: String = (0..2000).map(|i| format!("console.log({i});\n")).collect();
    let name = "hubbub-frontend-9779cc7a429c44ce.js";
    std::fs::write(dir.path().join(name), &script).unwrap();
    let static_dir = dir.path().to_owned();
    let app = spawn_app_with(move |c| c.static_dir = Some(static_dir)).await;
    let header = |head: &str, name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };

    let path = format!("/{name}");
    let (status, head, plain) = http_get_bytes(app.addr, &path, &[]).await;
    assert_eq!((status, plain.len()), (200, script.len()), "no Accept-Encoding: as it is");
    assert_eq!(header(&head, "cache-control").as_deref(), Some("public, max-age=31536000, immutable"));
    assert_eq!(header(&head, "content-encoding"), None);

    let (_, head, br) = http_get_bytes(app.addr, &path, &[("Accept-Encoding", "gzip, deflate, br")]).await;
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("br"), "{head}");
    let mut unpacked = Vec::new();
    brotli::BrotliDecompress(&mut br.as_slice(), &mut unpacked).unwrap();
    assert_eq!(unpacked, script.as_bytes());
    assert!(br.len() * 5 < script.len(), "{} bytes of brotli for {}", br.len(), script.len());

    let (_, head, gz) = http_get_bytes(app.addr, &path, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(header(&head, "content-encoding").as_deref(), Some("gzip"), "{head}");
    let mut unpacked = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut unpacked).unwrap();
    assert_eq!(unpacked, script);

    let (status, head, _) = http_get_bytes(app.addr, "/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-cache"));
    let etag = header(&head, "etag").expect("an ETag");
    let (status, _, body) = http_get_bytes(app.addr, "/", &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0), "unchanged: not sent again");
}

/// A client socket from a given loopback source address.
async fn connect_from(source: &str, app: &TestApp) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    handshake_from(source.parse().unwrap(), app.addr, &[]).await
}

#[tokio::test]
async fn one_address_past_its_connection_cap_gets_429_and_others_are_unaffected() {
    let app = spawn_app_with(|c| c.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", &app).await.expect("under the cap"));
    }
    let err = connect_from("127.0.0.2", &app).await.expect_err("over the cap");
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else { panic!("{err:?}") };
    assert_eq!(response.status(), 429);
    assert_eq!(app.health().await["ip_cap_refusals"], 1);

    assert!(connect_from("127.0.0.3", &app).await.is_ok(), "another address is not affected");

    // closing one frees its place
    drop(held.pop());
    app.wait_for_health("connections", 2).await;
    assert!(connect_from("127.0.0.2", &app).await.is_ok());
    drop(held);
    app.assert_settled().await;
}

#[tokio::test]
async fn a_request_head_that_never_finishes_is_closed_at_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|c| c.header_read_timeout_ms = 300).await;
    for partial in ["GET /healthz HTTP/1.1\r\nHost: x\r\n", "GET /ws HTTP/1.1\r\nUpgrade: websocket", ""] {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(partial.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the connection was left open ({partial:?})");
        assert!(started.elapsed() < std::time::Duration::from_secs(3), "{partial:?}: {:?}", started.elapsed());
    }
    // complete requests are unaffected
    assert_eq!(app.health().await["status"], "ok");
    app.assert_settled().await;
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_text_format() {
    use futures_util::SinkExt;
    let app = spawn_app().await;
    let (mut alice, _) = app.joined("lobby", "alice").await;
    alice
        .send(&hubbub_shared::ClientMsg::Send { id: Some("m1".into()), room: "lobby".into(), text: "counted".into() })
        .await;
    while !matches!(alice.next().await, hubbub_shared::ServerMsg::Ack { .. }) {}
    assert!(Client::connect(&app.ws_url(), &[("origin", "https://evil.example")]).await.is_err());
    let mut binary = app.client().await;
    binary.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![1u8])).await.unwrap();
    assert_eq!(binary.expect_close().await, hubbub_shared::close::UNSUPPORTED_DATA);

    let (status, head, body) = http_get(app.addr, "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    let value = |name: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
            .parse()
            .unwrap()
    };
    assert_eq!(value("hubbub_rooms"), 1.0);
    assert_eq!(value("hubbub_messages_stored_total"), 1.0);
    assert_eq!(value("hubbub_origin_refusals_total"), 1.0);
    assert!(value("hubbub_messages_in_total") >= 2.0, "join and send");
    assert!(value("hubbub_messages_out_total") >= 4.0, "welcome, joined, history, message, ack");
    assert!(value("hubbub_commit_seconds_count") >= 1.0);
    assert_eq!(value("hubbub_commit_seconds_bucket{le=\"+Inf\"}"), value("hubbub_commit_seconds_count"));
    assert_eq!(value("hubbub_closes_total{code=\"1003\"}"), 1.0);
    assert!(body.contains("# TYPE hubbub_commit_seconds histogram"));
    app.wait_for_health("connections", 1).await;
}

//! End to end, as people use it: the real `hubbub` binary serving the trunk-built page, and two
//! independent headless Chromium sessions (Debian's chromium + chromedriver, over WebDriver).
//!
//! Needs `make test` (or `scripts/setup.sh test` and a `trunk build`) first, so it is ignored by a
//! plain `cargo test`; `make test` runs it with `--ignored`. Every process it starts is killed
//! when the test ends, and every wait has a deadline.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};
use support::{Hub, WAIT, repo_root};
use tokio::process::{Child, Command};

/// The page trunk built: `HUBBUB_E2E_DIST`, or `dist/` at the repository root.
fn dist_dir() -> PathBuf {
    let dist = std::env::var_os("HUBBUB_E2E_DIST").map(PathBuf::from).unwrap_or_else(|| repo_root().join("dist"));
    assert!(dist.join("index.html").is_file(), "no built page in {}: run `make test`", dist.display());
    dist
}

/// chromedriver on a free loopback port, in a process group of its own so that dropping it
/// also kills the browsers it started, even when a failing test never closed its sessions.
struct Driver {
    child: Child,
    url: String,
    /// The browsers' profiles, removed after the browsers are killed (fields drop after `drop`).
    profiles: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver is installed (scripts/setup.sh test)");
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url: format!("http://127.0.0.1:{port}"), profiles: Default::default() }
    }

    /// A fresh browser session with its own profile: a separate person.
    async fn browser(&self, name: &str) -> Client {
        self.browser_with(name, &[]).await
    }

    /// The same, with extra Chromium flags.
    async fn browser_with(&self, name: &str, extra: &[String]) -> Client {
        let profile =
            tempfile::Builder::new().prefix(&format!("hubbub-e2e-{name}-")).tempdir().expect("a profile folder");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,720",
        ];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().cloned());
        self.profiles.lock().unwrap().push(profile);
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }));
        ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Polls `check` until it returns `Some`, or fails with `what` after the deadline.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn texts(page: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for el in page.find_all(Locator::Css(css)).await.unwrap_or_default() {
        if let Ok(t) = el.text().await {
            out.push(t);
        }
    }
    out
}

async fn join(page: &Client, base: &str, nick: &str) {
    page.goto(base).await.unwrap();
    let input = page.wait().at_most(WAIT).for_element(Locator::Id("nick")).await.expect("join form");
    input.send_keys(nick).await.unwrap();
    page.find(Locator::Css("form.join button[type=submit]")).await.unwrap().click().await.unwrap();
    eventually(&format!("{nick} sees the lobby"), || async {
        texts(page, "#room-title").await.iter().any(|t| t == "#lobby").then_some(())
    })
    .await;
}

/// What axe-core (npm, installed by `scripts/setup.sh test`) finds wrong with the page as it is
/// now, against WCAG 2.x A and AA: one line per violation with the elements it concerns.
async fn accessibility_violations(page: &Client) -> Vec<String> {
    let axe = repo_root().join("target/axe/node_modules/axe-core/axe.min.js");
    let script = std::fs::read_to_string(&axe).expect("axe-core is installed (scripts/setup.sh test)");
    page.execute(&format!("{script}\n;window.axe = axe;"), vec![]).await.expect("axe-core loads");
    let found = page
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] })
               .then(r => done(r.violations.map(v =>
                 v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    found.as_array().expect("a list").iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}

async fn members(page: &Client) -> Vec<String> {
    texts(page, ".members li .name").await
}

async fn say(page: &Client, text: &str) {
    let input = page.find(Locator::Id("message")).await.unwrap();
    input.send_keys(text).await.unwrap();
    input.send_keys("\u{E007}").await.unwrap(); // Enter
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn two_people_chat_in_the_browser_try_the_echo_page_and_see_the_server_go_away() {
    let mut hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let driver = Driver::start().await;
    let alice = driver.browser("alice").await;
    let bob = driver.browser("bob").await;

    // Both join the lobby and see each other in the member list
    join(&alice, &hub.url, "alice").await;
    join(&bob, &hub.url, "bob").await;
    eventually("alice sees bob in the member list", || async {
        (members(&alice).await == ["alice", "bob"]).then_some(())
    })
    .await;
    assert_eq!(members(&bob).await, ["alice", "bob"]);

    say(&alice, "Hi Bob, welcome to Hubbub!").await;
    // A message with markup arrives at the other side as literal text and runs nothing
    let hostile = r#"Hi <b>Bob</b> <img src=x onerror="document.title='pwned'">"#;
    say(&alice, hostile).await;
    eventually("bob receives alice's message", || async {
        texts(&bob, ".msg .text").await.iter().any(|t| t == hostile).then_some(())
    })
    .await;
    assert!(bob.find_all(Locator::Css(".log img, .log b")).await.unwrap().is_empty(), "markup was not parsed");
    assert_ne!(bob.title().await.unwrap(), "pwned");
    // two messages of one author in a row: one name over both
    let authors = texts(&bob, ".msg:not(.continued) .author").await;
    assert_eq!(authors, ["alice"]);

    say(&bob, "Hi Alice! 👋").await;
    eventually("alice receives bob's reply", || async {
        texts(&alice, ".msg:not(.own) .text").await.iter().any(|t| t == "Hi Alice! 👋").then_some(())
    })
    .await;
    assert_eq!(
        texts(&alice, ".msg.own .text").await,
        ["Hi Bob, welcome to Hubbub!", hostile],
        "alice's own messages are set apart, in order"
    );
    assert!(texts(&alice, ".notice").await.iter().any(|t| t == "bob joined."));
    // Chromium offers permessage-deflate and the hub agrees: a long message travels compressed
    let before = compressed_frames_out(&hub.url).await;
    let long = format!("A longer message, to travel compressed: {}", "la ".repeat(100).trim_end());
    say(&bob, &long).await;
    eventually("alice receives the long message", || async {
        texts(&alice, ".msg:not(.own) .text").await.contains(&long).then_some(())
    })
    .await;
    let health = healthz(&hub.url).await;
    assert!(health["deflate_connections"].as_u64() >= Some(2), "both browsers agreed on deflate: {health}");
    assert!(compressed_frames_out(&hub.url).await >= before + 2, "the long message went compressed to both: {health}");
    let typed = alice.find(Locator::Id("message")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(typed.as_deref(), Some(""), "the box is cleared after sending");

    // A second room, then back: each room keeps its own log and members
    let room_input = alice.find(Locator::Id("room")).await.unwrap();
    room_input.send_keys(&"\u{E003}".repeat(5)).await.unwrap(); // Backspace over "lobby"
    room_input.send_keys("kitchen").await.unwrap();
    alice.find(Locator::Css("form.join button[type=submit]")).await.unwrap().click().await.unwrap();
    eventually("alice is in #kitchen", || async {
        (texts(&alice, "#room-title").await == ["#kitchen"] && members(&alice).await == ["alice"]).then_some(())
    })
    .await;
    let labels: Vec<String> =
        texts(&alice, ".rooms .room-tab").await.iter().filter_map(|t| t.lines().next().map(str::to_owned)).collect();
    assert_eq!(labels, ["#lobby", "#kitchen"]);
    alice.find(Locator::Css(".rooms li:first-child .room-tab")).await.unwrap().click().await.unwrap();
    eventually("alice is back in #lobby with its history", || async {
        (texts(&alice, "#room-title").await == ["#lobby"] && texts(&alice, ".msg .text").await.len() == 4).then_some(())
    })
    .await;

    // The page fits a 375 px phone without sideways scrolling
    alice.set_window_size(375, 720).await.unwrap();
    let width = alice.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(width.as_u64().unwrap() <= 375, "page is {width} px wide at 375 px");
    alice.set_window_size(1100, 720).await.unwrap();

    let shot = alice.screenshot().await.unwrap();
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("chat.png"), &shot).unwrap();

    // The nickname is remembered across visits, and a reload is not a leave
    bob.refresh().await.unwrap();
    let nick = bob.wait().at_most(WAIT).for_element(Locator::Id("nick")).await.unwrap();
    assert_eq!(nick.prop("value").await.unwrap().as_deref(), Some("bob"));
    eventually("bob's page is back in the lobby", || async {
        let state = bob.find(Locator::Css(".status")).await.ok()?.attr("data-state").await.ok()??;
        (state == "connected" && texts(&bob, "#room-title").await == ["#lobby"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!texts(&alice, ".notice").await.iter().any(|t| t == "bob left."), "a reload announces nothing");
    assert_eq!(members(&alice).await, ["alice", "bob"]);

    // Bob tries the echo page: connected, sent, received
    bob.goto(&format!("{}/echo", hub.url)).await.unwrap();
    eventually("the echo page connects", || async {
        texts(&bob, ".echo-log li.info").await.iter().any(|t| t.starts_with("info: connected")).then_some(())
    })
    .await;
    let echo_input = bob.find(Locator::Id("echo-input")).await.unwrap();
    echo_input.send_keys("hello echo ✓ <i>").await.unwrap();
    echo_input.send_keys("\u{E007}").await.unwrap();
    eventually("the echo comes back", || async {
        let lines = texts(&bob, ".echo-log li").await;
        (lines.iter().any(|t| t == "sent: hello echo ✓ <i>") && lines.iter().any(|t| t == "received: hello echo ✓ <i>"))
            .then_some(())
    })
    .await;

    // Stopping the server: exit code 0, and the pages say why they lost the connection
    assert_eq!(hub.terminate().await, Some(0));
    eventually("the echo page shows the close code", || async {
        texts(&bob, ".echo-log li.closed").await.iter().any(|t| t == "closed: 1001 server shutting down").then_some(())
    })
    .await;
    eventually("alice's page shows the closed connection", || async {
        let status = alice.find(Locator::Css(".status")).await.ok()?;
        let state = status.attr("data-state").await.ok()??;
        let text = status.text().await.ok()?;
        (state == "reconnecting" && text.contains("server shutting down (1001)")).then_some(())
    })
    .await;
    // the box stays usable: what is typed now waits in the outbox (see the next test)
    let message_box = alice.find(Locator::Id("message")).await.unwrap();
    assert!(message_box.is_enabled().await.unwrap());
    let placeholder = message_box.attr("placeholder").await.unwrap().unwrap_or_default();
    assert!(placeholder.starts_with("Offline"), "{placeholder}");

    alice.close().await.ok();
    bob.close().await.ok();
}

/// How many log entries show exactly `text`, and in which states.
async fn copies(page: &Client, text: &str) -> (usize, usize) {
    let mut stored = 0;
    let mut pending = 0;
    for el in page.find_all(Locator::Css(".msg")).await.unwrap_or_default() {
        let Ok(t) = el.find(Locator::Css(".text")).await else { continue };
        if t.text().await.ok().as_deref() == Some(text) {
            let class = el.attr("class").await.ok().flatten().unwrap_or_default();
            if class.contains("pending") { pending += 1 } else { stored += 1 }
        }
    }
    (stored, pending)
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn nothing_is_lost_across_a_refresh_a_server_restart_and_time_away() {
    let db = support::fresh_db();
    let dist = dist_dir();
    // a short grace, so that bob's going away is announced within the test
    let static_dir = ["--static-dir", &dist.to_string_lossy(), "--presence-grace-ms", "1000"];
    let mut hub = Hub::start_on(&db, &static_dir).await;
    let address = hub.url.trim_start_matches("http://").to_owned();
    let driver = Driver::start().await;
    let alice = driver.browser("alice-3").await;
    let bob = driver.browser("bob-3").await;
    join(&alice, &hub.url, "alice").await;
    join(&bob, &hub.url, "bob").await;

    // History is shown after a refresh: the page rejoins its rooms by itself
    say(&alice, "said before the refresh").await;
    eventually("bob gets it", || async { (copies(&bob, "said before the refresh").await == (1, 0)).then_some(()) })
        .await;
    bob.refresh().await.unwrap();
    eventually("bob sees the history again after the refresh", || async {
        (copies(&bob, "said before the refresh").await == (1, 0) && texts(&bob, "#room-title").await == ["#lobby"])
            .then_some(())
    })
    .await;

    // A message typed while the server is down waits, then arrives once for both
    assert_eq!(hub.terminate().await, Some(0));
    eventually("alice's page knows the server is gone", || async {
        let state = alice.find(Locator::Css(".status")).await.ok()?.attr("data-state").await.ok()??;
        (state == "reconnecting").then_some(())
    })
    .await;
    say(&alice, "typed while the server was down").await;
    eventually("it waits as 'sending'", || async {
        (copies(&alice, "typed while the server was down").await == (0, 1)).then_some(())
    })
    .await;
    let hub = Hub::start_at(&db, &address, &static_dir).await;
    for (who, page) in [("alice", &alice), ("bob", &bob)] {
        eventually(&format!("{who} has it exactly once, stored"), || async {
            (copies(page, "typed while the server was down").await == (1, 0)).then_some(())
        })
        .await;
    }

    // Bob away while alice talks: back, he sees everything, once
    bob.goto(&format!("{}/echo", hub.url)).await.unwrap();
    eventually("alice sees bob leave", || async {
        texts(&alice, ".notice").await.iter().any(|t| t == "bob left.").then_some(())
    })
    .await;
    say(&alice, "while bob was away, one").await;
    say(&alice, "while bob was away, two").await;
    bob.goto(&hub.url).await.unwrap();
    eventually("bob catches up", || async {
        let got = texts(&bob, ".msg .text").await;
        let want = [
            "said before the refresh",
            "typed while the server was down",
            "while bob was away, one",
            "while bob was away, two",
        ];
        (got == want).then_some(())
    })
    .await;
    assert_eq!(copies(&alice, "while bob was away, two").await, (1, 0));

    alice.close().await.ok();
    bob.close().await.ok();
    drop(hub);
    std::fs::remove_dir_all(db.parent().unwrap()).ok();
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn a_page_left_on_the_join_form_goes_idle_and_connects_when_the_person_joins() {
    let dist = dist_dir();
    let hub = Hub::start(&["--static-dir", &dist.to_string_lossy(), "--join-timeout-ms", "500"]).await;
    let driver = Driver::start().await;
    let page = driver.browser("idle").await;
    page.goto(&hub.url).await.unwrap();
    eventually("the page goes idle, without an error", || async {
        let status = page.find(Locator::Css(".status")).await.ok()?;
        let (state, text) = (status.attr("data-state").await.ok()??, status.text().await.ok()?);
        (state == "idle" && text.contains("join a room to connect")).then_some(())
    })
    .await;
    // join on the idle page itself (no reload): it connects and joins. The nickname is
    // markup: it must show as text and run nothing.
    let nick = r#"<img src=x onerror=alert(1)>"#;
    page.find(Locator::Id("nick")).await.unwrap().send_keys(nick).await.unwrap();
    page.find(Locator::Css("form.join button[type=submit]")).await.unwrap().click().await.unwrap();
    eventually("the person is connected and in the lobby", || async {
        let state = page.find(Locator::Css(".status")).await.ok()?.attr("data-state").await.ok()??;
        (state == "connected" && texts(&page, "#room-title").await == ["#lobby"]).then_some(())
    })
    .await;
    say(&page, "<script>document.title='pwned'</script>").await;
    eventually("the message shows, with its author, as text", || async {
        (texts(&page, ".msg .author").await == [nick] && members(&page).await == [nick]).then_some(())
    })
    .await;
    assert_eq!(texts(&page, ".msg .text").await, ["<script>document.title='pwned'</script>"]);
    assert!(page.find_all(Locator::Css("img, .log script")).await.unwrap().is_empty(), "nothing was parsed as HTML");
    assert_eq!(page.title().await.unwrap(), "Hubbub");
    page.close().await.ok();
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn one_person_in_two_tabs_is_one_member_who_types_reloads_and_leaves_after_the_grace() {
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy(), "--presence-grace-ms", "1500"]).await;
    let driver = Driver::start().await;
    let alice = driver.browser("alice-tabs").await;
    let bob = driver.browser("bob-tabs").await;
    join(&alice, &hub.url, "alice").await;
    join(&bob, &hub.url, "bob").await;
    let tab_a = alice.window().await.unwrap();

    // a second tab of the same browser: the page rejoins the lobby by itself, as the same person
    let tab_b = alice.new_window(true).await.unwrap().handle;
    alice.switch_to_window(tab_b.clone()).await.unwrap();
    alice.goto(&hub.url).await.unwrap();
    eventually("the second tab is in the lobby", || async {
        (texts(&alice, "#room-title").await == ["#lobby"] && members(&alice).await == ["alice", "bob"]).then_some(())
    })
    .await;
    eventually("bob sees alice once", || async { (members(&bob).await == ["alice", "bob"]).then_some(()) }).await;

    // what either tab sends shows exactly once in both tabs and at bob's
    say(&alice, "from tab B").await;
    alice.switch_to_window(tab_a.clone()).await.unwrap();
    say(&alice, "from tab A").await;
    for text in ["from tab B", "from tab A"] {
        for (who, page, tab) in [("tab A", &alice, Some(&tab_a)), ("tab B", &alice, Some(&tab_b)), ("bob", &bob, None)]
        {
            if let Some(tab) = tab {
                page.switch_to_window(tab.clone()).await.unwrap();
            }
            eventually(&format!("{who} shows {text:?} once"), || async {
                (copies(page, text).await == (1, 0)).then_some(())
            })
            .await;
        }
    }
    assert!(!texts(&bob, ".notice").await.iter().any(|t| t == "alice left."), "no flicker so far");

    // typing shows on the other side, and goes when the message is sent
    let input = bob.find(Locator::Id("message")).await.unwrap();
    input.send_keys("still typ").await.unwrap();
    alice.switch_to_window(tab_a.clone()).await.unwrap();
    eventually("alice sees bob typing", || async {
        (texts(&alice, ".typing").await == ["bob is typing…"]).then_some(())
    })
    .await;
    assert!(texts(&bob, ".typing").await.iter().all(|t| t.is_empty()), "never one's own name");
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("typing.png"), alice.screenshot().await.unwrap()).unwrap();
    input.send_keys("ing\u{E007}").await.unwrap();
    eventually("the typing line goes with the send", || async {
        (texts(&alice, ".typing").await.iter().all(|t| t.is_empty()) && copies(&alice, "still typing").await == (1, 0))
            .then_some(())
    })
    .await;

    // closing one tab and reloading the other: bob hears nothing
    alice.switch_to_window(tab_b).await.unwrap();
    alice.close_window().await.unwrap();
    alice.switch_to_window(tab_a).await.unwrap();
    alice.refresh().await.unwrap();
    eventually("tab A is back in the lobby", || async {
        (texts(&alice, "#room-title").await == ["#lobby"]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!texts(&bob, ".notice").await.iter().any(|t| t == "alice left."), "a closed tab and a reload are quiet");
    assert_eq!(members(&bob).await, ["alice", "bob"]);

    // every tab gone: alice leaves once the grace has passed
    alice.goto("about:blank").await.unwrap();
    let gone = Instant::now();
    eventually("bob is told alice left", || async {
        texts(&bob, ".notice").await.iter().any(|t| t == "alice left.").then_some(())
    })
    .await;
    assert!(gone.elapsed() >= Duration::from_millis(1000), "not before the grace: {:?}", gone.elapsed());
    assert_eq!(members(&bob).await, ["bob"]);
    alice.close().await.ok();
    bob.close().await.ok();
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn the_log_reads_like_a_chat_app_grouped_by_author_and_day_with_links_and_full_times() {
    use futures_util::SinkExt;
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let driver = Driver::start().await;
    let alice = driver.browser("alice-log").await;
    alice.goto(&hub.url).await.unwrap();
    alice.wait().at_most(WAIT).for_element(Locator::Id("nick")).await.expect("join form");
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the join view");
    join(&alice, &hub.url, "alice").await;
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut bob = hubbub_client::connect(&url, &[]).await.expect("a socket");
    hubbub_client::join_and_wait(&mut bob, &hubbub_client::join("lobby", "bob"), WAIT).await.expect("joined");
    // "bob joined." comes with the room's next presence tick and, like any notice, ends a run of
    // one author's messages: let it land before the conversation this test groups
    eventually("bob's arrival", || async {
        texts(&alice, ".notice").await.iter().any(|t| t == "bob joined.").then_some(())
    })
    .await;
    let bob_says = |text: &str| {
        tokio_tungstenite::tungstenite::Message::text(hubbub_shared::encode(&hubbub_shared::ClientMsg::Send {
            id: None,
            room: "lobby".into(),
            text: text.into(),
        }))
    };
    let shown = |n: usize| {
        let alice = &alice;
        async move { (texts(alice, ".log .msg .text").await.len() == n).then_some(()) }
    };

    // Act: bob twice, alice twice (with addresses), bob again
    bob.send(bob_says("one")).await.unwrap();
    bob.send(bob_says("two")).await.unwrap();
    eventually("bob's two messages", || shown(2)).await;
    say(&alice, "read https://example.org/a?b=1, it is good.").await;
    eventually("alice's message", || shown(3)).await;
    say(&alice, "not javascript:alert(1) but http://x.test/wiki/A_(b)").await;
    eventually("alice's second", || shown(4)).await;
    bob.send(bob_says("three")).await.unwrap();
    eventually("bob's third", || shown(5)).await;

    // Assert: a name over each run of one author, a day separator, links only for http(s)
    assert_eq!(texts(&alice, ".msg:not(.continued) .author").await, ["bob", "alice", "bob"]);
    assert_eq!(alice.find_all(Locator::Css(".msg.continued")).await.unwrap().len(), 2);
    assert_eq!(texts(&alice, ".log .day").await, ["Today"]);
    let mut links = Vec::new();
    for a in alice.find_all(Locator::Css(".log .msg a")).await.unwrap() {
        let attr = |name: &'static str| {
            let a = a.clone();
            async move { a.attr(name).await.unwrap().unwrap_or_default() }
        };
        assert_eq!((attr("rel").await, attr("target").await), ("noopener noreferrer".into(), "_blank".into()));
        links.push((attr("href").await, a.text().await.unwrap()));
    }
    assert_eq!(
        links,
        [
            ("https://example.org/a?b=1".to_owned(), "https://example.org/a?b=1".to_owned()),
            ("http://x.test/wiki/A_(b)".to_owned(), "http://x.test/wiki/A_(b)".to_owned())
        ]
    );
    assert_eq!(
        texts(&alice, ".log .msg .text").await[2..4],
        ["read https://example.org/a?b=1, it is good.", "not javascript:alert(1) but http://x.test/wiki/A_(b)"],
        "the text around the links is all there"
    );

    // the full date and time: in the title (hover), and shown on keyboard focus even where the
    // grouped message hides its time
    let year = alice.execute("return String(new Date().getFullYear())", vec![]).await.unwrap();
    let year = year.as_str().unwrap().to_owned();
    for title in alice.find_all(Locator::Css(".log .msg time")).await.unwrap() {
        let title = title.attr("title").await.unwrap().unwrap_or_default();
        assert!(title.contains(&year) && title.contains(", "), "{title}");
    }
    let focused = alice
        .execute(
            "const t = document.querySelector('.msg.continued time'); const before = getComputedStyle(t).opacity; \
             t.focus(); return [before, getComputedStyle(t).opacity, getComputedStyle(t, '::after').content];",
            vec![],
        )
        .await
        .unwrap();
    let focused: Vec<String> = focused.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(focused[..2], ["0", "1"], "hidden until focused");
    assert!(focused[2].contains(&year), "the full date shows on focus: {}", focused[2]);
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "a room with grouped messages and links");
    alice.set_window_size(375, 700).await.unwrap();
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the same at phone width");
    alice.set_window_size(1100, 720).await.unwrap();
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("log.png"), alice.screenshot().await.unwrap()).unwrap();
    drop(bob);
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn an_author_edits_and_deletes_a_message_and_the_other_person_sees_both_live() {
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let driver = Driver::start().await;
    let (alice, bob) = (driver.browser("alice-edits").await, driver.browser("bob-edits").await);
    join(&alice, &hub.url, "alice").await;
    join(&bob, &hub.url, "bob").await;
    say(&alice, "helo wrold").await;
    eventually("bob sees the typo", || async { (texts(&bob, ".msg .text").await == ["helo wrold"]).then_some(()) })
        .await;
    assert!(bob.find(Locator::Css(".msg .change")).await.is_err(), "no Edit under someone else's message");
    let edit_button = || async { alice.find(Locator::Css(".msg.own .change")).await.expect("Edit under her message") };
    eventually("alice's message is confirmed", || async {
        alice.find(Locator::Css(".msg.own[data-state=sent] .change")).await.ok().map(|_| ())
    })
    .await;

    // Escape leaves the message as it was
    edit_button().await.click().await.unwrap();
    let field = alice.wait().at_most(WAIT).for_element(Locator::Css(".msg form.edit input")).await.unwrap();
    eventually("the box has the focus and the text", || async {
        let focused = alice.execute("return document.activeElement.value", vec![]).await.ok()?;
        (focused.as_str() == Some("helo wrold")).then_some(())
    })
    .await;
    field.send_keys("\u{E00C}").await.unwrap(); // Escape
    eventually("the box is gone", || async { alice.find(Locator::Css(".msg form.edit")).await.is_err().then_some(()) })
        .await;

    // Act: fix the typo, Enter saves
    edit_button().await.click().await.unwrap();
    let field = alice.wait().at_most(WAIT).for_element(Locator::Css(".msg form.edit input")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("hello world\u{E007}").await.unwrap();

    // Assert: both see the new text, marked edited, in place of the old one
    for (who, page) in [("alice", &alice), ("bob", &bob)] {
        eventually(&format!("{who} sees the edit"), || async {
            let shown = texts(page, ".log .msg .text").await;
            (shown == ["hello world (edited)"]).then_some(())
        })
        .await;
    }

    // Act: delete it (Delete is in the same box)
    edit_button().await.click().await.unwrap();
    let delete = alice.wait().at_most(WAIT).for_element(Locator::Css(".msg form.edit .danger")).await.unwrap();
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("edit.png"), alice.screenshot().await.unwrap()).unwrap();
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "a room with the edit box open");
    delete.click().await.unwrap();
    for (who, page) in [("alice", &alice), ("bob", &bob)] {
        eventually(&format!("{who} sees the deletion"), || async {
            (texts(page, ".log .msg .text").await == ["message deleted"]).then_some(())
        })
        .await;
    }
    assert!(alice.find(Locator::Css(".msg .change")).await.is_err(), "a deleted message cannot be edited");

    // what the history says afterwards: a fresh page shows it deleted, and the change takes no line
    bob.refresh().await.unwrap();
    eventually("bob's history after a reload", || async {
        (texts(&bob, ".log .msg .text").await == ["message deleted"]).then_some(())
    })
    .await;
}

/// Presses `key` on whatever has the focus (a keyboard-only person's only way in).
async fn press(page: &Client, key: &str) {
    page.active_element().await.unwrap().send_keys(key).await.unwrap();
}

/// Presses Tab until the element with `id` has the focus; fails after 30 presses.
async fn tab_to(page: &Client, id: &str) {
    for _ in 0..30 {
        let focused = page.execute("return document.activeElement.id", vec![]).await.unwrap();
        if focused.as_str() == Some(id) {
            return;
        }
        press(page, "\u{E004}").await; // Tab
    }
    panic!("Tab never reached #{id}");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn on_a_phone_the_chat_fills_the_screen_drawers_open_and_close_and_the_keyboard_does_it_all() {
    const ALT_UP: &str = "\u{E00A}\u{E013}\u{E000}";
    const ALT_DOWN: &str = "\u{E00A}\u{E015}\u{E000}";
    const ESCAPE: &str = "\u{E00C}";
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let driver = Driver::start().await;
    let alice = driver.browser("alice-phone").await;
    alice.set_window_size(375, 700).await.unwrap();
    alice.goto(&hub.url).await.unwrap();
    alice.wait().at_most(WAIT).for_element(Locator::Id("nick")).await.expect("join form");

    // Act: join by keyboard alone, then talk
    tab_to(&alice, "nick").await;
    press(&alice, "alice").await;
    tab_to(&alice, "room").await;
    press(&alice, "\u{E007}").await; // Enter: the room field says lobby already
    eventually("in the lobby", || async { (texts(&alice, "#room-title").await == ["#lobby"]).then_some(()) }).await;
    tab_to(&alice, "message").await;
    press(&alice, "typed, not clicked\u{E007}").await;
    eventually("the message", || async {
        (texts(&alice, ".msg.own .text").await == ["typed, not clicked"]).then_some(())
    })
    .await;

    // Assert: the chat has the screen: no form above it, no members beside it
    let shown = |css: &'static str| {
        let alice = &alice;
        async move { alice.find(Locator::Css(css)).await.unwrap().is_displayed().await.unwrap() }
    };
    assert!(!shown("#sidebar").await && !shown("#members").await, "the join form and members are out of the way");
    let log_box = alice
        .execute(
            "const r = document.querySelector('.log').getBoundingClientRect(); return [r.width, r.height];",
            vec![],
        )
        .await
        .unwrap();
    let (width, height) = (log_box[0].as_f64().unwrap(), log_box[1].as_f64().unwrap());
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("phone.png"), alice.screenshot().await.unwrap()).unwrap();
    let viewport = alice.execute("return window.innerHeight", vec![]).await.unwrap().as_f64().unwrap();
    assert!(width >= 370.0 && height >= 0.55 * viewport, "the log is {width}×{height} of 375×{viewport}");
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the phone layout");

    // the rooms drawer, by keyboard: open, Escape closes; then join a second room from it
    let rooms_toggle = alice.find(Locator::Css(".drawer-toggle[aria-controls=sidebar]")).await.unwrap();
    assert_eq!(rooms_toggle.attr("aria-expanded").await.unwrap().as_deref(), Some("false"));
    rooms_toggle.click().await.unwrap();
    assert!(shown("#sidebar").await, "the rooms drawer opens");
    assert_eq!(rooms_toggle.attr("aria-expanded").await.unwrap().as_deref(), Some("true"));
    std::fs::write(out.join("phone-rooms.png"), alice.screenshot().await.unwrap()).unwrap();
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the rooms drawer");
    press(&alice, ESCAPE).await;
    eventually("Escape closes it", || async { (!shown("#sidebar").await).then_some(()) }).await;
    rooms_toggle.click().await.unwrap();
    let room_field = alice.find(Locator::Id("room")).await.unwrap();
    room_field.clear().await.unwrap();
    room_field.send_keys("rust\u{E007}").await.unwrap();
    eventually("in #rust, the drawer closed", || async {
        (texts(&alice, "#room-title").await == ["#rust"] && !shown("#sidebar").await).then_some(())
    })
    .await;

    // the members drawer
    alice.find(Locator::Css(".drawer-toggle[aria-controls=members]")).await.unwrap().click().await.unwrap();
    eventually("the members drawer", || async {
        (shown("#members").await && members(&alice).await == ["alice"]).then_some(())
    })
    .await;
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the members drawer");
    press(&alice, ESCAPE).await;

    // Alt+ArrowUp / Alt+ArrowDown move between the rooms, from wherever the focus is
    tab_to(&alice, "message").await;
    press(&alice, ALT_UP).await;
    eventually("Alt+Up: the lobby", || async { (texts(&alice, "#room-title").await == ["#lobby"]).then_some(()) })
        .await;
    press(&alice, ALT_DOWN).await;
    eventually("Alt+Down: #rust", || async { (texts(&alice, "#room-title").await == ["#rust"]).then_some(()) }).await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn browse_rooms_lists_where_people_are_and_one_click_joins_one() {
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut others = Vec::new();
    for (nick, rooms) in [("bob", &["rust", "lobby"][..]), ("carol", &["rust"][..])] {
        let mut ws = hubbub_client::connect(&url, &[]).await.expect("a socket");
        for room in rooms {
            hubbub_client::join_and_wait(&mut ws, &hubbub_client::join(room, nick), WAIT).await.expect("joined");
        }
        others.push(ws);
    }
    let driver = Driver::start().await;
    let alice = driver.browser("alice-browse").await;
    join(&alice, &hub.url, "alice").await;

    // Act: ask which rooms are active
    alice.find(Locator::Css(".rooms .browse")).await.unwrap().click().await.unwrap();

    // Assert: every other room with people, biggest first, with its size
    eventually("the active rooms", || async {
        // the lobby, joined, first; then the others with their sizes
        (texts(&alice, ".rooms .room-tab").await == ["#lobby", "#rust (2)"]).then_some(())
    })
    .await;
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the list of rooms");

    // one click joins, under the nickname on screen
    let rust = alice.find(Locator::XPath("//nav[@class='rooms']//button[contains(., '#rust')]")).await.unwrap();
    rust.click().await.unwrap();
    eventually("alice in #rust with bob and carol", || async {
        (texts(&alice, "#room-title").await == ["#rust"] && members(&alice).await == ["alice", "bob", "carol"])
            .then_some(())
    })
    .await;
    assert_eq!(texts(&alice, ".rooms .room-tab").await, ["#lobby", "#rust"], "now one of hers");
    drop(others);
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn a_person_searches_by_keyboard_and_jumps_to_an_old_message_shown_with_those_around_it() {
    use futures_util::{SinkExt, StreamExt};
    const ESCAPE: &str = "\u{E00C}";
    // bob says 80 things at once: more than the default burst allows
    let dist = dist_dir().to_string_lossy().into_owned();
    let hub = Hub::start(&["--static-dir", &dist, "--messages-per-sec", "1000", "--message-burst", "1000"]).await;
    // Arrange: bob said something worth finding, then 79 lines of chatter (more than a page)
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut bob = hubbub_client::connect(&url, &[]).await.expect("a socket");
    hubbub_client::join_and_wait(&mut bob, &hubbub_client::join("lobby", "bob"), WAIT).await.expect("joined");
    let texts_said: Vec<String> = std::iter::once("the deploy key is under the <b>mat</b>".to_owned())
        .chain((2..=80).map(|n| format!("chatter {n}")))
        .collect();
    for (n, text) in texts_said.iter().enumerate() {
        let send =
            hubbub_shared::ClientMsg::Send { id: Some(format!("b{n}")), room: "lobby".into(), text: text.clone() };
        bob.send(tokio_tungstenite::tungstenite::Message::text(hubbub_shared::encode(&send))).await.unwrap();
    }
    // the last one acknowledged: all are stored (and indexed)
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(frame)) = bob.next().await {
            for item in hubbub_shared::decode_server_items(frame.to_text().unwrap_or_default()).unwrap_or_default() {
                match item {
                    Ok(hubbub_shared::ServerMsg::Ack { id, .. }) if id == "b79" => return,
                    Ok(hubbub_shared::ServerMsg::Error { message, .. }) => panic!("bob was refused: {message}"),
                    _ => {}
                }
            }
        }
    })
    .await
    .expect("bob's messages acknowledged");
    let driver = Driver::start().await;
    let alice = driver.browser("alice-search").await;
    join(&alice, &hub.url, "alice").await;
    eventually("the newest page", || async {
        texts(&alice, ".log .msg .text").await.contains(&"chatter 80".to_owned()).then_some(())
    })
    .await;
    assert!(!texts(&alice, ".log .msg .text").await.contains(&texts_said[0]), "the old message is not on screen");

    // Act: search by keyboard: "/" goes to the search box from anywhere but a text field
    alice.execute("document.activeElement.blur()", vec![]).await.unwrap();
    press(&alice, "/").await;
    press(&alice, "DEPLO\u{E007}").await;

    // Assert: one result, its matched word marked, its markup shown as text
    eventually("the result", || async {
        (texts(&alice, ".results .result .text").await == [texts_said[0].clone()]).then_some(())
    })
    .await;
    assert_eq!(texts(&alice, ".results mark").await, ["deploy"]);
    assert!(texts(&alice, ".results .where").await[0].starts_with("#lobby · bob · "));
    assert_eq!(texts(&alice, ".search-view [role=status]").await, ["1 found, newest first."]);
    assert_eq!(accessibility_violations(&alice).await, Vec::<String>::new(), "the search view");

    // choosing it (Tab, Enter) opens the lobby at it, with the messages around it, and a gap
    // between them and the newest page; the found message has the focus
    tab_to_css(&alice, ".results .result").await;
    press(&alice, "\u{E007}").await;
    eventually("the old message revealed", || async {
        let focused = alice.execute("return document.activeElement.id", vec![]).await.unwrap();
        (focused.as_str() == Some("m1")).then_some(())
    })
    .await;
    let shown = texts(&alice, ".log .msg .text").await;
    assert_eq!(shown[0], texts_said[0]);
    assert_eq!(shown[10], "chatter 11", "the ten after it");
    assert_eq!(texts(&alice, ".log .gap").await.len(), 1, "what is between is marked as not loaded");
    assert!(shown.contains(&"chatter 80".to_owned()), "and the newest are still there");

    // Escape closes a search and goes back to the room
    press(&alice, "/").await;
    press(&alice, "\u{E009}a\u{E000}chatter\u{E007}").await; // Ctrl+A: a new query
    eventually("results", || async { (!texts(&alice, ".results .result").await.is_empty()).then_some(()) }).await;
    press(&alice, ESCAPE).await;
    eventually("back in the lobby", || async {
        (texts(&alice, ".search-view").await.is_empty() && texts(&alice, "#room-title").await == ["#lobby"])
            .then_some(())
    })
    .await;
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    press(&alice, "/").await;
    press(&alice, "\u{E009}a\u{E000}deploy key\u{E007}").await;
    eventually("results", || async { (!texts(&alice, ".results .result").await.is_empty()).then_some(()) }).await;
    std::fs::write(out.join("search.png"), alice.screenshot().await.unwrap()).unwrap();
    drop(bob);
}

/// Presses Tab until the element matching `css` has the focus; fails after 40 presses.
async fn tab_to_css(page: &Client, css: &str) {
    for _ in 0..40 {
        let focused = page.execute(&format!("return document.activeElement.matches({css:?})"), vec![]).await.unwrap();
        if focused.as_bool() == Some(true) {
            return;
        }
        press(page, "\u{E004}").await; // Tab
    }
    panic!("Tab never reached {css}");
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn a_big_room_shows_its_size_and_the_member_panel_loads_the_rest_when_asked() {
    use futures_util::SinkExt;
    const OTHERS: usize = 150;
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy(), "--max-connections-per-ip", "400"]).await;
    let url = hubbub_client::socket_url(&hub.url, hubbub_client::Service::Chat).unwrap();
    let mut others = Vec::new();
    for i in 0..OTHERS {
        let mut ws = hubbub_client::connect(&url, &[]).await.expect("a socket");
        hubbub_client::join_and_wait(&mut ws, &hubbub_client::join("lobby", &format!("m{i:03}")), WAIT)
            .await
            .expect("joined");
        others.push(ws);
    }
    let driver = Driver::start().await;
    let alice = driver.browser("alice-big-room").await;
    join(&alice, &hub.url, "alice").await;

    // the first page of names, the room's size, and a way to the rest
    let heading = || async { texts(&alice, ".members h3").await.join("") };
    eventually("the room's size", || async { (heading().await == "Members (151)").then_some(()) }).await;
    assert_eq!(members(&alice).await.len(), 100, "a first page of names");
    let more = alice.find(Locator::Css(".members .more-members")).await.expect("a 'show more' button");
    assert_eq!(more.text().await.unwrap(), "Show more (51 not shown)");
    more.click().await.unwrap();
    eventually("every name, once, in order", || async {
        let shown = members(&alice).await;
        let mut sorted = shown.clone();
        sorted.sort_by_key(|n| n.to_lowercase());
        sorted.dedup();
        (shown.len() == OTHERS + 1 && shown == sorted).then_some(())
    })
    .await;
    assert!(alice.find(Locator::Css(".members .more-members")).await.is_err(), "nothing more to show");

    // twenty leave at once: one line in the log, not twenty, and the size follows
    for ws in &mut others[..20] {
        ws.send(tokio_tungstenite::tungstenite::Message::text(hubbub_shared::encode(
            &hubbub_shared::ClientMsg::Leave { id: None, room: "lobby".into() },
        )))
        .await
        .unwrap();
    }
    eventually("the size after the leaves", || async { (heading().await == "Members (131)").then_some(()) }).await;
    let left: Vec<String> = texts(&alice, ".notice").await.into_iter().filter(|t| t.ends_with(" left.")).collect();
    assert!(left.len() <= 3, "batched, not a line per person: {left:?}");
    assert!(left.iter().any(|t| t.ends_with(" others left.")), "{left:?}");
    assert_eq!(members(&alice).await.len(), OTHERS + 1 - 20);
    drop(others);
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver, nginx and the trunk-built page: run by `make test`"]
async fn two_people_chat_over_https_through_nginx_with_the_documented_configuration() {
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy(), "--trusted-proxies", "127.0.0.1"]).await;
    let addr: std::net::SocketAddr = hub.url.trim_start_matches("http://").parse().unwrap();
    let nginx = support::nginx::Nginx::start(addr);
    // plain http is sent to https
    let redirect = http_head(nginx.redirect_port, "/some/page?x=1").await;
    assert!(redirect.starts_with("HTTP/1.1 301"), "{redirect}");
    assert!(redirect.contains("\r\nLocation: https://127.0.0.1/some/page?x=1\r\n"), "{redirect}");

    let driver = Driver::start().await;
    let trust = [nginx.certificate.chromium_flag()];
    let (alice, bob) =
        (driver.browser_with("alice-nginx", &trust).await, driver.browser_with("bob-nginx", &trust).await);
    // the page, its socket and everything else through the proxy only, over https and wss
    join(&alice, &nginx.url(), "alice").await;
    join(&bob, &nginx.url(), "bob").await;
    say(&alice, "hello through nginx").await;
    for (who, page) in [("alice", &alice), ("bob", &bob)] {
        eventually(&format!("{who} sees it once, stored"), || async {
            (copies(page, "hello through nginx").await == (1, 0)).then_some(())
        })
        .await;
    }
    eventually("each sees both", || async { (members(&bob).await == ["alice", "bob"]).then_some(()) }).await;
    assert_eq!(alice.current_url().await.unwrap().scheme(), "https");
    // permessage-deflate is agreed through the proxy: a long message reaches bob compressed
    let before = compressed_frames_out(&hub.url).await;
    let long = format!("A long one, through nginx: {}", "na ".repeat(100).trim_end());
    say(&alice, &long).await;
    eventually("bob sees the long message", || async { (copies(&bob, &long).await == (1, 0)).then_some(()) }).await;
    let health = healthz(&hub.url).await;
    assert!(health["deflate_connections"].as_u64() >= Some(2), "both browsers agreed on deflate: {health}");
    assert!(compressed_frames_out(&hub.url).await >= before + 2, "the long message went compressed to both: {health}");
}

/// The hub's count of frames written compressed (permessage-deflate).
async fn compressed_frames_out(url: &str) -> u64 {
    healthz(url).await["compressed_frames_out"].as_u64().expect("a count")
}

/// The head of nginx's answer to `GET path` on plain http.
/// `GET path` on `addr` (`host:port`) over a fresh connection: the whole answer, head and body.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("an answer in time").unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The hub's `/healthz` (at `url`, `http://127.0.0.1:PORT`), as JSON.
async fn healthz(url: &str) -> serde_json::Value {
    let answer = http_get(url.trim_start_matches("http://"), "/healthz").await;
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    serde_json::from_str(body).expect("healthz is JSON")
}

async fn http_head(port: u16, path: &str) -> String {
    let answer = http_get(&format!("127.0.0.1:{port}"), path).await;
    answer.split("\r\n\r\n").next().unwrap_or_default().to_owned() + "\r\n"
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn the_binary_carries_the_page_and_serves_it_without_a_folder() {
    // no --static-dir, and no `dist` in the working directory (server/): only the built-in page
    assert!(!std::path::Path::new("dist").exists());
    let hub = Hub::start(&[]).await;
    let addr: std::net::SocketAddr = hub.url.trim_start_matches("http://").parse().unwrap();
    let dist = dist_dir();
    let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut raw).await.unwrap();
    assert!(raw.ends_with(&index), "the built index.html, from inside the binary");

    let driver = Driver::start().await;
    let alice = driver.browser("alice-embedded").await;
    join(&alice, &hub.url, "alice").await;
    say(&alice, "served from the binary").await;
    eventually("the message is stored", || async {
        (copies(&alice, "served from the binary").await == (1, 0)).then_some(())
    })
    .await;
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn the_page_and_its_socket_work_over_https_with_a_certificate_the_browser_was_told_to_trust() {
    // a certificate made here; Chromium trusts exactly its key for this run
    let dir = tempfile::tempdir().unwrap();
    let certificate = support::Certificate::make(dir.path(), "hub");
    let (cert_path, key_path) = (&certificate.cert, &certificate.key);
    let hub = Hub::start(&[
        "--static-dir",
        &dist_dir().to_string_lossy(),
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ])
    .await;
    assert!(hub.url.starts_with("https://"));

    let driver = Driver::start().await;
    let alice = driver.browser_with("alice-tls", &[certificate.chromium_flag()]).await;
    join(&alice, &hub.url, "alice").await;
    say(&alice, "over wss").await;
    eventually("the message is stored and back over wss://", || async {
        (copies(&alice, "over wss").await == (1, 0)).then_some(())
    })
    .await;
    let url = alice.current_url().await.unwrap();
    assert_eq!(url.scheme(), "https");
}

/// The host application's side of sign-in, as a real one would do it: `/login?name=…` sets a
/// session cookie, and `/chat-token` answers a short-lived HS256 token for whoever that cookie
/// names (401 without one). It is on another origin than the hub (another port), so the page's
/// fetch is a credentialed cross-origin request: the answer carries the CORS headers a host
/// application needs for that. Names starting with "forged" get a token signed with a wrong key.
mod host_app {
    use axum::{
        Router,
        extract::{Query, State},
        http::{HeaderMap, StatusCode, header},
        response::{IntoResponse, Response},
        routing::get,
    };
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::{SystemTime, UNIX_EPOCH},
    };

    pub(super) const SECRET: &str = "the host application's secret, 32+ bytes";
    /// Token lifetime: short, so the test sees the page fetch fresh ones.
    pub(super) const TTL_SECS: u64 = 9;

    #[derive(Default)]
    pub(super) struct HostApp {
        /// Tokens served, per name.
        pub(super) served: Mutex<HashMap<String, usize>>,
    }

    impl HostApp {
        pub(super) fn served_to(&self, name: &str) -> usize {
            self.served.lock().unwrap().get(name).copied().unwrap_or(0)
        }
    }

    /// Serves on a free loopback port until the test ends; returns its `http://127.0.0.1:PORT`.
    pub(super) async fn start() -> (String, Arc<HostApp>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Arc::new(HostApp::default());
        let router = Router::new().route("/login", get(login)).route("/chat-token", get(token)).with_state(app.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (url, app)
    }

    async fn login(Query(q): Query<HashMap<String, String>>) -> Response {
        let name = q.get("name").cloned().unwrap_or_default();
        let cookie = format!("who={}; Path=/; HttpOnly; SameSite=Lax", urlencode(&name));
        ([(header::SET_COOKIE, cookie)], format!("signed in as {name}")).into_response()
    }

    async fn token(State(app): State<Arc<HostApp>>, headers: HeaderMap) -> Response {
        // a credentialed cross-origin fetch needs the exact origin and Allow-Credentials
        let origin = headers.get(header::ORIGIN).cloned();
        let mut cors = HeaderMap::new();
        if let Some(origin) = origin {
            cors.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            cors.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true".parse().unwrap());
        }
        let who = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("who=").map(urldecode));
        let Some(name) = who.filter(|n| !n.is_empty()) else {
            return (StatusCode::UNAUTHORIZED, cors, "sign in first").into_response();
        };
        *app.served.lock().unwrap().entry(name.clone()).or_default() += 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({ "sub": format!("user:{name}"), "name": name, "exp": now + TTL_SECS });
        let secret = if name.starts_with("forged") { "not the secret the hub was given, 32+" } else { SECRET };
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        // the JSON form (plain text works too)
        (cors, axum::Json(serde_json::json!({ "token": token }))).into_response()
    }

    fn urlencode(s: &str) -> String {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    }

    fn urldecode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match (bytes[i], s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

async fn status(page: &Client) -> Option<(String, String)> {
    let status = page.find(Locator::Css(".status")).await.ok()?;
    Some((status.attr("data-state").await.ok()??, status.text().await.ok()?))
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn people_signed_in_to_the_host_application_chat_under_its_names_and_stay_signed_in() {
    let (host, tokens) = host_app::start().await;
    let token_url = format!("{host}/chat-token");
    let dist = dist_dir();
    let hub = Hub::start(&[
        "--static-dir",
        &dist.to_string_lossy(),
        "--auth-jwt-secret",
        host_app::SECRET,
        "--auth-token-url",
        &token_url,
    ])
    .await;
    let driver = Driver::start().await;

    // Ada signed in to the host application first: the page shows her name, no nickname field
    let ada = driver.browser("ada").await;
    ada.goto(&format!("{host}/login?name=Ada%20Lovelace")).await.unwrap();
    ada.goto(&hub.url).await.unwrap();
    eventually("Ada's page says who she is", || async {
        let shown = ada.find(Locator::Id("signed-in")).await.ok()?.text().await.ok()?;
        (shown == "Signed in as Ada Lovelace").then_some(())
    })
    .await;
    let nick_field = ada.find(Locator::Id("nick")).await.unwrap();
    assert!(!nick_field.is_displayed().await.unwrap(), "no nickname to type");
    ada.find(Locator::Css("form.join button[type=submit]")).await.unwrap().click().await.unwrap();
    eventually("Ada is in the lobby", || async { (texts(&ada, "#room-title").await == ["#lobby"]).then_some(()) })
        .await;

    // Bob is not signed in to the host application: the page says so, and keeps trying
    let bob = driver.browser("bob").await;
    bob.goto(&hub.url).await.unwrap();
    eventually("Bob's page says why it cannot sign in", || async {
        let (state, text) = status(&bob).await?;
        (state == "reconnecting" && text.contains("cannot sign in: the sign-in address answered 401")).then_some(())
    })
    .await;
    // … until he signs in there; a reload picks it up at once
    bob.goto(&format!("{host}/login?name=Bob")).await.unwrap();
    bob.goto(&hub.url).await.unwrap();
    eventually("Bob is signed in", || async {
        (bob.find(Locator::Id("signed-in")).await.ok()?.text().await.ok()? == "Signed in as Bob").then_some(())
    })
    .await;
    bob.find(Locator::Css("form.join button[type=submit]")).await.unwrap().click().await.unwrap();
    eventually("Bob sees Ada in the member list", || async {
        let mut names = members(&bob).await;
        names.sort();
        (names == ["Ada Lovelace", "Bob"]).then_some(())
    })
    .await;
    say(&ada, "hello from Ada").await;
    eventually("Bob reads Ada's message under her signed-in name", || async {
        let seen = texts(&bob, ".msg .author").await.contains(&"Ada Lovelace".to_owned())
            && texts(&bob, ".msg .text").await.contains(&"hello from Ada".to_owned());
        seen.then_some(())
    })
    .await;

    // the tokens live 9 s: well past the first one's end, the page fetched fresh ones in time
    // and never lost its connection (a reconnect would say "Reconnected." in the room)
    let started = Instant::now();
    while tokens.served_to("Ada Lovelace") < 3 {
        assert!(started.elapsed() < Duration::from_secs(4 * host_app::TTL_SECS), "the page does not refresh its token");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status(&ada).await.map(|s| s.0).as_deref(), Some("connected"));
    assert!(!texts(&ada, ".log .notice").await.iter().any(|n| n == "Reconnected."), "the connection was never lost");
    say(&ada, "still here").await;
    eventually("what Ada says after the refreshes still reaches Bob", || async {
        texts(&bob, ".msg .text").await.contains(&"still here".to_owned()).then_some(())
    })
    .await;

    // a token the hub cannot verify: refused by name, and the page says so
    let forged = driver.browser("forged").await;
    forged.goto(&format!("{host}/login?name=forged%20Ada")).await.unwrap();
    forged.goto(&hub.url).await.unwrap();
    eventually("the forged sign-in is refused, visibly", || async {
        let error = texts(&forged, "form.join .error").await.join(" ");
        let (_, status) = status(&forged).await?;
        (error.contains("The sign-in token was refused") && status.contains("4005")).then_some(())
    })
    .await;
    for page in [ada, bob, forged] {
        page.close().await.ok();
    }
}

/// The `title` of the unread badge on the list line whose label starts with `label` (`None`:
/// no badge, nothing unread).
async fn unread_badge(page: &Client, label: &str) -> Option<String> {
    for tab in page.find_all(Locator::Css(".room-tab")).await.unwrap_or_default() {
        if tab.text().await.is_ok_and(|t| t.starts_with(label)) {
            let badge = tab.find(Locator::Css(".unread")).await.ok()?;
            return badge.attr("title").await.ok().flatten();
        }
    }
    None
}

#[tokio::test]
#[ignore = "needs Chromium, chromedriver and the trunk-built page: run by `make test`"]
async fn two_people_message_each_other_directly_and_every_tab_agrees_on_what_is_unread() {
    let hub = Hub::start(&["--static-dir", &dist_dir().to_string_lossy()]).await;
    let driver = Driver::start().await;
    let (alice, bob) = (driver.browser("alice-dm").await, driver.browser("bob-dm").await);
    join(&alice, &hub.url, "alice").await;
    join(&bob, &hub.url, "bob").await;
    let bob_first_tab = bob.window().await.unwrap();
    // bob's second tab, on the lobby
    let bob_second_tab = bob.new_window(true).await.unwrap().handle;
    bob.switch_to_window(bob_second_tab.clone()).await.unwrap();
    bob.goto(&hub.url).await.unwrap();
    eventually("bob's second tab is in the lobby", || async {
        (texts(&bob, "#room-title").await == ["#lobby"]).then_some(())
    })
    .await;

    // Act: alice starts a conversation from the member list and says something
    let message_bob = alice.wait().at_most(WAIT).for_element(Locator::Css("button[aria-label='Message bob']")).await;
    message_bob.expect("a Message button beside bob").click().await.unwrap();
    eventually("alice is in her conversation with bob", || async {
        (texts(&alice, "#room-title").await == ["@bob"]).then_some(())
    })
    .await;
    assert!(alice.find(Locator::Css("button[aria-label='Message alice']")).await.is_err(), "not oneself");
    say(&alice, "just between us").await;
    eventually("alice's message is confirmed", || async {
        alice.find(Locator::Css(".msg.own[data-state=sent]")).await.ok().map(|_| ())
    })
    .await;
    assert_eq!(texts(&alice, ".notice.problem").await, Vec::<String>::new(), "joined once, refused nothing");

    // Assert: both of bob's tabs list it under alice's name with one unread message
    for tab in [&bob_first_tab, &bob_second_tab] {
        bob.switch_to_window(tab.clone()).await.unwrap();
        eventually("bob's tab shows @alice with 1 unread", || async {
            (unread_badge(&bob, "@alice").await.as_deref() == Some("1 unread")).then_some(())
        })
        .await;
    }
    let out = repo_root().join("target/e2e");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("unread.png"), bob.screenshot().await.unwrap()).unwrap();

    // bob opens it in his first tab: the message under a "New messages" line, and the count
    // drops in his other tab too
    bob.switch_to_window(bob_first_tab.clone()).await.unwrap();
    let open = bob.find_all(Locator::Css(".room-tab")).await.unwrap();
    let mut opened = false;
    for tab in open {
        if tab.text().await.is_ok_and(|t| t.starts_with("@alice")) {
            tab.click().await.unwrap();
            opened = true;
        }
    }
    assert!(opened, "bob's list has the conversation");
    eventually("bob reads alice's message after the new-messages line", || async {
        let read = texts(&bob, ".log .msg .text").await == ["just between us"];
        (read && texts(&bob, ".new-line").await == ["New messages"]).then_some(())
    })
    .await;
    std::fs::write(out.join("dm.png"), bob.screenshot().await.unwrap()).unwrap();
    assert_eq!(accessibility_violations(&bob).await, Vec::<String>::new(), "a conversation");
    bob.switch_to_window(bob_second_tab).await.unwrap();
    eventually("bob's other tab has nothing unread any more", || async {
        unread_badge(&bob, "@alice").await.is_none().then_some(())
    })
    .await;

    // and the answer reaches alice
    bob.switch_to_window(bob_first_tab).await.unwrap();
    say(&bob, "agreed").await;
    eventually("alice sees bob's answer", || async {
        (texts(&alice, ".log .msg .text").await == ["just between us", "agreed"]).then_some(())
    })
    .await;
    alice.close().await.ok();
    bob.close().await.ok();
}

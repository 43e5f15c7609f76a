//! WebSocket conformance: the Autobahn|Testsuite cases 1.* to 10.*, and 12.* and 13.*
//! (permessage-deflate: `net/deflate.rs`, the reading side in `vendor/tungstenite`), run by
//! `kosoku` (from PyPI) against the real `hubbub` binary's echo socket, compared case by case
//! with the committed verdicts in `autobahn-expected.json`.
//!
//! Needs the kosoku venv that `scripts/setup.sh test` makes, so it is ignored by a plain
//! `cargo test`; `make test` runs it.

mod support;

use std::collections::BTreeMap;
use support::{Hub, repo_root};

/// Verdicts that fail the suite whatever the expected file says.
const FORBIDDEN: [&str; 2] = ["FAILED", "UNCLEAN"];

#[tokio::test]
#[ignore = "needs kosoku (scripts/setup.sh test): run by `make test`"]
async fn the_echo_socket_passes_autobahn_cases_1_to_13() {
    let kosoku = std::env::var("HUBBUB_KOSOKU")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target/kosoku-venv/bin/kosoku"));
    assert!(kosoku.is_file(), "no kosoku at {}: run scripts/setup.sh test", kosoku.display());
    // the suite's cases reach 16 MiB and send thousands of frames at once: raised explicitly
    let hub = Hub::start(&["--echo-max-message-bytes", "16777216", "--echo-frames-per-sec", "0"]).await;
    let target = hub.url.replace("http://", "ws://") + "/ws/echo";
    let reports = repo_root().join("target/autobahn");
    let _ = std::fs::remove_dir_all(&reports);

    // Act: the whole suite (11.* does not exist), bounded in time
    let run = tokio::process::Command::new(&kosoku)
        .args(["-i", "*", "-o"])
        .arg(&reports)
        .arg(&target)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(900), run)
        .await
        .expect("the suite finishes within 15 minutes")
        .expect("kosoku runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));

    // Assert: every case ran, none failed or closed uncleanly, each verdict as committed
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.join("index.json")).expect("kosoku wrote index.json")).unwrap();
    let (_agent, cases) = index.as_object().unwrap().iter().next().expect("one agent in the report");
    let got: BTreeMap<String, String> = cases
        .as_object()
        .unwrap()
        .iter()
        .map(|(case, r)| {
            (case.clone(), format!("{}/{}", r["behavior"].as_str().unwrap(), r["behaviorClose"].as_str().unwrap()))
        })
        .collect();
    let expected: BTreeMap<String, String> =
        serde_json::from_str(include_str!("autobahn-expected.json")).expect("expected verdicts parse");

    let bad: Vec<_> = got.iter().filter(|(_, v)| FORBIDDEN.iter().any(|f| v.contains(f))).collect();
    assert!(bad.is_empty(), "failed or unclean cases: {bad:?} (reports in {})", reports.display());
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "cases that did not run: {missing:?}");
    let changed: Vec<_> = expected
        .iter()
        .filter_map(|(case, want)| got.get(case).filter(|g| *g != want).map(|g| (case, want, g)))
        .collect();
    assert!(changed.is_empty(), "verdicts differ from autobahn-expected.json (case, expected, got): {changed:?}");
    assert_eq!(got.len(), expected.len(), "new cases appeared; review and add them to the expected file");

    let mut tally = BTreeMap::new();
    for verdict in got.values() {
        *tally.entry(verdict.as_str()).or_insert(0) += 1;
    }
    println!("autobahn: {} cases against {target}: {tally:?}", got.len());
    drop(hub);
}

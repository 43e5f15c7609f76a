//! The examples in docs/protocol.md are real: each fenced block marked `json client` must decode
//! as a client message and each `json server` block as a hub message, and re-encode to the same
//! JSON value. A `json server newer` block is a frame from a newer hub: what this version knows of
//! it must decode, item by item, and what it does not must be skipped, not fail the frame.

use hubbub_shared::{decode_client, decode_server_frame, decode_server_items, encode, encode_batch};

const DOC: &str = include_str!("../../docs/protocol.md");

/// (info string, body) of every fenced block.
fn blocks() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in DOC.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => out.push(current.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

fn same_json(a: &str, b: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(a).unwrap() == serde_json::from_str::<serde_json::Value>(b).unwrap()
}

#[test]
fn every_example_in_the_protocol_doc_parses_and_round_trips() {
    let blocks = blocks();
    let (mut clients, mut servers) = (0, 0);
    for (info, body) in &blocks {
        match info.as_str() {
            "json client" => {
                let msg = decode_client(body).unwrap_or_else(|e| panic!("client example {body}: {e}"));
                assert!(same_json(&encode(&msg), body), "client example changes on re-encoding: {body}");
                clients += 1;
            }
            "json server" => {
                let msgs = decode_server_frame(body).unwrap_or_else(|e| panic!("server example {body}: {e}"));
                let encoded: Vec<String> = msgs.iter().map(encode).collect();
                let again = encode_batch(encoded.iter().map(String::as_str));
                assert!(same_json(&again, body), "server example changes on re-encoding: {body}");
                servers += 1;
            }
            "json server newer" => {
                let items = decode_server_items(body).unwrap_or_else(|e| panic!("newer example {body}: {e}"));
                let known = items.iter().filter(|i| i.is_ok()).count();
                assert!(known > 0 && known < items.len(), "some items known, some not: {body}");
            }
            _ => {}
        }
    }
    assert!(clients >= 4 && servers >= 8, "found {clients} client and {servers} server examples");
}

//! `search`: how fast the hub answers `search` over a big history (the product issue's row:
//! p99 ≤ 50 ms over 1,000,000 stored messages).
//!
//! The history is filled through the hub itself (acknowledged sends, so every message went
//! through the writer and the index as in use), with texts of 6–12 words drawn from a
//! vocabulary of 10,000 made-up words with a Zipf-like frequency (a few words are in a large
//! share of messages, as in real chat). Then searchers, each in 10 of the 100 rooms, ask one
//! query at a time: one or two words from the same distribution, half of them cut to a
//! beginning of 3–5 letters (people search while typing). Latency is request → `found`.

use crate::{procfs, report::Run, scenarios::Common, servers};
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hubbub_shared::{ClientMsg, ServerMsg, decode_server_items, encode};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SearchOptions {
    /// Messages stored before searching.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Rooms they are spread over (one sender each).
    #[arg(long, default_value_t = 100)]
    rooms: u32,
    /// Searchers, each in `--rooms-each` rooms, one query at a time.
    #[arg(long, default_value_t = 4)]
    searchers: u32,
    #[arg(long, default_value_t = 10)]
    rooms_each: u32,
    /// Queries in all.
    #[arg(long, default_value_t = 4000)]
    queries: u32,
}

const VOCABULARY: usize = 10_000;
const WAIT: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*): the same texts and queries every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Made-up words of 2–4 syllables, all distinct.
fn vocabulary() -> Vec<String> {
    const ONSETS: &[&str] = &["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "st", "tr"];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou"];
    let mut rng = Rng(0x5EED);
    let mut words = std::collections::HashSet::new();
    let mut ordered = Vec::with_capacity(VOCABULARY);
    while ordered.len() < VOCABULARY {
        let syllables = 2 + rng.below(3);
        let word: String = (0..syllables)
            .map(|_| {
                let onset = ONSETS[rng.below(ONSETS.len() as u64) as usize];
                format!("{onset}{}", VOWELS[rng.below(VOWELS.len() as u64) as usize])
            })
            .collect();
        if words.insert(word.clone()) {
            ordered.push(word);
        }
    }
    ordered
}

/// A word index with P(i) ∝ 1/(i+1), roughly (log-uniform).
fn zipf(rng: &mut Rng) -> usize {
    ((VOCABULARY as f64).powf(rng.unit()) as usize).clamp(1, VOCABULARY) - 1
}

fn text(rng: &mut Rng, words: &[String]) -> String {
    let n = 6 + rng.below(7);
    (0..n).map(|_| words[zipf(rng)].as_str()).collect::<Vec<_>>().join(" ")
}

fn query(rng: &mut Rng, words: &[String]) -> String {
    let n = 1 + rng.below(2);
    (0..n)
        .map(|_| {
            let word = &words[zipf(rng)];
            if rng.below(2) == 0 { word.chars().take(3 + rng.below(3) as usize).collect() } else { word.clone() }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn joined(url: &str, rooms: &[String], nick: &str) -> anyhow::Result<hubbub_client::Socket> {
    let mut ws = hubbub_client::connect(url, &[]).await?;
    for room in rooms {
        hubbub_client::join_and_wait(&mut ws, &hubbub_client::join(room, nick), WAIT).await?;
    }
    Ok(ws)
}

/// One sender per room, acknowledged sends with 32 in flight, until `messages` are stored.
async fn fill(url: &str, o: &SearchOptions, words: &std::sync::Arc<Vec<String>>) -> anyhow::Result<()> {
    let per_room = o.messages.div_ceil(u64::from(o.rooms));
    let mut tasks = Vec::new();
    for r in 0..o.rooms {
        let (url, words) = (url.to_owned(), words.clone());
        tasks.push(tokio::spawn(async move {
            let room = format!("room-{r}");
            let ws = joined(&url, std::slice::from_ref(&room), &format!("sender{r}")).await?;
            let (mut tx, mut rx) = ws.split();
            let mut rng = Rng(0x1234_5678 + u64::from(r));
            let (mut sent, mut acked) = (0u64, 0u64);
            while acked < per_room {
                while sent < per_room && sent - acked < 32 {
                    let msg = ClientMsg::Send {
                        id: Some(sent.to_string()),
                        room: room.clone(),
                        text: text(&mut rng, &words),
                    };
                    tx.feed(Message::text(encode(&msg))).await?;
                    sent += 1;
                }
                tx.flush().await?;
                let frame = tokio::time::timeout(WAIT, rx.next()).await?.context("closed while filling")??;
                if let Message::Text(t) = frame {
                    let items = decode_server_items(&t).unwrap_or_default();
                    acked += items.iter().flatten().filter(|m| matches!(m, ServerMsg::Ack { .. })).count() as u64;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs the queries; returns the latency histogram (µs) and the messages found in all.
async fn ask(
    url: &str,
    o: &SearchOptions,
    words: &std::sync::Arc<Vec<String>>,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let per_searcher = o.queries.div_ceil(o.searchers);
    let mut tasks = Vec::new();
    for s in 0..o.searchers {
        let rooms: Vec<String> =
            (0..o.rooms_each).map(|i| format!("room-{}", (s * o.rooms_each + i) % o.rooms)).collect();
        let (url, words) = (url.to_owned(), words.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = joined(&url, &rooms, &format!("searcher{s}")).await?;
            let mut rng = Rng(0xABCD + u64::from(s));
            let mut histogram = Histogram::<u64>::new(3)?;
            let mut found = 0u64;
            for i in 0..per_searcher {
                let msg = ClientMsg::Search {
                    id: Some(i.to_string()),
                    query: query(&mut rng, &words),
                    room: None,
                    limit: None,
                };
                let started = Instant::now();
                ws.send(Message::text(encode(&msg))).await?;
                'reply: loop {
                    let frame = tokio::time::timeout(WAIT, ws.next()).await?.context("closed while searching")??;
                    let Message::Text(t) = frame else { continue };
                    for item in decode_server_items(&t).unwrap_or_default().into_iter().flatten() {
                        match item {
                            ServerMsg::Found { messages, .. } => {
                                found += messages.len() as u64;
                                break 'reply;
                            }
                            ServerMsg::Error { code, message, .. } => {
                                anyhow::bail!("search refused: {}: {message}", code.as_str())
                            }
                            _ => {}
                        }
                    }
                }
                histogram.record(started.elapsed().as_micros().max(1) as u64)?;
            }
            anyhow::Ok((histogram, found))
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut found = 0;
    for t in tasks {
        let (h, f) = t.await??;
        all.add(h)?;
        found += f;
    }
    Ok((all, found))
}

pub(crate) async fn search(bins: &servers::Binaries, common: &Common, o: &SearchOptions) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &kind in &common.servers {
        let mut row = Run::new("search", kind.name(), o.searchers);
        if kind != servers::Kind::Hubbub {
            row.note = Some("no search in this server".into());
            runs.push(row);
            continue;
        }
        let server = servers::start(kind, bins).await?;
        let url = servers::ws_url(server.addr);
        let words = std::sync::Arc::new(vocabulary());
        let started = Instant::now();
        fill(&url, o, &words).await?;
        let filled = started.elapsed().as_secs_f64();
        let cpu_before = procfs::cpu_seconds(server.pid);
        let started = Instant::now();
        let (latency, found) = ask(&url, o, &words).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = procfs::cpu_seconds(server.pid) - cpu_before;
        let ms = |q: f64| (latency.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
        row.delivered_per_s = Some((latency.len() as f64 / elapsed).round());
        row.p50_ms = Some(ms(0.5));
        row.p99_ms = Some(ms(0.99));
        row.max_ms = Some(latency.max() as f64 / 1000.0);
        row.server_rss_kib = Some(procfs::rss_kib(server.pid));
        row.note = Some(format!(
            "{} messages in {} rooms stored through the hub in {filled:.0} s; {} queries (queries/s in the delivered/s column), each searcher in {} rooms, {:.1} found per query; server CPU {:.2} ms per query",
            o.messages,
            o.rooms,
            latency.len(),
            o.rooms_each,
            found as f64 / latency.len().max(1) as f64,
            cpu * 1000.0 / latency.len().max(1) as f64
        ));
        crate::scenarios::progress(&row);
        runs.push(row);
    }
    Ok(runs)
}

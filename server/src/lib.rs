//! Hubbub's hub: an axum server that serves the page, the chat WebSocket at `/ws`, the echo
//! and add sockets (`/ws/echo`, `/ws/add`), `/healthz` and `/metrics`. `main.rs` only parses the
//! configuration and runs an [`Application`].
//!
//! # Layout
//!
//! The folders are the layers, from the wire inwards. A chat message travels through them in
//! this order: `net` reads it, `chat` decides what it means, `store` commits it, `broker` fans
//! it out, and `net` writes it to every member.
//!
//! - `app.rs`: [`Application`] (bind, serve, shut down in order) and `AppState`; the one place
//!   where the engines behind the seams are chosen.
//! - `config.rs`: [`Config`], every flag and `HUBBUB_*` variable.
//! - `net/`: the network layer, which knows frames but not chat.
//!   - `routes.rs`: the HTTP surface (`/ws`, `/ws/echo`, `/ws/add`, `/healthz`, `/metrics`, the
//!     page) and the upgrade, where every socket passes the guards.
//!   - `accept.rs`: the accept loop (header-read timeout, request-head cap, backlog).
//!   - `connection.rs`: one WebSocket's reader and writer. **Frames are read here** and handed
//!     to an `Endpoint`; close codes, heartbeats and the write deadline live here.
//!   - `outbound.rs`: each connection's outbound queue and its lag policy (live messages are
//!     dropped for a slow reader, who is told to catch up).
//!   - `guard/`: Origin policy, per-address cap, token-bucket rate limits, the CSP.
//!   - `echo.rs`, `add.rs`: the two small endpoints beside the chat.
//! - `chat/`: what the chat protocol means, with no knowledge of the engines.
//!   - `session.rs`: one chat connection, the `Endpoint` for `/ws`: join, leave, send,
//!     history, resume.
//!   - `presence.rs`: the `Presence` seam; **rooms and members are kept here** (in-process).
//!   - `history.rs`: history pages and resume from a cursor.
//!   - `nick_rules.rs`: nicknames against impersonation.
//! - `store/`: the `MessageLog` seam (append with group commit → seq, pages, head, epoch,
//!   dedupe). **A chat message is stored here**: `sqlite.rs` (one writer thread, group commits)
//!   and `migrations.rs`, or with `--database` `postgres.rs` (a writer task, group commits that
//!   lock each room's row, shared by many hubs).
//! - `broker/`: the `Fanout` seam, who hears a committed message. **It fans out here**:
//!   `after_commit` publishes then acks, `local.rs` delivers to this process's members.
//! - `stats.rs`: the counters behind `/metrics` and `/healthz`.

mod app;
mod broker;
mod chat;
mod config;
mod net;
mod stats;
mod store;

pub use app::Application;
pub use config::Config;
pub use store::Durability;

use app::AppState;

//! The chat: what a client's message means (`session`), rooms and members (`presence`),
//! history and resume (`history`), each person's connections across rooms (`people`: direct
//! conversations and read positions concern a person), and the nickname rules against impersonation
//! (`nick_rules`). Nothing here knows which engines store or fan out messages: a session gets
//! a [`ChatDeps`] with the engines behind traits.

pub(crate) mod auth;
pub(crate) mod history;
pub(crate) mod nick_rules;
pub(crate) mod people;
pub(crate) mod presence;
pub(crate) mod session;

use crate::{Config, broker::Fanout, stats::Stats, store::MessageLog};
use hubbub_shared::{ErrorCode, Invalid};
use presence::Presence;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// What a chat session uses, and nothing more: the engines behind their seams, the settings,
/// the counters, and where to spawn history reads. Cheap to clone (all handles).
#[derive(Debug, Clone)]
pub(crate) struct ChatDeps {
    /// Limits, rate limits, history page sizes, timeouts.
    pub(crate) config: Arc<Config>,
    /// Where messages are stored, and history read from.
    pub(crate) log: Arc<dyn MessageLog>,
    /// Who is in which room.
    pub(crate) presence: Arc<dyn Presence>,
    /// Who hears a committed message (a join waits for its room to be watched).
    pub(crate) fanout: Arc<dyn Fanout>,
    pub(crate) stats: Arc<Stats>,
    /// History reads run as tasks tracked here, so shutdown waits for them.
    pub(crate) tasks: TaskTracker,
    /// Process start in ms since the epoch: makes hub-made message ids unique across runs.
    pub(crate) started_at: u64,
    /// Sign-in mode's token checker; `None`: anonymous mode.
    pub(crate) auth: Option<Arc<auth::Verifier>>,
    /// The `welcome` frame, the same for every connection of this process: encoded once, not
    /// at each of a connect storm's thousands of connections.
    pub(crate) welcome: tungstenite::Utf8Bytes,
}

impl ChatDeps {
    /// The `welcome` every connection gets first: the protocol version, the log's epoch, the
    /// limits, and in sign-in mode where to get a token.
    pub(crate) fn welcome(
        config: &Config,
        log: &dyn MessageLog,
        auth: Option<&auth::Verifier>,
    ) -> tungstenite::Utf8Bytes {
        let auth = auth.map(|v| hubbub_shared::AuthInfo { token_url: v.token_url.clone() });
        let welcome = hubbub_shared::ServerMsg::Welcome {
            protocol: hubbub_shared::PROTOCOL_VERSION,
            epoch: log.epoch().to_owned(),
            limits: config.limits(),
            auth,
        };
        hubbub_shared::encode(&welcome).into()
    }
}

/// A request the chat refuses: the `error` frame's code and message, and the room it concerns.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) reason: String,
    pub(crate) room: Option<String>,
}

impl Refusal {
    /// A refusal with `code`, concerning `room`.
    pub(crate) fn about(room: impl ToString, code: ErrorCode, reason: String) -> Refusal {
        Refusal { code, reason, room: Some(room.to_string()) }
    }

    /// Turns a broken rule into a refusal concerning `room` (for `map_err`).
    pub(crate) fn in_room(room: impl ToString) -> impl FnOnce(Invalid) -> Refusal {
        let room = room.to_string();
        move |Invalid { code, reason }| Refusal { code, reason, room: Some(room) }
    }

    /// A refusal concerning no room.
    pub(crate) fn general(code: ErrorCode, reason: String) -> Refusal {
        Refusal { code, reason, room: None }
    }
}

//! Messages typed but not yet acknowledged, kept in local storage: a refresh or a closed tab
//! loses none of them, and they are resent (with the same client id, so the hub stores each
//! once) when the page is connected again.

use serde::{Deserialize, Serialize};

const KEY: &str = "hubbub.outbox";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The client id the hub acknowledges and deduplicates by.
    pub(crate) id: String,
    pub(crate) room: String,
    pub(crate) text: String,
    /// Why the hub refused it; a failed message waits for Retry or Discard.
    #[serde(default)]
    pub(crate) failed: Option<String>,
}

pub(crate) fn load() -> Vec<Pending> {
    crate::browser::load(KEY).unwrap_or_default()
}

pub(crate) fn save(pending: &[Pending]) {
    crate::browser::save(KEY, &pending);
}

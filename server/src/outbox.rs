//! A connection's bounded outbound queue, as the hub sees it.
//!
//! Pushing never blocks or awaits: the hub pushes while holding its lock. When the queue is
//! full the connection is flagged as a slow consumer; its writer then closes it with 4001.
//! Dropping messages for one reader (rather than blocking the room) keeps one slow phone from
//! stalling everyone else.

use axum::extract::ws::Message;
use hubbub_shared::{ServerMsg, encode};
use std::sync::Arc;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Message>,
    /// Cancelled once the queue overflowed; the connection's writer watches it.
    overflowed: CancellationToken,
    stats: Arc<crate::stats::Stats>,
}

impl Outbox {
    pub(crate) fn new(
        capacity: usize,
        stats: Arc<crate::stats::Stats>,
    ) -> (Outbox, mpsc::Receiver<Message>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflowed = CancellationToken::new();
        (Outbox { tx, overflowed: overflowed.clone(), stats }, rx, overflowed)
    }

    pub(crate) fn push(&self, msg: &ServerMsg) {
        self.push_frame(Message::Text(encode(msg).into()));
    }

    /// Queues one frame. Broadcasts pass the same `Message` clone to every member: the bytes
    /// are shared, not copied.
    pub(crate) fn push_frame(&self, frame: Message) {
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !self.overflowed.is_cancelled() {
                    self.stats.slow_consumer_evictions.inc();
                    self.overflowed.cancel();
                }
            }
            // the connection is already closing; nobody will read this
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

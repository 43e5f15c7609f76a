//! In-process fan-out, the embedded default: a committed message goes straight to the members
//! this process holds.

use super::Fanout;
use crate::chat::presence::LocalPresence;
use hubbub_shared::ChatMessage;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct LocalFanout {
    /// The rooms of this process, whose members' outbound queues get the message.
    rooms: Arc<LocalPresence>,
}

impl LocalFanout {
    pub(crate) fn new(rooms: Arc<LocalPresence>) -> Self {
        LocalFanout { rooms }
    }
}

impl Fanout for LocalFanout {
    fn publish(&self, message: ChatMessage) {
        self.rooms.deliver(message);
    }
}

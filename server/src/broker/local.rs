//! In-process fan-out, the embedded default: a committed message goes straight to the members
//! this process holds.

use super::Fanout;
use crate::chat::presence::{LocalPresence, Presence};
use futures_util::{FutureExt, future::BoxFuture};
use hubbub_shared::{ChatMessage, RoomName, ServerMsg};
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
    fn publish(&self, messages: Vec<ChatMessage>) {
        self.rooms.deliver(messages);
    }

    /// Every commit of this process is delivered at once: nothing to wait for.
    fn watch(&self, _room: &RoomName) -> BoxFuture<'static, ()> {
        futures_util::future::ready(()).boxed()
    }

    fn sweep(&self) {}

    fn tell(&self, person: &str, msg: &ServerMsg) {
        self.rooms.people().tell(person, msg);
    }

    fn problem(&self) -> Option<String> {
        None
    }
}

//! People: the connections of each person on this hub, by the digest of their identity (the
//! one that holds nicknames and authors messages), so that what concerns a person rather than a
//! room (a conversation starting, a read position moving) reaches every tab of theirs. In
//! cluster mode the fan-out carries the same news to the person's tabs on other hubs
//! (`crate::broker::Fanout::tell`).

use crate::net::{ConnId, Outbound};
use hubbub_shared::ServerMsg;
use std::{collections::HashMap, sync::Mutex};

#[derive(Debug, Default)]
pub(crate) struct People {
    /// A person's connections here: usually one or two, so a list.
    conns: Mutex<HashMap<String, Vec<(ConnId, Outbound)>>>,
}

impl People {
    /// `conn` is one of `person`'s connections from now on.
    pub(crate) fn add(&self, person: &str, conn: ConnId, out: &Outbound) {
        let mut people = self.lock();
        let conns = people.entry(person.to_owned()).or_default();
        if !conns.iter().any(|(c, _)| *c == conn) {
            conns.push((conn, out.clone()));
        }
    }

    /// `conn` closed.
    pub(crate) fn remove(&self, person: &str, conn: ConnId) {
        let mut people = self.lock();
        if let Some(conns) = people.get_mut(person) {
            conns.retain(|(c, _)| *c != conn);
            if conns.is_empty() {
                people.remove(person);
            }
        }
    }

    /// Tells every connection of `person` on this hub.
    pub(crate) fn tell(&self, person: &str, msg: &ServerMsg) {
        if let Some(conns) = self.lock().get(person) {
            for (_, out) in conns {
                out.push(msg);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(ConnId, Outbound)>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

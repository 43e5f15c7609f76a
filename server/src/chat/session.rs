//! One chat connection (`/ws`): what each client message means. The connection machinery
//! (`crate::net::connection`) reads frames and hands the text here; replies go to the
//! connection's outbound queue.

use super::{
    ChatDeps, Refusal, auth, history, nick_rules,
    presence::{JoinRequest, MAX_MEMBER_PAGE, MEMBER_PAGE, MembersRequest},
};
use crate::{
    net::{Close, ConnId, Endpoint, Outbound, rate::TokenBucket},
    store::{Append, Change, Conversation, ReadMove},
};
use hubbub_shared::{ChatText, ClientMsg, ErrorCode, Nick, RoomName, RoomSize, ServerMsg, close, decode_client};
use std::collections::{HashMap, HashSet};
use tungstenite::Utf8Bytes;

/// Most messages one `history` request returns.
const MAX_HISTORY_LIMIT: u32 = 100;
/// Longest piece of a decode error's detail sent back (serde quotes the input).
const MAX_ERROR_DETAIL_CHARS: usize = 200;
/// Most rooms a `rooms` reply lists.
const MAX_ROOMS_LISTED: usize = 100;
/// Most messages a `search` reply lists, and how many without a `limit`.
const MAX_SEARCH_LIMIT: u32 = 50;
const SEARCH_LIMIT: u32 = 20;

/// One chat connection: which rooms it is in, under which nickname, and its rate limits.
#[derive(Debug)]
pub(crate) struct ChatSession {
    deps: ChatDeps,
    conn: ConnId,
    /// The rooms joined on this connection: the (canonical) nickname used in each, and the author
    /// key its messages are stored with (the digest that holds the nickname, `claim_for`).
    rooms: HashMap<RoomName, (Nick, String)>,
    /// Messages sent without a client id, numbered to make one (no acks for those).
    anonymous_sends: u64,
    /// Requests per second: a refusal is an `error` `rate_limited` with the wait.
    messages: TokenBucket,
    /// Refusals in a row since the last accepted request; past the limit, close 4003.
    strikes: u32,
    /// Frames per second, pings included: a flood closes the connection (4003).
    frames: TokenBucket,
    /// Until the first successful join: when the connection must have joined by (else 4004).
    join_by: Option<tokio::time::Instant>,
    /// Whether the page on this connection is hidden (`visibility`), for the rooms it joins.
    hidden: bool,
    /// Rooms where this connection said it is typing since its last send there: only those
    /// sends need to clear it, so the hot path of a send takes no presence lock.
    typing_in: HashSet<RoomName>,
    /// Sign-in mode: who the connection's token says it is, and until when (`None` until the
    /// first `auth`).
    signed_in: Option<(auth::Claims, tokio::time::Instant)>,
    /// The person on this connection (the digest of the identity its first join carried, or
    /// of the signed-in `sub`), once known: their conversations and read positions.
    person: Option<String>,
}

impl Endpoint for ChatSession {
    fn coalesces(&self) -> bool {
        true
    }

    fn on_open(&mut self, out: &Outbound) {
        out.push_frame(crate::net::outbound::Queued::Text(self.deps.welcome.clone()));
    }

    /// Every refusal becomes one `error` frame; the connection stays (unless it keeps
    /// flooding past the rate limit).
    async fn on_text(&mut self, text: Utf8Bytes, out: &Outbound) -> Result<(), Close> {
        if let Err(wait) = self.messages.take() {
            return self.rate_limited(&text, wait, out);
        }
        self.strikes = 0;
        let msg = match decode_client(text.as_str()) {
            Ok(msg) => msg,
            Err(err) => {
                // serde quotes the input back: cap it, on a character boundary
                let detail: String = err.detail.chars().take(MAX_ERROR_DETAIL_CHARS).collect();
                refuse(out, err.id.clone(), Refusal::general(err.code(), detail));
                return Ok(());
            }
        };
        let id = msg.id().map(str::to_owned);
        if let ClientMsg::Auth { token, .. } = &msg {
            return self.sign_in(token, id, out);
        }
        if self.deps.auth.is_some() && self.signed_in.is_none() {
            let reason = "Sign in first: send `auth` with your token.".to_owned();
            refuse(out, id, Refusal::general(ErrorCode::Unauthorized, reason));
            return Ok(());
        }
        if let Err(refusal) = self.act(msg, out).await {
            refuse(out, id, refusal);
        }
        Ok(())
    }

    fn deadline(&self) -> Option<(tokio::time::Instant, Close)> {
        let join = self.join_by.map(|by| (by, Close::new(close::NO_JOIN, "no room joined in time")));
        let token =
            self.signed_in.as_ref().map(|(_, until)| (*until, Close::new(close::TOKEN_EXPIRED, "sign-in expired")));
        // whichever comes first
        join.into_iter().chain(token).min_by_key(|(at, _)| *at)
    }

    fn on_frame(&mut self) -> Result<(), Close> {
        self.frames.take().map_err(|_| Close::new(close::RATE_LIMITED, "too many frames"))
    }

    fn on_closing(&mut self) {
        if let Some(person) = &self.person {
            self.deps.presence.people().remove(person, self.conn);
        }
        // the person leaves every room this connection was in (after the grace, if it was their
        // last connection there)
        for (room, _) in self.rooms.drain() {
            self.deps.presence.leave(self.conn, &room, None);
        }
    }
}

impl ChatSession {
    pub(crate) fn new(deps: ChatDeps, conn: ConnId) -> Self {
        let config = &deps.config;
        let messages = TokenBucket::new(config.messages_per_sec, config.message_burst);
        let frames = TokenBucket::new(config.frames_per_sec, 2.0 * config.frames_per_sec);
        let join_by = Some(tokio::time::Instant::now() + std::time::Duration::from_millis(config.join_timeout_ms));
        Self {
            deps,
            conn,
            rooms: HashMap::new(),
            anonymous_sends: 0,
            messages,
            strikes: 0,
            frames,
            join_by,
            hidden: false,
            typing_in: HashSet::new(),
            signed_in: None,
            person: None,
        }
    }

    /// `auth`: checks the token; a good one signs the connection in (again, with a later
    /// expiry, on a refresh), a bad one is refused and closes the connection (4005).
    fn sign_in(&mut self, token: &str, id: Option<String>, out: &Outbound) -> Result<(), Close> {
        let Some(verifier) = &self.deps.auth else {
            let reason = "This hub has no sign-in; just join.".to_owned();
            refuse(out, id, Refusal::general(ErrorCode::InvalidMessage, reason));
            return Ok(());
        };
        match verifier.verify(token) {
            Ok(claims) => {
                // a refresh is for the same person: another `sub` would change who is in the rooms
                if let Some((current, _)) = &self.signed_in
                    && current.sub != claims.sub
                {
                    let reason = "A fresh token must be for the same person.".to_owned();
                    refuse(out, id, Refusal::general(ErrorCode::InvalidToken, reason));
                    return Err(Close::new(close::AUTH_FAILED, "sign-in refused"));
                }
                let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let left = std::time::Duration::from_secs(claims.exp).saturating_sub(now_ms);
                let expires_at = claims.exp.saturating_mul(1000);
                out.push(&ServerMsg::Authed { id, name: claims.name.clone(), expires_at });
                self.signed_in = Some((claims, tokio::time::Instant::now() + left));
                Ok(())
            }
            Err(invalid) => {
                tracing::info!(conn = self.conn, code = invalid.code.as_str(), "sign-in refused");
                refuse(out, id, Refusal::general(invalid.code, invalid.reason));
                Err(Close::new(close::AUTH_FAILED, "sign-in refused"))
            }
        }
    }

    /// A request over the rate: refused with the wait, or the connection closed after too many
    /// refusals in a row.
    fn rate_limited(&mut self, text: &str, wait: std::time::Duration, out: &Outbound) -> Result<(), Close> {
        self.strikes += 1;
        self.deps.stats.rate_limited.inc();
        if self.strikes > self.deps.config.rate_limit_strikes {
            return Err(Close::new(close::RATE_LIMITED, "too many messages"));
        }
        let id = decode_client(text).ok().and_then(|m| m.id().map(str::to_owned));
        let retry_after_ms = Some(wait.as_millis() as u64 + 1);
        let message = "Slow down: too many messages.".to_owned();
        out.push(&ServerMsg::Error { id, code: ErrorCode::RateLimited, message, room: None, retry_after_ms });
        Ok(())
    }

    async fn act(&mut self, msg: ClientMsg, out: &Outbound) -> Result<(), Refusal> {
        match msg {
            // signed in, the token says who joins: its `name` and its `sub`
            ClientMsg::Join { id, room, nick, since, token } => match &self.signed_in {
                Some((claims, _)) => {
                    let (name, person) = (claims.name.clone(), format!("sub:{}", claims.sub));
                    self.join(id, &room, &name, since, Some(person), out).await
                }
                None => self.join(id, &room, &nick, since, token, out).await,
            },
            ClientMsg::Auth { .. } => unreachable!("handled before"),
            ClientMsg::Leave { id, room } => {
                let room = self.member_of(&room)?;
                self.rooms.remove(&room);
                // nothing to clear there on a later send: this connection is no longer in it
                self.typing_in.remove(&room);
                self.deps.presence.leave(self.conn, &room, Some((out, id)));
                Ok(())
            }
            ClientMsg::Add { id, a, b } => match a.checked_add(b) {
                Some(sum) => {
                    out.push(&ServerMsg::Sum { id, sum });
                    Ok(())
                }
                None => {
                    let reason = format!("{a} + {b} does not fit in a 64-bit integer.");
                    Err(Refusal::general(ErrorCode::Overflow, reason))
                }
            },
            ClientMsg::History { id, room, before, limit } => {
                let room = self.member_of(&room)?;
                let limit = limit.unwrap_or(self.deps.config.history_page as u32).clamp(1, MAX_HISTORY_LIMIT);
                let older = history::send_older(self.deps.log.clone(), room, before, limit as usize, id, out.clone());
                self.deps.tasks.spawn(older);
                Ok(())
            }
            ClientMsg::Members { id, room, after, limit } => {
                let room = self.member_of(&room)?;
                let limit = limit.map_or(MEMBER_PAGE, |l| l as usize).clamp(1, MAX_MEMBER_PAGE);
                self.deps.presence.members(MembersRequest { room: &room, after, limit, out, reply_id: id });
                Ok(())
            }
            ClientMsg::Resume { id, room, since } => {
                let room = self.member_of(&room)?;
                let resume = history::send_since(self.deps.clone(), room, Some(since), id, out.clone(), None);
                self.deps.tasks.spawn(resume);
                Ok(())
            }
            ClientMsg::Rooms { id } => {
                let (presence, fanout, out) = (self.deps.presence.clone(), self.deps.fanout.clone(), out.clone());
                self.deps.tasks.spawn(async move {
                    // this hub's rooms with their full counts, then the rooms only others hold;
                    // never a direct conversation (`@…`): those are nobody else's business
                    let mut rooms = presence.sizes();
                    rooms.extend(fanout.remote_room_sizes().await);
                    rooms.retain(|(room, _)| !room.starts_with('@'));
                    rooms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    rooms.truncate(MAX_ROOMS_LISTED);
                    let rooms = rooms.into_iter().map(|(room, count)| RoomSize { room, count }).collect();
                    out.push(&ServerMsg::Rooms { id, rooms });
                });
                Ok(())
            }
            ClientMsg::Search { id, query, room, limit } => {
                // only ever the rooms this connection is in: a search cannot reach further
                let rooms = match room {
                    Some(room) => vec![self.member_of(&room)?],
                    None => self.rooms.keys().cloned().collect(),
                };
                let terms = hubbub_shared::search::terms(&query);
                if terms.is_empty() {
                    let reason = "Search for at least one word (letters or digits).".to_owned();
                    return Err(Refusal::general(ErrorCode::QueryEmpty, reason));
                }
                let limit = limit.unwrap_or(SEARCH_LIMIT).clamp(1, MAX_SEARCH_LIMIT) as usize;
                let (log, out) = (self.deps.log.clone(), out.clone());
                self.deps.tasks.spawn(async move {
                    match log.search(rooms.clone(), terms.clone(), limit).await {
                        Ok(mut messages) => {
                            // whatever an engine's index returns, nothing of another room goes out
                            messages.retain(|m| rooms.iter().any(|r| r.as_str() == m.room));
                            out.push(&ServerMsg::Found { id, terms, messages });
                        }
                        Err(e) => refuse(&out, id, Refusal::general(ErrorCode::StorageUnavailable, e.to_string())),
                    }
                });
                Ok(())
            }
            ClientMsg::Dm { id, room, nick } => self.start_conversation(id, &room, &nick, out).await,
            // no reply: every connection of the person hears the new position
            ClientMsg::Read { room, seq } => {
                let room = self.member_of(&room)?;
                let Some(person) = self.person_in(&room) else { return Ok(()) };
                let (log, fanout) = (self.deps.log.clone(), self.deps.fanout.clone());
                let out = out.clone();
                self.deps.tasks.spawn(async move {
                    match log.read_position(&person, &room, ReadMove::To(seq)).await {
                        Ok(read) => fanout.tell(&person, &history::read_frame(&room, read)),
                        Err(e) => {
                            refuse(&out, None, Refusal::about(&room, ErrorCode::StorageUnavailable, e.to_string()))
                        }
                    }
                });
                Ok(())
            }
            ClientMsg::Send { id, room, text } => self.send(id, &room, &text, None, out),
            ClientMsg::Edit { id, room, seq, text } => {
                self.send(id, &room, &text, Some(Change { target: seq, delete: false }), out)
            }
            ClientMsg::Delete { id, room, seq } => {
                self.send(id, &room, "", Some(Change { target: seq, delete: true }), out)
            }
            // ephemeral: no reply when accepted
            ClientMsg::Typing { room } => {
                let room = self.member_of(&room)?;
                self.deps.presence.typing(self.conn, &room, true);
                self.typing_in.insert(room);
                Ok(())
            }
            ClientMsg::Visibility { hidden } => {
                self.hidden = hidden;
                for room in self.rooms.keys() {
                    self.deps.presence.visibility(self.conn, room, hidden);
                }
                Ok(())
            }
        }
    }

    async fn join(
        &mut self,
        id: Option<String>,
        room: &str,
        nick: &str,
        since: Option<String>,
        token: Option<String>,
        out: &Outbound,
    ) -> Result<(), Refusal> {
        let room = RoomName::parse(room).map_err(Refusal::in_room(room))?;
        let claim = self.claim_for(token.as_deref());
        let identified = token.as_deref().is_some_and(|t| !t.is_empty());
        // a conversation: only its two people, each under the nickname they had when it began
        let nick = match room.is_conversation() {
            true => self.conversation_nick(&room, identified.then_some(claim.as_str())).await?,
            false => nick.to_owned(),
        };
        let name = Nick::parse(&nick).and_then(|n| nick_rules::canonical(&n)).map_err(Refusal::in_room(&room))?;
        if self.rooms.contains_key(&room) {
            let reason = format!("You are already in {room}.");
            return Err(Refusal::about(&room, ErrorCode::AlreadyJoined, reason));
        }
        let max = self.deps.config.max_rooms_per_connection;
        if self.rooms.len() >= max {
            let reason = format!("One connection can be in at most {max} rooms.");
            return Err(Refusal::about(&room, ErrorCode::TooManyRooms, reason));
        }
        // across hubs first (cluster mode): two hubs never let two people have one nickname
        let nick = name.nick.clone();
        if let Err(holder) = self.deps.fanout.claim_nick(&room, &name.look_alike, &claim, nick.as_str()).await {
            // the same refusals as within one hub: the very name, or one too much like it
            let (code, reason) = if Nick::parse(&holder).is_ok_and(|h| h.key() == nick.key()) {
                (ErrorCode::NickTaken, format!("Someone in {room} is already called {nick}."))
            } else {
                (ErrorCode::NickConfusable, format!("{nick} looks too much like {holder}, who is in {room}."))
            };
            return Err(Refusal::about(&room, code, reason));
        }
        // the first member here of a room others hold people in: their people in `joined` too
        let views = if self.deps.presence.holds(&room) { Vec::new() } else { self.deps.fanout.load_views(&room).await };
        let request = JoinRequest {
            conn: self.conn,
            room: &room,
            name,
            identity: token,
            claim: claim.clone(),
            hidden: self.hidden,
            views,
            out,
            reply_id: id.clone(),
        };
        self.deps.presence.join(request).map_err(Refusal::in_room(&room))?;
        tracing::debug!(%room, %nick, "joined");
        self.join_by = None;
        if identified && self.person.is_none() {
            self.identify(claim.clone(), out);
        }
        // registered first, history read second: every message is either in the history or
        // delivered live (or both; clients keep one copy per seq)
        let reader = identified.then(|| claim.clone());
        let mut history =
            Box::pin(history::send_since(self.deps.clone(), room.clone(), since, id, out.clone(), reader));
        // at once when nothing needs waiting for (the room's newest page is in memory): the
        // `history` frame then leaves with `joined`, in one write; else on a task of its own
        if futures_util::FutureExt::now_or_never(&mut history).is_none() {
            self.deps.tasks.spawn(history);
        }
        self.rooms.insert(room, (nick, claim));
        Ok(())
    }

    /// The connection's first join with an identity: the person's news (`Fanout::tell`) reaches
    /// it from now on, and it gets their conversations.
    fn identify(&mut self, person: String, out: &Outbound) {
        self.deps.presence.people().add(&person, self.conn, out);
        let (log, out) = (self.deps.log.clone(), out.clone());
        self.person = Some(person.clone());
        self.deps.tasks.spawn(async move {
            match log.conversations(&person).await {
                Ok(all) => {
                    let conversations = all.iter().filter_map(|c| shown_to(c, &person)).collect();
                    out.push(&ServerMsg::Conversations { id: None, conversations });
                }
                Err(e) => refuse(&out, None, Refusal::general(ErrorCode::StorageUnavailable, e.to_string())),
            }
        });
    }

    /// The nickname `person` has in conversation `room`; the same refusal whether the
    /// conversation does not exist or is someone else's, so a guess learns nothing.
    async fn conversation_nick(&self, room: &RoomName, person: Option<&str>) -> Result<String, Refusal> {
        let refusal = || {
            let reason = format!("You have no conversation called {room}.");
            Refusal::about(room, ErrorCode::NoSuchConversation, reason)
        };
        let person = person.ok_or_else(refusal)?;
        let conversation = self
            .deps
            .log
            .conversation(room)
            .await
            .map_err(|e| Refusal::about(room, ErrorCode::StorageUnavailable, e.to_string()))?;
        let people = conversation.map(|c| c.people).unwrap_or_default();
        people.into_iter().find(|(p, _)| p == person).map(|(_, nick)| nick).ok_or_else(refusal)
    }

    /// `dm`: the conversation of the person on this connection (as in `room`) and the member
    /// called `nick` there, started unless the two have one already. Both people's connections
    /// hear of it; this one with the request's id.
    async fn start_conversation(
        &mut self,
        id: Option<String>,
        room: &str,
        nick: &str,
        out: &Outbound,
    ) -> Result<(), Refusal> {
        let room = self.member_of(room)?;
        let nobody = |reason: String| Refusal::about(&room, ErrorCode::NoSuchMember, reason);
        let Some(me) = self.person_in(&room) else {
            return Err(nobody("Direct messages need an identity: join with the token your client keeps.".into()));
        };
        let mine = &self.rooms[&room].0;
        let (my_nick, my_key) = (mine.to_string(), mine.key());
        let them = Nick::parse(nick).map_err(Refusal::in_room(&room))?;
        if them.key() == my_key {
            return Err(nobody("That is you: pick someone else.".into()));
        }
        let here = self.deps.presence.member(&room, &them);
        let (their_nick, their_claim) = match here {
            Some((_, _, false)) => {
                return Err(nobody(format!("{them}'s client keeps no identity, so it cannot have direct messages.")));
            }
            Some((nick, claim, true)) => (nick, claim),
            None => {
                let key = nick_rules::look_alike_key(&them);
                match self.deps.fanout.nick_holder(&room, &key).await {
                    Some((claim, nick)) if Nick::parse(&nick).is_ok_and(|n| n.key() == them.key()) => (nick, claim),
                    _ => return Err(nobody(format!("Nobody in {room} is called {them}."))),
                }
            }
        };
        if their_claim == me {
            return Err(nobody("That is you: pick someone else.".into()));
        }
        let wanted = Conversation::between((me.clone(), my_nick), (their_claim.clone(), their_nick));
        let (log, fanout, out) = (self.deps.log.clone(), self.deps.fanout.clone(), out.clone());
        self.deps.tasks.spawn(async move {
            match log.start_conversation(wanted).await {
                Ok(started) => {
                    for person in [&me, &their_claim] {
                        let conversations = shown_to(&started, person).into_iter().collect();
                        fanout.tell(person, &ServerMsg::Conversations { id: None, conversations });
                    }
                    let conversations = shown_to(&started, &me).into_iter().collect();
                    out.push(&ServerMsg::Conversations { id, conversations });
                }
                Err(e) => refuse(&out, id, Refusal::about(&room, ErrorCode::StorageUnavailable, e.to_string())),
            }
        });
        Ok(())
    }

    /// The person this connection is in `room` as, when it joined with an identity.
    fn person_in(&self, room: &RoomName) -> Option<String> {
        let (_, claim) = self.rooms.get(room)?;
        self.person.as_ref().filter(|p| *p == claim).cloned()
    }

    /// Queues a chat message (or, with `change`, an edit or deletion of one) for the next group
    /// commit; the ack (or `storage_unavailable`, `not_author`, `no_such_message`) follows from
    /// the commit (`crate::broker::after_commit`).
    fn send(
        &mut self,
        id: Option<String>,
        room: &str,
        text: &str,
        change: Option<Change>,
        out: &Outbound,
    ) -> Result<(), Refusal> {
        let room = self.member_of(room)?;
        let text = match change {
            Some(Change { delete: true, .. }) => String::new(),
            _ => {
                let max = self.deps.config.limits().max_text_chars;
                ChatText::parse(text, max).map_err(Refusal::in_room(&room))?.into_string()
            }
        };
        let (author, author_key) = {
            let (nick, key) = &self.rooms[&room];
            (nick.to_string(), key.clone())
        };
        let client_id = match &id {
            Some(id) => format!("c:{id}"),
            None => {
                self.anonymous_sends += 1;
                format!("s:{}:{}:{}", self.deps.started_at, self.conn, self.anonymous_sends)
            }
        };
        // sending ends typing
        if self.typing_in.remove(&room) {
            self.deps.presence.typing(self.conn, &room, false);
        }
        let append = Append {
            room: room.clone(),
            author,
            author_key,
            text,
            change,
            client_id,
            ack_id: id,
            reply_to: out.clone(),
        };
        self.deps.log.append(append).map_err(|e| Refusal::about(&room, ErrorCode::StorageUnavailable, e.to_string()))
    }

    /// Who holds a nickname across hubs: a digest of the person's identity (never the secret
    /// itself), or of this connection alone when it sent none (then it is a person of its own).
    fn claim_for(&self, identity: Option<&str>) -> String {
        use sha2::{Digest, Sha256};
        let digest = match identity.filter(|i| !i.is_empty()) {
            Some(identity) => Sha256::digest(format!("person:{identity}")),
            // random per join (RandomState is seeded per process and differs per call): unique
            // across hubs; the member keeps it for as long as it holds the name
            None => {
                use std::hash::{BuildHasher, Hasher};
                let salt = std::collections::hash_map::RandomState::new().build_hasher().finish();
                Sha256::digest(format!("connection:{}:{}:{salt}", self.deps.started_at, self.conn))
            }
        };
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }

    /// The canonical room, if this connection has joined it.
    fn member_of(&self, raw: &str) -> Result<RoomName, Refusal> {
        let room = RoomName::parse(raw).map_err(Refusal::in_room(raw))?;
        if self.rooms.contains_key(&room) {
            Ok(room)
        } else {
            let reason = format!("You are not in {room}.");
            Err(Refusal::about(&room, ErrorCode::NotMember, reason))
        }
    }
}

/// A conversation as `person` sees it in `conversations`: with the other person's nickname.
fn shown_to(conversation: &Conversation, person: &str) -> Option<hubbub_shared::Conversation> {
    let (_, with) = conversation.other(person)?;
    Some(hubbub_shared::Conversation { room: conversation.room.to_string(), with: with.clone() })
}

/// Tells the client its request `id` was refused.
pub(crate) fn refuse(out: &Outbound, id: Option<String>, refusal: Refusal) {
    tracing::debug!(code = refusal.code.as_str(), "request refused");
    let Refusal { code, reason, room } = refusal;
    out.push(&ServerMsg::Error { id, code, message: reason, room, retry_after_ms: None });
}

#[cfg(test)]
mod tests {
    //! The decode-and-handle path against arbitrary input: it never panics, and on a fresh
    //! connection every frame gets exactly one immediate reply (an error, `joined`, `sum`), or a
    //! close; except an accepted `visibility`, which is ephemeral and answered by nothing.

    use super::*;
    use crate::{AppState, Config, net::OutboundRx};
    use proptest::prelude::*;
    use serde_json::Value;
    use std::sync::OnceLock;

    fn deps() -> &'static (tokio::runtime::Runtime, ChatDeps) {
        static DEPS: OnceLock<(tokio::runtime::Runtime, ChatDeps)> = OnceLock::new();
        DEPS.get_or_init(|| {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let deps = runtime.block_on(AppState::new(Config::for_tests())).unwrap().chat;
            (runtime, deps)
        })
    }

    /// Handles one frame on a fresh session; the number of frames it queued (counting an
    /// accepted `visibility`, answered by nothing, as its one reply), or the close.
    fn replies_to(text: &str) -> Result<usize, Close> {
        let silent = matches!(decode_client(text), Ok(ClientMsg::Visibility { .. }));
        static CONN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (runtime, deps) = deps();
        let _in_runtime = runtime.enter();
        let (out, mut queue) = Outbound::new(16, deps.stats.clone());
        let conn = CONN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut session = ChatSession::new(deps.clone(), conn);
        // in the embedded mode nothing is waited for: the answer is there at once
        let result = futures_util::FutureExt::now_or_never(session.on_text(text.into(), &out))
            .expect("nothing to wait for without other hubs");
        session.on_closing();
        result.map(|()| count(&mut queue) + usize::from(silent))
    }

    fn count(queue: &mut OutboundRx) -> usize {
        std::iter::from_fn(|| queue.try_recv()).count()
    }

    /// JSON values, with objects biased towards the protocol's field names and types.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("join"),
                Just("send"),
                Just("leave"),
                Just("add"),
                Just("history"),
                Just("resume"),
                Just("typing"),
                Just("visibility"),
                Just("members"),
                Just("lobby")
            ]
            .prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                Just("type".to_owned()),
                Just("id".to_owned()),
                Just("room".to_owned()),
                Just("nick".to_owned()),
                Just("text".to_owned()),
                Just("a".to_owned()),
                Just("b".to_owned()),
                Just("since".to_owned()),
                Just("before".to_owned()),
                Just("hidden".to_owned()),
                Just("after".to_owned()),
                Just("limit".to_owned()),
                "\\PC{0,8}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_gets_exactly_one_reply(text in "\\PC{0,200}") {
            prop_assert_eq!(replies_to(&text), Ok(1));
        }

        #[test]
        fn arbitrary_bytes_read_as_text_get_exactly_one_reply(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(replies_to(&String::from_utf8_lossy(&bytes)), Ok(1));
        }

        #[test]
        fn arbitrary_json_gets_exactly_one_reply(value in json()) {
            prop_assert_eq!(replies_to(&value.to_string()), Ok(1));
        }
    }

    #[test]
    fn deeply_nested_json_is_one_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(replies_to(&deep), Ok(1));
        let deep_object = format!("{}1{}", r#"{"type":"#.repeat(50_000), "}".repeat(50_000));
        assert_eq!(replies_to(&deep_object), Ok(1));
    }
}

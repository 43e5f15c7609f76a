//! The reactive layer over the page model (`hubbub-page-model`): the model lives in one signal,
//! every change goes through it, and the effects it returns are carried out here (sending,
//! saving to local storage, retrying later). Components read slices of it through memos, so
//! a new message re-renders only what shows that room's log.

use futures::channel::mpsc::UnboundedSender;
use hubbub_shared::{ClientMsg, ServerMsg};
use leptos::prelude::*;
use page_model::{Effect, PageModel, Pending, Session};

const SESSION_KEY: &str = "hubbub.session";
const OUTBOX_KEY: &str = "hubbub.outbox";

/// The page's chat state, shared through context. `Copy`: both fields are handles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chat {
    model: RwSignal<PageModel>,
    /// To the connection task, which sends once the hub has welcomed it.
    outbound: StoredValue<UnboundedSender<ClientMsg>>,
}

impl Chat {
    /// The state, with the rooms and unsent messages remembered from the last visit.
    pub(crate) fn new(outbound: UnboundedSender<ClientMsg>) -> Self {
        let session = crate::browser::load(SESSION_KEY).and_then(|t| Session::from_json(&t)).unwrap_or_default();
        let outbox = crate::browser::load(OUTBOX_KEY).and_then(|t| Pending::list_from_json(&t)).unwrap_or_default();
        let calendar = page_model::Calendar {
            day_of: |ts| crate::browser::local_time(ts).0,
            now: || crate::browser::now_ms() as u64,
        };
        let identity = crate::browser::client_token();
        let model = PageModel::new(session, outbox).with_calendar(calendar).with_identity(&identity);
        Self { model: RwSignal::new(model), outbound: StoredValue::new(outbound) }
    }

    /// Reads the model, tracked: the caller re-runs when it changes (wrap slices in a `Memo`).
    pub(crate) fn with<R>(&self, read: impl FnOnce(&PageModel) -> R) -> R {
        self.model.with(read)
    }

    /// Reads the model without subscribing to it.
    pub(crate) fn with_untracked<R>(&self, read: impl FnOnce(&PageModel) -> R) -> R {
        self.model.with_untracked(read)
    }

    /// Runs one transition and carries out its effects.
    fn change(&self, transition: impl FnOnce(&mut PageModel) -> Vec<Effect>) {
        let mut effects = Vec::new();
        self.model.update(|m| effects = transition(m));
        self.run(effects);
    }

    /// Carries out effects. Not generic on purpose: a retry schedules a task that runs effects
    /// again, which would otherwise instantiate `change` inside itself without end.
    fn run(&self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send(msg) => self.outbound.with_value(|tx| {
                    // the receiver lives as long as the page
                    let _ = tx.unbounded_send(msg);
                }),
                Effect::SaveSession => {
                    self.model.with_untracked(|m| crate::browser::save(SESSION_KEY, &m.session().to_json()));
                }
                Effect::SaveOutbox => {
                    self.model.with_untracked(|m| crate::browser::save(OUTBOX_KEY, &Pending::list_to_json(&m.outbox)));
                }
                Effect::Reveal { seq } => crate::browser::reveal(&format!("m{seq}")),
                Effect::RetryLater { id, after_ms } => {
                    let chat = *self;
                    leptos::task::spawn_local(async move {
                        gloo_timers::future::sleep(std::time::Duration::from_millis(after_ms)).await;
                        let mut effects = Vec::new();
                        chat.model.update(|m| effects = m.resend(&id));
                        chat.run(effects);
                    });
                }
            }
        }
    }

    /// Changes the model where no effect can follow (connection state).
    fn set(&self, transition: impl FnOnce(&mut PageModel)) {
        self.model.update(transition);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.with(PageModel::is_connected)
    }

    // ---- the connection task -------------------------------------------------------------

    /// Applies one frame from the hub, item by item; items this page does not know are
    /// skipped (logged), the rest still apply.
    pub(crate) fn receive(&self, text: &str) {
        let mut skipped = Vec::new();
        self.change(|m| {
            let (effects, unknown) = m.receive(text);
            skipped = unknown;
            effects
        });
        for detail in skipped {
            leptos::logging::debug_warn!("skipped a message this page does not understand: {detail}");
        }
    }

    /// Applies one decoded message (the `welcome` the connection task checked first).
    pub(crate) fn apply(&self, msg: ServerMsg) {
        self.change(|m| m.apply(msg));
    }

    pub(crate) fn connected(&self) {
        self.set(PageModel::connected);
    }

    pub(crate) fn connection_lost(&self, code: u16, reason: String, was_welcomed: bool) {
        self.set(|m| m.connection_lost(code, reason, was_welcomed));
    }

    pub(crate) fn closed_for_good(&self, code: u16, reason: String) {
        self.set(|m| m.closed_for_good(code, reason));
    }

    pub(crate) fn idle(&self) {
        self.set(PageModel::idle);
    }

    /// Rejoins for every room (resuming from the last seq), then the outbox, after a welcome.
    pub(crate) fn after_welcome(&self) -> Vec<ClientMsg> {
        let token = crate::browser::client_token();
        self.with_untracked(|m| m.rejoins(&token).into_iter().chain(m.resends()).collect())
    }

    // ---- what the person does --------------------------------------------------------------

    /// Validates, then asks to join; a broken rule shows under the form.
    pub(crate) fn request_join(&self, room: &str, nick: &str) {
        let token = crate::browser::client_token();
        self.change(|m| m.request_join(room, nick, &token));
        if self.with_untracked(|m| m.join_error.is_none() && !m.sign_in_required) {
            crate::browser::remember_nick(nick);
        }
    }

    pub(crate) fn search(&self, query: &str) {
        self.change(|m| m.search(query));
    }

    /// Closes the search view (Escape: also when none is open, so only then a change).
    pub(crate) fn close_search(&self) {
        if self.with_untracked(|m| m.search.is_some()) {
            self.set(PageModel::close_search);
        }
    }

    /// Opens a search result: its room, at it.
    pub(crate) fn open_at(&self, room: &str, seq: u64) {
        self.change(|m| m.open_at(room, seq));
    }

    /// Asks the hub which rooms people are in.
    pub(crate) fn browse_rooms(&self) {
        self.change(PageModel::browse_rooms);
    }

    /// Joins a room from the browse list, or shows it when already in it, under the nickname
    /// on screen.
    pub(crate) fn join_listed(&self, room: &str) {
        if self.with_untracked(|m| m.room(room).is_some()) {
            return self.select(room);
        }
        let remembered = crate::browser::remembered_nick().unwrap_or_default();
        let nick = self.with_untracked(|m| m.current_nick(&remembered).to_owned());
        self.request_join(room, &nick);
    }

    pub(crate) fn leave(&self, room: &str) {
        self.change(|m| m.leave(room));
    }

    pub(crate) fn select(&self, room: &str) {
        self.change(|m| m.select(room));
    }

    /// Puts a message in the outbox (sent now when connected, else on reconnect); the broken
    /// rule when it breaks one.
    pub(crate) fn say(&self, room: &str, text: &str) -> Result<(), String> {
        self.try_change(|m| m.say(room, text, crate::browser::new_id()))
    }

    /// Edits one's own message `seq` (`Some` text) or deletes it (`None`).
    pub(crate) fn change_message(&self, room: &str, seq: u64, text: Option<&str>) -> Result<(), String> {
        self.try_change(|m| m.change_message(room, seq, text, crate::browser::new_id()))
    }

    /// Runs a transition that may refuse (the reason comes back; nothing changed then).
    fn try_change(&self, transition: impl FnOnce(&mut PageModel) -> Result<Vec<Effect>, String>) -> Result<(), String> {
        let mut result = Ok(());
        self.change(|m| {
            transition(m).unwrap_or_else(|reason| {
                result = Err(reason);
                Vec::new()
            })
        });
        result
    }

    /// The next (`forward`) or previous room.
    pub(crate) fn switch_room(&self, forward: bool) {
        self.change(|m| m.switch_room(forward));
    }

    pub(crate) fn retry(&self, id: &str) {
        self.change(|m| m.retry(id));
    }

    pub(crate) fn discard(&self, id: &str) {
        self.change(|m| m.discard(id));
    }

    pub(crate) fn load_older(&self, room: &str) {
        self.change(|m| m.load_older(room));
    }

    /// "Show more" in the member panel.
    pub(crate) fn load_more_members(&self, room: &str) {
        self.change(|m| m.load_more_members(room));
    }

    pub(crate) fn load_gap(&self, room: &str, key: u64) {
        self.change(|m| m.load_gap(room, key));
    }

    /// A keystroke in the message box of `room`.
    pub(crate) fn typed(&self, room: &str) {
        let now_ms = js_sys::Date::now() as u64;
        self.change(|m| m.typed(room, now_ms));
    }

    /// After a refused rejoin: try again under another nickname.
    pub(crate) fn rejoin_as(&self, room: &str, nick: &str) {
        let token = crate::browser::client_token();
        self.change(|m| m.rejoin_as(room, nick, &token));
    }

    /// "Message" beside a member's name: a direct conversation with them.
    pub(crate) fn message_person(&self, room: &str, nick: &str) {
        self.change(|m| m.message_person(room, nick));
    }

    /// The room on screen counts as read (called every second or so).
    pub(crate) fn read_now(&self) {
        // most ticks nothing moved: then the model is left untouched and no view looks again
        // (an `update` would notify every memo, and the log's clones its entries)
        let mut effects = Vec::new();
        self.model.maybe_update(|m| {
            effects = m.read_now();
            !effects.is_empty()
        });
        self.run(effects);
    }

    /// The page became hidden or visible (the Page Visibility API).
    pub(crate) fn set_hidden(&self, hidden: bool) {
        self.change(|m| m.set_hidden(hidden));
    }
}

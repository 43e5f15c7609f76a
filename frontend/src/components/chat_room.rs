use crate::components::on;
use crate::{app::Drawer, browser::local_time, state::Chat};
use leptos::{either::Either, ev::SubmitEvent, html, prelude::*};
use page_model::{Entry, EntryKind, Segment};

/// How close to the bottom (px) still counts as "at the bottom".
const STICKY_SLACK: i32 = 40;

/// The active room: its log, its members and the message box.
///
/// The log follows new messages only while the reader is already at the bottom (gorilla's
/// home.html rule); a reader scrolled up gets a "new messages" button instead of being yanked.
#[component]
pub(crate) fn ChatRoom(
    /// The room's name; the view reads the room from the page model by it.
    room: String,
) -> impl IntoView {
    let log_ref = NodeRef::<html::Div>::new();
    let at_bottom = RwSignal::new(true);
    let unseen = RwSignal::new(false);
    let chat = expect_context::<Chat>();
    // slices of the model: each re-renders only when its own part changed (the log often, the
    // rest rarely: one memo for the rest keeps the page smaller, each memo type is code)
    let log = {
        let room = room.clone();
        Memo::new(move |_| chat.with(|m| m.room_entries(&room)))
    };
    let side = room_slice(chat, &room, Side::of);
    let show_more = {
        let room = room.clone();
        move |_| chat.load_more_members(&room)
    };

    let scroll_to_bottom = move || {
        // after the browser laid out the new entries
        request_animation_frame(move || {
            if let Some(el) = log_ref.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    };
    let name = room.clone();
    let members_room = room.clone();
    // follow the end of the log (new messages, own pending ones), not older pages loaded above
    Effect::new(move |previous: Option<(Option<u64>, usize)>| {
        let now = log.with(|l| {
            let entries = l.as_deref().unwrap_or_default();
            let waiting = entries.iter().filter(|e| matches!(e.kind, EntryKind::Pending { .. })).count();
            (entries.iter().rev().find(|e| !matches!(e.kind, EntryKind::Pending { .. })).map(|e| e.key), waiting)
        });
        let last = now.0;
        if previous.is_none_or(|p| p != now) {
            if at_bottom.get_untracked() || previous.is_none() {
                scroll_to_bottom();
            } else if previous.is_some_and(|p| p.0 != last) {
                unseen.set(true);
            }
        }
        now
    });
    let oldest = move || log.with(|l| l.as_ref().and_then(|l| l.iter().find_map(Entry::seq)));
    let load_older = {
        let name = name.clone();
        move |_| chat.load_older(&name)
    };
    let on_scroll = move |_| {
        if let Some(el) = log_ref.get_untracked() {
            let bottom = el.scroll_height() - el.scroll_top() - el.client_height() <= STICKY_SLACK;
            at_bottom.set(bottom);
            if bottom {
                unseen.set(false);
            }
        }
    };
    let jump = move |_| {
        at_bottom.set(true);
        unseen.set(false);
        scroll_to_bottom();
    };

    view! {
        <section class="room" aria-labelledby="room-title">
            <div class="room-head">
                <h2 id="room-title">{move || side.with(|s| s.as_ref().map(|s| s.label.clone()))}</h2>
                <span class="me">"as " {move || side.with(|s| s.as_ref().map(|s| s.nick.clone()))}</span>
                <DrawerToggle which=Drawer::Rooms label="Rooms" controls="sidebar" />
                <DrawerToggle which=Drawer::Members label="Members" controls="members" />
            </div>
            <div class="room-body">
                <div class="log-wrap">
                    <div
                        class="log"
                        role="log"
                        aria-label=move || side.with(|s| s.as_ref().map(|s| format!("Messages in {}", s.label)))
                        tabindex="0"
                        node_ref=log_ref
                        on:scroll=on(on_scroll)
                    >
                        <Show when=move || oldest().is_some_and(|seq| seq > 1)>
                            <button class="load-older" on:click=on(load_older.clone())>
                                "Load older messages"
                            </button>
                        </Show>
                        <For each=move || log.get().unwrap_or_default() key=|entry| entry.key let:entry>
                            <LogEntry entry room=name.clone() />
                        </For>
                    </div>
                    <Show when=move || unseen.get()>
                        <button class="new-messages" on:click=on(jump)>
                            "New messages ↓"
                        </button>
                    </Show>
                </div>
                <aside class="members" id="members" aria-label="Members">
                    <h3>"Members (" {move || side.with(|s| s.as_ref().map_or(0, |s| s.count))} ")"</h3>
                    <ul>
                        <For
                            each=move || side.with(|s| s.as_ref().map(|s| s.members.clone()).unwrap_or_default())
                            key=|member| member.clone()
                            let:((name, away))
                        >
                            <li class:away=away>
                                <span class="name">{name.clone()}</span>
                                {away.then_some(view! { <span class="state">" (away)"</span> })}
                                {
                                    let (room, name) = (members_room.clone(), name.clone());
                                    // others in a room can be messaged directly (not oneself, not in a conversation)
                                    move || {
                                        side.with(|s| s.as_ref().is_some_and(|s| s.nick != name && !s.direct))
                                            .then(|| {
                                                let (room, name) = (room.clone(), name.clone());
                                                view! {
                                                    <button
                                                        class="link dm"
                                                        aria-label=format!("Message {name}")
                                                        on:click=on(move |_| chat.message_person(&room, &name))
                                                    >
                                                        "Message"
                                                    </button>
                                                }
                                            })
                                    }
                                }
                            </li>
                        </For>
                    </ul>
                    // a big room's list comes in pages: the rest on request
                    {move || {
                        let not_loaded = side.with(|s| s.as_ref().map_or(0, |s| s.not_loaded));
                        (not_loaded != 0)
                            .then(|| {
                                view! {
                                    <button class="more-members" on:click=on(show_more.clone())>
                                        "Show more (" {not_loaded} " not shown)"
                                    </button>
                                }
                            })
                    }}
                </aside>
            </div>
            {
                let room = room.clone();
                move || {
                    side.with(|s| s.as_ref().and_then(|s| s.refused.clone()))
                        .map(|reason| view! { <Refused room=room.clone() reason /> })
                }
            }
            <MessageForm room=room.clone() />
        </section>
    }
}

/// A button that opens (or closes) a drawer; shown on narrow screens only (style.css).
#[component]
fn DrawerToggle(which: Drawer, label: &'static str, controls: &'static str) -> impl IntoView {
    let drawer = expect_context::<RwSignal<Drawer>>();
    view! {
        <button
            class="drawer-toggle"
            aria-controls=controls
            aria-expanded=move || if drawer.get() == which { "true" } else { "false" }
            on:click=on(move |_| drawer.update(|d| *d = if *d == which { Drawer::Closed } else { which }))
        >
            {label}
        </button>
    }
}

/// What a room view shows besides the log: the nickname, the loaded members (with "away"), the
/// room's size, how many are not loaded, and why a rejoin was refused.
#[derive(Debug, Clone, PartialEq)]
struct Side {
    nick: String,
    /// `#room`, or `@nickname` for a direct conversation.
    label: String,
    direct: bool,
    members: Vec<(String, bool)>,
    count: u64,
    not_loaded: u64,
    refused: Option<String>,
}

impl Side {
    fn of(r: &page_model::Room) -> Side {
        Side {
            nick: r.nick.clone(),
            label: r.label(),
            direct: r.with.is_some(),
            members: r.members.iter().map(|n| (n.clone(), r.away.contains(n))).collect(),
            count: r.member_count,
            not_loaded: r.members_not_loaded(),
            refused: r.refused.clone(),
        }
    }
}

/// One part of a room of the model, as a memo: views that read it re-render only when that
/// part changed, not on every message of every room.
fn room_slice<T: Clone + PartialEq + Send + Sync + 'static>(
    chat: Chat,
    room: &str,
    read: fn(&page_model::Room) -> T,
) -> Memo<Option<T>> {
    let room = room.to_owned();
    Memo::new(move |_| chat.with(|m| m.room(&room).map(read)))
}

/// One line of the log, after its day's separator when it opens a day. Text is always inserted
/// as text nodes, never parsed as HTML; only `http(s)` addresses become links.
#[component]
fn LogEntry(entry: Entry, room: String) -> impl IntoView {
    let placement = entry.place;
    let separator = placement.day.map(|label| view! { <h3 class="day"><span>{label}</span></h3> });
    match entry.kind {
        EntryKind::Message { seq, author, text, ts, own, edited, deleted } => {
            let (day, hours, minutes) = local_time(ts);
            let short = format!("{hours:02}:{minutes:02}");
            let full = format!("{}, {short}", day.long());
            let iso = format!("{:04}-{:02}-{:02}T{short}", day.year, day.month, day.day);
            // a message under the previous one's header keeps its author for screen readers
            // and shows its time on hover and focus (style.css)
            view! {
                {separator}
                <article
                    class=match (own, placement.continued) {
                        (false, false) => "msg",
                        (false, true) => "msg continued",
                        (true, false) => "msg own",
                        (true, true) => "msg own continued",
                    }
                    data-state=own.then_some("sent")
                    // a search result is revealed here: found by its seq, given the focus
                    id=format!("m{seq}")
                    tabindex="-1"
                >
                    <header>
                        <span class="author">{author}</span>
                        <time datetime=iso title=full tabindex="0">{short}</time>
                        {own.then(|| view! { <span class="state">"✓ sent"</span> })}
                    </header>
                    {if deleted {
                        Either::Left(view! { <p class="text deleted">"message deleted"</p> })
                    } else {
                        Either::Right(view! { <MessageBody room=room seq text own edited /> })
                    }}
                </article>
            }
            .into_any()
        }
        EntryKind::Gap { .. } => {
            // the model knows how much of the gap is left: each click loads the next page of it
            let chat = expect_context::<Chat>();
            let key = entry.key;
            view! {
                <p class="notice gap">
                    "Some messages were skipped while you were away. "
                    <button class="link" on:click=on(move |_| chat.load_gap(&room, key))>
                        "Load them"
                    </button>
                </p>
            }
            .into_any()
        }
        EntryKind::Pending { id, text, failed } => view! { <PendingEntry id text failed /> }.into_any(),
        EntryKind::Notice(text) => view! { <p class="notice">{text}</p> }.into_any(),
        EntryKind::NewMessages => view! { <p class="new-line">"New messages"</p> }.into_any(),
        EntryKind::Problem(text) => view! { <p class="notice problem">{text}</p> }.into_any(),
    }
}

/// A message's text, "(edited)" when it was, and for one's own message Edit and Delete; Edit
/// turns the text into a form (Enter saves, Escape cancels).
#[component]
fn MessageBody(room: String, seq: u64, text: String, own: bool, edited: bool) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let editing = RwSignal::new(false);
    let problem = RwSignal::new(None::<String>);
    let input = NodeRef::<html::Input>::new();
    let change = {
        let room = room.clone();
        move |text: Option<String>| match chat.change_message(&room, seq, text.as_deref()) {
            Ok(()) => {
                editing.set(false);
                problem.set(None);
            }
            Err(reason) => problem.set(Some(reason)),
        }
    };
    let save = {
        let change = change.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            if let Some(el) = input.get_untracked() {
                change(Some(el.value()));
            }
        }
    };
    let field = format!("edit-{room}-{seq}");
    move || {
        if editing.get() {
            let change = change.clone();
            Either::Left(view! {
                <form class="edit" on:submit=on(save.clone())>
                    <label class="sr-only" for=field.clone()>"Edit your message"</label>
                    <input
                        id=field.clone()
                        node_ref=input
                        value=text.clone()
                        on:keydown=on(move |ev: leptos::ev::KeyboardEvent| {
                            if ev.key() == "Escape" {
                                editing.set(false);
                            }
                        })
                    />
                    <div class="actions">
                        <button type="submit">"Save"</button>
                        <button type="button" class="link" on:click=on(move |_| editing.set(false))>"Cancel"</button>
                        <button type="button" class="link danger" on:click=on(move |_| change(None))>"Delete"</button>
                    </div>
                    <p class="error" role="alert">{move || problem.get()}</p>
                </form>
            })
        } else {
            Either::Right(view! {
                <p class="text">
                    {message_text(&text)}
                    {edited.then(|| view! { <span class="edited">" (edited)"</span> })}
                </p>
                {own.then(|| view! {
                    <button
                        class="link change"
                        on:click=on(move |_| {
                            editing.set(true);
                            // the box takes the focus once it is there
                            request_animation_frame(move || {
                                if let Some(el) = input.get_untracked() {
                                    let _ = el.focus();
                                }
                            });
                        })
                    >
                        "Edit"
                    </button>
                })}
            })
        }
    }
}

/// A message's text as text nodes, with its `http(s)` addresses as links that open in a new tab
/// and tell the target nothing about this page.
fn message_text(text: &str) -> impl IntoView + use<> {
    page_model::segments(text)
        .into_iter()
        .map(|segment| match segment {
            Segment::Text(text) => Either::Left(text),
            Segment::Link(url) => {
                let href = url.clone();
                Either::Right(view! { <a href=href target="_blank" rel="noopener noreferrer">{url}</a> })
            }
        })
        .collect_view()
}

/// An own message not yet acknowledged: sending, or refused with Retry and Discard.
#[component]
fn PendingEntry(id: String, text: String, failed: Option<String>) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let (retry_id, discard_id) = (id.clone(), id);
    view! {
        <article class="msg own pending" data-state=if failed.is_some() { "failed" } else { "sending" }>
            <header>
                <span class="state">
                    {match &failed {
                        Some(reason) => format!("failed: {reason}"),
                        None => "sending…".to_owned(),
                    }}
                </span>
            </header>
            <p class="text">{text}</p>
            {failed.is_some().then(|| view! {
                <div class="actions">
                    <button class="link" on:click=on(move |_| chat.retry(&retry_id))>"Retry"</button>
                    <button class="link" on:click=on(move |_| chat.discard(&discard_id))>"Discard"</button>
                </div>
            })}
        </article>
    }
}

/// The hub would not take us back into the room (after a reconnect, the nickname had been taken
/// meanwhile): the reason, and the ways out, another nickname or removing the room.
#[component]
fn Refused(room: String, reason: String) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let nick = NodeRef::<html::Input>::new();
    let remove = {
        let room = room.clone();
        move |_| chat.leave(&room)
    };
    let on_submit = {
        let room = room.clone();
        move |ev: SubmitEvent| {
            ev.prevent_default();
            chat.rejoin_as(&room, &nick.get_untracked().map(|el| el.value()).unwrap_or_default());
        }
    };
    view! {
        <form class="refused" role="alert" on:submit=on(on_submit)>
            <p>"Could not rejoin #" {room.clone()} ": " {reason}</p>
            <label for="rejoin-nick">"Another nickname for #" {room.clone()}</label>
            <div class="compose-row">
                <input
                    id="rejoin-nick"
                    autocomplete="nickname"
                    node_ref=nick
                />
                <button type="submit">"Rejoin"</button>
                <button type="button" class="link" on:click=on(remove)>
                    "Remove the room"
                </button>
            </div>
        </form>
    }
}

/// The message box: Enter sends, blank input is ignored. While disconnected it stays usable:
/// messages wait in the outbox and go out on reconnect.
#[component]
fn MessageForm(room: String) -> impl IntoView {
    let chat = expect_context::<Chat>();
    let typing = room_slice(chat, &room, page_model::Room::typing_line);
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let connected = move || chat.is_connected();
    let on_input = {
        let room = room.clone();
        move |ev| {
            text.set(event_target_value(&ev));
            chat.typed(&room);
        }
    };
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        let typed = text.get_untracked();
        if typed.trim().is_empty() {
            return;
        }
        match chat.say(&room, &typed) {
            Ok(()) => {
                text.set(String::new());
                error.set(None);
            }
            Err(reason) => error.set(Some(reason)),
        }
    };
    view! {
        <form class="compose" on:submit=on(on_submit)>
            <label for="message">"Message"</label>
            <div class="compose-row">
                <input
                    id="message"
                    name="message"
                    autocomplete="off"
                    placeholder=move || {
                        if connected() { "Say something…" } else { "Offline: messages are sent when the connection is back" }
                    }
                    prop:value=move || text.get()
                    on:input=on(on_input)
                />
                <button type="submit">
                    "Send"
                </button>
            </div>
            <p class="typing" aria-live="polite">{move || typing.get().flatten()}</p>
            <p class="error" role="alert">{move || error.get()}</p>
        </form>
    }
}

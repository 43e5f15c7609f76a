//! The page's layout: header with the connection state, a sidebar with the join form and the
//! joined rooms, and the active room.

use crate::{
    client,
    components::{ChatRoom, ConnectionStatus, JoinForm, RoomList, SearchBox, SearchResults},
    state::Chat,
};
use leptos::prelude::*;

/// Which drawer is open on a narrow screen (CSS shows them as drawers below 720 px only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drawer {
    Closed,
    /// The join form and the joined rooms.
    Rooms,
    Members,
}

#[component]
pub(crate) fn App() -> impl IntoView {
    let (outbound, queue) = futures::channel::mpsc::unbounded();
    let chat = Chat::new(outbound);
    provide_context(chat);
    client::spawn(chat, queue);
    crate::browser::on_visibility_change(move |hidden| chat.set_hidden(hidden));
    // what the room on screen shows is read: the hub hears it at most every 1.5 s (it tells
    // the person's other tabs, whose unread counts drop)
    leptos::task::spawn_local(async move {
        loop {
            gloo_timers::future::sleep(std::time::Duration::from_millis(1500)).await;
            chat.read_now();
        }
    });

    // re-render the room view only when the active room itself changes (or the search view
    // opens or closes over it)
    let active_room = Memo::new(move |_| chat.with(|m| m.active_room().map(str::to_owned)));
    let searching = Memo::new(move |_| chat.with(|m| m.search.is_some()));
    // on a narrow screen the rooms and the members open as drawers over the chat; picking,
    // joining or switching to a room closes them (RoomList, JoinForm, the keys below)
    let drawer = RwSignal::new(Drawer::Closed);
    provide_context(drawer);
    // the page's keys: Alt+ArrowUp / Alt+ArrowDown move between rooms, "/" goes to the search
    // box (outside text fields), Escape closes a drawer and the search view
    let _keys = window_event_listener(leptos::ev::keydown, move |ev| {
        let key = ev.key();
        if ev.alt_key() && (key == "ArrowUp" || key == "ArrowDown") {
            ev.prevent_default();
            chat.switch_room(key == "ArrowDown");
        } else if key == "/" && !crate::browser::typing_in_a_field() {
            ev.prevent_default();
            crate::browser::focus("search");
        } else if key != "Escape" {
            return;
        }
        drawer.set(Drawer::Closed);
        chat.close_search();
    });

    view! {
        <div class="app">
            <header class="topbar">
                <h1>"Hubbub"</h1>
                {move || active_room.with(Option::is_some).then(|| view! { <SearchBox /> })}
                <a class="nav" href="/echo">"Echo test"</a>
                <ConnectionStatus />
            </header>
            <div
                class=move || match (active_room.with(Option::is_some), drawer.get()) {
                    (false, _) => "layout",
                    (true, Drawer::Closed) => "layout in-room",
                    (true, Drawer::Rooms) => "layout in-room rooms-open",
                    (true, Drawer::Members) => "layout in-room members-open",
                }
            >
                <aside class="sidebar" id="sidebar">
                    <JoinForm />
                    <RoomList />
                </aside>
                <main class="main">
                    {move || match (searching.get(), active_room.get()) {
                        (true, _) => view! { <SearchResults /> }.into_any(),
                        (false, Some(room)) => view! { <ChatRoom room /> }.into_any(),
                        (false, None) => {
                            view! {
                                <p class="empty">"Pick a nickname and a room, then press Join."</p>
                            }
                                .into_any()
                        }
                    }}
                </main>
            </div>
        </div>
    }
}

//! The page's layout: header with the connection state, a sidebar with the join form and the
//! joined rooms, and the active room.

use crate::{
    client,
    components::{ChatRoom, ConnectionStatus, JoinForm, RoomList},
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

    // re-render the room view only when the active room itself changes
    let active_room = Memo::new(move |_| chat.with(|m| m.active_room().map(str::to_owned)));
    // on a narrow screen the rooms and the members open as drawers over the chat; picking,
    // joining or switching to a room closes them (RoomList, JoinForm, the keys below)
    let drawer = RwSignal::new(Drawer::Closed);
    provide_context(drawer);
    // the page's keys: Alt+ArrowUp / Alt+ArrowDown move between rooms, Escape closes a drawer
    let _keys = window_event_listener(leptos::ev::keydown, move |ev| {
        let key = ev.key();
        if ev.alt_key() && (key == "ArrowUp" || key == "ArrowDown") {
            ev.prevent_default();
            chat.switch_room(key == "ArrowDown");
        } else if key != "Escape" {
            return;
        }
        drawer.set(Drawer::Closed);
    });

    view! {
        <div class="app">
            <header class="topbar">
                <h1>"Hubbub"</h1>
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
                    {move || match active_room.get() {
                        Some(room) => view! { <ChatRoom room /> }.into_any(),
                        None => {
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

//! The page's layout: header with the connection state, a sidebar with the join form and the
//! joined rooms, and the active room.

use crate::{
    client,
    components::{ChatRoom, ConnectionStatus, JoinForm, RoomList},
    state::Chat,
};
use leptos::prelude::*;

#[component]
pub(crate) fn App() -> impl IntoView {
    let (outbound, queue) = futures::channel::mpsc::unbounded();
    let chat = Chat::new(outbound);
    provide_context(chat);
    client::spawn(chat, queue);
    crate::browser::on_visibility_change(move |hidden| chat.set_hidden(hidden));

    // re-render the room view only when the active room itself changes
    let active_room = Memo::new(move |_| chat.with(|m| m.active_room().map(str::to_owned)));

    view! {
        <div class="app">
            <header class="topbar">
                <h1>"Hubbub"</h1>
                <a class="nav" href="/echo">"Echo test"</a>
                <ConnectionStatus />
            </header>
            <div class="layout">
                <aside class="sidebar">
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

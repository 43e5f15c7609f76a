use crate::components::on;
use crate::{app::Drawer, state::Chat};
use leptos::prelude::*;

/// The joined rooms: pick one to read it, or leave it.
#[component]
pub(crate) fn RoomList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let drawer = expect_context::<RwSignal<Drawer>>();
    let names = Memo::new(move |_| chat.with(|m| m.rooms.iter().map(|r| r.name.clone()).collect::<Vec<_>>()));
    let active = Memo::new(move |_| chat.with(|m| m.active.clone()));
    view! {
        <nav class="rooms" aria-label="Joined rooms">
            <ul>
                <For each=move || names.get() key=|name| name.clone() let:name>
                    {
                        let is_active = {
                            let name = name.clone();
                            move || active.with(|a| a.as_deref() == Some(name.as_str()))
                        };
                        let select = {
                            let name = name.clone();
                            move |_| {
                                chat.select(&name);
                                drawer.set(Drawer::Closed);
                            }
                        };
                        let leave = {
                            let name = name.clone();
                            move |_| chat.leave(&name)
                        };
                        view! {
                            <li>
                                <button
                                    class="room-tab"
                                    aria-current=move || is_active().then_some("page")
                                    on:click=on(select)
                                >
                                    "#"
                                    {name.clone()}
                                </button>
                                <button
                                    class="leave"
                                    aria-label=format!("Leave {name}")
                                    title=format!("Leave {name}")
                                    on:click=on(leave)
                                >
                                    "×"
                                </button>
                            </li>
                        }
                    }
                </For>
            </ul>
        </nav>
    }
}

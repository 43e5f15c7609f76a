use crate::components::on;
use crate::{app::Drawer, state::Chat};
use leptos::{either::Either, prelude::*};

/// The joined rooms (pick one to read it, or leave it), then, once asked with "Browse rooms",
/// the other rooms people are in with their sizes (pick one to join it). One list, so the page
/// carries one keyed list's code for both.
#[component]
pub(crate) fn RoomList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let drawer = expect_context::<RwSignal<Drawer>>();
    let list = Memo::new(move |_| chat.with(|m| m.room_list()));
    let active = Memo::new(move |_| chat.with(|m| m.active.clone()));
    view! {
        <nav class="rooms" aria-label="Rooms">
            <ul>
                <For each=move || list.get() key=|item| item.clone() let:item>
                    {
                        let page_model::Listed { name, label, size, unread } = item;
                        let is_active = {
                            let name = name.clone();
                            move || active.with(|a| a.as_deref() == Some(name.as_str()))
                        };
                        // a joined room is shown; another one is joined under the nickname on screen
                        let open = {
                            let name = name.clone();
                            move |_| {
                                chat.join_listed(&name);
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
                                    on:click=on(open)
                                >
                                    {label.clone()}
                                    {size.map(|n| format!(" ({n})"))}
                                    {(unread > 0)
                                        .then(|| {
                                            let shown = if unread > 999 { "999+".to_owned() } else { unread.to_string() };
                                            view! {
                                                <span class="unread" title=format!("{unread} unread")>
                                                    <span class="sr-only">", unread: "</span>
                                                    {shown}
                                                </span>
                                            }
                                        })}
                                </button>
                                {match size {
                                    None => {
                                        Either::Left(
                                            view! {
                                                <button
                                                    class="leave"
                                                    aria-label=format!("Leave {label}")
                                                    title=format!("Leave {label}")
                                                    on:click=on(leave)
                                                >
                                                    "×"
                                                </button>
                                            },
                                        )
                                    }
                                    Some(_) => Either::Right(()),
                                }}
                            </li>
                        }
                    }
                </For>
            </ul>
            <button class="link browse" on:click=on(move |_| chat.browse_rooms())>"Browse rooms"</button>
        </nav>
    }
}

use crate::state::Chat;
use leptos::{ev::SubmitEvent, prelude::*};

/// Nickname and room; the nickname is remembered in local storage for the next visit.
#[component]
pub(crate) fn JoinForm() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let nick = RwSignal::new(crate::browser::remembered_nick().unwrap_or_default());
    let room = RwSignal::new(String::from("lobby"));
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        chat.request_join(&room.get_untracked(), &nick.get_untracked());
    };
    view! {
        <form class="join" on:submit=on_submit>
            <h2>"Join a room"</h2>
            <label for="nick">"Nickname"</label>
            <input
                id="nick"
                name="nick"
                autocomplete="nickname"
                prop:value=move || nick.get()
                on:input=move |ev| nick.set(event_target_value(&ev))
            />
            <label for="room">"Room"</label>
            <input
                id="room"
                name="room"
                autocomplete="off"
                prop:value=move || room.get()
                on:input=move |ev| room.set(event_target_value(&ev))
            />
            <button type="submit">"Join"</button>
            <p class="error" role="alert">{move || chat.with(|m| m.join_error.clone())}</p>
        </form>
    }
}

use crate::components::on;
use crate::{app::Drawer, state::Chat};
use leptos::{ev::SubmitEvent, html, prelude::*};

/// Nickname and room; the nickname is remembered in local storage for the next visit. In
/// sign-in mode there is no nickname to type: the page shows who the host application says
/// the person is.
#[component]
pub(crate) fn JoinForm() -> impl IntoView {
    let chat = expect_context::<Chat>();
    // read when the form is sent (no signal per keystroke: each costs the page code)
    let (nick, room) = (NodeRef::<html::Input>::new(), NodeRef::<html::Input>::new());
    let value = |field: NodeRef<html::Input>| field.get_untracked().map(|el| el.value()).unwrap_or_default();
    let drawer = expect_context::<RwSignal<Drawer>>();
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        chat.request_join(&value(room), &value(nick));
        // on a phone the form was a drawer over the chat: the room it joins is what to see
        drawer.set(Drawer::Closed);
    };
    // sign-in mode: Some(the name, or None while signing in); anonymous: None. One view with
    // `hidden` rather than a view per case: each `view!` costs the page kilobytes.
    let signed_in =
        Memo::new(move |_| chat.with(|m| m.sign_in_required.then(|| m.signed_in.as_ref().map(|s| s.name.clone()))));
    let anonymous = move || signed_in.with(Option::is_none);
    let who = move || match signed_in.get() {
        Some(Some(name)) => format!("Signed in as {name}"),
        Some(None) => "Signing in…".to_owned(),
        None => String::new(),
    };
    view! {
        <form class="join" on:submit=on(on_submit)>
            <h2>"Join a room"</h2>
            <p class="signed-in" id="signed-in" hidden=anonymous>{who}</p>
            <label for="nick" hidden=move || !anonymous()>"Nickname"</label>
            <input
                id="nick"
                name="nick"
                autocomplete="nickname"
                hidden=move || !anonymous()
                node_ref=nick
                value=crate::browser::remembered_nick().unwrap_or_default()
            />
            <label for="room">"Room"</label>
            <input
                id="room"
                name="room"
                autocomplete="off"
                node_ref=room
                value="lobby"
            />
            <button type="submit">"Join"</button>
            <p class="error" role="alert">{move || chat.with(|m| m.join_error.clone())}</p>
        </form>
    }
}

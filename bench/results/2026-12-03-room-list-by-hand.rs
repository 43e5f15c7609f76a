use crate::components::on;
use crate::{app::Drawer, state::Chat};
use leptos::prelude::*;
use wasm_bindgen::{JsCast, closure::Closure};

/// Experiment (2026-12-03 #3): the room list's items written as DOM calls by hand, redrawn
/// whole on every change (a real one would also keep the focus and diff by key).
#[component]
pub(crate) fn RoomList() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let drawer = expect_context::<RwSignal<Drawer>>();
    let list = Memo::new(move |_| chat.with(|m| m.room_list()));
    let active = Memo::new(move |_| chat.with(|m| m.active.clone()));
    let ul = NodeRef::<leptos::html::Ul>::new();
    Effect::new(move |_| {
        let Some(ul) = ul.get() else { return };
        let doc = document();
        let el = |tag: &str, class: &str| {
            let e = doc.create_element(tag).unwrap_or_else(|_| unreachable!());
            e.set_class_name(class);
            e
        };
        let click = |e: &web_sys::Element, f: Box<dyn Fn()>| {
            let c = Closure::<dyn Fn()>::new(f);
            let _ = e.add_event_listener_with_callback("click", c.as_ref().unchecked_ref());
            c.forget();
        };
        ul.set_text_content(None);
        let active = active.get();
        for page_model::Listed { name, label, size, unread } in list.get() {
            let li = el("li", "");
            let tab = el("button", "room-tab");
            if active.as_deref() == Some(name.as_str()) {
                let _ = tab.set_attribute("aria-current", "page");
            }
            let text = match size {
                Some(n) => format!("{label} ({n})"),
                None => label.clone(),
            };
            let _ = tab.append_with_str_1(&text);
            if unread > 0 {
                let badge = el("span", "unread");
                let _ = badge.set_attribute("title", &format!("{unread} unread"));
                let sr = el("span", "sr-only");
                sr.set_text_content(Some(", unread: "));
                let _ = badge.append_with_node_1(&sr);
                let shown = if unread > 999 { "999+".to_owned() } else { unread.to_string() };
                let _ = badge.append_with_str_1(&shown);
                let _ = tab.append_with_node_1(&badge);
            }
            let open = name.clone();
            click(
                &tab,
                Box::new(move || {
                    chat.join_listed(&open);
                    drawer.set(Drawer::Closed);
                }),
            );
            let _ = li.append_with_node_1(&tab);
            if size.is_none() {
                let leave = el("button", "leave");
                let _ = leave.set_attribute("aria-label", &format!("Leave {label}"));
                let _ = leave.set_attribute("title", &format!("Leave {label}"));
                leave.set_text_content(Some("×"));
                click(&leave, Box::new(move || chat.leave(&name)));
                let _ = li.append_with_node_1(&leave);
            }
            let _ = ul.append_with_node_1(&li);
        }
    });
    view! {
        <nav class="rooms" aria-label="Rooms">
            <ul node_ref=ul></ul>
            <button class="link browse" on:click=on(move |_| chat.browse_rooms())>"Browse rooms"</button>
        </nav>
    }
}

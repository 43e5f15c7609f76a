use crate::state::Chat;
use leptos::prelude::*;

/// Always-visible connection state, announced politely to screen readers.
#[component]
pub(crate) fn ConnectionStatus() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let conn = Memo::new(move |_| chat.with(|m| m.conn.clone()));
    view! {
        <div class="status" role="status" data-state=move || conn.with(|c| c.name())>
            <span class="dot" aria-hidden="true"></span>
            <span class="status-text">{move || conn.with(|c| c.describe())}</span>
        </div>
    }
}

//! Search: a box in the top bar, and the view of what the hub found in the rooms the page is
//! in, newest first, with the matched words marked (as text, never HTML). Choosing a result
//! opens its room at it; Escape or Close goes back to the room.

use crate::components::on;
use crate::{browser::local_time, state::Chat};
use leptos::{either::Either, ev::SubmitEvent, html, prelude::*};

#[component]
pub(crate) fn SearchBox() -> impl IntoView {
    let chat = expect_context::<Chat>();
    // read when sent (no signal per keystroke)
    let input = NodeRef::<html::Input>::new();
    let submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Some(el) = input.get_untracked() {
            chat.search(&el.value());
        }
    };
    view! {
        <form class="search" role="search" on:submit=on(submit)>
            <label class="sr-only" for="search">"Search messages"</label>
            <input id="search" type="search" placeholder="Search messages" node_ref=input />
            <button type="submit">"Search"</button>
        </form>
    }
}

#[component]
pub(crate) fn SearchResults() -> impl IntoView {
    let chat = expect_context::<Chat>();
    let search = Memo::new(move |_| chat.with(|m| m.search.clone()));
    let answer = move || {
        search.with(|s| {
            let s = s.as_ref()?;
            let (status, found) = match (&s.problem, &s.found) {
                (Some(problem), _) => (problem.clone(), &[][..]),
                (None, None) => ("Searching…".to_owned(), &[][..]),
                (None, Some(found)) if found.is_empty() => ("Nothing found.".to_owned(), &[][..]),
                (None, Some(found)) => (format!("{} found, newest first.", found.len()), &found[..]),
            };
            let items: Vec<_> = found
                .iter()
                .map(|m| {
                    let (room, seq) = (m.room.clone(), m.seq);
                    let (day, hours, minutes) = local_time(m.ts);
                    let when = format!("{}, {hours:02}:{minutes:02}", day.long());
                    let parts: Vec<_> = hubbub_shared::search::highlight(&m.text, &s.terms)
                        .into_iter()
                        .map(|(piece, marked)| match marked {
                            true => Either::Right(view! { <mark>{piece.to_owned()}</mark> }),
                            false => Either::Left(piece.to_owned()),
                        })
                        .collect();
                    view! {
                        <li>
                            <button class="result" on:click=on(move |_| chat.open_at(&room, seq))>
                                <span class="where">"#" {m.room.clone()} " · " {m.author.clone()} " · " {when}</span>
                                <span class="text">{parts}</span>
                            </button>
                        </li>
                    }
                })
                .collect();
            Some(view! {
                <p class="notice" role="status">{status}</p>
                <ul class="results">{items}</ul>
            })
        })
    };
    view! {
        <section class="room search-view" aria-labelledby="search-title">
            <div class="room-head">
                <h2 id="search-title">
                    "Search: " {move || search.with(|s| s.as_ref().map(|s| s.query.clone()))}
                </h2>
                <button class="link" on:click=on(move |_| chat.close_search())>"Close"</button>
            </div>
            <div class="log">{answer}</div>
        </section>
    }
}

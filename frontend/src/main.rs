//! Hubbub's page: a Leptos client-side app. Built by trunk (`index.html` at the repository root);
//! the hub serves the result. This file only mounts the page for the current path: the chat,
//! or the echo test page at `/echo`.

// a binary: `#[component]` expands to `pub` props structs that nothing outside could reach
#![allow(unreachable_pub)]

mod app;
mod browser;
mod client;
mod components;
mod echo;
mod state;

fn main() {
    // a panic's message and place in the browser console (console_error_panic_hook does the same
    // with a JS stack trace, for 1.4 KB more of gzipped page); the release build's panics abort
    // at once (scripts/build-page.sh), so this serves debug builds
    std::panic::set_hook(Box::new(|info| leptos::logging::error!("{info}")));
    // two pages, one build: the hub serves index.html for every path
    if browser::path().trim_end_matches('/') == "/echo" {
        leptos::mount::mount_to_body(echo::EchoPage);
    } else {
        leptos::mount::mount_to_body(app::App);
    }
}

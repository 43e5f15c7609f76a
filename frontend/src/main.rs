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
    console_error_panic_hook::set_once();
    // two pages, one build: the hub serves index.html for every path
    if browser::path().trim_end_matches('/') == "/echo" {
        leptos::mount::mount_to_body(echo::EchoPage);
    } else {
        leptos::mount::mount_to_body(app::App);
    }
}

//! Hubbub's page: a Leptos client-side app. Built by trunk (`index.html` at the repository root);
//! the hub serves the result. This file only mounts the app.

// a binary: `#[component]` expands to `pub` props structs that nothing outside could reach
#![allow(unreachable_pub)]

mod app;
mod browser;
mod client;
mod components;
mod state;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}

//! Small wrappers over browser APIs: the socket URL, local storage, clock formatting.

use leptos::prelude::{document, window};
use wasm_bindgen::{JsCast, closure::Closure};

/// `ws://host/PATH` or `wss://host/PATH` for the page's own host, so the same build works
/// behind `trunk serve` (which proxies the sockets) and when served by the hub itself.
pub(crate) fn socket_url(path: &str) -> String {
    let location = window().location();
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss:",
        _ => "ws:",
    };
    let host = location.host().unwrap_or_else(|_| "127.0.0.1:3000".into());
    format!("{scheme}//{host}{path}")
}

const NICK_KEY: &str = "hubbub.nick";

/// Reads a text saved with [`save`]; `None` when absent or storage is unavailable.
pub(crate) fn load(key: &str) -> Option<String> {
    window().local_storage().ok().flatten()?.get_item(key).ok().flatten()
}

/// Saves a text (JSON, written by the model) in local storage, which survives refreshes and
/// closed tabs.
pub(crate) fn save(key: &str, text: &str) {
    if let Some(storage) = window().local_storage().ok().flatten() {
        // storage can be full or disabled; the page still works, it just forgets more
        let _ = storage.set_item(key, text);
    }
}

/// This browser's identity: a 128-bit secret from the Web Crypto API, made once and kept in
/// local storage (so every tab of this browser shares it), sent only in `join`. It proves that
/// a later join is the same person. Never shown, never logged.
pub(crate) fn client_token() -> String {
    const KEY: &str = "hubbub.token";
    // a token made by an older page (from Math.random) is replaced by a proper one
    // kept as a JSON string, as older pages wrote it
    let saved = load(KEY).and_then(|text| match hubbub_shared::json::parse(&text) {
        Ok(hubbub_shared::json::Value::String(token)) => Some(token),
        _ => None,
    });
    if let Some(token) = saved.filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit())) {
        return token;
    }
    let token = random_hex::<16>();
    let mut text = String::new();
    hubbub_shared::json::write_str(&mut text, &token);
    save(KEY, &text);
    token
}

/// A fresh client id for a message: 128 random bits, so that two tabs never collide.
pub(crate) fn new_id() -> String {
    random_hex::<16>()
}

/// `N` bytes from the browser's cryptographic random source, as hex. Web Crypto is there in
/// every browser that runs WebAssembly; should it fail, `Math.random` fills the bytes instead
/// (weaker, but the page keeps working).
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    let filled = window().crypto().and_then(|c| c.get_random_values_with_u8_array(&mut bytes)).is_ok();
    if !filled {
        bytes.iter_mut().for_each(|b| *b = (js_sys::Math::random() * 256.0) as u8);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn remembered_nick() -> Option<String> {
    window().local_storage().ok().flatten()?.get_item(NICK_KEY).ok().flatten()
}

pub(crate) fn remember_nick(nick: &str) {
    if let Some(storage) = window().local_storage().ok().flatten() {
        // storage can be full or disabled; forgetting the nickname is harmless
        let _ = storage.set_item(NICK_KEY, nick);
    }
}

/// Fetches a sign-in token from the host application's address (`welcome.auth.token_url`),
/// sending the browser's cookies for that site along: that is how the host application knows
/// who asks. The answer is the token as plain text, or JSON `{"token": "…"}`. `Err` says what
/// went wrong, for the status line.
pub(crate) async fn fetch_token(url: &str) -> Result<String, String> {
    use wasm_bindgen_futures::JsFuture;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_credentials(web_sys::RequestCredentials::Include);
    init.set_cache(web_sys::RequestCache::NoStore);
    let unreachable = |_| format!("the sign-in address {url} could not be reached");
    let response: web_sys::Response =
        JsFuture::from(window().fetch_with_str_and_init(url, &init)).await.map_err(unreachable)?.unchecked_into();
    if !response.ok() {
        return Err(format!("the sign-in address answered {} {}", response.status(), response.status_text()));
    }
    let body = JsFuture::from(response.text().map_err(unreachable)?).await.map_err(unreachable)?;
    let body = body.as_string().unwrap_or_default();
    let body = body.trim();
    let token = if body.starts_with('{') { json_token(body) } else { body.to_owned() };
    if token.is_empty() {
        return Err("the sign-in address gave no token".into());
    }
    Ok(token)
}

/// The `token` string of a JSON object, read by hand: serde for one field costs the page more
/// bytes than it is worth, and a JWT is base64url and dots (no escapes to decode). Empty when
/// there is none.
fn json_token(body: &str) -> String {
    let Some(at) = body.find("\"token\"") else { return String::new() };
    let rest = body[at + "\"token\"".len()..].trim_start();
    let Some(rest) = rest.strip_prefix(':').map(str::trim_start).and_then(|r| r.strip_prefix('"')) else {
        return String::new();
    };
    match rest.find(['"', '\\']) {
        Some(end) if rest.as_bytes()[end] == b'"' => rest[..end].to_owned(),
        _ => String::new(),
    }
}

/// Milliseconds since the Unix epoch, from the browser's clock.
pub(crate) fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// The page's path, which picks the app (`/echo` or the chat).
pub(crate) fn path() -> String {
    window().location().pathname().unwrap_or_default()
}

/// A time on the person's clock (the browser's time zone): the calendar day, hours, minutes.
pub(crate) fn local_time(ts_millis: u64) -> (page_model::Day, u32, u32) {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ts_millis as f64));
    let day = page_model::Day { year: date.get_full_year() as i32, month: date.get_month() + 1, day: date.get_date() };
    (day, date.get_hours(), date.get_minutes())
}

/// A random number in [0, 1), for backoff jitter.
pub(crate) fn random() -> f64 {
    js_sys::Math::random()
}

/// Calls `changed(hidden)` now and whenever the page is hidden or shown again (the Page
/// Visibility API: another tab in front, the window minimised, the phone locked). The listener
/// lives as long as the page.
pub(crate) fn on_visibility_change(changed: impl Fn(bool) + 'static) {
    changed(document().hidden());
    let listener = Closure::<dyn Fn()>::new(move || changed(document().hidden()));
    let _ = document().add_event_listener_with_callback("visibilitychange", listener.as_ref().unchecked_ref());
    listener.forget();
}

/// Scrolls the element with this id to the top of its view (what came after it below) and
/// gives it the focus, once
/// the view that holds it is rendered: two frames from now (a room switched to scrolls to its
/// end in the first).
pub(crate) fn reveal(id: &str) {
    let id = id.to_owned();
    leptos::prelude::request_animation_frame(move || {
        leptos::prelude::request_animation_frame(move || {
            if let Some(el) = leptos::prelude::document().get_element_by_id(&id) {
                el.scroll_into_view();
                focus_element(el);
            }
        });
    });
}

/// Gives the element with this id the focus, if it is there.
pub(crate) fn focus(id: &str) {
    if let Some(el) = leptos::prelude::document().get_element_by_id(id) {
        focus_element(el);
    }
}

fn focus_element(el: web_sys::Element) {
    if let Ok(el) = wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(el) {
        let _ = el.focus();
    }
}

/// Whether the focus is in a text field (where a key is text, not a shortcut).
pub(crate) fn typing_in_a_field() -> bool {
    leptos::prelude::document()
        .active_element()
        .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA"))
}

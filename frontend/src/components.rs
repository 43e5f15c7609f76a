//! The page's pieces. They read [`Chat`] from context and never touch the socket.

mod chat_room;
mod join_form;
mod room_list;
mod search;
mod status;

pub(crate) use chat_room::ChatRoom;
pub(crate) use join_form::JoinForm;
pub(crate) use room_list::RoomList;
pub(crate) use search::{SearchBox, SearchResults};
pub(crate) use status::ConnectionStatus;

/// Every event handler of the page as one type. tachys instantiates its attach code once per
/// handler type, and each closure is a type of its own: boxed, the page carries that code once
/// per kind of event instead of once per handler (about 500 B of `.wasm` each).
pub(crate) fn on<E: 'static>(handler: impl FnMut(E) + 'static) -> Box<dyn FnMut(E)> {
    Box::new(handler)
}

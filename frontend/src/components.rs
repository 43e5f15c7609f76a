//! The page's pieces. They read [`Chat`] from context and never touch the socket.

mod chat_room;
mod join_form;
mod room_list;
mod status;

pub(crate) use chat_room::ChatRoom;
pub(crate) use join_form::JoinForm;
pub(crate) use room_list::RoomList;
pub(crate) use status::ConnectionStatus;

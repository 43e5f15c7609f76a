//! What stands between the internet and the chat: which pages may open a socket (`origin`),
//! how many sockets one address may hold (`ip_limit`), how fast one connection may talk
//! (`rate`), and which scripts a page may run (`csp`).

pub(crate) mod csp;
pub(crate) mod ip_limit;
pub(crate) mod origin;
pub(crate) mod proxy;
pub(crate) mod rate;

#![allow(unreachable_pub)] // test helpers: `pub` for the sibling test modules
//! Black-box tests of the hub: each starts a real server on 127.0.0.1:0 and speaks the
//! protocol over real sockets.

mod auth;
mod chat;
mod cluster;
mod compression;
mod conversations;
mod docs;
mod edits;
mod frames;
mod helpers;
mod history;
mod http;
mod lifecycle;
mod limits;
#[path = "../support/nginx.rs"]
mod nginx;
// nginx.rs finds it beside itself (`super::Certificate`)
#[path = "../support/certificate.rs"]
mod certificate;
use certificate::Certificate;
#[path = "../support/postgres.rs"]
mod pg;
mod postgres;
mod presence;
mod proxy;
#[path = "../support/redis.rs"]
mod redis;
mod rooms;
mod search;
mod services;

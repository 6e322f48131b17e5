//! The `chat.v1` types and clients (from `chat-proto`), and this server's
//! generated servers (from `build.rs`'s manual generator, see there for
//! why).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub use chat_proto::*;

include!(concat!(env!("OUT_DIR"), "/chat.v1.AuthService.rs"));
include!(concat!(env!("OUT_DIR"), "/chat.v1.ChatService.rs"));

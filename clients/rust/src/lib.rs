//! A Rust client for the `chat.v1` gRPC API.
//!
//! - `pb`: the generated types and clients (`AuthServiceClient`,
//!   `ChatServiceClient`).
//! - `Client`: log in once, then call the API with the token attached and
//!   refreshed for you.
//! - `resume`: per-room cursors and `ResumingSubscription`, a live stream
//!   that reconnects and resumes without losing or repeating a message.
//! - `view`: `RoomView`, a room's conversation kept on the client by
//!   applying its events (reactions, thread replies, edits, deletions).
//! - `cli`: the `chat` command-line client, as a library so it can be
//!   embedded and tested.
//! - `terminal`: server text made safe to print on a terminal.

#![forbid(unsafe_code)]

pub mod cli;
mod client;
pub mod resume;
pub mod terminal;
pub mod view;

/// The generated `chat.v1` code.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("chat.v1");
}

pub use client::{Client, ListRooms, Session};
pub use resume::{log_position, AuthorizedChat, BearerToken, Cursors, ResumingSubscription};
pub use view::{Applied, RoomView};

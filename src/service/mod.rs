//! The gRPC services: the boundary where protobuf meets the domain.

mod auth;
mod chat;
pub mod client_addr;
mod members;
pub mod requests;
pub mod stream;

pub use auth::AuthApi;
pub use chat::ChatApi;

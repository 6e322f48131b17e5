//! A real-time chat backend over gRPC.
//!
//! Requests enter through the services (`service`), which turn protobuf
//! values into domain types (`domain`), check the caller (`auth`), and use
//! the store (`store`) for everything durable. Messages are stored by the
//! writer (`writer`) and routed (`router`) to the hub (`hub`), which fans
//! them out to open streams (`stream`); with several nodes, the router also
//! carries events to the others over NATS (`bus`). `startup` wires it all
//! onto one port.

// No unsafe code, but for one measured exception: the message writer runs
// its transaction on the SQLite handle that sqlx lends it
// (`store/sqlite/append.rs`, BENCHMARKS.md).
#![deny(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod bus;
pub mod codec;
pub mod config;
pub mod domain;
pub mod error;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod pb;
mod poll_on_wake;
pub mod router;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod stream;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod web;
pub mod writer;

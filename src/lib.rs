//! A real-time chat backend over gRPC: the server crate, which wires the
//! layers below it together (ARCHITECTURE.md).
//!
//! Requests enter through the services (`service`), which turn protobuf
//! values into domain types (`chat_domain`), check the caller (`auth`), and
//! use the store (`chat_store`) for everything durable. Messages are stored
//! by the writer (`writer`) and routed (`router`) to the hub
//! (`chat_fanout`), which fans them out to open streams (`service::stream`); with
//! several nodes, the router also carries events to the others over NATS
//! (`bus`). `startup` wires it all onto one port.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod codec;
pub mod config;
pub mod control;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod pb;
mod poll_on_wake;
pub mod reads;
pub mod router;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod web;
pub mod writer;

// The layers below, under the names the server's modules (and its tests)
// use for them.
pub use chat_domain as domain;
pub use chat_fanout::hub;
pub use chat_store as store;

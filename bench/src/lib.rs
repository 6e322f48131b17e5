//! A load generator for `chat-server`, over real gRPC connections: one
//! HTTP/2 connection per simulated user, as real clients would.
//!
//! Each scenario drives a server (started here, or given by address) and
//! returns figures that `report` prints as a table and writes as JSON, and
//! `plot` draws as SVG. Layout:
//!
//! - `cli`: the command line, one subcommand per scenario, `all` and `smoke`.
//! - `server`: starting the server binary on a fresh database, its memory.
//! - `net`: connections (one per user, from several loopback addresses when
//!   ports run out) and the file-descriptor limit.
//! - `accounts`: registering and logging in the simulated users; `tasks`:
//!   bounded concurrency for setup work.
//! - `payload`, `recorder`, `pacer`: what a message carries (its send
//!   instant), how deliveries are counted and timed, how sends are paced.
//! - `scenario`: fan-out (against the chat server and NATS), direct chats,
//!   idle streams, the login storm, durable sends, and the soak (users who
//!   come and go for a long time, every message checked).
//! - `report`, `plot`, `progress`: results as a table, JSON and SVG;
//!   `cpu`: how busy the rest of the machine was meanwhile.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod cli;
pub mod cpu;
pub mod net;
pub mod pacer;
pub mod payload;
pub mod plot;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod tasks;

pub use run::{run, Outcome};

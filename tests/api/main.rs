//! Integration tests: the real server, in-process, on port 0, with a fresh
//! database each, spoken to by the generated tonic clients.

mod abuse;
mod accounts;
mod auth_layer;
mod child;
mod convergence;
mod conversations;
mod crash;
mod delivery;
mod edits;
mod helpers;
mod malformed;
mod members;
mod operations;
mod people;
mod pressure;
mod reads;
mod rooms;
mod rust_client;
mod security;
mod streams;
mod tokens;
mod transport;
mod web;

//! The fan-out: who is connected to this node, which rooms they are in,
//! and the delivery of every event to their open streams.
//!
//! Events are encoded once into [`Frame`]s whose bytes every receiving
//! stream shares; each stream has a bounded [`queue`]; the [`hub`] keeps
//! the stream registry, rooms, presence and typing, and the resume hold.
//! It knows no database: what it needs from one (a catch-up, a gap fill) the
//! server reads and hands in.

#![forbid(unsafe_code)]

pub mod frame;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod queue;
#[doc(hidden)]
pub mod test_support;

pub use frame::{Droppable, Frame};

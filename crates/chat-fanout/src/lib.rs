//! The fan-out: who is connected to this node, which rooms they are in,
//! and the delivery of every event to their open streams.
//!
//! Events are built by the named constructors of [`events`] and encoded
//! once into [`Frame`]s whose bytes every receiving stream shares; each
//! stream has a bounded [`queue`]; the [`hub`] keeps the stream registry,
//! rooms, presence and typing; [`resume`] owns the resume protocol, the
//! hold and the catch-up. It knows no database: what it needs from one (a
//! catch-up's missed messages, a gap fill) the server reads and hands in.

#![forbid(unsafe_code)]

pub mod events;
pub mod frame;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod queue;
#[doc(hidden)]
pub mod test_support;

pub use frame::{Droppable, Frame};
pub use hub::resume;

//! Persistence: one interface, one implementation per database.
//!
//! The server talks to `dyn Store` only. SQLite (`sqlite.rs`) is the embedded
//! default; a PostgreSQL implementation for several nodes sits beside it with
//! the same behaviour. Both run the same statements, written once in
//! `queries.rs`; each backend adds only its connections, its batch append
//! and the few statements whose dialects differ. Every query binds its
//! parameters; none is built from user input.

// No unsafe code, but for one measured exception: the message writer runs
// its transaction on the SQLite handle that sqlx lends it
// (`sqlite/append.rs`, BENCHMARKS.md).
#![deny(unsafe_code)]

mod admin;
mod connect;
mod conversation;
mod error;
mod membership;
mod model;
mod postgres;
mod queries;
mod read_state;
mod rows;
mod sql;
mod sqlite;
mod store;

pub use admin::{
    AdminStore, ControlEvent, ControlKind, RoomSummary, UserChange, UserDetails, UserRoom,
    UserSummary,
};
pub use connect::{connect, connect_with_admin, sqlite_file};
pub use error::{Error, Result};
pub use model::{
    batch_keys, batch_room_senders, plan_appends, AppendContext, AppendPlan, Appended, ChangeKind,
    Changed, MemberCursor, MemberEntry, Membership, MembershipChange, MembershipChanged,
    MembershipKind, MessageChange, NewMessage, NewRoom, NewSession, RoomPage, Rotation,
    Synchronous, Thread, DELETED_USERNAME,
};
pub use postgres::PostgresStore;
pub use read_state::{ReadMarker, ReadPosition};
pub use sqlite::SqliteStore;
pub use store::Store;

//! What a store operation can fail with, in the store's own words.
//!
//! The store knows nothing of gRPC: the server maps each case to a status
//! once, at its service edge (`chat_server::error`).

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique value is in use: a name, a `client_msg_id` of another room.
    #[error("{0}")]
    Taken(String),
    /// What the operation names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The user may not do this: not a member, someone else's direct room.
    #[error("{0}")]
    Forbidden(String),
    /// The thing exists, but its state does not allow this (a direct room
    /// cannot be left).
    #[error("{0}")]
    Refused(String),
    /// The request names something that cannot be used this way (a thread
    /// reply as a thread's root).
    #[error("{0}")]
    Invalid(String),
    /// A bound is reached (rooms per user, reactions per user and message).
    #[error("{0}")]
    LimitReached(String),
    /// The database URL names no supported database.
    #[error("{0}")]
    BadUrl(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

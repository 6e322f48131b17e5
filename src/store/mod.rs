//! Persistence: one interface, one implementation per database.
//!
//! The server talks to `dyn Store` only. SQLite (`sqlite.rs`) is the embedded
//! default; a PostgreSQL implementation for several nodes sits beside it with
//! the same behaviour. Every query binds its parameters; none is built from
//! user input.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

use crate::config::Synchronous;
use crate::domain::{
    ClientMsgId, Message, MessageId, MessageText, Room, RoomId, RoomName, Session, SessionId,
    Timestamp, User, UserId, Username,
};
use crate::error::{Error, Result};

/// A message about to be appended to a room.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub sender: User,
    pub text: MessageText,
    pub sent_at: Timestamp,
    pub client_msg_id: ClientMsgId,
}

/// The outcome of one append.
#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Message,
    /// False when an earlier send with the same `client_msg_id` was returned
    /// instead: nothing was stored and nothing must be delivered.
    pub fresh: bool,
}

/// A new login's session and its first refresh token.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub user_agent: String,
    pub refresh_hash: Vec<u8>,
    pub expires_at: Timestamp,
    pub now: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; it is now spent and the new one stored.
    Rotated {
        user_id: UserId,
        session_id: SessionId,
    },
    /// The token had been rotated already: the session is now revoked.
    Reused { session_id: SessionId },
    /// Unknown, expired, or its session is revoked.
    Invalid,
}

/// How a user relates to a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    NoSuchRoom,
    NotMember,
    Member,
}

impl Membership {
    /// # Errors
    /// NOT_FOUND or PERMISSION_DENIED unless the user is a member.
    pub fn require_member(self, room_id: RoomId) -> Result<()> {
        match self {
            Self::Member => Ok(()),
            Self::NotMember => Err(Error::denied(format!(
                "you are not a member of room {room_id}"
            ))),
            Self::NoSuchRoom => Err(Error::not_found(format!("room {room_id} does not exist"))),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of a server setting, storing `default` first if it has none.
    async fn setting_or_init(&self, key: &str, default: &str) -> Result<String>;

    /// # Errors
    /// ALREADY_EXISTS when the username is taken (in any case).
    async fn create_user(
        &self,
        id: UserId,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User>;

    /// The user and its password hash, by username (any case).
    async fn credentials(&self, username: &Username) -> Result<Option<(User, String)>>;

    async fn user_by_name(&self, username: &Username) -> Result<Option<User>>;

    async fn create_session(&self, session: NewSession) -> Result<()>;

    /// The session's user, if the session is live (not revoked, not expired).
    async fn live_session(
        &self,
        session_id: SessionId,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<Option<User>>;

    /// Spends a refresh token and stores its successor, detecting reuse.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        next_hash: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Rotation>;

    async fn list_sessions(&self, user_id: UserId, now: Timestamp) -> Result<Vec<Session>>;

    /// Revokes one of the user's sessions; false if it has none by that id.
    async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<bool>;

    async fn touch_session(&self, session_id: SessionId, now: Timestamp) -> Result<()>;

    async fn create_room(
        &self,
        id: RoomId,
        name: &RoomName,
        creator: UserId,
        now: Timestamp,
    ) -> Result<Room>;

    /// # Errors
    /// NOT_FOUND for no such room, PERMISSION_DENIED for a direct room.
    async fn join_room(&self, room_id: RoomId, user_id: UserId, now: Timestamp) -> Result<Room>;

    /// # Errors
    /// NOT_FOUND for no such room, FAILED_PRECONDITION for a direct room.
    async fn leave_room(&self, room_id: RoomId, user_id: UserId) -> Result<()>;

    async fn list_rooms(&self, user_id: UserId) -> Result<Vec<Room>>;

    /// The direct room of two users, created (with both as members) on first use.
    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room>;

    /// Every room the user is a member of.
    async fn room_ids_of(&self, user_id: UserId) -> Result<Vec<RoomId>>;

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership>;

    /// The user's membership of a room, and the room's newest seq (0 when
    /// it has no messages or does not exist).
    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)>;

    /// Appends messages in one transaction, in order, each getting the next
    /// seq of its room. One result per message: a client error (not a member,
    /// no such room, key reused elsewhere) fails only its own message; a
    /// database error fails the call.
    async fn append_messages(&self, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>>;

    /// Up to `limit` messages with seq below `before_seq`, ascending, and
    /// whether older ones remain.
    async fn history(
        &self,
        room_id: RoomId,
        before_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)>;

    /// The newest `limit` messages with seq above `after_seq`, ascending,
    /// and whether more than `limit` were there.
    async fn messages_after(
        &self,
        room_id: RoomId,
        after_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)>;

    /// Closes the connections, after pending writes.
    async fn close(&self);
}

/// Opens the store a database URL names, creating and migrating it.
///
/// # Errors
/// INVALID_ARGUMENT for an unsupported URL; database errors as they come.
pub async fn connect(url: &str, synchronous: Synchronous) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, synchronous).await?))
    } else {
        Err(Error::invalid(format!(
            "unsupported database URL {:?}: expected sqlite://PATH",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

//! Persistence: one interface, one implementation per database.
//!
//! The server talks to `dyn Store` only. SQLite (`sqlite.rs`) is the embedded
//! default; a PostgreSQL implementation for several nodes sits beside it with
//! the same behaviour. Every query binds its parameters; none is built from
//! user input.

mod postgres;
mod rows;
mod sqlite;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The name a deleted account's messages show. No username may contain
/// brackets, so nobody can register it.
pub const DELETED_USERNAME: &str = "[deleted]";

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

/// What appending a batch needs to know from the database.
#[derive(Debug, Default)]
pub struct AppendContext {
    /// Stored messages by (sender, client_msg_id), for the batch's keys.
    pub earlier: HashMap<(UserId, String), Message>,
    /// The newest seq of each of the batch's rooms that exists.
    pub last_seq: HashMap<RoomId, u64>,
    /// Which of the batch's (room, sender) pairs are memberships.
    pub members: HashSet<(RoomId, UserId)>,
}

impl AppendContext {
    /// Keeps an earlier send found for one of the batch's keys.
    pub fn remember_earlier(&mut self, message: Message) {
        let key = message.client_msg_id.clone().unwrap_or_default();
        self.earlier.insert((message.sender.id, key), message);
    }
}

/// The batch's distinct (sender, client_msg_id) pairs, of sends with a key:
/// what to look up earlier sends by.
pub fn batch_keys(batch: &[NewMessage]) -> BTreeSet<(uuid::Uuid, &str)> {
    batch
        .iter()
        .filter_map(|m| m.client_msg_id.as_deref().map(|k| (m.sender.id.uuid(), k)))
        .collect()
}

/// The batch's distinct (room, sender) pairs: what to check memberships of.
pub fn batch_room_senders(batch: &[NewMessage]) -> BTreeSet<(uuid::Uuid, uuid::Uuid)> {
    batch
        .iter()
        .map(|m| (m.room_id.uuid(), m.sender.id.uuid()))
        .collect()
}

/// What to write for a batch, and each message's outcome.
#[derive(Debug)]
pub struct AppendPlan {
    pub results: Vec<Result<Appended>>,
    /// New messages to insert, in seq order per room.
    pub fresh: Vec<Message>,
    /// The new newest seq of each room that got messages.
    pub last_seq: HashMap<RoomId, u64>,
}

/// Decides a batch in order: a send whose key was used before returns the
/// earlier message (in another room: ALREADY_EXISTS); a send to a room that
/// does not exist or by a non-member fails; every other one gets its
/// room's next seq. The same rules for every store, and no I/O.
pub fn plan_appends(batch: &[NewMessage], context: AppendContext) -> AppendPlan {
    let AppendContext {
        mut earlier,
        last_seq: mut next_seq,
        members,
    } = context;
    let mut results = Vec::with_capacity(batch.len());
    let mut fresh = Vec::with_capacity(batch.len());
    let mut touched = HashMap::new();
    for new in batch {
        let key = new
            .client_msg_id
            .as_deref()
            .map(|key| (new.sender.id, key.to_owned()));
        if let Some(message) = key.as_ref().and_then(|key| earlier.get(key)) {
            results.push(if message.room_id == new.room_id {
                Ok(Appended {
                    message: message.clone(),
                    fresh: false,
                })
            } else {
                Err(Error::AlreadyExists(format!(
                    "client_msg_id {:?} was already used for a message in another room",
                    new.client_msg_id.as_deref().unwrap_or_default()
                )))
            });
            continue;
        }
        let Some(seq) = next_seq.get_mut(&new.room_id) else {
            results.push(Err(Membership::NoSuchRoom
                .require_member(new.room_id)
                .unwrap_err()));
            continue;
        };
        if !members.contains(&(new.room_id, new.sender.id)) {
            results.push(Err(Membership::NotMember
                .require_member(new.room_id)
                .unwrap_err()));
            continue;
        }
        *seq += 1;
        touched.insert(new.room_id, *seq);
        let message = Message {
            id: new.id,
            room_id: new.room_id,
            seq: *seq,
            sender: new.sender.clone(),
            text: new.text.as_str().to_owned(),
            sent_at: new.sent_at,
            client_msg_id: new.client_msg_id.as_deref().map(str::to_owned),
        };
        if let Some(key) = key {
            earlier.insert(key, message.clone());
        }
        fresh.push(message.clone());
        results.push(Ok(Appended {
            message,
            fresh: true,
        }));
    }
    AppendPlan {
        results,
        fresh,
        last_seq: touched,
    }
}

/// A new login's session and its first refresh token.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub user_agent: String,
    pub refresh_hash: Vec<u8>,
    pub expires_at: Timestamp,
    /// Live sessions the user may have: the oldest beyond it are revoked.
    pub max_sessions: u32,
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

/// Which rooms `Store::list_rooms` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomPage {
    /// Only rooms with a greater id (the last room of the previous page).
    pub after: Option<RoomId>,
    pub limit: u32,
    /// Only the rooms the user is a member of.
    pub joined_only: bool,
}

impl RoomPage {
    /// `after` as the smallest id to exceed: the nil UUID on the first page.
    pub fn after_uuid(&self) -> uuid::Uuid {
        self.after.map_or(uuid::Uuid::nil(), RoomId::uuid)
    }
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

    /// Removes a server setting, returning the value it had.
    async fn remove_setting(&self, key: &str) -> Result<Option<String>>;

    /// # Errors
    /// ALREADY_EXISTS when the username is taken (in any case, or by a
    /// deleted account), or looks like one that is (its skeleton).
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

    /// Stores a new session and, in the same transaction, revokes the
    /// user's oldest live sessions beyond `session.max_sessions`; returns
    /// those, whose streams must end.
    async fn create_session(&self, session: NewSession) -> Result<Vec<SessionId>>;

    /// The session's user, if the session is live (not revoked, not expired).
    async fn live_session(
        &self,
        session_id: SessionId,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<Option<User>>;

    /// Spends a refresh token and stores its successor, detecting reuse.
    /// The session lives on until `expires_at`, but never beyond `max_age`
    /// after it was created.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        next_hash: &[u8],
        expires_at: Timestamp,
        max_age: std::time::Duration,
        now: Timestamp,
    ) -> Result<Rotation>;

    /// Deletes refresh tokens past their expiry (spent or not), and the
    /// sessions that ended (revoked or expired) more than `keep_ended` ago.
    /// Returns how many rows went. Works in small batches, so that the
    /// writer is never held for long.
    async fn purge_sessions(&self, now: Timestamp, keep_ended: std::time::Duration) -> Result<u64>;

    async fn list_sessions(&self, user_id: UserId, now: Timestamp) -> Result<Vec<Session>>;

    /// Revokes one of the user's sessions; false if it has none by that id.
    async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<bool>;

    async fn touch_session(&self, session_id: SessionId, now: Timestamp) -> Result<()>;

    /// Revokes every live session of the user but `keep`, and returns them.
    async fn revoke_other_sessions(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>>;

    /// Replaces the user's password hash and, in the same transaction,
    /// revokes every live session but `keep`; returns those sessions.
    async fn change_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>>;

    /// Deletes an account: its sessions are revoked, its refresh tokens and
    /// memberships removed, its username freed and shown as `[deleted]`.
    /// Its messages stay, so every room's history keeps its seqs. Returns
    /// the sessions that were live, whose streams must end.
    async fn delete_user(&self, user_id: UserId, now: Timestamp) -> Result<Vec<SessionId>>;

    /// # Errors
    /// ALREADY_EXISTS when a group room has the name (in any case);
    /// RESOURCE_EXHAUSTED when the creator is in `max_rooms` group rooms.
    async fn create_room(
        &self,
        id: RoomId,
        name: &RoomName,
        creator: UserId,
        max_rooms: u32,
        now: Timestamp,
    ) -> Result<Room>;

    /// # Errors
    /// NOT_FOUND for no such room, PERMISSION_DENIED for a direct room;
    /// RESOURCE_EXHAUSTED when the user is in `max_rooms` group rooms.
    async fn join_room(
        &self,
        room_id: RoomId,
        user_id: UserId,
        max_rooms: u32,
        now: Timestamp,
    ) -> Result<Room>;

    /// # Errors
    /// NOT_FOUND for no such room, FAILED_PRECONDITION for a direct room.
    async fn leave_room(&self, room_id: RoomId, user_id: UserId) -> Result<()>;

    /// A page of the rooms the user may see (every group room and the
    /// user's direct rooms, or only the rooms it is in), in id order, which
    /// is creation order: at most `page.limit` rooms with an id above
    /// `page.after`.
    async fn list_rooms(&self, user_id: UserId, page: RoomPage) -> Result<Vec<Room>>;

    /// The direct room of two users, created (with both as members) on first use.
    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room>;

    /// Every room the user is a member of, with its newest seq.
    async fn room_positions_of(&self, user_id: UserId) -> Result<Vec<(RoomId, u64)>>;

    /// The newest seq of each of these rooms that exists.
    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>>;

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership>;

    /// The user's membership of a room, and the room's newest seq (0 when
    /// it has no messages or does not exist).
    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)>;

    /// Appends messages in one transaction, as `plan_appends` decides. One
    /// result per message: a client error (not a member, no such room, key
    /// reused elsewhere) fails only its own message; a database error fails
    /// the call, and nothing of the batch is stored. The batch is shared,
    /// not borrowed: a store may hand it to a thread of its own without
    /// copying it.
    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>>;

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
/// `synchronous` is SQLite's durability, `pool_size` PostgreSQL's
/// connections.
///
/// # Errors
/// INVALID_ARGUMENT for an unsupported URL; database errors as they come.
pub async fn connect(
    url: &str,
    synchronous: Synchronous,
    pool_size: u32,
) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, synchronous).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        // PostgreSQL's durability is the server's `synchronous_commit`.
        Ok(Arc::new(PostgresStore::connect(url, pool_size).await?))
    } else {
        Err(Error::invalid(format!(
            "unsupported database URL {:?}: expected sqlite://PATH or postgres://HOST/DB",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The file of a `sqlite://` database URL; `None` for other databases
/// (and for an in-memory SQLite database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr as _;
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:"))
        .then(|| file.to_path_buf())
}

/// A seq as both databases keep it (a signed 64-bit integer).
fn to_seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// Rows of (room id, newest seq) as the store interface returns them.
fn room_seqs(rows: Vec<(uuid::Uuid, i64)>) -> Vec<(RoomId, u64)> {
    rows.into_iter()
        .map(|(id, seq)| (RoomId::from_uuid(id), to_seq(seq)))
        .collect()
}

/// Whether a database error is a unique-constraint violation.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The refusal of a user already in as many group rooms as allowed.
fn too_many_rooms(max_rooms: u32) -> Error {
    Error::ResourceExhausted(format!(
        "too many rooms: a user may be in at most {max_rooms} group rooms \
         (--max-rooms-per-user); leave one first"
    ))
}

/// The one place a unique-constraint violation becomes ALREADY_EXISTS, with
/// the message `what` gives; every other database error passes through.
fn already_exists_if_unique(error: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    if is_unique_violation(&error) {
        Error::AlreadyExists(what())
    } else {
        error.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            id: UserId::new(),
            username: name.into(),
        }
    }

    fn send(room: RoomId, sender: &User, key: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            room_id: room,
            sender: sender.clone(),
            text: MessageText::parse("hi".into()).unwrap(),
            sent_at: Timestamp(0),
            client_msg_id: ClientMsgId::parse(key.into()).unwrap(),
        }
    }

    #[test]
    fn a_batch_gets_consecutive_seqs_per_room_and_dedupes_keys() {
        let (alice, eve) = (user("alice"), user("eve"));
        let (a, b, missing) = (RoomId::new(), RoomId::new(), RoomId::new());
        let context = AppendContext {
            earlier: HashMap::new(),
            last_seq: HashMap::from([(a, 7), (b, 0)]),
            members: HashSet::from([(a, alice.id), (b, alice.id)]),
        };
        let batch = [
            send(a, &alice, "k1"),
            send(b, &alice, ""),
            send(a, &alice, ""),
            send(a, &alice, "k1"),
            send(b, &alice, "k1"),
            send(a, &eve, ""),
            send(missing, &alice, ""),
        ];

        let plan = plan_appends(&batch, context);

        let outcome: Vec<_> = plan
            .results
            .iter()
            .map(|r| match r {
                Ok(appended) => Ok((appended.message.seq, appended.fresh)),
                Err(e) => Err(e.code()),
            })
            .collect();
        use tonic::Code;
        assert_eq!(
            outcome,
            [
                Ok((8, true)),
                Ok((1, true)),
                Ok((9, true)),
                Ok((8, false)),
                Err(Code::AlreadyExists),
                Err(Code::PermissionDenied),
                Err(Code::NotFound),
            ]
        );
        assert_eq!(plan.fresh.len(), 3);
        assert_eq!(plan.last_seq, HashMap::from([(a, 9), (b, 1)]));
    }
}

//! What the operator's tool (`chat-server admin`) reads and changes, and
//! the control events through which every node hears of its changes.
//!
//! The tool may run where no NATS is reachable, so it tells the nodes
//! through the database they share: each change writes a row to
//! `control_events` in its own transaction, and every node reads the rows
//! after the highest id it has seen, twice a second, and does what a local
//! revocation or room end does (the server's `control` module). Written
//! once for both databases, like `queries.rs`, over the same [`Backend`].

use async_trait::async_trait;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row as _, Transaction, Type,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::queries::{Affected, Backend};
use crate::rows::room_kind_from_db;
use crate::sql::to_seq;
use chat_domain::{RoomId, RoomKind, Timestamp, User, UserId, Username};

/// What a control event asks every node to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlKind {
    /// The user was disabled: every session of it ends, with its streams.
    UserDisabled,
    /// The user was enabled again: nothing to end.
    UserEnabled,
    /// The user's password was reset: every session of it ends.
    PasswordReset,
    /// The room was deleted: its members' streams hear so and leave it.
    RoomDeleted,
    /// The room has a new owner: its new events are delivered from the
    /// store.
    OwnerSet,
}

impl ControlKind {
    fn to_db(self) -> i64 {
        match self {
            Self::UserDisabled => 1,
            Self::UserEnabled => 2,
            Self::PasswordReset => 3,
            Self::RoomDeleted => 4,
            Self::OwnerSet => 5,
        }
    }

    fn from_db(value: i64) -> Option<Self> {
        Some(match value {
            1 => Self::UserDisabled,
            2 => Self::UserEnabled,
            3 => Self::PasswordReset,
            4 => Self::RoomDeleted,
            5 => Self::OwnerSet,
            _ => return None,
        })
    }
}

/// One row of `control_events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEvent {
    pub id: i64,
    /// `None` for a kind this node does not know (a newer node wrote it).
    pub kind: Option<ControlKind>,
    pub user_id: Option<UserId>,
    pub room_id: Option<RoomId>,
    pub at: Timestamp,
}

/// An account as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSummary {
    pub id: UserId,
    pub username: String,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
    /// Sessions neither revoked nor expired.
    pub live_sessions: u64,
}

/// A room one user is a member of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRoom {
    pub id: RoomId,
    /// A direct room's name is its two members' usernames.
    pub name: String,
    pub kind: RoomKind,
}

/// An account and its rooms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetails {
    pub user: UserSummary,
    pub rooms: Vec<UserRoom>,
}

/// What a change to an account did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserChange {
    /// The account after the change.
    pub user: UserSummary,
    /// Whether the account changed (disabling a disabled one does not).
    pub changed: bool,
    /// Live sessions the change ended.
    pub sessions_ended: u64,
}

/// A room as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSummary {
    pub id: RoomId,
    pub name: String,
    pub kind: RoomKind,
    pub members: u64,
    pub last_seq: u64,
}

/// The operator's view of the store, and the control events. Implemented
/// for every [`Backend`], beside `Store` (`connect_with_admin` opens both).
#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// Accounts (not deleted ones), by username, at most `limit`.
    async fn list_users(&self, limit: u32, now: Timestamp) -> Result<Vec<UserSummary>>;

    /// # Errors
    /// `NotFound` when no account has this name.
    async fn user_details(&self, username: &Username, now: Timestamp) -> Result<UserDetails>;

    /// Disables an account and revokes every live session of it, with a
    /// `UserDisabled` control event, in one transaction.
    ///
    /// # Errors
    /// `NotFound` when no account has this name.
    async fn disable_user(&self, username: &Username, now: Timestamp) -> Result<UserChange>;

    /// Enables a disabled account again.
    ///
    /// # Errors
    /// `NotFound` when no account has this name.
    async fn enable_user(&self, username: &Username, now: Timestamp) -> Result<UserChange>;

    /// Sets an account's password hash and revokes every live session of
    /// it, with a `PasswordReset` control event, in one transaction.
    ///
    /// # Errors
    /// `NotFound` when no account has this name.
    async fn reset_password(
        &self,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<UserChange>;

    /// Rooms, oldest first, at most `limit`.
    async fn list_rooms(&self, limit: u32) -> Result<Vec<RoomSummary>>;

    /// Deletes a room (its members, messages and log go with it), with a
    /// `RoomDeleted` control event; returns the room as it was.
    ///
    /// # Errors
    /// `NotFound` when there is no such room.
    async fn delete_room(&self, room_id: RoomId, now: Timestamp) -> Result<RoomSummary>;

    /// The owner of a group room (`None` for a direct room or one with no
    /// members).
    ///
    /// # Errors
    /// `NotFound` when there is no such room.
    async fn room_owner(&self, room_id: RoomId) -> Result<Option<User>>;

    /// Records that a room's owner was set (`Store::change_membership`
    /// made the change and logged its events): an `OwnerSet` control
    /// event, so that every node delivers those events from the store.
    async fn owner_set(&self, room_id: RoomId, owner: UserId, now: Timestamp) -> Result<()>;

    /// The password hash of a disabled account by this name, which the
    /// credentials for logging in leave out: a login with the right
    /// password hears that the account is disabled.
    async fn disabled_credentials(&self, username: &Username) -> Result<Option<String>>;

    /// The highest control event id so far (0 for none): where a node
    /// starting now begins to read.
    async fn newest_control_event(&self) -> Result<i64>;

    /// Control events after `after_id`, in id order, at most `limit`.
    async fn control_events_after(&self, after_id: i64, limit: u32) -> Result<Vec<ControlEvent>>;

    /// Deletes control events written before `before`; returns how many.
    async fn purge_control_events(&self, before: Timestamp) -> Result<u64>;
}

/// The columns of an account, `users u`, with its live sessions at `$1`.
const USER_SELECT: &str = "SELECT u.id, u.username, u.created_at, u.disabled_at,
        (SELECT COUNT(*) FROM sessions s
         WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $1) AS live_sessions
    FROM users u";

/// The columns of a room, `rooms r`, with its member count.
const ROOM_SELECT: &str = "SELECT r.id, r.name, r.kind, r.last_seq,
        (SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.id) AS members
    FROM rooms r";

fn no_user(username: &Username) -> Error {
    Error::NotFound(format!("no user named {:?}", username.as_str()))
}

fn count(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

#[async_trait]
impl<B, DB> AdminStore for B
where
    B: Backend<Db = DB>,
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    str: Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    DB::QueryResult: Affected,
{
    async fn list_users(&self, limit: u32, now: Timestamp) -> Result<Vec<UserSummary>> {
        let rows = sqlx::query(&format!(
            "{USER_SELECT} WHERE u.deleted_at IS NULL ORDER BY u.username_key LIMIT $2"
        ))
        .bind(now.0)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(user_summary::<DB>).collect()
    }

    async fn user_details(&self, username: &Username, now: Timestamp) -> Result<UserDetails> {
        let mut tx = self.reader().begin().await?;
        let user = user_in(&mut tx, username, now)
            .await?
            .ok_or_else(|| no_user(username))?;
        let rows = sqlx::query(
            "SELECT r.id, r.name, r.kind FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = $1 ORDER BY r.kind, r.name, r.id",
        )
        .bind(user.id.uuid())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let rooms = rows
            .iter()
            .map(|row| {
                Ok(UserRoom {
                    id: RoomId::from_uuid(row.try_get("id")?),
                    name: row.try_get("name")?,
                    kind: kind_of(row.try_get("kind")?)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(UserDetails { user, rooms })
    }

    async fn disable_user(&self, username: &Username, now: Timestamp) -> Result<UserChange> {
        let mut tx = self.writer().begin().await?;
        let before = user_in(&mut tx, username, now)
            .await?
            .ok_or_else(|| no_user(username))?;
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now.0)
            .bind(before.id.uuid())
            .execute(&mut *tx)
            .await?;
        let ended = revoke_all_in(&mut tx, before.id, now).await?;
        record::<DB>(
            &mut tx,
            ControlKind::UserDisabled,
            Some(before.id),
            None,
            now,
        )
        .await?;
        let user = user_in(&mut tx, username, now)
            .await?
            .ok_or_else(|| no_user(username))?;
        tx.commit().await?;
        Ok(UserChange {
            changed: before.disabled_at.is_none(),
            user,
            sessions_ended: ended,
        })
    }

    async fn enable_user(&self, username: &Username, now: Timestamp) -> Result<UserChange> {
        let mut tx = self.writer().begin().await?;
        let before = user_in(&mut tx, username, now)
            .await?
            .ok_or_else(|| no_user(username))?;
        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
            .bind(before.id.uuid())
            .execute(&mut *tx)
            .await?;
        record::<DB>(
            &mut tx,
            ControlKind::UserEnabled,
            Some(before.id),
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(UserChange {
            changed: before.disabled_at.is_some(),
            user: UserSummary {
                disabled_at: None,
                ..before
            },
            sessions_ended: 0,
        })
    }

    async fn reset_password(
        &self,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<UserChange> {
        let mut tx = self.writer().begin().await?;
        let before = user_in(&mut tx, username, now)
            .await?
            .ok_or_else(|| no_user(username))?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(before.id.uuid())
            .execute(&mut *tx)
            .await?;
        let ended = revoke_all_in(&mut tx, before.id, now).await?;
        record::<DB>(
            &mut tx,
            ControlKind::PasswordReset,
            Some(before.id),
            None,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(UserChange {
            user: UserSummary {
                live_sessions: 0,
                ..before
            },
            changed: true,
            sessions_ended: ended,
        })
    }

    async fn list_rooms(&self, limit: u32) -> Result<Vec<RoomSummary>> {
        let rows = sqlx::query(&format!(
            "{ROOM_SELECT} ORDER BY r.created_at, r.id LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(room_summary::<DB>).collect()
    }

    async fn delete_room(&self, room_id: RoomId, now: Timestamp) -> Result<RoomSummary> {
        let mut tx = self.writer().begin().await?;
        let row = sqlx::query(&format!("{ROOM_SELECT} WHERE r.id = $1"))
            .bind(room_id.uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no room with id {room_id}")))?;
        let room = room_summary::<DB>(&row)?;
        sqlx::query("DELETE FROM rooms WHERE id = $1")
            .bind(room_id.uuid())
            .execute(&mut *tx)
            .await?;
        record::<DB>(&mut tx, ControlKind::RoomDeleted, None, Some(room_id), now).await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn room_owner(&self, room_id: RoomId) -> Result<Option<User>> {
        let mut tx = self.reader().begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT kind FROM rooms WHERE id = $1")
            .bind(room_id.uuid())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(Error::NotFound(format!("no room with id {room_id}")));
        }
        let row: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT u.id, u.username FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1 AND m.role = 3",
        )
        .bind(room_id.uuid())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.map(|(id, username)| User::named(UserId::from_uuid(id), username)))
    }

    async fn owner_set(&self, room_id: RoomId, owner: UserId, now: Timestamp) -> Result<()> {
        let mut tx = self.writer().begin().await?;
        record::<DB>(
            &mut tx,
            ControlKind::OwnerSet,
            Some(owner),
            Some(room_id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn disabled_credentials(&self, username: &Username) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT password_hash FROM users
             WHERE username_key = $1 AND deleted_at IS NULL AND disabled_at IS NOT NULL",
        )
        .bind(username.key())
        .fetch_optional(self.reader())
        .await?)
    }

    async fn newest_control_event(&self) -> Result<i64> {
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM control_events")
            .fetch_one(self.reader())
            .await?;
        Ok(newest.unwrap_or(0))
    }

    async fn control_events_after(&self, after_id: i64, limit: u32) -> Result<Vec<ControlEvent>> {
        // One short range of the primary key.
        let rows = sqlx::query(
            "SELECT id, kind, user_id, room_id, at FROM control_events
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ControlEvent {
                    id: row.try_get("id")?,
                    kind: ControlKind::from_db(row.try_get("kind")?),
                    user_id: row
                        .try_get::<Option<Uuid>, _>("user_id")?
                        .map(UserId::from_uuid),
                    room_id: row
                        .try_get::<Option<Uuid>, _>("room_id")?
                        .map(RoomId::from_uuid),
                    at: Timestamp(row.try_get("at")?),
                })
            })
            .collect()
    }

    async fn purge_control_events(&self, before: Timestamp) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM control_events WHERE at < $1")
            .bind(before.0)
            .execute(self.writer())
            .await?
            .affected())
    }
}

/// An account by name, inside a transaction.
async fn user_in<DB>(
    tx: &mut Transaction<'_, DB>,
    username: &Username,
    now: Timestamp,
) -> Result<Option<UserSummary>>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let row = sqlx::query(&format!(
        "{USER_SELECT} WHERE u.username_key = $2 AND u.deleted_at IS NULL"
    ))
    .bind(now.0)
    .bind(username.key().to_owned())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(user_summary::<DB>).transpose()
}

/// Revokes every live session of a user; returns how many.
async fn revoke_all_in<DB>(
    tx: &mut Transaction<'_, DB>,
    user_id: UserId,
    now: Timestamp,
) -> Result<u64>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    DB::QueryResult: Affected,
{
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = $1
         WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1",
    )
    .bind(now.0)
    .bind(user_id.uuid())
    .execute(&mut **tx)
    .await?
    .affected())
}

/// Writes a control event: the last statement of its transaction. On
/// PostgreSQL it first locks the table against other writers (not
/// readers) until the commit, so that ids commit in the order they are
/// given and a node reading past an id never misses a smaller one that
/// commits later. SQLite has one writer at a time anyway.
async fn record<DB>(
    tx: &mut Transaction<'_, DB>,
    kind: ControlKind,
    user_id: Option<UserId>,
    room_id: Option<RoomId>,
    now: Timestamp,
) -> Result<()>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    Uuid: Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    if DB::NAME == "PostgreSQL" {
        sqlx::query("LOCK TABLE control_events IN EXCLUSIVE MODE")
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query("INSERT INTO control_events (kind, user_id, room_id, at) VALUES ($1, $2, $3, $4)")
        .bind(kind.to_db())
        .bind(user_id.map(UserId::uuid))
        .bind(room_id.map(RoomId::uuid))
        .bind(now.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn user_summary<DB>(row: &DB::Row) -> Result<UserSummary>
where
    DB: Database,
    for<'q> Uuid: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    Ok(UserSummary {
        id: UserId::from_uuid(row.try_get("id")?),
        username: row.try_get("username")?,
        created_at: Timestamp(row.try_get("created_at")?),
        disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(Timestamp),
        live_sessions: count(row.try_get("live_sessions")?),
    })
}

fn room_summary<DB>(row: &DB::Row) -> Result<RoomSummary>
where
    DB: Database,
    for<'q> Uuid: Decode<'q, DB> + Type<DB>,
    for<'q> i64: Decode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    Ok(RoomSummary {
        id: RoomId::from_uuid(row.try_get("id")?),
        name: row.try_get("name")?,
        kind: kind_of(row.try_get("kind")?)?,
        members: count(row.try_get("members")?),
        last_seq: to_seq(row.try_get("last_seq")?),
    })
}

fn kind_of(kind: i64) -> Result<RoomKind> {
    room_kind_from_db(kind).ok_or_else(|| anyhow::anyhow!("unknown room kind {kind}").into())
}

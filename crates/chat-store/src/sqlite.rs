//! The embedded store: SQLite in WAL mode with `synchronous=FULL` (unless
//! configured otherwise), so a committed transaction survives a crash or
//! power loss.
//!
//! All writes go through one connection (SQLite has one writer anyway; a
//! single connection means no lock contention, and the message writer batches
//! sends into few transactions). Reads use a small pool of their own, which
//! WAL lets run beside the writer.
//!
//! Message batches are stored from a thread of their own, in one go (see
//! `append.rs`).

mod append;

use self::append::AppendThread;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _, Sqlite, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{
    Appended, Membership, NewMessage, NewSession, RoomPage, Rotation, Synchronous, DELETED_USERNAME,
};
use crate::rows::{newest_first_page, room_from_row, user_from_row};
use crate::sql::{
    already_exists_if_unique, is_unique_violation, room_seqs, to_seq, too_many_rooms,
};
use crate::store::Store;
use chat_domain::{
    Message, Room, RoomId, RoomKind, RoomName, Session, SessionId, Timestamp, User, UserId,
    Username,
};

/// Readers beside the one writer: enough for history and room lists under
/// load on a small machine, few enough to keep file handles bounded.
const READ_CONNECTIONS: u32 = 4;
/// How long a statement waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer, in KiB (SQLite's default is 2 MiB). A batch
/// of messages to many rooms dirties a page of each index per room; with
/// the default, those pages were evicted between batches and read back
/// from the file on the next one.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Page cache of each reader, in KiB.
const READER_CACHE_KIB: u32 = 16 * 1024;
/// WAL pages after which a commit copies them into the database (SQLite's
/// default is 1000). Busy pages (index tails, room rows) are rewritten by
/// almost every batch: a longer WAL copies each once per checkpoint instead
/// of once per few batches, and fsyncs the database file less often.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// A room as the user bound to `?1` sees it: a direct room is named after
/// the other member.
const ROOM_SELECT: &str = "SELECT r.id, r.kind, r.last_seq,
        CASE WHEN r.kind = 2 THEN COALESCE(
            (SELECT u.username FROM room_members om JOIN users u ON u.id = om.user_id
             WHERE om.room_id = r.id AND om.user_id <> ?1), r.name)
        ELSE r.name END AS name,
        EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = ?1) AS joined
    FROM rooms r";

/// The columns of a message, from `messages m` and its sender `users u`.
macro_rules! message_columns {
    () => {
        "SELECT m.id, m.room_id, m.seq, m.sender_id, u.username, m.text, m.sent_at,
            m.client_msg_id"
    };
}

const MESSAGE_SELECT: &str = concat!(
    message_columns!(),
    " FROM messages m JOIN users u ON u.id = m.sender_id"
);

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    appends: AppendThread,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://` URL and
    /// brings its schema up to date.
    ///
    /// # Errors
    /// When the file cannot be created or a migration fails.
    pub async fn connect(url: &str, synchronous: Synchronous) -> Result<Self> {
        let synchronous = match synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (a multi-row INSERT keeps one, to undo
            // just that statement) stay in memory, not in a temporary file.
            .pragma("temp_store", "memory")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the database folder {}", dir.display()))?;
            }
        }
        // No ping before each use: the database is a local file, and the
        // ping is one more round trip to the connection's thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("migrating the SQLite database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.pragma("cache_size", format!("-{READER_CACHE_KIB}")))
            .await?;
        Ok(Self {
            writer,
            reader,
            appends: AppendThread::start()?,
        })
    }

    async fn room_in(
        tx: &mut Transaction<'_, Sqlite>,
        room_id: RoomId,
        viewer: UserId,
    ) -> Result<Room> {
        let row = sqlx::query(&format!("{ROOM_SELECT} WHERE r.id = ?2"))
            .bind(viewer.uuid())
            .bind(room_id.uuid())
            .fetch_one(&mut **tx)
            .await?;
        room_from_row(&row)
    }
}

async fn membership_in<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    room_id: RoomId,
    user_id: UserId,
) -> Result<Membership> {
    Ok(position_in(executor, room_id, user_id).await?.0)
}

async fn position_in<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    room_id: RoomId,
    user_id: UserId,
) -> Result<(Membership, u64)> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = ?1 AND user_id = ?2), last_seq
         FROM rooms WHERE id = ?1",
    )
    .bind(room_id.uuid())
    .bind(user_id.uuid())
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else {
        return Ok((Membership::NoSuchRoom, 0));
    };
    let membership = if row.try_get::<bool, _>(0)? {
        Membership::Member
    } else {
        Membership::NotMember
    };
    Ok((membership, to_seq(row.try_get(1)?)))
}

async fn room_kind(tx: &mut Transaction<'_, Sqlite>, room_id: RoomId) -> Result<RoomKind> {
    let kind: Option<i64> = sqlx::query_scalar("SELECT kind FROM rooms WHERE id = ?1")
        .bind(room_id.uuid())
        .fetch_optional(&mut **tx)
        .await?;
    let kind = kind.ok_or_else(|| Error::NotFound(format!("room {room_id} does not exist")))?;
    crate::rows::room_kind_from_db(kind)
        .ok_or_else(|| anyhow::anyhow!("room {room_id} has kind {kind}").into())
}

/// How many group rooms the user is in.
async fn group_rooms_of(tx: &mut Transaction<'_, Sqlite>, user_id: UserId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM room_members m JOIN rooms r ON r.id = m.room_id
         WHERE m.user_id = ?1 AND r.kind = 1",
    )
    .bind(user_id.uuid())
    .fetch_one(&mut **tx)
    .await?)
}

/// Rows one purge statement deletes at most: a short transaction, so that
/// sends are not held up behind it.
const PURGE_BATCH: i64 = 5000;

/// Revokes the user's live sessions but `keep`, returning them.
async fn revoke_others_in(
    tx: &mut Transaction<'_, Sqlite>,
    user_id: UserId,
    keep: SessionId,
    now: Timestamp,
) -> Result<Vec<SessionId>> {
    let revoked: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = ?1
         WHERE user_id = ?2 AND id <> ?3 AND revoked_at IS NULL AND expires_at > ?1
         RETURNING id",
    )
    .bind(now.0)
    .bind(user_id.uuid())
    .bind(keep.uuid())
    .fetch_all(&mut **tx)
    .await?;
    Ok(revoked.into_iter().map(SessionId::from_uuid).collect())
}

/// The key that makes a pair of users' direct room unique: both ids, ordered.
fn direct_key(a: UserId, b: UserId) -> Vec<u8> {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    [low.uuid().as_bytes().as_slice(), high.uuid().as_bytes()].concat()
}

#[async_trait]
impl Store for SqliteStore {
    async fn setting_or_init(&self, key: &str, default: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(default)
        .execute(&self.writer)
        .await?;
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_one(&self.writer)
            .await?;
        Ok(value)
    }

    async fn remove_setting(&self, key: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("DELETE FROM settings WHERE key = ?1 RETURNING value")
            .bind(key)
            .fetch_optional(&self.writer)
            .await?;
        Ok(value)
    }

    async fn create_user(
        &self,
        id: UserId,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User> {
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, username_key, username_skeleton, password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(id.uuid())
        .bind(username.as_str())
        .bind(username.key())
        .bind(username.skeleton())
        .bind(password_hash)
        .bind(now.0)
        .execute(&self.writer)
        .await;
        let Err(error) = inserted else {
            return Ok(User {
                id,
                username: username.as_str().to_owned(),
            });
        };
        if !is_unique_violation(&error) {
            return Err(error.into());
        }
        // Which name it collides with says which answer to give.
        let taken: Option<bool> =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username_key = ?1)")
                .bind(username.key())
                .fetch_optional(&self.writer)
                .await?;
        Err(Error::Taken(if taken == Some(true) {
            format!("username {:?} is already taken", username.as_str())
        } else {
            format!(
                "username {:?} is too similar to an existing name",
                username.as_str()
            )
        }))
    }

    async fn credentials(&self, username: &Username) -> Result<Option<(User, String)>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash FROM users
                 WHERE username_key = ?1 AND deleted_at IS NULL",
        )
        .bind(username.key())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?)))
            .transpose()
    }

    async fn user_by_name(&self, username: &Username) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username FROM users WHERE username_key = ?1 AND deleted_at IS NULL",
        )
        .bind(username.key())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_session(&self, session: NewSession) -> Result<Vec<SessionId>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, user_agent, created_at, last_seen_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        )
        .bind(session.id.uuid())
        .bind(session.user_id.uuid())
        .bind(&session.user_agent)
        .bind(session.now.0)
        .bind(session.expires_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(&session.refresh_hash)
        .bind(session.id.uuid())
        .bind(session.expires_at.0)
        .execute(&mut *tx)
        .await?;
        // Newest first: whatever lies beyond the cap is the oldest.
        let live: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
             ORDER BY created_at DESC, id DESC",
        )
        .bind(session.user_id.uuid())
        .bind(session.now.0)
        .fetch_all(&mut *tx)
        .await?;
        let evicted: Vec<SessionId> = live
            .into_iter()
            .skip(session.max_sessions as usize)
            .map(SessionId::from_uuid)
            .collect();
        for old in &evicted {
            sqlx::query("UPDATE sessions SET revoked_at = ?1 WHERE id = ?2")
                .bind(session.now.0)
                .bind(old.uuid())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(evicted)
    }

    async fn live_session(
        &self,
        session_id: SessionId,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.username FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = ?1 AND s.user_id = ?2 AND s.revoked_at IS NULL AND s.expires_at > ?3
               AND u.deleted_at IS NULL",
        )
        .bind(session_id.uuid())
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        next_hash: &[u8],
        expires_at: Timestamp,
        max_age: std::time::Duration,
        now: Timestamp,
    ) -> Result<Rotation> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at, s.created_at
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = ?1",
        )
        .bind(presented_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let session_id = SessionId::from_uuid(row.try_get("session_id")?);
        let user_id = UserId::from_uuid(row.try_get("user_id")?);
        let used_at: Option<i64> = row.try_get("used_at")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        let token_expires_at: i64 = row.try_get("expires_at")?;
        let created_at = Timestamp(row.try_get("created_at")?);
        let expires_at = expires_at.min(created_at.plus(max_age));
        if revoked_at.is_some() {
            return Ok(Rotation::Invalid);
        }
        if used_at.is_some() {
            sqlx::query("UPDATE sessions SET revoked_at = ?1 WHERE id = ?2")
                .bind(now.0)
                .bind(session_id.uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { session_id });
        }
        if token_expires_at <= now.0 || expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2")
            .bind(now.0)
            .bind(presented_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(next_hash)
        .bind(session_id.uuid())
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET expires_at = ?1, last_seen_at = ?2 WHERE id = ?3")
            .bind(expires_at.0)
            .bind(now.0)
            .bind(session_id.uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            user_id,
            session_id,
        })
    }

    async fn list_sessions(&self, user_id: UserId, now: Timestamp) -> Result<Vec<Session>> {
        let rows = sqlx::query(
            "SELECT id, created_at, last_seen_at, user_agent FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
             ORDER BY created_at, id",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Session {
                    id: SessionId::from_uuid(row.try_get("id")?),
                    created_at: Timestamp(row.try_get("created_at")?),
                    last_seen_at: Timestamp(row.try_get("last_seen_at")?),
                    user_agent: row.try_get("user_agent")?,
                })
            })
            .collect()
    }

    async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1
             WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(session_id.uuid())
        .bind(user_id.uuid())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: UserId, now: Timestamp) -> Result<Vec<SessionId>> {
        let mut tx = self.writer.begin().await?;
        let live: Vec<SessionId> = sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM sessions
             WHERE user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(SessionId::from_uuid)
        .collect();
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM refresh_tokens
             WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
        )
        .bind(user_id.uuid())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM room_members WHERE user_id = ?1")
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE users SET username = ?2, password_hash = '', deleted_at = ?3
             WHERE id = ?1",
        )
        .bind(user_id.uuid())
        .bind(DELETED_USERNAME)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(live)
    }

    async fn touch_session(&self, session_id: SessionId, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2")
            .bind(now.0)
            .bind(session_id.uuid())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn purge_sessions(&self, now: Timestamp, keep_ended: std::time::Duration) -> Result<u64> {
        let ended_before = Timestamp(now.0 - Timestamp(0).plus(keep_ended).0);
        let mut purged = 0;
        loop {
            let tokens = sqlx::query(
                "DELETE FROM refresh_tokens WHERE token_hash IN
                    (SELECT token_hash FROM refresh_tokens WHERE expires_at < ?1 LIMIT ?2)",
            )
            .bind(now.0)
            .bind(PURGE_BATCH)
            .execute(&self.writer)
            .await?
            .rows_affected();
            let sessions = sqlx::query(
                "DELETE FROM sessions WHERE id IN
                    (SELECT id FROM sessions WHERE revoked_at < ?1 OR expires_at < ?1 LIMIT ?2)",
            )
            .bind(ended_before.0)
            .bind(PURGE_BATCH)
            .execute(&self.writer)
            .await?
            .rows_affected();
            purged += tokens + sessions;
            if tokens < PURGE_BATCH as u64 && sessions < PURGE_BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    async fn revoke_other_sessions(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>> {
        let mut tx = self.writer.begin().await?;
        let revoked = revoke_others_in(&mut tx, user_id, keep, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn change_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("UPDATE users SET password_hash = ?1 WHERE id = ?2 AND deleted_at IS NULL")
            .bind(password_hash)
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        let revoked = revoke_others_in(&mut tx, user_id, keep, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn create_room(
        &self,
        id: RoomId,
        name: &RoomName,
        creator: UserId,
        max_rooms: u32,
        now: Timestamp,
    ) -> Result<Room> {
        let mut tx = self.writer.begin().await?;
        if group_rooms_of(&mut tx, creator).await? >= i64::from(max_rooms) {
            return Err(too_many_rooms(max_rooms));
        }
        sqlx::query(
            "INSERT INTO rooms (id, name, name_key, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(id.uuid())
        .bind(name.as_str())
        .bind(name.key())
        .bind(crate::rows::room_kind_to_db(RoomKind::Group))
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            already_exists_if_unique(e, || {
                format!("a room named {:?} already exists", name.as_str())
            })
        })?;
        sqlx::query("INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)")
            .bind(id.uuid())
            .bind(creator.uuid())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Room {
            id,
            name: name.as_str().to_owned(),
            kind: RoomKind::Group,
            joined: true,
            last_seq: 0,
        })
    }

    async fn join_room(
        &self,
        room_id: RoomId,
        user_id: UserId,
        max_rooms: u32,
        now: Timestamp,
    ) -> Result<Room> {
        let mut tx = self.writer.begin().await?;
        if room_kind(&mut tx, room_id).await? == RoomKind::Direct {
            let room = Self::room_in(&mut tx, room_id, user_id).await?;
            return if room.joined {
                Ok(room)
            } else {
                Err(Error::Forbidden(format!(
                    "room {room_id} is a direct room: nobody else can join it"
                )))
            };
        }
        let already = membership_in(&mut *tx, room_id, user_id).await? == Membership::Member;
        if !already && group_rooms_of(&mut tx, user_id).await? >= i64::from(max_rooms) {
            return Err(too_many_rooms(max_rooms));
        }
        sqlx::query(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (room_id, user_id) DO NOTHING",
        )
        .bind(room_id.uuid())
        .bind(user_id.uuid())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let room = Self::room_in(&mut tx, room_id, user_id).await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn leave_room(&self, room_id: RoomId, user_id: UserId) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        if room_kind(&mut tx, room_id).await? == RoomKind::Direct {
            return Err(Error::Refused(format!(
                "room {room_id} is a direct room: it cannot be left"
            )));
        }
        sqlx::query("DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2")
            .bind(room_id.uuid())
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_rooms(&self, user_id: UserId, page: RoomPage) -> Result<Vec<Room>> {
        let visible = if page.joined_only {
            "r.id IN (SELECT room_id FROM room_members WHERE user_id = ?1)"
        } else {
            "(r.kind = 1 OR r.id IN (SELECT room_id FROM room_members WHERE user_id = ?1))"
        };
        let rows = sqlx::query(&format!(
            "{ROOM_SELECT} WHERE {visible} AND r.id > ?2 ORDER BY r.id LIMIT ?3"
        ))
        .bind(user_id.uuid())
        .bind(page.after_uuid())
        .bind(i64::from(page.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room> {
        let key = direct_key(me.id, other.id);
        let mut tx = self.writer.begin().await?;
        let existing: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = ?1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        let room_id = match existing {
            Some(id) => RoomId::from_uuid(id),
            None => {
                let id = RoomId::new();
                let mut names = [me.username.as_str(), other.username.as_str()];
                names.sort_unstable();
                sqlx::query(
                    "INSERT INTO rooms (id, name, kind, direct_key, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(id.uuid())
                .bind(names.join(" & "))
                .bind(crate::rows::room_kind_to_db(RoomKind::Direct))
                .bind(&key)
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                for member in [me.id, other.id] {
                    sqlx::query(
                        "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                    )
                    .bind(id.uuid())
                    .bind(member.uuid())
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await?;
                }
                id
            }
        };
        let room = Self::room_in(&mut tx, room_id, me.id).await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn room_positions_of(&self, user_id: UserId) -> Result<Vec<(RoomId, u64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT r.id, r.last_seq FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = ?1",
        )
        .bind(user_id.uuid())
        .fetch_all(&self.reader)
        .await?;
        Ok(room_seqs(rows))
    }

    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        let mut found = Vec::with_capacity(room_ids.len());
        // SQLite binds at most 32 766 parameters per statement.
        for chunk in room_ids.chunks(1000) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT id, last_seq FROM rooms WHERE id IN (");
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id.uuid());
            }
            query.push(")");
            let rows: Vec<(Uuid, i64)> = query.build_query_as().fetch_all(&self.reader).await?;
            found.extend(room_seqs(rows));
        }
        Ok(found)
    }

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership> {
        membership_in(&self.reader, room_id, user_id).await
    }

    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)> {
        position_in(&self.reader, room_id, user_id).await
    }

    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>> {
        self.appends.append(self.writer.clone(), batch).await
    }

    async fn history(
        &self,
        room_id: RoomId,
        before_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)> {
        let before = if before_seq == 0 {
            i64::MAX
        } else {
            i64::try_from(before_seq).unwrap_or(i64::MAX)
        };
        let rows = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3"
        ))
        .bind(room_id.uuid())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        newest_first_page(&rows, limit)
    }

    async fn messages_after(
        &self,
        room_id: RoomId,
        after_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)> {
        let rows = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.room_id = ?1 AND m.seq > ?2 ORDER BY m.seq DESC LIMIT ?3"
        ))
        .bind(room_id.uuid())
        .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        newest_first_page(&rows, limit)
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

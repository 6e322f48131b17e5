//! The store for several nodes: PostgreSQL, with the same behaviour as
//! SQLite (`sqlite.rs`) and the same rules for batches (`plan_appends`).
//!
//! Any number of servers may share one database. A room's seqs stay gapless
//! and ordered because a batch locks its rooms' rows (`FOR UPDATE`, in id
//! order so that two batches never wait on each other in a cycle) before
//! reading their newest seq, and bumps it in the same transaction. A
//! `client_msg_id` reused at the same moment on another node, for a room this
//! batch did not lock, shows up as a unique violation: the batch is then
//! planned again, and sees the other node's message.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{
    batch_keys, batch_room_senders, plan_appends, AppendContext, AppendPlan, Appended, Membership,
    NewMessage, NewSession, RoomPage, Rotation, DELETED_USERNAME,
};
use crate::rows::{message_from_row, newest_first_page, room_from_row, user_from_row};
use crate::sql::{
    already_exists_if_unique, is_unique_violation, room_seqs, to_seq, too_many_rooms,
};
use crate::store::Store;
use chat_domain::{
    Message, Room, RoomId, RoomKind, RoomName, Session, SessionId, Timestamp, User, UserId,
    Username,
};

/// How long a request waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a batch is planned again after another node used one of its
/// keys at the same moment. Each retry sees the committed rows, so a second
/// attempt settles every key; the third only covers a fresh race.
const APPEND_ATTEMPTS: u32 = 3;

/// A room as the user bound to `$1` sees it: a direct room is named after
/// the other member.
const ROOM_SELECT: &str = "SELECT r.id, r.kind, r.last_seq,
        CASE WHEN r.kind = 2 THEN COALESCE(
            (SELECT u.username FROM room_members om JOIN users u ON u.id = om.user_id
             WHERE om.room_id = r.id AND om.user_id <> $1 LIMIT 1), r.name)
        ELSE r.name END AS name,
        EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = $1) AS joined
    FROM rooms r";

const MESSAGE_SELECT: &str = "SELECT m.id, m.room_id, m.seq, m.sender_id, u.username, m.text,
        m.sent_at, m.client_msg_id
    FROM messages m JOIN users u ON u.id = m.sender_id";

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at a `postgres://` URL, with at most
    /// `connections` connections, and brings its schema up to date. The
    /// message writer holds one; history, room lists and logins share the
    /// rest. Nodes starting together are safe: sqlx holds an advisory lock
    /// while it migrates.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn connect(url: &str, connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("migrating the PostgreSQL database")?;
        Ok(Self { pool })
    }

    async fn room_in(
        tx: &mut Transaction<'_, Postgres>,
        room_id: RoomId,
        viewer: UserId,
    ) -> Result<Room> {
        let row = sqlx::query(&format!("{ROOM_SELECT} WHERE r.id = $2"))
            .bind(viewer.uuid())
            .bind(room_id.uuid())
            .fetch_one(&mut **tx)
            .await?;
        room_from_row(&row)
    }

    /// Locks the batch's rooms and reads what `plan_appends` needs, a few
    /// queries for the whole batch. Arrays instead of one parameter per
    /// value: no statement grows with the batch.
    async fn append_context(
        tx: &mut Transaction<'_, Postgres>,
        batch: &[NewMessage],
    ) -> Result<AppendContext> {
        let mut context = AppendContext::default();

        // Locking first: the reads below then see every message committed
        // to these rooms before us, and no one else appends until we commit.
        let rooms: BTreeSet<Uuid> = batch.iter().map(|m| m.room_id.uuid()).collect();
        let rooms: Vec<Uuid> = rooms.into_iter().collect();
        let rows =
            sqlx::query("SELECT id, last_seq FROM rooms WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&rooms)
                .fetch_all(&mut **tx)
                .await
                .context("locking the batch's rooms")?;
        for row in rows {
            let room = RoomId::from_uuid(row.try_get("id")?);
            context
                .last_seq
                .insert(room, to_seq(row.try_get("last_seq")?));
        }

        let keys = batch_keys(batch);
        if !keys.is_empty() {
            let (senders, keys): (Vec<Uuid>, Vec<String>) = keys
                .into_iter()
                .map(|(sender, key)| (sender, key.to_owned()))
                .unzip();
            let rows = sqlx::query(&format!(
                "{MESSAGE_SELECT} WHERE (m.sender_id, m.client_msg_id) IN
                    (SELECT * FROM UNNEST($1::uuid[], $2::text[]))"
            ))
            .bind(&senders)
            .bind(&keys)
            .fetch_all(&mut **tx)
            .await
            .context("reading earlier sends of the batch's keys")?;
            for row in rows {
                context.remember_earlier(message_from_row(&row)?);
            }
        }

        let (room_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) =
            batch_room_senders(batch).into_iter().unzip();
        let rows = sqlx::query(
            "SELECT room_id, user_id FROM room_members WHERE (room_id, user_id) IN
                (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
        )
        .bind(&room_ids)
        .bind(&user_ids)
        .fetch_all(&mut **tx)
        .await
        .context("reading the senders' memberships")?;
        for row in rows {
            context.members.insert((
                RoomId::from_uuid(row.try_get("room_id")?),
                UserId::from_uuid(row.try_get("user_id")?),
            ));
        }
        Ok(context)
    }

    /// Writes a batch's plan: the new messages, then the rooms' counters.
    async fn write_plan(tx: &mut Transaction<'_, Postgres>, plan: &AppendPlan) -> Result<()> {
        if !plan.fresh.is_empty() {
            let mut ids = Vec::with_capacity(plan.fresh.len());
            let mut rooms = Vec::with_capacity(plan.fresh.len());
            let mut seqs = Vec::with_capacity(plan.fresh.len());
            let mut senders = Vec::with_capacity(plan.fresh.len());
            let mut texts = Vec::with_capacity(plan.fresh.len());
            let mut sent_at = Vec::with_capacity(plan.fresh.len());
            let mut keys = Vec::with_capacity(plan.fresh.len());
            for message in &plan.fresh {
                ids.push(message.id.uuid());
                rooms.push(message.room_id.uuid());
                seqs.push(from_seq(message.seq));
                senders.push(message.sender.id.uuid());
                texts.push(message.text.clone());
                sent_at.push(message.sent_at.0);
                keys.push(message.client_msg_id.clone());
            }
            sqlx::query(
                "INSERT INTO messages (id, room_id, seq, sender_id, text, sent_at, client_msg_id)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[],
                                      $5::text[], $6::int8[], $7::text[])",
            )
            .bind(&ids)
            .bind(&rooms)
            .bind(&seqs)
            .bind(&senders)
            .bind(&texts)
            .bind(&sent_at)
            .bind(&keys)
            .execute(&mut **tx)
            .await?;
        }
        if !plan.last_seq.is_empty() {
            // One statement for every room of the batch, not one each.
            let (rooms, seqs): (Vec<Uuid>, Vec<i64>) = plan
                .last_seq
                .iter()
                .map(|(room, seq)| (room.uuid(), from_seq(*seq)))
                .unzip();
            sqlx::query(
                "UPDATE rooms SET last_seq = k.seq
                 FROM UNNEST($1::uuid[], $2::int8[]) AS k (id, seq) WHERE rooms.id = k.id",
            )
            .bind(&rooms)
            .bind(&seqs)
            .execute(&mut **tx)
            .await
            .context("bumping the rooms' seqs")?;
        }
        Ok(())
    }

    /// One attempt at a batch, in one transaction.
    async fn try_append(&self, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
        let mut tx = self.pool.begin().await?;
        let context = Self::append_context(&mut tx, batch).await?;
        let plan = plan_appends(batch, context);
        Self::write_plan(&mut tx, &plan).await?;
        tx.commit().await.context("committing messages")?;
        Ok(plan.results)
    }
}

async fn position_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    room_id: RoomId,
    user_id: UserId,
) -> Result<(Membership, u64)> {
    let row = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2), last_seq
         FROM rooms WHERE id = $1",
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

async fn room_kind(tx: &mut Transaction<'_, Postgres>, room_id: RoomId) -> Result<RoomKind> {
    let kind: Option<i64> = sqlx::query_scalar("SELECT kind FROM rooms WHERE id = $1")
        .bind(room_id.uuid())
        .fetch_optional(&mut **tx)
        .await?;
    let kind = kind.ok_or_else(|| Error::NotFound(format!("room {room_id} does not exist")))?;
    crate::rows::room_kind_from_db(kind)
        .ok_or_else(|| anyhow::anyhow!("room {room_id} has kind {kind}").into())
}

fn from_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// How many group rooms the user is in.
async fn group_rooms_of(tx: &mut Transaction<'_, Postgres>, user_id: UserId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM room_members m JOIN rooms r ON r.id = m.room_id
         WHERE m.user_id = $1 AND r.kind = 1",
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
    tx: &mut Transaction<'_, Postgres>,
    user_id: UserId,
    keep: SessionId,
    now: Timestamp,
) -> Result<Vec<SessionId>> {
    let revoked: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $1
         WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL AND expires_at > $1
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
impl Store for PostgresStore {
    async fn setting_or_init(&self, key: &str, default: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(default)
        .execute(&self.pool)
        .await?;
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    async fn remove_setting(&self, key: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("DELETE FROM settings WHERE key = $1 RETURNING value")
            .bind(key)
            .fetch_optional(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.uuid())
        .bind(username.as_str())
        .bind(username.key())
        .bind(username.skeleton())
        .bind(password_hash)
        .bind(now.0)
        .execute(&self.pool)
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
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username_key = $1)")
                .bind(username.key())
                .fetch_optional(&self.pool)
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
                 WHERE username_key = $1 AND deleted_at IS NULL",
        )
        .bind(username.key())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?)))
            .transpose()
    }

    async fn user_by_name(&self, username: &Username) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username FROM users WHERE username_key = $1 AND deleted_at IS NULL",
        )
        .bind(username.key())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_session(&self, session: NewSession) -> Result<Vec<SessionId>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, user_agent, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(session.id.uuid())
        .bind(session.user_id.uuid())
        .bind(&session.user_agent)
        .bind(session.now.0)
        .bind(session.expires_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&session.refresh_hash)
        .bind(session.id.uuid())
        .bind(session.expires_at.0)
        .execute(&mut *tx)
        .await?;
        // Newest first: whatever lies beyond the cap is the oldest.
        let live: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
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
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2")
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
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3
               AND u.deleted_at IS NULL",
        )
        .bind(session_id.uuid())
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The token's row lock: two nodes presenting the same token at once
        // take turns, so the second one sees it spent and detects reuse.
        let row = sqlx::query(
            "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at, s.created_at
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = $1
             FOR UPDATE",
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
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2")
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
        sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2")
            .bind(now.0)
            .bind(presented_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(next_hash)
        .bind(session_id.uuid())
        .bind(expires_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sessions SET expires_at = $1, last_seen_at = $2 WHERE id = $3")
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
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
             ORDER BY created_at, id",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_all(&self.pool)
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
            "UPDATE sessions SET revoked_at = $1
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.0)
        .bind(session_id.uuid())
        .bind(user_id.uuid())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_user(&self, user_id: UserId, now: Timestamp) -> Result<Vec<SessionId>> {
        let mut tx = self.pool.begin().await?;
        let live: Vec<SessionId> = sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM sessions
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(SessionId::from_uuid)
        .collect();
        sqlx::query(
            "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id.uuid())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM refresh_tokens
             WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
        )
        .bind(user_id.uuid())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM room_members WHERE user_id = $1")
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE users SET username = $2, password_hash = '', deleted_at = $3
             WHERE id = $1",
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
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now.0)
            .bind(session_id.uuid())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn purge_sessions(&self, now: Timestamp, keep_ended: std::time::Duration) -> Result<u64> {
        let ended_before = Timestamp(now.0 - Timestamp(0).plus(keep_ended).0);
        let mut purged = 0;
        loop {
            let tokens = sqlx::query(
                "DELETE FROM refresh_tokens WHERE token_hash IN
                    (SELECT token_hash FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
            )
            .bind(now.0)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            let sessions = sqlx::query(
                "DELETE FROM sessions WHERE id IN
                    (SELECT id FROM sessions WHERE revoked_at < $1 OR expires_at < $1 LIMIT $2)",
            )
            .bind(ended_before.0)
            .bind(PURGE_BATCH)
            .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
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
        let mut tx = self.pool.begin().await?;
        if group_rooms_of(&mut tx, creator).await? >= i64::from(max_rooms) {
            return Err(too_many_rooms(max_rooms));
        }
        sqlx::query(
            "INSERT INTO rooms (id, name, name_key, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
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
        sqlx::query("INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)")
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
        let mut tx = self.pool.begin().await?;
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
        let already = position_in(&mut *tx, room_id, user_id).await?.0 == Membership::Member;
        if !already && group_rooms_of(&mut tx, user_id).await? >= i64::from(max_rooms) {
            return Err(too_many_rooms(max_rooms));
        }
        sqlx::query(
            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)
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
        let mut tx = self.pool.begin().await?;
        if room_kind(&mut tx, room_id).await? == RoomKind::Direct {
            return Err(Error::Refused(format!(
                "room {room_id} is a direct room: it cannot be left"
            )));
        }
        sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.uuid())
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_rooms(&self, user_id: UserId, page: RoomPage) -> Result<Vec<Room>> {
        let visible = if page.joined_only {
            "r.id IN (SELECT room_id FROM room_members WHERE user_id = $1)"
        } else {
            "(r.kind = 1 OR r.id IN (SELECT room_id FROM room_members WHERE user_id = $1))"
        };
        let rows = sqlx::query(&format!(
            "{ROOM_SELECT} WHERE {visible} AND r.id > $2 ORDER BY r.id LIMIT $3"
        ))
        .bind(user_id.uuid())
        .bind(page.after_uuid())
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room> {
        let key = direct_key(me.id, other.id);
        let mut names = [me.username.as_str(), other.username.as_str()];
        names.sort_unstable();
        let mut tx = self.pool.begin().await?;
        // Another node may open the same pair's room at the same moment: the
        // unique key lets one insert win, and both then read the winner's id.
        let fresh = RoomId::new();
        sqlx::query(
            "INSERT INTO rooms (id, name, kind, direct_key, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (direct_key) DO NOTHING",
        )
        .bind(fresh.uuid())
        .bind(names.join(" & "))
        .bind(crate::rows::room_kind_to_db(RoomKind::Direct))
        .bind(&key)
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        let room_id: Uuid = sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = $1")
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?;
        let room_id = RoomId::from_uuid(room_id);
        for member in [me.id, other.id] {
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)
                 ON CONFLICT (room_id, user_id) DO NOTHING",
            )
            .bind(room_id.uuid())
            .bind(member.uuid())
            .bind(now.0)
            .execute(&mut *tx)
            .await?;
        }
        let room = Self::room_in(&mut tx, room_id, me.id).await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn room_positions_of(&self, user_id: UserId) -> Result<Vec<(RoomId, u64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT r.id, r.last_seq FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = $1",
        )
        .bind(user_id.uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(room_seqs(rows))
    }

    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        let ids: Vec<Uuid> = room_ids.iter().map(|id| id.uuid()).collect();
        let rows: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT id, last_seq FROM rooms WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(room_seqs(rows))
    }

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership> {
        Ok(position_in(&self.pool, room_id, user_id).await?.0)
    }

    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)> {
        position_in(&self.pool, room_id, user_id).await
    }

    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>> {
        let mut attempt = 1;
        loop {
            match self.try_append(&batch).await {
                Err(Error::Database(e)) if is_unique_violation(&e) => {
                    if attempt == APPEND_ATTEMPTS {
                        return Err(already_exists_if_unique(e, || {
                            "a client_msg_id of this batch kept being used at the same moment"
                                .to_owned()
                        }));
                    }
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "another node used a key of this batch: planning again"
                    );
                }
                outcome => return outcome,
            }
        }
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
            from_seq(before_seq)
        };
        let rows = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.seq < $2 ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(room_id.uuid())
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
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
            "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.seq > $2 ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(room_id.uuid())
        .bind(from_seq(after_seq))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        newest_first_page(&rows, limit)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

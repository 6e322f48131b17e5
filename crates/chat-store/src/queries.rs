//! The store, written once for both databases.
//!
//! Every statement here is text both SQLite and PostgreSQL accept, with
//! `$N` placeholders: PostgreSQL's own, and for SQLite a named parameter
//! that sqlx binds by its number, so `$2` may come before `$1` and `$1` may
//! stand twice (the tests below check it on both databases). The code is
//! generic over sqlx's `Database`: the bounds on `impl Store` name the
//! column types it binds and reads, nothing more.
//!
//! A database supplies the rest through [`Backend`]: its pools (SQLite
//! writes on one connection and reads on others; PostgreSQL has one pool),
//! the batch append and `last_seqs` (arrays on PostgreSQL, bound lists on
//! SQLite), and the one statement whose text differs (a row lock SQLite
//! has no syntax for).

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Transaction,
    Type,
};
use uuid::Uuid;

use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::membership::{Log, Members};
use crate::model::{
    Appended, ChangeKind, Changed, MemberCursor, MemberEntry, Membership, MembershipChange,
    MembershipChanged, MembershipKind, MessageChange, NewMessage, NewRoom, NewSession, RoomPage,
    Rotation, Thread, DELETED_USERNAME,
};
use crate::read_state::{ReadMarker, ReadPosition, ReadSql};
use crate::rows::{
    event_from_row, message_from_row, newest_first_page, role_to_db, room_from_row,
    room_kind_to_db, user_from_row, visibility_to_db,
};
use crate::sql::{
    already_exists_if_unique, from_seq, is_unique_violation, room_seqs, to_seq, too_many_rooms,
    EVENT_DELETE, EVENT_EDIT, EVENT_REACTION_ADDED, EVENT_REACTION_REMOVED, EVENT_SELECT,
    MESSAGE_SELECT,
};
use crate::store::Store;
use chat_domain::{
    DisplayName, Emoji, MemberChange, MemberRole, Message, MessageId, Room, RoomAction, RoomEvent,
    RoomEventKind, RoomId, RoomKind, RoomName, RoomTopic, Session, SessionId, Standing, Timestamp,
    User, UserId, Username, MAX_BLOCKED_USERS, MAX_REACTIONS_PER_USER,
};

/// A room as the user bound to `$1` sees it: a direct room is named after
/// the other member. (`LIMIT 1`: PostgreSQL fails a scalar subquery of
/// more rows; SQLite reads the first row of one whatever it says.)
///
/// A member (`me`) also sees its read state: its marker (and in a direct
/// room the other member's); the messages from others after it that are
/// not deleted, and those of them that mention it (cut at
/// `MAX_UNREAD_COUNT` when read from the row); and the id of the newest
/// top-level message that is not deleted (`rooms.last_message_id`, kept
/// by the writers), whose messages `rooms_from_rows` reads for a whole
/// page at once.
///
/// The unread count costs the same however far behind the marker is
/// (`migrations/*/..._unread_counts.sql`): the room's messages after the
/// marker are `msg_count - read_ord`; the member's own among them its
/// newest `sender_ord` (one probe of `messages_by_sender`) minus
/// `read_sent`; the others' deleted ones a range of the small
/// `messages_deleted` index. Mentions are counted the same way from their
/// numbers (`message_mentions.ord`, `read_mentions`): one probe of
/// `message_mentions_ord`, less the removed numbered rows after the
/// marker, plus the unnumbered ones an edit added (two short ranges of
/// `message_mentions_removed` and `message_mentions_ord`). A room read
/// to its end costs none of these probes, and one with no mention row
/// after the marker only one for its mentions.
const ROOM_SELECT: &str = "SELECT r.id, r.kind, r.last_seq, r.topic, r.visibility, r.member_count,
        me.role AS my_role,
        EXISTS (SELECT 1 FROM room_invites i WHERE i.room_id = r.id AND i.user_id = $1) AS invited,
        CASE WHEN r.kind = 2 THEN COALESCE(
            (SELECT u.username FROM room_members om JOIN users u ON u.id = om.user_id
             WHERE om.room_id = r.id AND om.user_id <> $1 LIMIT 1), r.name)
        ELSE r.name END AS name,
        me.user_id IS NOT NULL AS joined,
        COALESCE(me.last_read_seq, 0) AS last_read_seq,
        CASE WHEN r.kind = 2 AND me.user_id IS NOT NULL THEN COALESCE(
            (SELECT om.last_read_seq FROM room_members om
             WHERE om.room_id = r.id AND om.user_id <> $1 LIMIT 1), 0)
        ELSE 0 END AS peer_last_read_seq,
        CASE WHEN me.user_id IS NULL OR me.last_read_seq >= r.last_seq THEN 0 ELSE
            r.msg_count - me.read_ord
            - (COALESCE((SELECT x.sender_ord FROM messages x
                         WHERE x.room_id = r.id AND x.sender_id = $1
                         ORDER BY x.seq DESC LIMIT 1), 0) - me.read_sent)
            - (SELECT COUNT(*) FROM messages x
               WHERE x.room_id = r.id AND x.deleted AND x.seq > me.last_read_seq
                   AND x.sender_id <> $1)
        END AS unread_count,
        CASE WHEN me.user_id IS NULL OR me.last_read_seq >= r.last_seq
            OR NOT EXISTS (SELECT 1 FROM message_mentions mm
                           WHERE mm.user_id = $1 AND mm.room_id = r.id
                               AND mm.seq > me.last_read_seq) THEN 0 ELSE
            COALESCE((SELECT MAX(mm.ord) FROM message_mentions mm
                      WHERE mm.user_id = $1 AND mm.room_id = r.id), 0) - me.read_mentions
            - (SELECT COUNT(*) FROM message_mentions mm
               WHERE mm.user_id = $1 AND mm.room_id = r.id AND mm.removed = TRUE
                   AND mm.seq > me.last_read_seq)
            + (SELECT COUNT(*) FROM message_mentions mm
               WHERE mm.user_id = $1 AND mm.room_id = r.id AND mm.ord IS NULL
                   AND mm.seq > me.last_read_seq)
        END AS mention_count,
        CASE WHEN me.user_id IS NULL THEN NULL ELSE r.last_message_id END AS last_message_id
    FROM rooms r LEFT JOIN room_members me ON me.room_id = r.id AND me.user_id = $1";

/// The bound below a page: `before_seq` 0 means from the newest.
fn before(before_seq: u64) -> i64 {
    if before_seq == 0 {
        i64::MAX
    } else {
        from_seq(before_seq)
    }
}

/// The event of a reaction added or removed.
fn reaction(message: &Message, emoji: &Emoji, user: &User, added: bool) -> RoomEventKind {
    RoomEventKind::Reaction {
        message_id: message.id,
        emoji: emoji.as_str().to_owned(),
        user: user.clone(),
        added,
    }
}

/// Rows one purge statement deletes at most: a short transaction, so that
/// sends are not held up behind it.
const PURGE_BATCH: i64 = 5000;

/// What one database adds to the shared store: where statements run, and
/// the few operations its dialect or its writers make different.
pub trait Backend: Send + Sync + 'static {
    type Db: Database;

    /// The refresh token being rotated, with its session. Where several
    /// nodes share the database it locks the token's row, so that two
    /// nodes presenting the same token take turns and the second sees it
    /// spent.
    const TOKEN_FOR_ROTATION: &'static str;

    /// A room's newest seq, read to take the next one. Where several nodes
    /// share the database it locks the room's row, so that the room's
    /// events are numbered one transaction at a time.
    const ROOM_SEQ_FOR_UPDATE: &'static str;

    /// A user's row, read to make their changes to what they own take
    /// turns (their blocks): locked where several nodes share the
    /// database; SQLite's single writer orders them already.
    const USER_FOR_UPDATE: &'static str;

    /// A message's text was erased: a database that keeps freed bytes in
    /// files of its own (SQLite's WAL) gets rid of them soon.
    fn erased(&self) {}

    /// Where writes go, and the reads inside them.
    fn writer(&self) -> &Pool<Self::Db>;

    /// Where reads outside a transaction go.
    fn reader(&self) -> &Pool<Self::Db>;

    /// `Store::last_seqs`: a list of ids is bound differently by each.
    fn last_seqs(
        &self,
        room_ids: &[RoomId],
    ) -> impl Future<Output = Result<Vec<(RoomId, u64)>>> + Send;

    /// `Store::append_messages`: the hot path, tuned for each database.
    fn append_messages(
        &self,
        batch: Arc<[NewMessage]>,
    ) -> impl Future<Output = Result<Vec<Result<Appended>>>> + Send;

    /// Closes the pools, after pending writes.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// How many rows a statement changed: each driver's result says it, but
/// sqlx has no trait for it.
pub trait Affected {
    fn affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// The statements that more than one operation runs, for any database that
/// binds and reads their column types (a subset of the bounds on
/// `impl Store` below: these bind no text).
struct Sql<DB>(PhantomData<DB>);

impl<DB> Sql<DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB>,
    [u8]: Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    str: Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    async fn room_in(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        viewer: UserId,
    ) -> Result<Room> {
        let row = sqlx::query(&format!("{ROOM_SELECT} WHERE r.id = $2"))
            .bind(viewer.uuid())
            .bind(room_id.uuid())
            .fetch_one(&mut **tx)
            .await?;
        let mut rooms = Sql::<DB>::rooms_from_rows(&mut **tx, &[row]).await?;
        rooms
            .pop()
            .ok_or_else(|| anyhow::anyhow!("a room read back is missing").into())
    }

    async fn position_in<'e>(
        executor: impl Executor<'e, Database = DB>,
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

    /// How many group rooms the user is in.
    async fn group_rooms_of(tx: &mut Transaction<'_, DB>, user_id: UserId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = $1 AND r.kind = 1",
        )
        .bind(user_id.uuid())
        .fetch_one(&mut **tx)
        .await?)
    }

    /// Revokes the user's live sessions but `keep`, returning them.
    async fn revoke_others_in(
        tx: &mut Transaction<'_, DB>,
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

    /// Adds a member to a room with a role; `ON CONFLICT` makes a second
    /// add a no-op. The new member's read marker starts at the room's
    /// newest seq: what was said before it joined is not unread.
    async fn add_member(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        user_id: UserId,
        role: MemberRole,
        now: Timestamp,
    ) -> Result<()> {
        // With the numbers the unread count starts from: every message so
        // far, and the member's own (from before, if it is back).
        sqlx::query(
            "INSERT INTO room_members
                 (room_id, user_id, joined_at, last_read_seq, read_ord, read_sent, read_mentions,
                  role)
             SELECT r.id, $2, $3, r.last_seq, r.msg_count,
                 COALESCE((SELECT x.sender_ord FROM messages x
                           WHERE x.room_id = r.id AND x.sender_id = $2
                           ORDER BY x.seq DESC LIMIT 1), 0),
                 COALESCE((SELECT MAX(mm.ord) FROM message_mentions mm
                           WHERE mm.user_id = $2 AND mm.room_id = r.id), 0),
                 $4
             FROM rooms r WHERE r.id = $1
             ON CONFLICT (room_id, user_id) DO NOTHING",
        )
        .bind(room_id.uuid())
        .bind(user_id.uuid())
        .bind(now.0)
        .bind(role_to_db(role))
        .execute(&mut **tx)
        .await?;
        Members::<DB>::count_members(tx, room_id).await
    }

    async fn direct_room_id(tx: &mut Transaction<'_, DB>, key: &[u8]) -> Result<Option<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = $1")
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?,
        )
    }

    /// Rooms from rows of `ROOM_SELECT`, each with its newest top-level
    /// message (its `last_message_id`), read in one statement.
    async fn rooms_from_rows(
        connection: &mut DB::Connection,
        rows: &[DB::Row],
    ) -> Result<Vec<Room>> {
        let mut rooms = Vec::with_capacity(rows.len());
        let mut wanted = Vec::new();
        for row in rows {
            let room = room_from_row(row)?;
            if let Some(id) = row.try_get::<Option<Uuid>, _>("last_message_id")? {
                wanted.push(id);
            }
            rooms.push(room);
        }
        let mut messages = Self::messages_by_id(connection, &wanted).await?;
        for room in &mut rooms {
            room.last_message = messages.remove(&room.id);
        }
        Ok(rooms)
    }

    /// The messages with these ids, by their room (one each here).
    async fn messages_by_id(
        connection: &mut DB::Connection,
        ids: &[Uuid],
    ) -> Result<HashMap<RoomId, Message>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        // Padded to a power of two with copies of the last id, so that a
        // few statement texts serve every page and stay prepared.
        let count = ids.len().next_power_of_two();
        let placeholders = (1..=count)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let statement = format!("{MESSAGE_SELECT} WHERE m.id IN ({placeholders})");
        let mut query = sqlx::query(&statement);
        let last = ids.last().expect("not empty");
        for id in ids
            .iter()
            .chain(std::iter::repeat_n(last, count - ids.len()))
        {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(&mut *connection).await?;
        let mut messages = HashMap::with_capacity(rows.len());
        for row in &rows {
            let message = message_from_row(row)?;
            messages.insert(message.room_id, message);
        }
        Ok(messages)
    }
}

/// A user with an account by the key of their username (`$1`).
const USER_BY_KEY: &str =
    "SELECT id, username, display_name FROM users WHERE username_key = $1 AND deleted_at IS NULL";

/// A user with an account, by username (any case).
///
/// # Errors
/// `NotFound` when there is none.
async fn user_by_key<DB>(tx: &mut Transaction<'_, DB>, username: &Username) -> Result<User>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    let row = sqlx::query(USER_BY_KEY)
        .bind(username.key())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {:?} does not exist", username.as_str())))?;
    user_from_row(&row)
}

/// The refusal of a change that needs the target to be a member.
fn not_a_member(target: &User, room_id: RoomId) -> Error {
    Error::Refused(format!(
        "{:?} is not a member of room {room_id}",
        target.username
    ))
}

/// The key that makes a pair of users' direct room unique: both ids, ordered.
fn direct_key(a: UserId, b: UserId) -> Vec<u8> {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    [low.uuid().as_bytes().as_slice(), high.uuid().as_bytes()].concat()
}

#[async_trait]
impl<B, DB> Store for B
where
    B: Backend<Db = DB>,
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> &'q [u8]: Encode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    str: Type<DB>,
    [u8]: Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    DB::QueryResult: Affected,
{
    async fn setting_or_init(&self, key: &str, default: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(default)
        .execute(self.writer())
        .await?;
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(self.writer())
            .await?;
        Ok(value)
    }

    async fn remove_setting(&self, key: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("DELETE FROM settings WHERE key = $1 RETURNING value")
            .bind(key)
            .fetch_optional(self.writer())
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
        .execute(self.writer())
        .await;
        let Err(error) = inserted else {
            return Ok(User::named(id, username.as_str()));
        };
        if !is_unique_violation(&error) {
            return Err(error.into());
        }
        // Which name it collides with says which answer to give.
        let taken: Option<bool> =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username_key = $1)")
                .bind(username.key())
                .fetch_optional(self.writer())
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
            "SELECT id, username, display_name, password_hash FROM users
                 WHERE username_key = $1 AND deleted_at IS NULL AND disabled_at IS NULL",
        )
        .bind(username.key())
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| Ok((user_from_row(&row)?, row.try_get("password_hash")?)))
            .transpose()
    }

    async fn user_by_name(&self, username: &Username) -> Result<Option<User>> {
        let row = sqlx::query(USER_BY_KEY)
            .bind(username.key())
            .fetch_optional(self.reader())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn create_session(&self, session: NewSession) -> Result<Vec<SessionId>> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, user_agent, created_at, last_seen_at, expires_at)
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(session.id.uuid())
        .bind(session.user_id.uuid())
        .bind(session.user_agent.as_str())
        .bind(session.now.0)
        .bind(session.expires_at.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(session.refresh_hash.as_slice())
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
            "SELECT u.id, u.username, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3
               AND u.deleted_at IS NULL AND u.disabled_at IS NULL",
        )
        .bind(session_id.uuid())
        .bind(user_id.uuid())
        .bind(now.0)
        .fetch_optional(self.reader())
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
        let mut tx = self.writer().begin().await?;
        let row = sqlx::query(B::TOKEN_FOR_ROTATION)
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
        .fetch_all(self.reader())
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
        .execute(self.writer())
        .await?;
        Ok(done.affected() == 1)
    }

    async fn delete_user(&self, user_id: UserId, now: Timestamp) -> Result<Vec<SessionId>> {
        let mut tx = self.writer().begin().await?;
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
        // The rooms it owned pass to their next members (as an owner's
        // leaving hands them on), and every room it was in counts one less.
        let owned: Vec<Uuid> =
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1 AND role = $2")
                .bind(user_id.uuid())
                .bind(role_to_db(MemberRole::Owner))
                .fetch_all(&mut *tx)
                .await?;
        for room_id in owned.into_iter().map(RoomId::from_uuid) {
            if let Some(next) = Members::<DB>::successor(&mut tx, room_id, user_id).await? {
                Members::<DB>::set_role(&mut tx, room_id, next, MemberRole::Owner).await?;
            }
        }
        sqlx::query(
            "UPDATE rooms SET member_count = member_count - 1
             WHERE id IN (SELECT room_id FROM room_members WHERE user_id = $1)",
        )
        .bind(user_id.uuid())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM room_members WHERE user_id = $1")
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM room_invites WHERE user_id = $1")
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
            .execute(self.writer())
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
            .execute(self.writer())
            .await?
            .affected();
            let sessions = sqlx::query(
                "DELETE FROM sessions WHERE id IN
                    (SELECT id FROM sessions WHERE revoked_at < $1 OR expires_at < $1 LIMIT $2)",
            )
            .bind(ended_before.0)
            .bind(PURGE_BATCH)
            .execute(self.writer())
            .await?
            .affected();
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
        let mut tx = self.writer().begin().await?;
        let revoked = Sql::<DB>::revoke_others_in(&mut tx, user_id, keep, now).await?;
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
        let mut tx = self.writer().begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(password_hash)
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await?;
        let revoked = Sql::<DB>::revoke_others_in(&mut tx, user_id, keep, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn create_room(&self, room: NewRoom) -> Result<Room> {
        let mut tx = self.writer().begin().await?;
        let creator = &room.creator;
        if Sql::<DB>::group_rooms_of(&mut tx, creator.id).await? >= i64::from(room.max_rooms) {
            return Err(too_many_rooms(room.max_rooms));
        }
        sqlx::query(
            "INSERT INTO rooms (id, name, name_key, kind, topic, visibility, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(room.id.uuid())
        .bind(room.name.as_str())
        .bind(room.name.key())
        .bind(room_kind_to_db(RoomKind::Group))
        .bind(room.topic.as_str())
        .bind(visibility_to_db(room.visibility))
        .bind(room.now.0)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            already_exists_if_unique(e, || {
                format!("a room named {:?} already exists", room.name.as_str())
            })
        })?;
        Sql::<DB>::add_member(&mut tx, room.id, creator.id, MemberRole::Owner, room.now).await?;
        let created = Sql::<DB>::room_in(&mut tx, room.id, creator.id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn change_membership(&self, change: &MembershipChange) -> Result<MembershipChanged> {
        let room_id = change.room_id;
        let actor = &change.actor;
        let mut tx = self.writer().begin().await?;
        let place =
            Members::<DB>::place(&mut tx, Self::ROOM_SEQ_FOR_UPDATE, room_id, actor.id).await?;
        let mut log = Log::new(room_id, place.last_seq, change.at);
        let mut invited = None;
        match &change.kind {
            MembershipKind::Join { max_rooms } => {
                if place.kind == RoomKind::Direct && place.role().is_none() {
                    return Err(Error::Forbidden(format!(
                        "room {room_id} is a direct room: nobody else can join it"
                    )));
                }
                place.permit(RoomAction::Join, room_id)?;
                if place.role().is_none() {
                    if Sql::<DB>::group_rooms_of(&mut tx, actor.id).await? >= i64::from(*max_rooms)
                    {
                        return Err(too_many_rooms(*max_rooms));
                    }
                    Members::<DB>::drop_invite(&mut tx, room_id, actor.id).await?;
                    Members::<DB>::member_event(
                        &mut tx,
                        &mut log,
                        actor,
                        MemberChange::Joined,
                        Some(MemberRole::Member),
                        actor,
                        "",
                    )
                    .await?;
                    // The marker starts after the join's own event.
                    Members::<DB>::finish(&mut tx, &log).await?;
                    Sql::<DB>::add_member(
                        &mut tx,
                        room_id,
                        actor.id,
                        MemberRole::Member,
                        change.at,
                    )
                    .await?;
                }
            }
            MembershipKind::Leave => {
                if place.kind == RoomKind::Direct {
                    return Err(Error::Refused(format!(
                        "room {room_id} is a direct room: it cannot be left"
                    )));
                }
                match place.standing {
                    // Declining: the invitation goes, and nothing is said.
                    Standing::Invited => {
                        Members::<DB>::drop_invite(&mut tx, room_id, actor.id).await?;
                    }
                    Standing::Stranger | Standing::Banned => {}
                    Standing::Member(role) => {
                        if role == MemberRole::Owner {
                            if let Some(next) =
                                Members::<DB>::successor(&mut tx, room_id, actor.id).await?
                            {
                                Members::<DB>::set_role(&mut tx, room_id, next, MemberRole::Owner)
                                    .await?;
                                let next = Members::<DB>::user(&mut tx, next).await?;
                                Members::<DB>::member_event(
                                    &mut tx,
                                    &mut log,
                                    &next,
                                    MemberChange::RoleChanged,
                                    Some(MemberRole::Owner),
                                    actor,
                                    "",
                                )
                                .await?;
                            }
                        }
                        Members::<DB>::remove(&mut tx, room_id, actor.id).await?;
                        Members::<DB>::member_event(
                            &mut tx,
                            &mut log,
                            actor,
                            MemberChange::Left,
                            None,
                            actor,
                            "",
                        )
                        .await?;
                    }
                }
            }
            MembershipKind::Invite { username } => {
                place.permit(RoomAction::Invite, room_id)?;
                let target = user_by_key(&mut tx, username).await?;
                let target_place =
                    Members::<DB>::place(&mut tx, Self::ROOM_SEQ_FOR_UPDATE, room_id, target.id)
                        .await?;
                match target_place.standing {
                    Standing::Member(_) => {
                        return Err(Error::Refused(format!(
                            "{:?} is already a member of room {room_id}",
                            target.username
                        )))
                    }
                    Standing::Banned => {
                        return Err(Error::Refused(format!(
                            "{:?} is banned from room {room_id}",
                            target.username
                        )))
                    }
                    Standing::Invited | Standing::Stranger => {}
                }
                if Members::<DB>::blocks(&mut tx, target.id, actor.id).await? {
                    return Err(Error::Forbidden("you cannot message this user".into()));
                }
                if target_place.standing == Standing::Stranger {
                    sqlx::query(
                        "INSERT INTO room_invites (room_id, user_id, by_id, at) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(room_id.uuid())
                    .bind(target.id.uuid())
                    .bind(actor.id.uuid())
                    .bind(change.at.0)
                    .execute(&mut *tx)
                    .await
                    .context("storing an invitation")?;
                    Members::<DB>::member_event(
                        &mut tx,
                        &mut log,
                        &target,
                        MemberChange::Invited,
                        None,
                        actor,
                        "",
                    )
                    .await?;
                    Members::<DB>::finish(&mut tx, &log).await?;
                    let seen = Sql::<DB>::room_in(&mut tx, room_id, target.id).await?;
                    invited = Some((target.id, seen));
                }
            }
            MembershipKind::Update {
                name,
                topic,
                visibility,
            } => {
                place.permit(RoomAction::Update, room_id)?;
                let name_key = name.as_ref().map(RoomName::key);
                let changed = sqlx::query(
                    "UPDATE rooms SET name = COALESCE($2, name), name_key = COALESCE($3, name_key),
                         topic = COALESCE($4, topic), visibility = COALESCE($5, visibility)
                     WHERE id = $1 AND (name <> COALESCE($2, name)
                         OR topic <> COALESCE($4, topic) OR visibility <> COALESCE($5, visibility))",
                )
                .bind(room_id.uuid())
                .bind(name.as_ref().map(RoomName::as_str))
                .bind(name_key.as_deref())
                .bind(topic.as_ref().map(RoomTopic::as_str))
                .bind(visibility.map(visibility_to_db))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    already_exists_if_unique(e, || {
                        format!(
                            "a room named {:?} already exists",
                            name.as_ref().map(RoomName::as_str).unwrap_or_default()
                        )
                    })
                })?;
                if changed.affected() > 0 {
                    Members::<DB>::room_updated_event(&mut tx, &mut log, actor).await?;
                }
            }
            MembershipKind::SetRole { target, role } => {
                place.permit(RoomAction::SetRole, room_id)?;
                let target = Members::<DB>::user(&mut tx, *target).await?;
                let target_place =
                    Members::<DB>::place(&mut tx, Self::ROOM_SEQ_FOR_UPDATE, room_id, target.id)
                        .await?;
                let Some(now) = target_place.role() else {
                    return Err(not_a_member(&target, room_id));
                };
                if target.id == actor.id {
                    return Err(Error::Refused(
                        "the owner's role changes only by making another member the owner".into(),
                    ));
                }
                if now != *role {
                    Members::<DB>::set_role(&mut tx, room_id, target.id, *role).await?;
                    Members::<DB>::member_event(
                        &mut tx,
                        &mut log,
                        &target,
                        MemberChange::RoleChanged,
                        Some(*role),
                        actor,
                        "",
                    )
                    .await?;
                    if *role == MemberRole::Owner {
                        Members::<DB>::set_role(&mut tx, room_id, actor.id, MemberRole::Admin)
                            .await?;
                        Members::<DB>::member_event(
                            &mut tx,
                            &mut log,
                            actor,
                            MemberChange::RoleChanged,
                            Some(MemberRole::Admin),
                            actor,
                            "",
                        )
                        .await?;
                    }
                }
            }
            MembershipKind::Remove {
                target,
                ban,
                reason,
            } => {
                let target = Members::<DB>::user(&mut tx, *target).await?;
                let target_place =
                    Members::<DB>::place(&mut tx, Self::ROOM_SEQ_FOR_UPDATE, room_id, target.id)
                        .await?;
                place.permit(RoomAction::Remove(target_place.role()), room_id)?;
                let banned_before = target_place.standing == Standing::Banned;
                match target_place.standing {
                    Standing::Member(_) => {
                        Members::<DB>::remove(&mut tx, room_id, target.id).await?;
                    }
                    Standing::Invited => {
                        Members::<DB>::drop_invite(&mut tx, room_id, target.id).await?;
                    }
                    Standing::Stranger if !*ban => return Err(not_a_member(&target, room_id)),
                    Standing::Stranger | Standing::Banned => {}
                }
                if *ban && !banned_before {
                    sqlx::query(
                        "INSERT INTO room_bans (room_id, user_id, by_id, reason, at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(room_id.uuid())
                    .bind(target.id.uuid())
                    .bind(actor.id.uuid())
                    .bind(reason.as_str())
                    .bind(change.at.0)
                    .execute(&mut *tx)
                    .await
                    .context("storing a ban")?;
                }
                // A ban of one banned already, or a removal of one banned
                // (no longer a member), says nothing new.
                if !banned_before {
                    let what = if *ban {
                        MemberChange::Banned
                    } else {
                        MemberChange::Removed
                    };
                    Members::<DB>::member_event(
                        &mut tx,
                        &mut log,
                        &target,
                        what,
                        None,
                        actor,
                        reason.as_str(),
                    )
                    .await?;
                }
            }
            MembershipKind::Unban { target } => {
                let target = Members::<DB>::user(&mut tx, *target).await?;
                place.permit(RoomAction::Unban, room_id)?;
                let lifted =
                    sqlx::query("DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2")
                        .bind(room_id.uuid())
                        .bind(target.id.uuid())
                        .execute(&mut *tx)
                        .await
                        .context("lifting a ban")?;
                if lifted.affected() > 0 {
                    Members::<DB>::member_event(
                        &mut tx,
                        &mut log,
                        &target,
                        MemberChange::Unbanned,
                        None,
                        actor,
                        "",
                    )
                    .await?;
                }
            }
        }
        Members::<DB>::finish(&mut tx, &log).await?;
        let room = Sql::<DB>::room_in(&mut tx, room_id, actor.id).await?;
        tx.commit()
            .await
            .context("committing a membership change")?;
        Ok(MembershipChanged {
            room,
            events: log.events,
            invited,
        })
    }

    async fn list_members(
        &self,
        room_id: RoomId,
        viewer: UserId,
        after: Option<MemberCursor>,
        limit: u32,
    ) -> Result<Vec<MemberEntry>> {
        let mut conn = self.reader().acquire().await?;
        Sql::<DB>::position_in(&mut *conn, room_id, viewer)
            .await?
            .0
            .require_member(room_id)?;
        Members::<DB>::page(&mut conn, room_id, after, limit).await
    }

    async fn update_profile(
        &self,
        user_id: UserId,
        display_name: Option<&DisplayName>,
    ) -> Result<(User, Vec<RoomId>)> {
        let mut tx = self.writer().begin().await?;
        if let Some(name) = display_name {
            sqlx::query(
                "UPDATE users SET display_name = $1, display_key = $2
                 WHERE id = $3 AND deleted_at IS NULL",
            )
            .bind(name.as_str())
            .bind(name.key())
            .bind(user_id.uuid())
            .execute(&mut *tx)
            .await
            .context("setting a display name")?;
        }
        let user = Members::<DB>::user(&mut tx, user_id).await?;
        let rooms: Vec<Uuid> =
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1")
                .bind(user_id.uuid())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((user, rooms.into_iter().map(RoomId::from_uuid).collect()))
    }

    async fn search_users(&self, viewer: UserId, prefix: &str, limit: u32) -> Result<Vec<User>> {
        // A prefix of a key is the key's first characters: `substr` counts
        // characters on both databases, where a range of the index would
        // depend on PostgreSQL's collation.
        let rows = sqlx::query(
            "SELECT id, username, display_name FROM users u
             WHERE u.deleted_at IS NULL
                 AND (substr(u.username_key, 1, length($1)) = $1
                      OR substr(u.display_key, 1, length($1)) = $1)
                 AND NOT EXISTS (SELECT 1 FROM user_blocks b
                                 WHERE b.blocker_id = u.id AND b.blocked_id = $2)
             ORDER BY u.username_key LIMIT $3",
        )
        .bind(prefix)
        .bind(viewer.uuid())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .context("searching users")?;
        rows.iter().map(user_from_row).collect()
    }

    async fn block_user(
        &self,
        blocker: UserId,
        username: &Username,
        now: Timestamp,
    ) -> Result<User> {
        let mut tx = self.writer().begin().await?;
        let blocked = user_by_key(&mut tx, username).await?;
        if blocked.id == blocker {
            return Err(Error::Invalid("username: you cannot block yourself".into()));
        }
        // Counted and inserted in one transaction: the writer's lock
        // (SQLite) or the blocker's row lock (PostgreSQL) orders two
        // blocks by the same user, so the bound holds under a race.
        sqlx::query(Self::USER_FOR_UPDATE)
            .bind(blocker.uuid())
            .execute(&mut *tx)
            .await
            .context("locking the blocker")?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM user_blocks WHERE blocker_id = $1 AND blocked_id <> $2",
        )
        .bind(blocker.uuid())
        .bind(blocked.id.uuid())
        .fetch_one(&mut *tx)
        .await?;
        if count >= i64::from(MAX_BLOCKED_USERS) {
            return Err(Error::LimitReached(format!(
                "you already block {MAX_BLOCKED_USERS} users, the most one may; unblock someone first"
            )));
        }
        sqlx::query(
            "INSERT INTO user_blocks (blocker_id, blocked_id, at) VALUES ($1, $2, $3)
             ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
        )
        .bind(blocker.uuid())
        .bind(blocked.id.uuid())
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .context("storing a block")?;
        tx.commit().await?;
        Ok(blocked)
    }

    async fn unblock_user(&self, blocker: UserId, username: &Username) -> Result<User> {
        let mut tx = self.writer().begin().await?;
        let blocked = user_by_key(&mut tx, username).await?;
        sqlx::query("DELETE FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2")
            .bind(blocker.uuid())
            .bind(blocked.id.uuid())
            .execute(&mut *tx)
            .await
            .context("lifting a block")?;
        tx.commit().await?;
        Ok(blocked)
    }

    async fn blocked_users(&self, blocker: UserId) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name FROM user_blocks b
             JOIN users u ON u.id = b.blocked_id
             WHERE b.blocker_id = $1 AND u.deleted_at IS NULL
             ORDER BY u.username_key",
        )
        .bind(blocker.uuid())
        .fetch_all(self.reader())
        .await
        .context("listing blocked users")?;
        rows.iter().map(user_from_row).collect()
    }

    async fn blocks(&self, blocker: UserId, blocked: UserId) -> Result<bool> {
        let mut tx = self.reader().begin().await?;
        let blocks = Members::<DB>::blocks(&mut tx, blocker, blocked).await?;
        tx.commit().await?;
        Ok(blocks)
    }

    async fn list_rooms(&self, user_id: UserId, page: RoomPage) -> Result<Vec<Room>> {
        let visible = if page.joined_only {
            "r.id IN (SELECT room_id FROM room_members WHERE user_id = $1)"
        } else {
            "((r.kind = 1 AND r.visibility = 1)
              OR r.id IN (SELECT room_id FROM room_members WHERE user_id = $1)
              OR r.id IN (SELECT room_id FROM room_invites WHERE user_id = $1))"
        };
        let mut connection = self.reader().acquire().await?;
        let rows = sqlx::query(&format!(
            "{ROOM_SELECT} WHERE {visible} AND r.id > $2 ORDER BY r.id LIMIT $3"
        ))
        .bind(user_id.uuid())
        .bind(page.after_uuid())
        .bind(i64::from(page.limit))
        .fetch_all(&mut *connection)
        .await?;
        Sql::<DB>::rooms_from_rows(&mut *connection, &rows).await
    }

    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room> {
        let key = direct_key(me.id, other.id);
        let mut tx = self.writer().begin().await?;
        if Members::<DB>::blocks(&mut tx, other.id, me.id).await? {
            return Err(Error::Forbidden("you cannot message this user".into()));
        }
        let room_id = match Sql::<DB>::direct_room_id(&mut tx, &key).await? {
            Some(id) => RoomId::from_uuid(id),
            None => {
                let mut names = [me.username.as_str(), other.username.as_str()];
                names.sort_unstable();
                // Another node may open the same pair's room at the same
                // moment: the unique key lets one insert win, and both then
                // read the winner's id and add its members once.
                sqlx::query(
                    "INSERT INTO rooms (id, name, kind, direct_key, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (direct_key) DO NOTHING",
                )
                .bind(RoomId::new().uuid())
                .bind(names.join(" & "))
                .bind(room_kind_to_db(RoomKind::Direct))
                .bind(key.as_slice())
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
                let id = Sql::<DB>::direct_room_id(&mut tx, &key)
                    .await?
                    .map(RoomId::from_uuid)
                    .ok_or_else(|| anyhow::anyhow!("the direct room just stored is not there"))?;
                for member in [me.id, other.id] {
                    Sql::<DB>::add_member(&mut tx, id, member, MemberRole::Member, now).await?;
                }
                id
            }
        };
        let room = Sql::<DB>::room_in(&mut tx, room_id, me.id).await?;
        tx.commit().await?;
        Ok(room)
    }

    async fn room_positions_of(&self, user_id: UserId) -> Result<Vec<(RoomId, u64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT r.id, r.last_seq FROM room_members m JOIN rooms r ON r.id = m.room_id
             WHERE m.user_id = $1",
        )
        .bind(user_id.uuid())
        .fetch_all(self.reader())
        .await?;
        Ok(room_seqs(rows))
    }

    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        Backend::last_seqs(self, room_ids).await
    }

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership> {
        Ok(Sql::<DB>::position_in(self.reader(), room_id, user_id)
            .await?
            .0)
    }

    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)> {
        Sql::<DB>::position_in(self.reader(), room_id, user_id).await
    }

    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>> {
        if batch.iter().all(NewMessage::is_plain) {
            return Backend::append_messages(self, batch).await;
        }
        let mut tx = self.writer().begin().await?;
        let results =
            Conversation::<DB>::append(&mut tx, &batch, Self::ROOM_SEQ_FOR_UPDATE).await?;
        tx.commit().await.context("committing messages")?;
        Ok(results)
    }

    async fn history(
        &self,
        room_id: RoomId,
        viewer: UserId,
        before_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)> {
        let mut conn = self.reader().acquire().await?;
        let rows = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.room_id = $1 AND m.thread_root_id IS NULL AND m.seq < $2
             ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(room_id.uuid())
        .bind(before(before_seq))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let (mut messages, has_more) = newest_first_page(&rows, limit)?;
        Conversation::<DB>::fill(&mut conn, &mut messages, Some(viewer)).await?;
        Ok((messages, has_more))
    }

    async fn thread(
        &self,
        room_id: RoomId,
        root_id: MessageId,
        viewer: UserId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Thread> {
        let mut conn = self.reader().acquire().await?;
        let root = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.id = $1 AND m.room_id = $2"
        ))
        .bind(root_id.uuid())
        .bind(room_id.uuid())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "thread_root_id: message {root_id} does not exist in room {room_id}"
            ))
        })?;
        let root = message_from_row(&root)?;
        if root.thread_root_id.is_some() {
            return Err(Error::Invalid(format!(
                "thread_root_id: message {root_id} is a thread reply, not a thread's root"
            )));
        }
        let rows = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.thread_root_id = $1 AND m.seq < $2
             ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(root_id.uuid())
        .bind(before(before_seq))
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let (mut replies, has_more) = newest_first_page(&rows, limit)?;
        replies.push(root);
        Conversation::<DB>::fill(&mut conn, &mut replies, Some(viewer)).await?;
        let root = replies.pop().expect("the root was pushed last");
        Ok(Thread {
            root,
            replies,
            has_more,
        })
    }

    async fn room_events(
        &self,
        room_id: RoomId,
        after_seq: u64,
        up_to_seq: u64,
        limit: u32,
    ) -> Result<(Vec<RoomEvent>, bool)> {
        let rows = sqlx::query(&format!(
            "{EVENT_SELECT} WHERE e.room_id = $1 AND e.seq > $2 AND e.seq <= $3
             ORDER BY e.seq DESC LIMIT $4"
        ))
        .bind(room_id.uuid())
        .bind(from_seq(after_seq))
        .bind(from_seq(up_to_seq))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await?;
        let has_more = rows.len() > limit as usize;
        let mut events = rows
            .iter()
            .take(limit as usize)
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        // The mentions of the messages the events carry (stream events
        // carry no reactions).
        let mut messages: Vec<Message> = events
            .iter()
            .filter_map(|e| match &e.kind {
                RoomEventKind::Message(m) | RoomEventKind::Edited(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        if !messages.is_empty() {
            let mut conn = self.reader().acquire().await?;
            Conversation::<DB>::fill(&mut conn, &mut messages, None).await?;
            let mut filled = messages.into_iter();
            for event in &mut events {
                if let RoomEventKind::Message(m) | RoomEventKind::Edited(m) = &mut event.kind {
                    *m = filled.next().expect("one filled message per message event");
                }
            }
        }
        Ok((events, has_more))
    }

    async fn change_message(&self, change: &MessageChange) -> Result<Changed> {
        let room_id = change.room_id;
        let actor = &change.actor;
        let mut tx = self.writer().begin().await?;
        let last_seq: Option<i64> = sqlx::query_scalar(Self::ROOM_SEQ_FOR_UPDATE)
            .bind(room_id.uuid())
            .fetch_optional(&mut *tx)
            .await
            .context("locking the room")?;
        let Some(last_seq) = last_seq else {
            return Err(Membership::NoSuchRoom.require_member(room_id).unwrap_err());
        };
        let member: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id = $2)",
        )
        .bind(room_id.uuid())
        .bind(actor.id.uuid())
        .fetch_one(&mut *tx)
        .await?;
        if !member {
            return Err(Membership::NotMember.require_member(room_id).unwrap_err());
        }
        let row = sqlx::query(&format!(
            "{MESSAGE_SELECT} WHERE m.id = $1 AND m.room_id = $2"
        ))
        .bind(change.message_id.uuid())
        .bind(room_id.uuid())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "message {} does not exist in room {room_id}",
                change.message_id
            ))
        })?;
        let mut message = message_from_row(&row)?;
        let id = message.id.uuid();
        let verb = match change.kind {
            ChangeKind::Edit(_) => Some("edit"),
            ChangeKind::Delete => Some("delete"),
            ChangeKind::React(_) | ChangeKind::Unreact(_) => None,
        };
        if let Some(verb) = verb {
            // Admins and the owner of a group room delete anyone's.
            let moderated = message.sender.id != actor.id
                && matches!(change.kind, ChangeKind::Delete)
                && Members::<DB>::place(&mut tx, Self::ROOM_SEQ_FOR_UPDATE, room_id, actor.id)
                    .await?
                    .permit(RoomAction::DeleteOthers, room_id)
                    .is_ok();
            if message.sender.id != actor.id && !moderated {
                return Err(Error::Forbidden(format!(
                    "only its sender{} may {verb} message {}",
                    if verb == "delete" {
                        ", an admin or the owner"
                    } else {
                        ""
                    },
                    message.id
                )));
            }
        }
        let seq = to_seq(last_seq) + 1;
        let unchanged = Changed {
            message: message.clone(),
            event: None,
        };
        let (kind, emoji, event) = match &change.kind {
            ChangeKind::Edit(_) | ChangeKind::React(_) if message.deleted => {
                return Err(Error::Refused(format!(
                    "message {} was deleted: it cannot be {}",
                    message.id,
                    if verb.is_some() {
                        "edited"
                    } else {
                        "reacted to"
                    }
                )))
            }
            ChangeKind::Edit(text) if text.as_str() == message.text => {
                return Conversation::<DB>::unchanged(tx, unchanged, actor.id).await;
            }
            ChangeKind::Delete | ChangeKind::Unreact(_) if message.deleted => {
                return Conversation::<DB>::unchanged(tx, unchanged, actor.id).await;
            }
            ChangeKind::Edit(text) => {
                sqlx::query("UPDATE messages SET text = $1, edited_at = $2 WHERE id = $3")
                    .bind(text.as_str())
                    .bind(change.at.0)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .context("editing the message")?;
                let mentioned =
                    Conversation::<DB>::mentioned_members(&mut tx, room_id, text).await?;
                Conversation::<DB>::replace_mentions(&mut tx, &message, &mentioned).await?;
                message.text = text.as_str().to_owned();
                message.edited_at = Some(change.at);
                (EVENT_EDIT, None, RoomEventKind::Edited(message.clone()))
            }
            ChangeKind::Delete => {
                sqlx::query(
                    "UPDATE messages SET text = '', deleted = TRUE, edited_at = NULL WHERE id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .context("deleting the message")?;
                for table in ["message_reactions", "reaction_counts"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE message_id = $1"))
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("deleting the message's {table}"))?;
                }
                Conversation::<DB>::remove_mentions(&mut tx, message.id).await?;
                // The room's newest message, if it was this one, is now the
                // one before.
                sqlx::query(
                    "UPDATE rooms SET last_message_id =
                         (SELECT x.id FROM messages x
                          WHERE x.room_id = rooms.id AND x.thread_root_id IS NULL
                              AND NOT x.deleted
                          ORDER BY x.seq DESC LIMIT 1)
                     WHERE id = $1 AND last_message_id = $2",
                )
                .bind(room_id.uuid())
                .bind(id)
                .execute(&mut *tx)
                .await
                .context("finding the room's newest message")?;
                message.text = String::new();
                message.deleted = true;
                message.edited_at = None;
                (
                    EVENT_DELETE,
                    None,
                    RoomEventKind::Deleted {
                        message_id: message.id,
                        by: actor.clone(),
                    },
                )
            }
            ChangeKind::React(emoji) => {
                let (already, used): (bool, i64) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM message_reactions
                                    WHERE message_id = $1 AND user_id = $2 AND emoji = $3),
                        (SELECT COUNT(*) FROM message_reactions
                         WHERE message_id = $1 AND user_id = $2)",
                )
                .bind(id)
                .bind(actor.id.uuid())
                .bind(emoji.as_str())
                .fetch_one(&mut *tx)
                .await
                .context("reading the actor's reactions")?;
                if already {
                    return Conversation::<DB>::unchanged(tx, unchanged, actor.id).await;
                }
                if used >= i64::from(MAX_REACTIONS_PER_USER) {
                    return Err(Error::LimitReached(format!(
                        "too many reactions: at most {MAX_REACTIONS_PER_USER} different emoji \
                         per user on one message; remove one first"
                    )));
                }
                sqlx::query(
                    "INSERT INTO message_reactions (message_id, user_id, emoji) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(actor.id.uuid())
                .bind(emoji.as_str())
                .execute(&mut *tx)
                .await
                .context("storing a reaction")?;
                sqlx::query(
                    "INSERT INTO reaction_counts (message_id, emoji, first_seq, count)
                     VALUES ($1, $2, $3, 1)
                     ON CONFLICT (message_id, emoji)
                     DO UPDATE SET count = reaction_counts.count + 1",
                )
                .bind(id)
                .bind(emoji.as_str())
                .bind(from_seq(seq))
                .execute(&mut *tx)
                .await
                .context("counting a reaction")?;
                (
                    EVENT_REACTION_ADDED,
                    Some(*emoji),
                    reaction(&message, emoji, actor, true),
                )
            }
            ChangeKind::Unreact(emoji) => {
                let removed = sqlx::query(
                    "DELETE FROM message_reactions
                     WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
                )
                .bind(id)
                .bind(actor.id.uuid())
                .bind(emoji.as_str())
                .execute(&mut *tx)
                .await
                .context("removing a reaction")?;
                if removed.affected() == 0 {
                    return Conversation::<DB>::unchanged(tx, unchanged, actor.id).await;
                }
                sqlx::query(
                    "UPDATE reaction_counts SET count = count - 1 WHERE message_id = $1 AND emoji = $2",
                )
                .bind(id)
                .bind(emoji.as_str())
                .execute(&mut *tx)
                .await
                .context("counting a removed reaction")?;
                // At zero the emoji goes: added again, it goes last.
                sqlx::query(
                    "DELETE FROM reaction_counts WHERE message_id = $1 AND emoji = $2 AND count <= 0",
                )
                .bind(id)
                .bind(emoji.as_str())
                .execute(&mut *tx)
                .await
                .context("removing an emoji no one reacts with")?;
                (
                    EVENT_REACTION_REMOVED,
                    Some(*emoji),
                    reaction(&message, emoji, actor, false),
                )
            }
        };
        sqlx::query(
            "INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, emoji, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(room_id.uuid())
        .bind(from_seq(seq))
        .bind(kind)
        .bind(id)
        .bind(actor.id.uuid())
        .bind(emoji.map(|e| e.as_str()))
        .bind(change.at.0)
        .execute(&mut *tx)
        .await
        .context("adding the change to the room's log")?;
        sqlx::query("UPDATE rooms SET last_seq = $1 WHERE id = $2")
            .bind(from_seq(seq))
            .bind(room_id.uuid())
            .execute(&mut *tx)
            .await
            .context("bumping the room's seq")?;
        // The message as the actor sees it now.
        Conversation::<DB>::fill(&mut tx, std::slice::from_mut(&mut message), Some(actor.id))
            .await?;
        tx.commit().await.context("committing a message change")?;
        if kind == EVENT_DELETE {
            self.erased();
        }
        let event = match event {
            RoomEventKind::Edited(_) => RoomEventKind::Edited(message.clone()),
            other => other,
        };
        Ok(Changed {
            message,
            event: Some(RoomEvent {
                room_id,
                seq,
                kind: event,
            }),
        })
    }

    async fn read_position(
        &self,
        room_id: RoomId,
        user_id: UserId,
        members_up_to: u32,
    ) -> Result<ReadPosition> {
        ReadSql::<DB>::position(self.reader(), room_id, user_id, members_up_to).await
    }

    async fn store_read_markers(&self, markers: &[ReadMarker]) -> Result<()> {
        ReadSql::<DB>::store_markers(self.writer(), markers).await
    }

    async fn close(&self) {
        Backend::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the store's statements lean on: `$N` binds the Nth value on
    /// both databases, whatever the order the placeholders stand in and
    /// however often one stands.
    async fn placeholders_bind_by_number<DB>(pool: &Pool<DB>)
    where
        DB: Database,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        let (difference, double, again): (i64, i64, i64) =
            sqlx::query_as("SELECT $2 - $1, $1 * 2, $2")
                .bind(10_i64)
                .bind(3_i64)
                .fetch_one(pool)
                .await
                .expect("running the statement");
        assert_eq!((difference, double, again), (-7, 20, 3));
    }

    #[tokio::test]
    async fn dollar_placeholders_bind_by_number_on_sqlite() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:")
            .await
            .expect("opening SQLite in memory");
        placeholders_bind_by_number(&pool).await;
    }

    /// Like the contract suite: `CHAT_TEST_POSTGRES_URL` or the local
    /// server; skipped with a notice where none runs, except under CI.
    #[tokio::test]
    async fn dollar_placeholders_bind_by_number_on_postgres() {
        let url = std::env::var("CHAT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        match sqlx::PgPool::connect(&url).await {
            Ok(pool) => placeholders_bind_by_number(&pool).await,
            Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("SKIPPED: no PostgreSQL at {url}: {e}");
            }
            Err(e) => panic!("no PostgreSQL at {url}: {e}"),
        }
    }
}

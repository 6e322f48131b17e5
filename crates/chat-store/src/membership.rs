//! Who is in a room and what they may do there: joins, leaves,
//! invitations, roles, removals, bans and room settings
//! (docs/design/rooms-and-people.md), written once for both databases
//! like `queries.rs`.
//!
//! Every change reads the caller's standing under the room row's lock (the
//! statement that takes the room's next seq), asks the domain's permission
//! matrix (`chat_domain::permit`), and writes its events to the room's log
//! in the transaction that changes the rows: a demoted admin racing its
//! demotion cannot act, and a log read from any seq says who was in the
//! room.

use std::marker::PhantomData;

use anyhow::Context as _;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row as _, Transaction, Type,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{MemberCursor, MemberEntry};
use crate::rows::{
    count_from_db, member_change_to_db, role_from_db, role_to_db, room_kind_from_db, user_from_row,
    visibility_from_db,
};
use crate::sql::{from_seq, to_seq, EVENT_MEMBER, EVENT_ROOM_UPDATED};
use chat_domain::{
    permit, MemberChange, MemberRole, Refusal, RoomAction, RoomEvent, RoomEventKind, RoomId,
    RoomInfo, RoomKind, RoomShape, Standing, Timestamp, User, UserId,
};

/// Where a user stands in a room, read in a change's transaction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub(crate) kind: RoomKind,
    pub(crate) shape: RoomShape,
    pub(crate) standing: Standing,
    /// The room's newest seq, read under its row's lock.
    pub(crate) last_seq: u64,
}

impl Place {
    /// Asks the permission matrix.
    ///
    /// # Errors
    /// `Forbidden` or `Refused`, with the matrix's reason.
    pub(crate) fn permit(&self, action: RoomAction, room_id: RoomId) -> Result<()> {
        permit(action, self.standing, self.shape).map_err(|refusal| refused(refusal, room_id))
    }

    pub(crate) fn role(&self) -> Option<MemberRole> {
        match self.standing {
            Standing::Member(role) => Some(role),
            _ => None,
        }
    }
}

/// The store's error for a refusal of the matrix.
pub(crate) fn refused(refusal: Refusal, room_id: RoomId) -> Error {
    match refusal {
        Refusal::Denied(why) => Error::Forbidden(format!("room {room_id}: {why}")),
        Refusal::Precondition(why) => Error::Refused(format!("room {room_id}: {why}")),
    }
}

/// The events a change adds to one room's log, numbered on from its
/// newest seq; `finish` moves the room's seq to the last of them.
pub(crate) struct Log {
    room_id: RoomId,
    seq: u64,
    at: Timestamp,
    pub(crate) events: Vec<RoomEvent>,
}

impl Log {
    pub(crate) fn new(room_id: RoomId, last_seq: u64, at: Timestamp) -> Self {
        Self {
            room_id,
            seq: last_seq,
            at,
            events: Vec::new(),
        }
    }
}

/// Statements about membership, for any database that binds and reads
/// these column types (the bounds of `impl Store`).
pub(crate) struct Members<DB>(PhantomData<DB>);

impl<DB> Members<DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    str: Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// The user's standing in the room, after `lock` (the backend's
    /// `ROOM_SEQ_FOR_UPDATE`) took the room's row.
    ///
    /// # Errors
    /// `NotFound` for no such room.
    pub(crate) async fn place(
        tx: &mut Transaction<'_, DB>,
        lock: &str,
        room_id: RoomId,
        user_id: UserId,
    ) -> Result<Place> {
        let last_seq: Option<i64> = sqlx::query_scalar(lock)
            .bind(room_id.uuid())
            .fetch_optional(&mut **tx)
            .await
            .context("locking the room")?;
        let last_seq = last_seq.ok_or_else(|| no_such_room(room_id))?;
        let row = sqlx::query(
            "SELECT r.kind, r.visibility,
                 (SELECT m.role FROM room_members m
                  WHERE m.room_id = r.id AND m.user_id = $2) AS role,
                 EXISTS (SELECT 1 FROM room_bans b
                         WHERE b.room_id = r.id AND b.user_id = $2) AS banned,
                 EXISTS (SELECT 1 FROM room_invites i
                         WHERE i.room_id = r.id AND i.user_id = $2) AS invited
             FROM rooms r WHERE r.id = $1",
        )
        .bind(room_id.uuid())
        .bind(user_id.uuid())
        .fetch_one(&mut **tx)
        .await
        .context("reading a standing in a room")?;
        let kind: i64 = row.try_get("kind")?;
        let kind = room_kind_from_db(kind).context("unknown room kind in the database")?;
        let shape = match kind {
            RoomKind::Direct => RoomShape::Direct,
            RoomKind::Group => RoomShape::Group(visibility_from_db(row.try_get("visibility")?)),
        };
        let role: Option<i64> = row.try_get("role")?;
        let standing = match role {
            // A direct room's two members have the plain role.
            Some(role) => Standing::Member(role_from_db(role).unwrap_or(MemberRole::Member)),
            None if row.try_get::<bool, _>("banned")? => Standing::Banned,
            None if row.try_get::<bool, _>("invited")? => Standing::Invited,
            None => Standing::Stranger,
        };
        Ok(Place {
            kind,
            shape,
            standing,
            last_seq: to_seq(last_seq),
        })
    }

    /// A user who has an account (deleted ones do not).
    ///
    /// # Errors
    /// `NotFound` when there is none by that id.
    pub(crate) async fn user(tx: &mut Transaction<'_, DB>, user_id: UserId) -> Result<User> {
        let row = sqlx::query(
            "SELECT id, username, display_name FROM users WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(user_id.uuid())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NotFound(format!("user {user_id} does not exist")))?;
        user_from_row(&row)
    }

    /// Whether `blocker` blocked `blocked`.
    pub(crate) async fn blocks(
        tx: &mut Transaction<'_, DB>,
        blocker: UserId,
        blocked: UserId,
    ) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM user_blocks WHERE blocker_id = $1 AND blocked_id = $2)",
        )
        .bind(blocker.uuid())
        .bind(blocked.uuid())
        .fetch_one(&mut **tx)
        .await?)
    }

    /// Adds a member event to the log.
    pub(crate) async fn member_event(
        tx: &mut Transaction<'_, DB>,
        log: &mut Log,
        user: &User,
        change: MemberChange,
        role: Option<MemberRole>,
        by: &User,
        reason: &str,
    ) -> Result<()> {
        log.seq += 1;
        sqlx::query(
            "INSERT INTO room_events
                 (room_id, seq, kind, actor_id, target_id, member_change, member_role, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(log.room_id.uuid())
        .bind(from_seq(log.seq))
        .bind(EVENT_MEMBER)
        .bind(by.id.uuid())
        .bind(user.id.uuid())
        .bind(member_change_to_db(change))
        .bind(role.map(role_to_db))
        .bind(reason)
        .bind(log.at.0)
        .execute(&mut **tx)
        .await
        .context("adding a member event to the room's log")?;
        log.events.push(RoomEvent {
            room_id: log.room_id,
            seq: log.seq,
            kind: RoomEventKind::Member {
                user: user.clone(),
                change,
                role,
                by: by.clone(),
                reason: reason.to_owned(),
            },
        });
        Ok(())
    }

    /// Adds a room-updated event to the log, with the room's settings as
    /// they are now.
    pub(crate) async fn room_updated_event(
        tx: &mut Transaction<'_, DB>,
        log: &mut Log,
        by: &User,
    ) -> Result<()> {
        log.seq += 1;
        sqlx::query(
            "INSERT INTO room_events (room_id, seq, kind, actor_id, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(log.room_id.uuid())
        .bind(from_seq(log.seq))
        .bind(EVENT_ROOM_UPDATED)
        .bind(by.id.uuid())
        .bind(log.at.0)
        .execute(&mut **tx)
        .await
        .context("adding a room update to the room's log")?;
        let row =
            sqlx::query("SELECT name, topic, visibility, member_count FROM rooms WHERE id = $1")
                .bind(log.room_id.uuid())
                .fetch_one(&mut **tx)
                .await?;
        log.events.push(RoomEvent {
            room_id: log.room_id,
            seq: log.seq,
            kind: RoomEventKind::RoomUpdated {
                name: row.try_get("name")?,
                info: RoomInfo {
                    topic: row.try_get("topic")?,
                    visibility: visibility_from_db(row.try_get("visibility")?),
                    member_count: count_from_db(row.try_get("member_count")?),
                },
                by: by.clone(),
            },
        });
        Ok(())
    }

    /// Moves the room's seq on to the log's last event.
    pub(crate) async fn finish(tx: &mut Transaction<'_, DB>, log: &Log) -> Result<()> {
        if log.events.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE rooms SET last_seq = $1 WHERE id = $2")
            .bind(from_seq(log.seq))
            .bind(log.room_id.uuid())
            .execute(&mut **tx)
            .await
            .context("bumping the room's seq")?;
        Ok(())
    }

    pub(crate) async fn set_role(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        user_id: UserId,
        role: MemberRole,
    ) -> Result<()> {
        sqlx::query("UPDATE room_members SET role = $1 WHERE room_id = $2 AND user_id = $3")
            .bind(role_to_db(role))
            .bind(room_id.uuid())
            .bind(user_id.uuid())
            .execute(&mut **tx)
            .await
            .context("setting a member's role")?;
        Ok(())
    }

    /// Takes a member out of a room (and out of its count).
    pub(crate) async fn remove(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        user_id: UserId,
    ) -> Result<()> {
        sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
            .bind(room_id.uuid())
            .bind(user_id.uuid())
            .execute(&mut **tx)
            .await
            .context("removing a member")?;
        Self::count_members(tx, room_id).await
    }

    /// Writes the room's member count, after a member came or went.
    pub(crate) async fn count_members(tx: &mut Transaction<'_, DB>, room_id: RoomId) -> Result<()> {
        sqlx::query(
            "UPDATE rooms SET member_count =
                 (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.id)
             WHERE id = $1",
        )
        .bind(room_id.uuid())
        .execute(&mut **tx)
        .await
        .context("counting a room's members")?;
        Ok(())
    }

    pub(crate) async fn drop_invite(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        user_id: UserId,
    ) -> Result<bool> {
        let gone: Option<Uuid> = sqlx::query_scalar(
            "DELETE FROM room_invites WHERE room_id = $1 AND user_id = $2 RETURNING user_id",
        )
        .bind(room_id.uuid())
        .bind(user_id.uuid())
        .fetch_optional(&mut **tx)
        .await
        .context("dropping an invitation")?;
        Ok(gone.is_some())
    }

    /// Who takes the room over when its owner leaves: the longest-standing
    /// admin, else the longest-standing member.
    pub(crate) async fn successor(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        owner: UserId,
    ) -> Result<Option<UserId>> {
        let next: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM room_members WHERE room_id = $1 AND user_id <> $2
             ORDER BY role DESC, joined_at, user_id LIMIT 1",
        )
        .bind(room_id.uuid())
        .bind(owner.uuid())
        .fetch_optional(&mut **tx)
        .await
        .context("finding the next owner")?;
        Ok(next.map(UserId::from_uuid))
    }

    /// A page of a room's members in `ListMembers`' order: owner, admins,
    /// members, each by when they joined.
    pub(crate) async fn page(
        conn: &mut DB::Connection,
        room_id: RoomId,
        after: Option<MemberCursor>,
        limit: u32,
    ) -> Result<Vec<MemberEntry>> {
        // Without a cursor, one that sorts before every member.
        let (role, joined_at, user_id) = after.map_or((i64::MAX, i64::MIN, Uuid::nil()), |c| {
            (role_to_db(c.role), c.joined_at.0, c.user_id.uuid())
        });
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, m.role, m.joined_at
             FROM room_members m JOIN users u ON u.id = m.user_id
             WHERE m.room_id = $1
                 AND (m.role < $2 OR (m.role = $2 AND (m.joined_at > $3
                      OR (m.joined_at = $3 AND m.user_id > $4))))
             ORDER BY m.role DESC, m.joined_at, m.user_id LIMIT $5",
        )
        .bind(room_id.uuid())
        .bind(role)
        .bind(joined_at)
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .context("listing a room's members")?;
        rows.iter()
            .map(|row| {
                Ok(MemberEntry {
                    user: user_from_row(row)?,
                    role: role_from_db(row.try_get("role")?).unwrap_or(MemberRole::Member),
                    joined_at: Timestamp(row.try_get("joined_at")?),
                })
            })
            .collect()
    }
}

pub(crate) fn no_such_room(room_id: RoomId) -> Error {
    Error::NotFound(format!("room {room_id} does not exist"))
}

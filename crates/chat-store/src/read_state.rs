//! Read state, for both databases: members' read markers, and what a room
//! shows a member from them (docs/design/room-log.md, "Read state").
//!
//! A marker is `room_members.last_read_seq`: every event of the room up to
//! it is read. Markers only move forward: the one statement that writes
//! them (`store_markers`) changes a row only to a larger seq, so writers on
//! several nodes, in any order, never take one back.
//!
//! With the marker, a row keeps the numbers of the newest message at it
//! (`read_ord`) and of the member's own newest there (`read_sent`), from
//! which `ROOM_SELECT` (`queries.rs`) counts what is unread at the same
//! cost however far behind the marker is.

use std::marker::PhantomData;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row as _, Type};
use uuid::Uuid;

use crate::error::Result;
use crate::model::Membership;
use crate::sql::{from_seq, to_seq};
use chat_domain::{RoomId, UserId};

/// Markers one statement writes at most: three parameters each, well
/// under both databases' limit on a statement's parameters (SQLite 32 766,
/// PostgreSQL 65 535). A power of two (statements are padded to one).
const MARKERS_PER_STATEMENT: usize = 4096;

/// Where a member stands in a room, as `MarkRead` needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadPosition {
    pub membership: Membership,
    /// The room's newest seq (0 when it has none or does not exist).
    pub last_seq: u64,
    /// The member's stored marker (0 when not a member).
    pub last_read_seq: u64,
    /// How many members the room has, counted up to the bound asked for.
    pub members: u32,
}

/// A member's read marker in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadMarker {
    pub room_id: RoomId,
    pub user_id: UserId,
    pub seq: u64,
}

/// The read-state statements, for any database that binds and reads these
/// column types (the bounds of `impl Store` in `queries.rs`).
pub(crate) struct ReadSql<DB>(PhantomData<DB>);

impl<DB> ReadSql<DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Decode<'q, DB> + Type<DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// The user's position in a room; the member count stops at
    /// `members_up_to`, so that a large room costs no more than that many
    /// index steps.
    pub(crate) async fn position<'e>(
        executor: impl Executor<'e, Database = DB>,
        room_id: RoomId,
        user_id: UserId,
        members_up_to: u32,
    ) -> Result<ReadPosition> {
        let row = sqlx::query(
            "SELECT r.last_seq, me.last_read_seq,
                (SELECT COUNT(*) FROM
                    (SELECT 1 FROM room_members c WHERE c.room_id = r.id LIMIT $3) AS c) AS members
             FROM rooms r LEFT JOIN room_members me ON me.room_id = r.id AND me.user_id = $2
             WHERE r.id = $1",
        )
        .bind(room_id.uuid())
        .bind(user_id.uuid())
        .bind(i64::from(members_up_to))
        .fetch_optional(executor)
        .await?;
        let Some(row) = row else {
            return Ok(ReadPosition {
                membership: Membership::NoSuchRoom,
                last_seq: 0,
                last_read_seq: 0,
                members: 0,
            });
        };
        let marker: Option<i64> = row.try_get("last_read_seq")?;
        let members: i64 = row.try_get("members")?;
        Ok(ReadPosition {
            membership: if marker.is_some() {
                Membership::Member
            } else {
                Membership::NotMember
            },
            last_seq: to_seq(row.try_get("last_seq")?),
            last_read_seq: marker.map_or(0, to_seq),
            members: u32::try_from(members).unwrap_or(u32::MAX),
        })
    }

    /// Moves markers forward, in one transaction: a row changes only to a
    /// larger seq (the larger of old and new, without a dialect's `max`),
    /// and markers of users who are no longer members change nothing.
    pub(crate) async fn store_markers(pool: &Pool<DB>, markers: &[ReadMarker]) -> Result<()> {
        if markers.is_empty() {
            return Ok(());
        }
        let mut tx = pool.begin().await?;
        for chunk in markers.chunks(MARKERS_PER_STATEMENT) {
            // Padded to a power of two with copies of the last marker
            // (harmless: the same row to the same seq), so that a few
            // statement texts serve every count and stay prepared.
            let rows = chunk.len().next_power_of_two();
            let values = (0..rows)
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let statement = format!(
                "WITH v (room_id, user_id, seq) AS (VALUES {values})
                 UPDATE room_members SET last_read_seq = v.seq,
                     read_ord = COALESCE((SELECT x.ord FROM messages x
                                          WHERE x.room_id = v.room_id AND x.seq <= v.seq
                                          ORDER BY x.seq DESC LIMIT 1), 0),
                     read_sent = COALESCE((SELECT x.sender_ord FROM messages x
                                           WHERE x.room_id = v.room_id AND x.sender_id = v.user_id
                                               AND x.seq <= v.seq
                                           ORDER BY x.seq DESC LIMIT 1), 0),
                     read_mentions = COALESCE((SELECT mm.ord FROM message_mentions mm
                                               WHERE mm.user_id = v.user_id
                                                   AND mm.room_id = v.room_id
                                                   AND mm.seq <= v.seq AND mm.ord > 0
                                               ORDER BY mm.seq DESC LIMIT 1), 0)
                 FROM v
                 WHERE room_members.room_id = v.room_id AND room_members.user_id = v.user_id
                     AND room_members.last_read_seq < v.seq"
            );
            let mut query = sqlx::query(&statement);
            let last = chunk.last().expect("chunks are never empty");
            for marker in chunk
                .iter()
                .chain(std::iter::repeat_n(last, rows - chunk.len()))
            {
                query = query
                    .bind(marker.room_id.uuid())
                    .bind(marker.user_id.uuid())
                    .bind(from_seq(marker.seq));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

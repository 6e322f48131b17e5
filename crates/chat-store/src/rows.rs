//! Rows into domain types, the same for both databases: the shared queries
//! (`queries.rs`) and the batch appends name their columns alike.

use anyhow::Context as _;
use sqlx::{ColumnIndex, Decode, Row, Type};
use uuid::Uuid;

use crate::error::Result;
use crate::sql::{
    to_seq, EVENT_DELETE, EVENT_EDIT, EVENT_MEMBER, EVENT_MESSAGE, EVENT_REACTION_ADDED,
    EVENT_REACTION_REMOVED, EVENT_ROOM_UPDATED,
};
use chat_domain::{
    MemberChange, MemberRole, Message, MessageId, ReadState, ReplyPreview, Room, RoomEvent,
    RoomEventKind, RoomId, RoomInfo, RoomKind, RoomVisibility, ThreadSummary, Timestamp, User,
    UserId, MAX_UNREAD_COUNT,
};

/// What a row must offer to be read here: these column types, by name.
pub trait ChatRow: Row
where
    for<'a> &'a str: ColumnIndex<Self>,
{
    fn field<'r, T>(&'r self, name: &str) -> Result<T>
    where
        T: Decode<'r, Self::Database> + Type<Self::Database>,
    {
        Ok(self.try_get(name)?)
    }
}

impl<R: Row> ChatRow for R where for<'a> &'a str: ColumnIndex<R> {}

pub fn room_from_row<R>(row: &R) -> Result<Room>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let kind: i64 = row.field("kind")?;
    Ok(Room {
        id: RoomId::from_uuid(row.field("id")?),
        name: row.field("name")?,
        kind: crate::rows::room_kind_from_db(kind).context("unknown room kind in the database")?,
        info: RoomInfo {
            topic: row.field("topic")?,
            visibility: visibility_from_db(row.field("visibility")?),
            member_count: count_from_db(row.field("member_count")?),
        },
        joined: row.field("joined")?,
        my_role: row.field::<Option<i64>>("my_role")?.and_then(role_from_db),
        invited: row.field("invited")?,
        last_seq: to_seq(row.field("last_seq")?),
        read: ReadState {
            last_read_seq: to_seq(row.field("last_read_seq")?),
            unread_count: capped_count(row.field("unread_count")?),
            mention_count: capped_count(row.field("mention_count")?),
            peer_last_read_seq: to_seq(row.field("peer_last_read_seq")?),
        },
        // Read for a page of rooms at once (`rooms_from_rows`).
        last_message: None,
    })
}

/// A count as a room shows it: at most `MAX_UNREAD_COUNT`.
fn capped_count(count: i64) -> u32 {
    u32::try_from(count.clamp(0, i64::from(MAX_UNREAD_COUNT))).unwrap_or(MAX_UNREAD_COUNT)
}

pub fn message_from_row<R>(row: &R) -> Result<Message>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Message {
        id: MessageId::from_uuid(row.field("id")?),
        room_id: RoomId::from_uuid(row.field("room_id")?),
        seq: to_seq(row.field("seq")?),
        sender: User {
            id: UserId::from_uuid(row.field("sender_id")?),
            username: row.field("username")?,
            display_name: row.field("display_name")?,
        },
        text: row.field("text")?,
        sent_at: Timestamp(row.field("sent_at")?),
        client_msg_id: row.field("client_msg_id")?,
        edited_at: row.field::<Option<i64>>("edited_at")?.map(Timestamp),
        deleted: row.field("deleted")?,
        reply_to: reply_from_row(row)?,
        thread_root_id: row
            .field::<Option<Uuid>>("thread_root_id")?
            .map(MessageId::from_uuid),
        thread: ThreadSummary {
            reply_count: u32::try_from(row.field::<i64>("thread_reply_count")?).unwrap_or_default(),
            last_reply_at: row
                .field::<Option<i64>>("thread_last_reply_at")?
                .map(Timestamp),
        },
        reactions: Vec::new(),
        mentions: Vec::new(),
    })
}

/// The preview of the message a message quotes (the `reply_*` columns of
/// `MESSAGE_SELECT`), as that message is now.
fn reply_from_row<R>(row: &R) -> Result<Option<ReplyPreview>>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let Some(id) = row.field::<Option<Uuid>>("reply_to_id")? else {
        return Ok(None);
    };
    Ok(Some(reply_preview(
        id,
        row.field("reply_sender_id")?,
        row.field("reply_sender_name")?,
        row.field("reply_sender_display")?,
        row.field("reply_text")?,
        row.field("reply_deleted")?,
    )))
}

/// A quoted message's preview from the `reply_*` columns, which are NULL
/// when the quoted row is gone: its text cut to `REPLY_PREVIEW_BYTES`, or
/// none when deleted. Shared by the sqlx rows above and the SQLite append
/// path's rusqlite rows.
pub(crate) fn reply_preview(
    id: Uuid,
    sender_id: Option<Uuid>,
    sender_name: Option<String>,
    sender_display: Option<String>,
    text: Option<String>,
    deleted: Option<bool>,
) -> ReplyPreview {
    let deleted = deleted.unwrap_or(false);
    ReplyPreview {
        message_id: MessageId::from_uuid(id),
        sender: User {
            id: UserId::from_uuid(sender_id.unwrap_or_default()),
            username: sender_name.unwrap_or_default(),
            display_name: sender_display.unwrap_or_default(),
        },
        text: match text {
            Some(text) if !deleted => ReplyPreview::cut(&text),
            _ => String::new(),
        },
        deleted,
    }
}

/// A room event and its message as it is now (`EVENT_SELECT`).
///
/// # Errors
/// A kind no release wrote.
pub fn event_from_row<R>(row: &R) -> Result<RoomEvent>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let room_id = RoomId::from_uuid(row.field("event_room_id")?);
    let seq = to_seq(row.field("event_seq")?);
    let kind: i64 = row.field("kind")?;
    let actor = || -> Result<User> {
        Ok(User {
            id: UserId::from_uuid(row.field("actor_id")?),
            username: row.field("actor_name")?,
            display_name: row.field("actor_display")?,
        })
    };
    let kind = match kind {
        EVENT_MESSAGE => RoomEventKind::Message(message_from_row(row)?),
        EVENT_EDIT => RoomEventKind::Edited(message_from_row(row)?),
        EVENT_DELETE => RoomEventKind::Deleted {
            message_id: MessageId::from_uuid(row.field("id")?),
            by: actor()?,
        },
        EVENT_REACTION_ADDED | EVENT_REACTION_REMOVED => RoomEventKind::Reaction {
            message_id: MessageId::from_uuid(row.field("id")?),
            emoji: row.field::<Option<String>>("emoji")?.unwrap_or_default(),
            user: actor()?,
            added: kind == EVENT_REACTION_ADDED,
        },
        EVENT_MEMBER => {
            let change: i64 = row
                .field::<Option<i64>>("member_change")?
                .unwrap_or_default();
            RoomEventKind::Member {
                user: User {
                    id: UserId::from_uuid(row.field("target_id")?),
                    username: row.field("target_name")?,
                    display_name: row.field("target_display")?,
                },
                change: member_change_from_db(change)
                    .with_context(|| format!("unknown member change {change} in the database"))?,
                role: row
                    .field::<Option<i64>>("member_role")?
                    .and_then(role_from_db),
                by: actor()?,
                reason: row.field::<Option<String>>("reason")?.unwrap_or_default(),
            }
        }
        EVENT_ROOM_UPDATED => RoomEventKind::RoomUpdated {
            name: row.field("room_name")?,
            info: RoomInfo {
                topic: row.field("room_topic")?,
                visibility: visibility_from_db(row.field("room_visibility")?),
                member_count: count_from_db(row.field("room_member_count")?),
            },
            by: actor()?,
        },
        other => {
            return Err(anyhow::anyhow!("unknown room event kind {other} in the database").into())
        }
    };
    Ok(RoomEvent { room_id, seq, kind })
}

/// Turns up to `limit + 1` rows, newest first, into at most `limit`
/// messages in ascending order, and whether there were more.
pub fn newest_first_page<R>(rows: &[R], limit: u32) -> Result<(Vec<Message>, bool)>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let has_more = rows.len() > limit as usize;
    let mut messages = rows
        .iter()
        .take(limit as usize)
        .map(message_from_row)
        .collect::<Result<Vec<_>>>()?;
    messages.reverse();
    Ok((messages, has_more))
}

pub fn user_from_row<R>(row: &R) -> Result<User>
where
    R: ChatRow,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> Uuid: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(User {
        id: UserId::from_uuid(row.field("id")?),
        username: row.field("username")?,
        display_name: row.field("display_name")?,
    })
}

/// How the databases keep a room's kind.
pub(crate) fn room_kind_to_db(kind: RoomKind) -> i64 {
    match kind {
        RoomKind::Group => 1,
        RoomKind::Direct => 2,
    }
}

/// A room kind as the databases keep it; `None` for a value no release
/// wrote.
pub(crate) fn room_kind_from_db(value: i64) -> Option<RoomKind> {
    match value {
        1 => Some(RoomKind::Group),
        2 => Some(RoomKind::Direct),
        _ => None,
    }
}

/// How the databases keep a member's role.
pub(crate) fn role_to_db(role: MemberRole) -> i64 {
    match role {
        MemberRole::Member => 1,
        MemberRole::Admin => 2,
        MemberRole::Owner => 3,
    }
}

/// A role as the databases keep it; `None` for a value no release wrote.
pub(crate) fn role_from_db(value: i64) -> Option<MemberRole> {
    match value {
        1 => Some(MemberRole::Member),
        2 => Some(MemberRole::Admin),
        3 => Some(MemberRole::Owner),
        _ => None,
    }
}

/// How the databases keep a room's visibility.
pub(crate) fn visibility_to_db(visibility: RoomVisibility) -> i64 {
    match visibility {
        RoomVisibility::Public => 1,
        RoomVisibility::Private => 2,
    }
}

/// A visibility as the databases keep it: anything but private is public.
pub(crate) fn visibility_from_db(value: i64) -> RoomVisibility {
    if value == 2 {
        RoomVisibility::Private
    } else {
        RoomVisibility::Public
    }
}

/// How `room_events.member_change` keeps a change.
pub(crate) fn member_change_to_db(change: MemberChange) -> i64 {
    match change {
        MemberChange::Joined => 1,
        MemberChange::Left => 2,
        MemberChange::Invited => 3,
        MemberChange::Removed => 4,
        MemberChange::Banned => 5,
        MemberChange::Unbanned => 6,
        MemberChange::RoleChanged => 7,
    }
}

fn member_change_from_db(value: i64) -> Option<MemberChange> {
    Some(match value {
        1 => MemberChange::Joined,
        2 => MemberChange::Left,
        3 => MemberChange::Invited,
        4 => MemberChange::Removed,
        5 => MemberChange::Banned,
        6 => MemberChange::Unbanned,
        7 => MemberChange::RoleChanged,
        _ => return None,
    })
}

/// A count the databases keep as a signed integer.
pub(crate) fn count_from_db(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

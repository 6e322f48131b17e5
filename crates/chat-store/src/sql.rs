//! Small helpers both databases' code shares.

use chat_domain::RoomId;

use crate::error::Error;

/// The columns of a message (`messages m`), its sender (`users u`) and
/// the message it quotes (`messages q`, by `users qu`), as `MESSAGE_JOINS`
/// joins them.
macro_rules! message_columns {
    () => {
        "m.id, m.room_id, m.seq, m.sender_id, u.username, u.display_name, m.text, m.sent_at,
        m.client_msg_id, m.edited_at, m.deleted, m.reply_to_id, q.sender_id AS reply_sender_id,
        qu.username AS reply_sender_name, qu.display_name AS reply_sender_display,
        q.text AS reply_text, q.deleted AS reply_deleted,
        m.thread_root_id, m.thread_reply_count, m.thread_last_reply_at"
    };
}
pub(crate) use message_columns;

/// Joins the quoted message and its sender to `messages m`.
macro_rules! reply_joins {
    () => {
        " LEFT JOIN messages q ON q.id = m.reply_to_id LEFT JOIN users qu ON qu.id = q.sender_id"
    };
}
pub(crate) use reply_joins;

/// A message, its sender and its quoted message.
pub(crate) const MESSAGE_SELECT: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages m JOIN users u ON u.id = m.sender_id",
    reply_joins!()
);

/// The columns of a room event (`room_events e`, by `users a`), of its
/// message now (`messages m`, sent by `users u`) for the kinds about a
/// message, of the user a member event concerns (`users t`), and of its
/// room now (`rooms rr`) for a room-updated event.
pub(crate) const EVENT_SELECT: &str = concat!(
    "SELECT e.room_id AS event_room_id, e.seq AS event_seq, e.kind, e.actor_id,
        a.username AS actor_name, a.display_name AS actor_display, e.emoji,
        e.target_id, t.username AS target_name, t.display_name AS target_display,
        e.member_change, e.member_role, e.reason,
        rr.name AS room_name, rr.topic AS room_topic, rr.visibility AS room_visibility,
        rr.member_count AS room_member_count, ",
    message_columns!(),
    " FROM room_events e LEFT JOIN messages m ON m.id = e.message_id
        LEFT JOIN users u ON u.id = m.sender_id
        LEFT JOIN users a ON a.id = e.actor_id
        LEFT JOIN users t ON t.id = e.target_id
        LEFT JOIN rooms rr ON e.kind = 7 AND rr.id = e.room_id",
    reply_joins!()
);

/// `room_events.kind` of a message's own event.
pub(crate) const EVENT_MESSAGE: i64 = 1;
/// `room_events.kind` of an edit.
pub(crate) const EVENT_EDIT: i64 = 2;
/// `room_events.kind` of a deletion.
pub(crate) const EVENT_DELETE: i64 = 3;
/// `room_events.kind` of a reaction added.
pub(crate) const EVENT_REACTION_ADDED: i64 = 4;
/// `room_events.kind` of a reaction removed.
pub(crate) const EVENT_REACTION_REMOVED: i64 = 5;

/// `room_events.kind` of a membership change.
pub(crate) const EVENT_MEMBER: i64 = 6;
/// `room_events.kind` of a change to a room's settings.
pub(crate) const EVENT_ROOM_UPDATED: i64 = 7;

/// A seq as both databases keep it (a signed 64-bit integer).
pub(crate) fn to_seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// A seq as both databases keep it; one beyond `i64::MAX` (never stored)
/// reads as the largest there is.
pub(crate) fn from_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Rows of (room id, newest seq) as the store interface returns them.
pub(crate) fn room_seqs(rows: Vec<(uuid::Uuid, i64)>) -> Vec<(RoomId, u64)> {
    rows.into_iter()
        .map(|(id, seq)| (RoomId::from_uuid(id), to_seq(seq)))
        .collect()
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The refusal of a user already in as many group rooms as allowed.
pub(crate) fn too_many_rooms(max_rooms: u32) -> Error {
    Error::LimitReached(format!(
        "too many rooms: a user may be in at most {max_rooms} group rooms \
         (--max-rooms-per-user); leave one first"
    ))
}

/// The one place a unique-constraint violation becomes `Taken`, with
/// the message `what` gives; every other database error passes through.
pub(crate) fn already_exists_if_unique(error: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    if is_unique_violation(&error) {
        Error::Taken(what())
    } else {
        error.into()
    }
}

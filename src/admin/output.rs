//! What the tool prints: aligned tables for people, JSON for scripts.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::domain::{RoomKind, Timestamp};
use crate::store::{RoomSummary, UserChange, UserDetails, UserRoom, UserSummary};

/// Columns of a table: left-aligned, padded to the widest cell, two spaces
/// apart, the last column unpadded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// Fields of one thing, a name and a value a line.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(name, value)| vec![(*name).to_owned(), value.clone()])
        .collect();
    // No header line: the names say it.
    let mut rendered = table(&["", ""], &rows);
    rendered.drain(..rendered.find('\n').map_or(0, |end| end + 1));
    rendered
}

/// A time as RFC 3339, in UTC, to the second.
pub fn time(at: Timestamp) -> String {
    let micros = u64::try_from(at.0).unwrap_or_default();
    let when = SystemTime::UNIX_EPOCH + Duration::from_micros(micros);
    humantime::format_rfc3339_seconds(when).to_string()
}

pub fn kind(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Group => "group",
        RoomKind::Direct => "direct",
    }
}

fn disabled(user: &UserSummary) -> String {
    user.disabled_at
        .map_or_else(|| "no".to_owned(), |at| format!("yes, since {}", time(at)))
}

const USER_COLUMNS: [&str; 5] = ["ID", "USERNAME", "CREATED", "DISABLED", "SESSIONS"];

fn user_row(user: &UserSummary) -> Vec<String> {
    vec![
        user.id.to_string(),
        user.username.clone(),
        time(user.created_at),
        user.disabled_at.map_or_else(|| "no".to_owned(), time),
        user.live_sessions.to_string(),
    ]
}

pub fn users_table(users: &[UserSummary]) -> String {
    let rows: Vec<Vec<String>> = users.iter().map(user_row).collect();
    table(&USER_COLUMNS, &rows)
}

pub fn user_json(user: &UserSummary) -> Value {
    json!({
        "id": user.id.to_string(),
        "username": user.username,
        "created_at": time(user.created_at),
        "disabled": user.disabled_at.is_some(),
        "disabled_at": user.disabled_at.map(time),
        "live_sessions": user.live_sessions,
    })
}

pub fn users_json(users: &[UserSummary]) -> Value {
    Value::Array(users.iter().map(user_json).collect())
}

fn user_fields(user: &UserSummary) -> Vec<(&'static str, String)> {
    vec![
        ("id", user.id.to_string()),
        ("username", user.username.clone()),
        ("created", time(user.created_at)),
        ("disabled", disabled(user)),
        ("live sessions", user.live_sessions.to_string()),
    ]
}

fn room_of_user_json(room: &UserRoom) -> Value {
    json!({ "id": room.id.to_string(), "name": room.name, "kind": kind(room.kind) })
}

pub fn user_details_text(details: &UserDetails) -> String {
    let mut out = fields(&user_fields(&details.user));
    out.push('\n');
    if details.rooms.is_empty() {
        out.push_str("no rooms\n");
    } else {
        let rows: Vec<Vec<String>> = details
            .rooms
            .iter()
            .map(|room| {
                vec![
                    room.id.to_string(),
                    room.name.clone(),
                    kind(room.kind).to_owned(),
                ]
            })
            .collect();
        out.push_str(&table(&["ROOM ID", "NAME", "KIND"], &rows));
    }
    out
}

pub fn user_details_json(details: &UserDetails) -> Value {
    let mut value = user_json(&details.user);
    value["rooms"] = details.rooms.iter().map(room_of_user_json).collect();
    value
}

/// An account change: what it did, then the account.
pub fn user_change_text(done: &str, change: &UserChange, extra: &[(&str, String)]) -> String {
    let mut pairs = vec![(
        "done",
        if change.changed {
            done.to_owned()
        } else {
            format!("{done} already: nothing changed")
        },
    )];
    pairs.extend(user_fields(&change.user));
    pairs.push(("sessions ended", change.sessions_ended.to_string()));
    pairs.extend(extra.iter().cloned());
    fields(&pairs)
}

pub fn user_change_json(change: &UserChange) -> Value {
    json!({
        "user": user_json(&change.user),
        "changed": change.changed,
        "sessions_ended": change.sessions_ended,
    })
}

const ROOM_COLUMNS: [&str; 5] = ["ID", "NAME", "KIND", "MEMBERS", "LAST SEQ"];

fn room_row(room: &RoomSummary) -> Vec<String> {
    vec![
        room.id.to_string(),
        room.name.clone(),
        kind(room.kind).to_owned(),
        room.members.to_string(),
        room.last_seq.to_string(),
    ]
}

pub fn rooms_table(rooms: &[RoomSummary]) -> String {
    let rows: Vec<Vec<String>> = rooms.iter().map(room_row).collect();
    table(&ROOM_COLUMNS, &rows)
}

pub fn room_json(room: &RoomSummary) -> Value {
    json!({
        "id": room.id.to_string(),
        "name": room.name,
        "kind": kind(room.kind),
        "members": room.members,
        "last_seq": room.last_seq,
    })
}

pub fn rooms_json(rooms: &[RoomSummary]) -> Value {
    Value::Array(rooms.iter().map(room_json).collect())
}

pub fn room_deleted_text(room: &RoomSummary) -> String {
    fields(&[
        ("done", "deleted".to_owned()),
        ("id", room.id.to_string()),
        ("name", room.name.clone()),
        ("kind", kind(room.kind).to_owned()),
        ("members", room.members.to_string()),
        ("last seq", room.last_seq.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_under_the_widest_cell() {
        let rendered = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "alice".into()],
                vec!["1234".into(), "bo".into()],
            ],
        );
        assert_eq!(rendered, "ID    NAME\n1     alice\n1234  bo\n");
    }

    #[test]
    fn fields_have_no_header_line() {
        assert_eq!(
            fields(&[("id", "7".into()), ("username", "alice".into())]),
            "id        7\nusername  alice\n"
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(time(Timestamp::from_secs(86_400)), "1970-01-02T00:00:00Z");
    }
}

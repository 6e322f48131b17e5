//! The generated `chat.v1` types and clients, and conversions from domain
//! types.
//!
//! `proto/chat/v1/chat.proto` at the top of the workspace is the contract;
//! the server crate generates its servers from the same file.

#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("chat.v1");

/// The encoded descriptors of `chat.v1` and its imports, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/chat_descriptor.bin"));

use chat_domain as domain;

pub fn timestamp(at: domain::Timestamp) -> prost_types::Timestamp {
    let nanos = i32::try_from(at.0.rem_euclid(1_000_000) * 1_000).unwrap_or_default();
    prost_types::Timestamp {
        seconds: at.secs(),
        nanos,
    }
}

/// A protobuf `Duration`, saturating at its largest value.
pub fn duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
    }
}

impl From<&domain::User> for User {
    fn from(user: &domain::User) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
        }
    }
}

impl From<domain::MemberRole> for MemberRole {
    fn from(role: domain::MemberRole) -> Self {
        match role {
            domain::MemberRole::Member => Self::Member,
            domain::MemberRole::Admin => Self::Admin,
            domain::MemberRole::Owner => Self::Owner,
        }
    }
}

impl From<domain::RoomVisibility> for RoomVisibility {
    fn from(visibility: domain::RoomVisibility) -> Self {
        match visibility {
            domain::RoomVisibility::Public => Self::Public,
            domain::RoomVisibility::Private => Self::Private,
        }
    }
}

impl From<domain::MemberChange> for MemberChange {
    fn from(change: domain::MemberChange) -> Self {
        match change {
            domain::MemberChange::Joined => Self::Joined,
            domain::MemberChange::Left => Self::Left,
            domain::MemberChange::Invited => Self::Invited,
            domain::MemberChange::Removed => Self::Removed,
            domain::MemberChange::Banned => Self::Banned,
            domain::MemberChange::Unbanned => Self::Unbanned,
            domain::MemberChange::RoleChanged => Self::RoleChanged,
        }
    }
}

/// A role as the wire says it: unspecified for none.
pub fn role(role: Option<domain::MemberRole>) -> i32 {
    role.map_or(MemberRole::Unspecified, MemberRole::from) as i32
}

fn kind(kind: domain::RoomKind) -> i32 {
    let kind = match kind {
        domain::RoomKind::Group => RoomKind::Group,
        domain::RoomKind::Direct => RoomKind::Direct,
    };
    kind as i32
}

fn visibility(kind: domain::RoomKind, visibility: domain::RoomVisibility) -> i32 {
    match kind {
        domain::RoomKind::Group => RoomVisibility::from(visibility) as i32,
        domain::RoomKind::Direct => RoomVisibility::Unspecified as i32,
    }
}

/// A group room's shared fields, as `room_updated` carries them: what
/// every member sees alike, with the per-viewer fields unset.
pub fn shared_room(room_id: domain::RoomId, name: &str, info: &domain::RoomInfo) -> Room {
    Room {
        id: room_id.to_string(),
        name: name.to_owned(),
        kind: kind(domain::RoomKind::Group),
        topic: info.topic.clone(),
        visibility: visibility(domain::RoomKind::Group, info.visibility),
        member_count: info.member_count,
        ..Room::default()
    }
}

impl From<&domain::Message> for Message {
    fn from(message: &domain::Message) -> Self {
        Self {
            id: message.id.to_string(),
            room_id: message.room_id.to_string(),
            seq: message.seq,
            sender: Some(User::from(&message.sender)),
            text: message.text.clone(),
            sent_at: Some(timestamp(message.sent_at)),
            client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
            edited_at: message.edited_at.map(timestamp),
            deleted: message.deleted,
            reply_to: message.reply_to.as_ref().map(ReplyPreview::from),
            thread_root_id: message
                .thread_root_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            thread_reply_count: message.thread.reply_count,
            thread_last_reply_at: message.thread.last_reply_at.map(timestamp),
            reactions: message
                .reactions
                .iter()
                .map(|r| ReactionSummary {
                    emoji: r.emoji.clone(),
                    count: r.count,
                    reacted_by_me: r.reacted_by_me,
                })
                .collect(),
            mentions: message.mentions.iter().map(User::from).collect(),
        }
    }
}

impl From<&domain::ReplyPreview> for ReplyPreview {
    fn from(preview: &domain::ReplyPreview) -> Self {
        Self {
            message_id: preview.message_id.to_string(),
            sender: Some(User::from(&preview.sender)),
            text: preview.text.clone(),
            deleted: preview.deleted,
        }
    }
}

impl From<&domain::Room> for Room {
    fn from(room: &domain::Room) -> Self {
        Self {
            id: room.id.to_string(),
            name: room.name.clone(),
            kind: kind(room.kind),
            topic: room.info.topic.clone(),
            visibility: visibility(room.kind, room.info.visibility),
            member_count: room.info.member_count,
            my_role: role(room.my_role),
            invited: room.invited,
            joined: room.joined,
            last_seq: room.last_seq,
            last_read_seq: room.read.last_read_seq,
            unread_count: room.read.unread_count,
            mention_count: room.read.mention_count,
            peer_last_read_seq: room.read.peer_last_read_seq,
            last_message: room.last_message.as_ref().map(Message::from),
        }
    }
}

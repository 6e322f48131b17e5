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
        }
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
        }
    }
}

impl From<&domain::Room> for Room {
    fn from(room: &domain::Room) -> Self {
        Self {
            id: room.id.to_string(),
            name: room.name.clone(),
            kind: match room.kind {
                domain::RoomKind::Group => RoomKind::Group,
                domain::RoomKind::Direct => RoomKind::Direct,
            } as i32,
            joined: room.joined,
            last_seq: room.last_seq,
        }
    }
}

//! What nodes say to each other over NATS: one protobuf `Envelope` per bus
//! message, internal to a cluster (all its nodes run one version), inside
//! a `Sealed` that authenticates it (see `bus::seal`).
//!
//! Ids travel as 16 raw bytes and times as microseconds, as the store keeps
//! them. Anything that does not decode is dropped by the receiver.

use bytes::Bytes;
use uuid::Uuid;

use crate::domain::{
    Message, MessageId, ReplyPreview, RoomEvent, RoomEventKind, RoomId, SessionId, ThreadSummary,
    Timestamp, User, UserId,
};
use crate::hub::{NodeId, ReadNotice};

/// What travels on NATS: an encoded `Envelope`, when it was sealed and
/// the MAC that proves a holder of the cluster secret sealed it, for this
/// subject, then. Its first field is a varint where an `Envelope` has
/// bytes, so an unsealed `Envelope` does not decode as one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sealed {
    /// Microseconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub sealed_at: i64,
    /// An encoded `Envelope`.
    #[prost(bytes = "bytes", tag = "2")]
    pub envelope: Bytes,
    /// HMAC-SHA256 of the subject, `sealed_at` and `envelope`.
    #[prost(bytes = "vec", tag = "3")]
    pub mac: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// The node that published it.
    #[prost(bytes = "vec", tag = "1")]
    pub node: Vec<u8>,
    #[prost(
        oneof = "Body",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18"
    )]
    pub body: Option<Body>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// A stored message.
    #[prost(message, tag = "2")]
    Message(WireMessage),
    #[prost(message, tag = "3")]
    Typing(Typing),
    /// A revoked session's id.
    #[prost(bytes = "vec", tag = "4")]
    Revoke(Vec<u8>),
    #[prost(message, tag = "5")]
    Joined(Membership),
    #[prost(message, tag = "6")]
    Left(Membership),
    /// A user whose first stream on the node opened.
    #[prost(message, tag = "7")]
    Online(WireUser),
    /// A user whose last stream on the node closed.
    #[prost(bytes = "vec", tag = "8")]
    Offline(Vec<u8>),
    /// Part of the node's full account of its online users; also its
    /// heartbeat.
    #[prost(message, tag = "9")]
    Snapshot(Snapshot),
    /// The node is shutting down: none of its users is online there now.
    #[prost(bool, tag = "10")]
    Goodbye(bool),
    /// A stored edit: the edited message as it was then, at the edit's seq.
    #[prost(message, tag = "11")]
    Edited(WireEdited),
    /// A stored deletion.
    #[prost(message, tag = "12")]
    Deleted(WireDeleted),
    /// A stored reaction, added or removed.
    #[prost(message, tag = "13")]
    Reaction(WireReaction),
    /// A member's read marker moved (not stored: no seq).
    #[prost(message, tag = "14")]
    Read(WireRead),
    /// A stored room event the receiver reads from the store (membership
    /// and settings changes: rare, and then nothing of them is taken on
    /// the bus's word).
    #[prost(message, tag = "15")]
    Logged(WireLogged),
    /// A user changed their profile (with their rooms): the streams sharing
    /// a room with them hear it.
    #[prost(message, tag = "16")]
    Profile(WireUser),
    /// A server event for one user's streams (an invitation to a room).
    #[prost(message, tag = "17")]
    ToUser(WireToUser),
    /// A user's block of another was stored or lifted: the receiver
    /// applies what the store says, and counts a claim it contradicts.
    #[prost(message, tag = "18")]
    Blocked(WireBlock),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireBlock {
    #[prost(bytes = "vec", tag = "1")]
    pub blocker_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub blocked_id: Vec<u8>,
    /// Blocked (or unblocked), as the sender claims.
    #[prost(bool, tag = "3")]
    pub blocks: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireToUser {
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    /// An encoded `chat.v1.ServerEvent`.
    #[prost(bytes = "vec", tag = "2")]
    pub event: Vec<u8>,
}

/// Where a stored room event is: the room and its seq.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireLogged {
    #[prost(bytes = "vec", tag = "1")]
    pub room_id: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

/// A moved read marker, and whom it is for (`hub::ReadNotice`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRead {
    #[prost(bytes = "vec", tag = "1")]
    pub room_id: Vec<u8>,
    /// The reader (its rooms unused).
    #[prost(message, optional, tag = "2")]
    pub user: Option<WireUser>,
    #[prost(uint64, tag = "3")]
    pub last_read_seq: u64,
    /// For the reader's own streams.
    #[prost(bool, tag = "4")]
    pub own: bool,
    /// For the other members' streams, as a receipt.
    #[prost(bool, tag = "5")]
    pub receipt: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReaction {
    #[prost(bytes = "vec", tag = "1")]
    pub room_id: Vec<u8>,
    /// The reaction's own seq.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub message_id: Vec<u8>,
    #[prost(string, tag = "4")]
    pub emoji: String,
    #[prost(message, optional, tag = "5")]
    pub user: Option<WireUser>,
    #[prost(bool, tag = "6")]
    pub added: bool,
}

/// A quoted message's preview.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReplyPreview {
    #[prost(bytes = "vec", tag = "1")]
    pub message_id: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub sender: Option<WireUser>,
    #[prost(string, tag = "3")]
    pub text: String,
    #[prost(bool, tag = "4")]
    pub deleted: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEdited {
    /// The edit's own seq.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(message, optional, tag = "2")]
    pub message: Option<WireMessage>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDeleted {
    #[prost(bytes = "vec", tag = "1")]
    pub room_id: Vec<u8>,
    /// The deletion's own seq.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub message_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub by_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub by_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub room_id: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "4")]
    pub sender_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub sender_name: String,
    #[prost(string, tag = "6")]
    pub text: String,
    #[prost(int64, tag = "7")]
    pub sent_at: i64,
    #[prost(string, optional, tag = "8")]
    pub client_msg_id: Option<String>,
    /// For an edited message: when. (A deleted one travels as `Deleted`.)
    #[prost(int64, optional, tag = "9")]
    pub edited_at: Option<i64>,
    #[prost(message, optional, tag = "10")]
    pub reply_to: Option<WireReplyPreview>,
    /// For a thread reply, its root's id; empty otherwise.
    #[prost(bytes = "vec", tag = "11")]
    pub thread_root_id: Vec<u8>,
    /// The members the text names (their rooms unused). Reactions and
    /// thread counts never travel: stream events do not carry them.
    #[prost(message, repeated, tag = "12")]
    pub mentions: Vec<WireUser>,
    #[prost(string, tag = "13")]
    pub sender_display: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Typing {
    #[prost(bytes = "vec", tag = "1")]
    pub room_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub user_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub username: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Membership {
    #[prost(bytes = "vec", tag = "1")]
    pub user_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub room_id: Vec<u8>,
    /// For a join: the room's newest seq, read after the join.
    #[prost(uint64, tag = "3")]
    pub last_seq: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireUser {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(string, tag = "2")]
    pub username: String,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub rooms: Vec<Vec<u8>>,
    #[prost(string, tag = "4")]
    pub display_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    /// Counts the node's snapshots; every part of one has the same.
    #[prost(uint64, tag = "1")]
    pub epoch: u64,
    /// Parts are numbered from 0 and sent in order.
    #[prost(uint32, tag = "2")]
    pub part: u32,
    #[prost(bool, tag = "3")]
    pub last: bool,
    #[prost(message, repeated, tag = "4")]
    pub users: Vec<WireUser>,
}

/// Why a bus message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("undecodable envelope: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("a field that must be a 16-byte id is not")]
    Id,
    #[error("an envelope without a body")]
    Empty,
}

fn uuid(bytes: &[u8]) -> Result<Uuid, Malformed> {
    Uuid::from_slice(bytes).map_err(|_| Malformed::Id)
}

pub fn node_id(bytes: &[u8]) -> Result<NodeId, Malformed> {
    uuid(bytes)
}

pub fn room_id(bytes: &[u8]) -> Result<RoomId, Malformed> {
    uuid(bytes).map(RoomId::from_uuid)
}

pub fn user_id(bytes: &[u8]) -> Result<UserId, Malformed> {
    uuid(bytes).map(UserId::from_uuid)
}

pub fn session_id(bytes: &[u8]) -> Result<SessionId, Malformed> {
    uuid(bytes).map(SessionId::from_uuid)
}

impl From<&Message> for WireMessage {
    fn from(message: &Message) -> Self {
        Self {
            id: message.id.uuid().as_bytes().to_vec(),
            room_id: message.room_id.uuid().as_bytes().to_vec(),
            seq: message.seq,
            sender_id: message.sender.id.uuid().as_bytes().to_vec(),
            sender_name: message.sender.username.clone(),
            sender_display: message.sender.display_name.clone(),
            text: message.text.clone(),
            sent_at: message.sent_at.0,
            client_msg_id: message.client_msg_id.clone(),
            edited_at: message.edited_at.map(|at| at.0),
            reply_to: message.reply_to.as_ref().map(|preview| WireReplyPreview {
                message_id: preview.message_id.uuid().as_bytes().to_vec(),
                sender: Some(WireUser::new(&preview.sender, &[])),
                text: preview.text.clone(),
                deleted: preview.deleted,
            }),
            thread_root_id: message
                .thread_root_id
                .map(|id| id.uuid().as_bytes().to_vec())
                .unwrap_or_default(),
            mentions: message
                .mentions
                .iter()
                .map(|user| WireUser::new(user, &[]))
                .collect(),
        }
    }
}

impl TryFrom<WireMessage> for Message {
    type Error = Malformed;

    fn try_from(wire: WireMessage) -> Result<Self, Malformed> {
        Ok(Self {
            id: MessageId::from_uuid(uuid(&wire.id)?),
            room_id: room_id(&wire.room_id)?,
            seq: wire.seq,
            sender: User {
                id: user_id(&wire.sender_id)?,
                username: wire.sender_name,
                display_name: wire.sender_display,
            },
            text: wire.text,
            sent_at: Timestamp(wire.sent_at),
            client_msg_id: wire.client_msg_id,
            edited_at: wire.edited_at.map(Timestamp),
            deleted: false,
            reply_to: wire
                .reply_to
                .map(|preview| {
                    Ok::<_, Malformed>(ReplyPreview {
                        message_id: MessageId::from_uuid(uuid(&preview.message_id)?),
                        sender: preview.sender.ok_or(Malformed::Empty)?.parse()?.0,
                        text: preview.text,
                        deleted: preview.deleted,
                    })
                })
                .transpose()?,
            thread_root_id: if wire.thread_root_id.is_empty() {
                None
            } else {
                Some(MessageId::from_uuid(uuid(&wire.thread_root_id)?))
            },
            thread: ThreadSummary::default(),
            reactions: Vec::new(),
            mentions: wire
                .mentions
                .into_iter()
                .map(|user| user.parse().map(|(user, _)| user))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<&RoomEvent> for Body {
    /// A room event as it travels to the room's subject.
    fn from(event: &RoomEvent) -> Self {
        match &event.kind {
            RoomEventKind::Message(message) => Self::Message(WireMessage::from(message)),
            RoomEventKind::Edited(message) => Self::Edited(WireEdited {
                seq: event.seq,
                message: Some(WireMessage::from(message)),
            }),
            RoomEventKind::Deleted { message_id, by } => Self::Deleted(WireDeleted {
                room_id: event.room_id.uuid().as_bytes().to_vec(),
                seq: event.seq,
                message_id: message_id.uuid().as_bytes().to_vec(),
                by_id: by.id.uuid().as_bytes().to_vec(),
                by_name: by.username.clone(),
            }),
            RoomEventKind::Reaction {
                message_id,
                emoji,
                user,
                added,
            } => Self::Reaction(WireReaction {
                room_id: event.room_id.uuid().as_bytes().to_vec(),
                seq: event.seq,
                message_id: message_id.uuid().as_bytes().to_vec(),
                emoji: emoji.clone(),
                user: Some(WireUser::new(user, &[])),
                added: *added,
            }),
            RoomEventKind::Member { .. } | RoomEventKind::RoomUpdated { .. } => {
                Self::Logged(WireLogged {
                    room_id: event.room_id.uuid().as_bytes().to_vec(),
                    seq: event.seq,
                })
            }
        }
    }
}

impl TryFrom<Body> for RoomEvent {
    type Error = Malformed;

    /// The room event a body announces; `Empty` for a body that is none.
    fn try_from(body: Body) -> Result<Self, Malformed> {
        match body {
            Body::Message(message) => Ok(Self::message(Message::try_from(message)?)),
            Body::Edited(edited) => {
                let message = Message::try_from(edited.message.ok_or(Malformed::Empty)?)?;
                Ok(Self {
                    room_id: message.room_id,
                    seq: edited.seq,
                    kind: RoomEventKind::Edited(message),
                })
            }
            Body::Deleted(deleted) => Ok(Self {
                room_id: room_id(&deleted.room_id)?,
                seq: deleted.seq,
                kind: RoomEventKind::Deleted {
                    message_id: MessageId::from_uuid(uuid(&deleted.message_id)?),
                    by: User::named(user_id(&deleted.by_id)?, deleted.by_name),
                },
            }),
            Body::Reaction(reaction) => Ok(Self {
                room_id: room_id(&reaction.room_id)?,
                seq: reaction.seq,
                kind: RoomEventKind::Reaction {
                    message_id: MessageId::from_uuid(uuid(&reaction.message_id)?),
                    emoji: reaction.emoji,
                    user: reaction.user.ok_or(Malformed::Empty)?.parse()?.0,
                    added: reaction.added,
                },
            }),
            _ => Err(Malformed::Empty),
        }
    }
}

impl From<&ReadNotice> for WireRead {
    fn from(notice: &ReadNotice) -> Self {
        Self {
            room_id: notice.room_id.uuid().as_bytes().to_vec(),
            user: Some(WireUser::new(&notice.user, &[])),
            last_read_seq: notice.last_read_seq,
            own: notice.own,
            receipt: notice.receipt,
        }
    }
}

impl TryFrom<WireRead> for ReadNotice {
    type Error = Malformed;

    /// The notice a read announces; `Empty` without a reader.
    fn try_from(read: WireRead) -> Result<Self, Malformed> {
        Ok(Self {
            room_id: room_id(&read.room_id)?,
            user: read.user.ok_or(Malformed::Empty)?.parse()?.0,
            last_read_seq: read.last_read_seq,
            own: read.own,
            receipt: read.receipt,
        })
    }
}

impl WireUser {
    pub fn new(user: &User, rooms: &[RoomId]) -> Self {
        Self {
            id: user.id.uuid().as_bytes().to_vec(),
            username: user.username.clone(),
            display_name: user.display_name.clone(),
            rooms: rooms
                .iter()
                .map(|room| room.uuid().as_bytes().to_vec())
                .collect(),
        }
    }

    pub fn parse(self) -> Result<(User, Vec<RoomId>), Malformed> {
        let rooms = self
            .rooms
            .iter()
            .map(|room| room_id(room))
            .collect::<Result<_, _>>()?;
        let user = User {
            id: user_id(&self.id)?,
            username: self.username,
            display_name: self.display_name,
        };
        Ok((user, rooms))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn a_message_survives_the_wire() {
        let message = Message {
            id: MessageId::new(),
            room_id: RoomId::new(),
            seq: 42,
            sender: User {
                id: UserId::new(),
                username: "alice".into(),
                display_name: String::new(),
            },
            text: "héllo".into(),
            sent_at: Timestamp(1_700_000_000_123_456),
            client_msg_id: Some("k1".into()),
            edited_at: Some(Timestamp(1_700_000_000_200_000)),
            deleted: false,
            reply_to: Some(ReplyPreview {
                message_id: MessageId::new(),
                sender: User {
                    id: UserId::new(),
                    username: "bob".into(),
                    display_name: String::new(),
                },
                text: "quoted".into(),
                deleted: false,
            }),
            thread_root_id: Some(MessageId::new()),
            thread: ThreadSummary::default(),
            reactions: Vec::new(),
            mentions: vec![User {
                id: UserId::new(),
                username: "carol".into(),
                display_name: String::new(),
            }],
        };
        let envelope = Envelope {
            node: Uuid::new_v4().as_bytes().to_vec(),
            body: Some(Body::Message(WireMessage::from(&message))),
        };

        let decoded = Envelope::decode(envelope.encode_to_vec().as_slice()).unwrap();

        let Some(Body::Message(wire)) = decoded.body else {
            panic!("not a message: {decoded:?}");
        };
        assert_eq!(Message::try_from(wire).unwrap(), message);
    }

    #[test]
    fn edits_deletions_and_reactions_survive_the_wire() {
        let (room_id, by) = (
            RoomId::new(),
            User {
                id: UserId::new(),
                username: "alice".into(),
                display_name: String::new(),
            },
        );
        let message = Message {
            id: MessageId::new(),
            room_id,
            seq: 3,
            sender: by.clone(),
            text: "edited".into(),
            sent_at: Timestamp(1_700_000_000_000_000),
            client_msg_id: None,
            edited_at: Some(Timestamp(1_700_000_001_000_000)),
            deleted: false,
            reply_to: None,
            thread_root_id: None,
            thread: ThreadSummary::default(),
            reactions: Vec::new(),
            mentions: Vec::new(),
        };
        let events = [
            RoomEvent {
                room_id,
                seq: 4,
                kind: RoomEventKind::Edited(message.clone()),
            },
            RoomEvent {
                room_id,
                seq: 5,
                kind: RoomEventKind::Deleted {
                    message_id: message.id,
                    by: by.clone(),
                },
            },
            RoomEvent {
                room_id,
                seq: 6,
                kind: RoomEventKind::Reaction {
                    message_id: message.id,
                    emoji: "👍".into(),
                    user: by,
                    added: true,
                },
            },
        ];
        for event in events {
            let envelope = Envelope {
                node: Uuid::new_v4().as_bytes().to_vec(),
                body: Some(Body::from(&event)),
            };
            let decoded = Envelope::decode(envelope.encode_to_vec().as_slice()).unwrap();
            assert_eq!(RoomEvent::try_from(decoded.body.unwrap()).unwrap(), event);
        }
    }

    #[test]
    fn a_read_survives_the_wire_and_a_garbled_one_is_malformed() {
        let notice = ReadNotice {
            room_id: RoomId::new(),
            user: User {
                id: UserId::new(),
                username: "alice".into(),
                display_name: String::new(),
            },
            last_read_seq: 17,
            own: true,
            receipt: false,
        };
        let envelope = Envelope {
            node: Uuid::new_v4().as_bytes().to_vec(),
            body: Some(Body::Read(WireRead::from(&notice))),
        };
        let decoded = Envelope::decode(envelope.encode_to_vec().as_slice()).unwrap();
        let Some(Body::Read(read)) = decoded.body else {
            panic!("not a read: {decoded:?}");
        };
        assert_eq!(ReadNotice::try_from(read.clone()).unwrap(), notice);

        let short_room = WireRead {
            room_id: vec![7; 3],
            ..read.clone()
        };
        assert!(matches!(
            ReadNotice::try_from(short_room),
            Err(Malformed::Id)
        ));
        let nobody = WireRead { user: None, ..read };
        assert!(matches!(
            ReadNotice::try_from(nobody),
            Err(Malformed::Empty)
        ));
    }

    #[test]
    fn a_short_id_is_malformed() {
        let wire = WireUser {
            id: vec![1, 2, 3],
            username: "bob".into(),
            rooms: Vec::new(),
            display_name: String::new(),
        };
        assert!(matches!(wire.parse(), Err(Malformed::Id)));
    }
}

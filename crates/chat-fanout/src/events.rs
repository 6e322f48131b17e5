//! The server events, built here and only here, by named constructors.
//!
//! Each constructor encodes one `ServerEvent` into a [`Frame`] with the drop
//! policy its kind has (messages and answers never dropped; typing and the
//! heartbeat under pressure; presence when a queue is full). The hub, the
//! catch-up and the server's writer and streams only move the frames made
//! here, so an event's shape and policy are decided in one place.

use std::time::Duration;

use chat_domain::{Message, MessageId, RoomEvent, RoomEventKind, RoomId, SessionId, User};
use chat_proto::server_event::{self, Event};
use chat_proto::{self as pb};

use crate::frame::Frame;

/// `ready`, always a stream's first event: who the caller is, its session,
/// the online users who share a room with it, and how often it hears a
/// heartbeat when nothing else is said (its clients' watchdog).
pub fn ready(
    user: &User,
    session_id: SessionId,
    online_users: &[User],
    heartbeat_interval: Duration,
) -> Frame {
    Frame::from_event(Event::Ready(server_event::Ready {
        user: Some(pb::User::from(user)),
        session_id: session_id.to_string(),
        online_users: online_users.iter().map(pb::User::from).collect(),
        heartbeat_interval: Some(pb::duration(heartbeat_interval)),
    }))
}

/// A live `message`, whose delivery latency counts from its send.
pub fn message(message: &Message) -> Frame {
    Frame::live_message(
        Event::Message(pb::Message::from(&message.without_aggregates())),
        message.sent_at,
    )
}

/// A `message` read back from the store for a resumed stream: no delivery
/// latency, since it was missed rather than delayed.
pub fn missed_message(message: &Message) -> Frame {
    Frame::from_event(Event::Message(pb::Message::from(
        &message.without_aggregates(),
    )))
}

/// A live room event, as its kind's server event. A message's delivery
/// latency counts from its send.
pub fn live(event: &RoomEvent) -> Frame {
    match &event.kind {
        RoomEventKind::Message(m) => message(m),
        _ => missed(event),
    }
}

/// A room event read back from the store for a resumed stream, with its
/// message as it is now.
pub fn missed(event: &RoomEvent) -> Frame {
    match &event.kind {
        RoomEventKind::Message(m) => missed_message(m),
        RoomEventKind::Edited(m) => edited(event.seq, m),
        RoomEventKind::Deleted { message_id, by } => {
            deleted(event.seq, event.room_id, *message_id, by)
        }
        RoomEventKind::Reaction {
            message_id,
            emoji,
            user,
            added,
        } => reaction(event.seq, event.room_id, *message_id, emoji, user, *added),
        RoomEventKind::Member {
            user,
            change,
            role,
            by,
            reason,
        } => Frame::from_event(Event::Member(server_event::MemberEvent {
            seq: event.seq,
            room_id: event.room_id.to_string(),
            user: Some(pb::User::from(user)),
            change: pb::MemberChange::from(*change) as i32,
            role: pb::role(*role),
            by: Some(pb::User::from(by)),
            reason: reason.clone(),
        })),
        RoomEventKind::RoomUpdated { name, info, by } => {
            Frame::from_event(Event::RoomUpdated(server_event::RoomUpdated {
                seq: event.seq,
                room: Some(pb::shared_room(event.room_id, name, info)),
                by: Some(pb::User::from(by)),
            }))
        }
    }
}

/// `invited`: the caller was invited to a room, as the caller sees it.
pub fn invited(room: &chat_domain::Room, by: &User) -> Frame {
    Frame::from_event(Event::Invited(server_event::Invited {
        room: Some(pb::Room::from(room)),
        by: Some(pb::User::from(by)),
    }))
}

/// `profile`: a user who shares a room with the caller (or the caller)
/// changed their profile.
pub fn profile(user: &User) -> Frame {
    Frame::from_event(Event::Profile(server_event::ProfileChanged {
        user: Some(pb::User::from(user)),
    }))
}

/// An event another node built for one user's streams (`invited`),
/// relayed as it came over the authenticated bus.
pub fn relayed(event: Event) -> Frame {
    Frame::from_event(event)
}

/// `edited`: a message's text was replaced. `seq` is the edit's own;
/// `message` is the message as it is now, with its original seq.
pub fn edited(seq: u64, message: &Message) -> Frame {
    Frame::from_event(Event::Edited(server_event::Edited {
        seq,
        message: Some(pb::Message::from(&message.without_aggregates())),
    }))
}

/// `deleted`: a message was deleted by `by`; it is a tombstone now. `seq`
/// is the deletion's own.
pub fn deleted(seq: u64, room_id: RoomId, message_id: MessageId, by: &User) -> Frame {
    Frame::from_event(Event::Deleted(server_event::Deleted {
        seq,
        room_id: room_id.to_string(),
        message_id: message_id.to_string(),
        by: Some(pb::User::from(by)),
    }))
}

/// `reaction`: `user` added (or removed) `emoji` on a message. `seq` is
/// the event's own.
pub fn reaction(
    seq: u64,
    room_id: RoomId,
    message_id: MessageId,
    emoji: &str,
    user: &User,
    added: bool,
) -> Frame {
    Frame::from_event(Event::Reaction(server_event::Reaction {
        seq,
        room_id: room_id.to_string(),
        message_id: message_id.to_string(),
        emoji: emoji.to_owned(),
        user: Some(pb::User::from(user)),
        added,
    }))
}

/// `read` to the reader's own streams: its marker in a room moved, so
/// every device agrees on what is unread. Dropped only when a queue is
/// full.
pub fn own_read(room_id: RoomId, user: &User, last_read_seq: u64) -> Frame {
    Frame::state_hint(read_event(room_id, user, last_read_seq))
}

/// `read` as a receipt to the other members of a small room: dropped by a
/// stream under pressure.
pub fn read_receipt(room_id: RoomId, user: &User, last_read_seq: u64) -> Frame {
    Frame::ephemeral(read_event(room_id, user, last_read_seq))
}

fn read_event(room_id: RoomId, user: &User, last_read_seq: u64) -> Event {
    Event::Read(server_event::Read {
        room_id: room_id.to_string(),
        user: Some(pb::User::from(user)),
        last_read_seq,
    })
}

/// `sent`: the acknowledgement of the caller's own send, with the stored
/// message.
pub fn sent(message: &Message) -> Frame {
    Frame::from_event(Event::Sent(server_event::Sent {
        client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
        message: Some(pb::Message::from(message)),
    }))
}

/// `error`: a stream request failed (the stream goes on). `code` is the
/// gRPC status code; the server decides it and the client-facing message.
pub fn error(code: tonic::Code, message: String, client_msg_id: &str) -> Frame {
    Frame::from_event(Event::Error(server_event::Error {
        client_msg_id: client_msg_id.to_owned(),
        code: code as i32,
        message,
        room_id: String::new(),
    }))
}

/// An `error` about one room (a resume cursor the caller may no longer
/// use, a room that is gone): the stream goes on for the others.
pub fn room_error(code: tonic::Code, message: String, room_id: RoomId) -> Frame {
    Frame::from_event(Event::Error(server_event::Error {
        client_msg_id: String::new(),
        code: code as i32,
        message,
        room_id: room_id.to_string(),
    }))
}

/// `error` for a room deleted by the operator (`chat-server admin rooms
/// delete`): NOT_FOUND, naming the room; nothing more from it follows.
pub fn room_deleted(room_id: RoomId) -> Frame {
    room_error(
        tonic::Code::NotFound,
        format!("room {room_id} was deleted"),
        room_id,
    )
}

/// `resync`: messages of the room before `from_seq` were skipped; the
/// client pages them with History.
pub fn resync(room_id: RoomId, from_seq: u64) -> Frame {
    Frame::from_event(Event::Resync(server_event::Resync {
        room_id: room_id.to_string(),
        from_seq,
    }))
}

/// `pong`: the answer to the client's ping.
pub fn pong(nonce: u64) -> Frame {
    Frame::from_event(Event::Pong(server_event::Pong { nonce }))
}

/// The idle-stream heartbeat: a `pong` with nonce 0, dropped by a stream
/// under pressure.
pub fn heartbeat() -> Frame {
    Frame::ephemeral(Event::Pong(server_event::Pong { nonce: 0 }))
}

/// `presence`: a user who shares a room came online or went offline.
/// Dropped only when a queue is full.
pub fn presence(user: &User, online: bool) -> Frame {
    Frame::state_hint(Event::Presence(server_event::Presence {
        user: Some(pb::User::from(user)),
        online,
    }))
}

/// `typing`: a user is typing in a room. Dropped by a stream under
/// pressure.
pub fn typing(room_id: RoomId, user: &User) -> Frame {
    Frame::ephemeral(Event::Typing(server_event::Typing {
        room_id: room_id.to_string(),
        user: Some(pb::User::from(user)),
    }))
}

#[cfg(test)]
mod tests {
    use chat_domain::{Timestamp, UserId};

    use super::*;
    use crate::frame::Droppable;

    fn alice() -> User {
        User {
            id: UserId::new(),
            username: "alice".into(),
            display_name: String::new(),
        }
    }

    #[test]
    fn each_kind_of_event_has_its_drop_policy() {
        let (user, room) = (alice(), RoomId::new());
        let stored = Message {
            id: MessageId::new(),
            room_id: room,
            seq: 1,
            sender: user.clone(),
            text: "hi".into(),
            sent_at: Timestamp::now(),
            client_msg_id: Some("k1".into()),
            edited_at: None,
            deleted: false,
            reply_to: None,
            thread_root_id: None,
            thread: Default::default(),
            reactions: Vec::new(),
            mentions: Vec::new(),
        };
        let never = [
            ready(&user, SessionId::new(), &[], Duration::from_secs(15)),
            message(&stored),
            missed_message(&stored),
            sent(&stored),
            error(tonic::Code::NotFound, "no".into(), "k1"),
            resync(room, 5),
            pong(7),
            edited(2, &stored),
            deleted(3, room, stored.id, &user),
            reaction(4, room, stored.id, "👍", &user, true),
        ];
        for frame in never {
            assert_eq!(frame.droppable(), Droppable::Never, "{:?}", frame.event());
        }
        assert_eq!(heartbeat().droppable(), Droppable::UnderPressure);
        assert_eq!(typing(room, &user).droppable(), Droppable::UnderPressure);
        assert_eq!(presence(&user, true).droppable(), Droppable::WhenFull);
        assert_eq!(own_read(room, &user, 3).droppable(), Droppable::WhenFull);
        assert_eq!(
            read_receipt(room, &user, 3).droppable(),
            Droppable::UnderPressure
        );
        assert!(message(&stored).sent_at().is_some());
        assert!(missed_message(&stored).sent_at().is_none());
    }

    #[test]
    fn an_error_carries_its_code_message_and_send() {
        let frame = error(tonic::Code::PermissionDenied, "not a member".into(), "k9");
        assert_eq!(
            frame.event(),
            Event::Error(server_event::Error {
                client_msg_id: "k9".into(),
                code: tonic::Code::PermissionDenied as i32,
                message: "not a member".into(),
                room_id: String::new(),
            })
        );
        let room = RoomId::new();
        assert_eq!(
            room_deleted(room).event(),
            Event::Error(server_event::Error {
                client_msg_id: String::new(),
                code: tonic::Code::NotFound as i32,
                message: format!("room {room} was deleted"),
                room_id: room.to_string(),
            })
        );
        assert_eq!(
            heartbeat().event(),
            Event::Pong(server_event::Pong { nonce: 0 })
        );
    }
}

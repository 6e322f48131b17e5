//! What the store takes and gives besides domain types, and the rules of
//! appending a batch, the same for every database and free of I/O.

use std::collections::{BTreeSet, HashMap, HashSet};

use chat_domain::{
    ClientMsgId, Emoji, MemberRole, Message, MessageId, MessageText, Room, RoomEvent, RoomId,
    RoomName, RoomTopic, RoomVisibility, SessionId, ThreadSummary, Timestamp, User, UserId,
    Username,
};

use crate::error::{Error, Result};

/// The name a deleted account's messages show. No username may contain
/// brackets, so nobody can register it.
pub const DELETED_USERNAME: &str = "[deleted]";

/// How SQLite makes a commit durable: `Full` syncs every commit, `Normal`
/// (in WAL mode) may lose the last commits on power loss, never on a crash
/// of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Synchronous {
    Full,
    Normal,
}

/// A message about to be appended to a room.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub id: MessageId,
    pub room_id: RoomId,
    pub sender: User,
    pub text: MessageText,
    pub sent_at: Timestamp,
    pub client_msg_id: ClientMsgId,
    /// A message of the same room this one quotes.
    pub reply_to_id: Option<MessageId>,
    /// Makes this a reply in the thread of a top-level message of the room.
    pub thread_root_id: Option<MessageId>,
}

impl NewMessage {
    /// Whether the message is only text, naming no one: what the batch
    /// append (`plan_appends`) stores. A reply, a thread reply or a text
    /// with an `@` takes the path that checks what it refers to.
    pub fn is_plain(&self) -> bool {
        self.reply_to_id.is_none()
            && self.thread_root_id.is_none()
            && !self.text.as_str().contains('@')
    }
}

/// An edit or a deletion of a stored message, by `actor`, at `at`.
#[derive(Clone, Debug)]
pub struct MessageChange {
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub actor: User,
    pub at: Timestamp,
    pub kind: ChangeKind,
}

/// What a `MessageChange` does.
#[derive(Clone, Debug)]
pub enum ChangeKind {
    /// Replaces the text.
    Edit(MessageText),
    /// Erases the text, leaving a tombstone.
    Delete,
    /// Adds the actor's reaction.
    React(Emoji),
    /// Removes the actor's reaction.
    Unreact(Emoji),
}

/// What a change did: the message as it is now, and the event that
/// recorded the change in the room's log; `None` when nothing changed, so
/// that nothing is to be delivered.
#[derive(Clone, Debug)]
pub struct Changed {
    pub message: Message,
    pub event: Option<RoomEvent>,
}

/// A page of a thread: its root and replies, both as one user sees them.
#[derive(Clone, Debug)]
pub struct Thread {
    pub root: Message,
    /// Ascending seq.
    pub replies: Vec<Message>,
    /// Whether older replies remain.
    pub has_more: bool,
}

/// The outcome of one append.
#[derive(Clone, Debug)]
pub struct Appended {
    pub message: Message,
    /// False when an earlier send with the same `client_msg_id` was returned
    /// instead: nothing was stored and nothing must be delivered.
    pub fresh: bool,
}

/// What appending a batch needs to know from the database.
#[derive(Debug, Default)]
pub struct AppendContext {
    /// Stored messages by (sender, client_msg_id), for the batch's keys.
    pub earlier: HashMap<(UserId, String), Message>,
    /// The counters of each of the batch's rooms that exists.
    pub rooms: HashMap<RoomId, RoomCounters>,
    /// The batch's (room, sender) pairs that are memberships, each with the
    /// `sender_ord` of the sender's newest message there (0 if none).
    pub members: HashMap<(RoomId, UserId), u64>,
    /// The batch's (room, sender) pairs of direct rooms whose other member
    /// blocks the sender: their sends are refused.
    pub blocked: HashSet<(RoomId, UserId)>,
}

/// A room's newest seq, and how many messages it has had (its newest
/// message's `ord`; other events take seqs but no number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomCounters {
    pub last_seq: u64,
    pub msg_count: u64,
    /// The newest top-level message the batch adds (`rooms.last_message_id`).
    pub last_message: Option<MessageId>,
}

/// A message to insert, with its numbers (`migrations/*/..._unread_counts.sql`):
/// `ord` among its room's messages, `sender_ord` among its sender's there.
#[derive(Clone, Debug)]
pub struct FreshMessage {
    pub message: Message,
    pub ord: u64,
    pub sender_ord: u64,
}

impl AppendContext {
    /// Keeps an earlier send found for one of the batch's keys.
    pub fn remember_earlier(&mut self, message: Message) {
        let key = message.client_msg_id.clone().unwrap_or_default();
        self.earlier.insert((message.sender.id, key), message);
    }
}

/// The batch's distinct (sender, client_msg_id) pairs, of sends with a key:
/// what to look up earlier sends by.
pub fn batch_keys(batch: &[NewMessage]) -> BTreeSet<(uuid::Uuid, &str)> {
    batch
        .iter()
        .filter_map(|m| m.client_msg_id.as_deref().map(|k| (m.sender.id.uuid(), k)))
        .collect()
}

/// The batch's distinct (room, sender) pairs: what to check memberships of.
pub fn batch_room_senders(batch: &[NewMessage]) -> BTreeSet<(uuid::Uuid, uuid::Uuid)> {
    batch
        .iter()
        .map(|m| (m.room_id.uuid(), m.sender.id.uuid()))
        .collect()
}

/// The refusal of a send to a direct room whose other member blocks the
/// sender.
pub fn blocked_sender() -> Error {
    Error::Forbidden("you cannot message this user".into())
}

/// An SQL condition: whether the other member of the direct room whose id
/// is the expression `room` blocks the user whose id is `sender` (false
/// for a group room). Rides along with the membership check of a send, so
/// that a block costs sends no query of its own.
pub fn blocked_in_direct_room(room: &str, sender: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM rooms dr \
         JOIN room_members o ON o.room_id = dr.id \
         JOIN user_blocks b ON b.blocker_id = o.user_id AND b.blocked_id = {sender} \
         WHERE dr.id = {room} AND dr.kind = 2)"
    )
}

/// What to write for a batch, and each message's outcome.
#[derive(Debug)]
pub struct AppendPlan {
    pub results: Vec<Result<Appended>>,
    /// New messages to insert, in seq order per room.
    pub fresh: Vec<FreshMessage>,
    /// The new counters of each room that got messages.
    pub rooms: HashMap<RoomId, RoomCounters>,
}

/// Decides a batch in order: a send whose key was used before returns the
/// earlier message (in another room: `Taken`); a send to a room that
/// does not exist or by a non-member fails; every other one gets its
/// room's next seq. The same rules for every store, and no I/O.
pub fn plan_appends(batch: &[NewMessage], context: AppendContext) -> AppendPlan {
    let AppendContext {
        mut earlier,
        mut rooms,
        mut members,
        blocked,
    } = context;
    let mut results = Vec::with_capacity(batch.len());
    let mut fresh = Vec::with_capacity(batch.len());
    let mut touched = HashMap::new();
    for new in batch {
        let key = new
            .client_msg_id
            .as_deref()
            .map(|key| (new.sender.id, key.to_owned()));
        if let Some(message) = key.as_ref().and_then(|key| earlier.get(key)) {
            results.push(if message.room_id == new.room_id {
                Ok(Appended {
                    message: message.clone(),
                    fresh: false,
                })
            } else {
                Err(Error::Taken(format!(
                    "client_msg_id {:?} was already used for a message in another room",
                    new.client_msg_id.as_deref().unwrap_or_default()
                )))
            });
            continue;
        }
        let Some(room) = rooms.get_mut(&new.room_id) else {
            results.push(Err(Membership::NoSuchRoom
                .require_member(new.room_id)
                .unwrap_err()));
            continue;
        };
        let Some(sender_ord) = members.get_mut(&(new.room_id, new.sender.id)) else {
            results.push(Err(Membership::NotMember
                .require_member(new.room_id)
                .unwrap_err()));
            continue;
        };
        if blocked.contains(&(new.room_id, new.sender.id)) {
            results.push(Err(blocked_sender()));
            continue;
        }
        room.last_seq += 1;
        room.msg_count += 1;
        if new.thread_root_id.is_none() {
            room.last_message = Some(new.id);
        }
        *sender_ord += 1;
        touched.insert(new.room_id, *room);
        let message = Message {
            id: new.id,
            room_id: new.room_id,
            seq: room.last_seq,
            sender: new.sender.clone(),
            text: new.text.as_str().to_owned(),
            sent_at: new.sent_at,
            client_msg_id: new.client_msg_id.as_deref().map(str::to_owned),
            edited_at: None,
            deleted: false,
            reply_to: None,
            thread_root_id: None,
            thread: ThreadSummary::default(),
            reactions: Vec::new(),
            mentions: Vec::new(),
        };
        if let Some(key) = key {
            earlier.insert(key, message.clone());
        }
        fresh.push(FreshMessage {
            message: message.clone(),
            ord: room.msg_count,
            sender_ord: *sender_ord,
        });
        results.push(Ok(Appended {
            message,
            fresh: true,
        }));
    }
    AppendPlan {
        results,
        fresh,
        rooms: touched,
    }
}

/// A new login's session and its first refresh token.
#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: SessionId,
    pub user_id: UserId,
    pub user_agent: String,
    pub refresh_hash: Vec<u8>,
    pub expires_at: Timestamp,
    /// Live sessions the user may have: the oldest beyond it are revoked.
    pub max_sessions: u32,
    pub now: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; it is now spent and the new one stored.
    Rotated {
        user_id: UserId,
        session_id: SessionId,
    },
    /// The token had been rotated already: the session is now revoked.
    Reused { session_id: SessionId },
    /// Unknown, expired, or its session is revoked.
    Invalid,
}

/// Which rooms `Store::list_rooms` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomPage {
    /// Only rooms with a greater id (the last room of the previous page).
    pub after: Option<RoomId>,
    pub limit: u32,
    /// Only the rooms the user is a member of.
    pub joined_only: bool,
}

impl RoomPage {
    /// `after` as the smallest id to exceed: the nil UUID on the first page.
    pub fn after_uuid(&self) -> uuid::Uuid {
        self.after.map_or(uuid::Uuid::nil(), RoomId::uuid)
    }
}

/// A group room about to be created, by `creator`, its owner.
#[derive(Clone, Debug)]
pub struct NewRoom {
    pub id: RoomId,
    pub name: RoomName,
    pub topic: RoomTopic,
    pub visibility: RoomVisibility,
    pub creator: User,
    /// The most group rooms a user may be in.
    pub max_rooms: u32,
    pub now: Timestamp,
}

/// A change to who is in a room, or to a room's settings, by `actor`: each
/// writes its events to the room's log in the transaction that makes it.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub room_id: RoomId,
    pub actor: User,
    pub at: Timestamp,
    pub kind: MembershipKind,
}

#[derive(Clone, Debug)]
pub enum MembershipKind {
    /// Joins (accepting an invitation to a private room); `max_rooms` is
    /// the most group rooms a user may be in.
    Join {
        max_rooms: u32,
    },
    /// Leaves, or declines an invitation.
    Leave,
    Invite {
        username: Username,
    },
    /// Each setting given is changed.
    Update {
        name: Option<RoomName>,
        topic: Option<RoomTopic>,
        visibility: Option<RoomVisibility>,
    },
    SetRole {
        target: UserId,
        role: MemberRole,
    },
    Remove {
        target: UserId,
        ban: bool,
        reason: RoomTopic,
    },
    Unban {
        target: UserId,
    },
}

/// What a membership change did.
#[derive(Clone, Debug)]
pub struct MembershipChanged {
    /// The room as the actor sees it now.
    pub room: Room,
    /// Its events, in seq order; none when nothing changed.
    pub events: Vec<RoomEvent>,
    /// For an invitation: the invitee, and the room as the invitee sees it.
    pub invited: Option<(UserId, Room)>,
}

/// A member of a room, as `ListMembers` lists it (the hub says who is
/// online).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEntry {
    pub user: User,
    pub role: MemberRole,
    pub joined_at: Timestamp,
}

/// Where a page of members goes on from: the last member of the previous
/// page, in `ListMembers`' order (role, then when they joined).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberCursor {
    pub role: MemberRole,
    pub joined_at: Timestamp,
    pub user_id: UserId,
}

/// How a user relates to a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    NoSuchRoom,
    NotMember,
    Member,
}

impl Membership {
    /// # Errors
    /// `NotFound` or `Forbidden` unless the user is a member.
    pub fn require_member(self, room_id: RoomId) -> Result<()> {
        match self {
            Self::Member => Ok(()),
            Self::NotMember => Err(Error::Forbidden(format!(
                "you are not a member of room {room_id}"
            ))),
            Self::NoSuchRoom => Err(Error::NotFound(format!("room {room_id} does not exist"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            id: UserId::new(),
            username: name.into(),
            display_name: String::new(),
        }
    }

    fn send(room: RoomId, sender: &User, key: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            room_id: room,
            sender: sender.clone(),
            text: MessageText::parse("hi".into()).unwrap(),
            sent_at: Timestamp(0),
            client_msg_id: ClientMsgId::parse(key.into()).unwrap(),
            reply_to_id: None,
            thread_root_id: None,
        }
    }

    #[test]
    fn a_send_to_a_direct_room_whose_other_member_blocks_the_sender_is_refused() {
        let (alice, bob) = (user("alice"), user("bob"));
        let direct = RoomId::new();
        let context = AppendContext {
            rooms: HashMap::from([(direct, RoomCounters::default())]),
            members: HashMap::from([((direct, alice.id), 0), ((direct, bob.id), 0)]),
            blocked: HashSet::from([(direct, bob.id)]),
            ..AppendContext::default()
        };
        let batch = [send(direct, &bob, ""), send(direct, &alice, "")];
        let plan = plan_appends(&batch, context);
        assert!(
            matches!(&plan.results[0], Err(Error::Forbidden(why)) if why == "you cannot message this user")
        );
        assert_eq!(plan.results[1].as_ref().unwrap().message.seq, 1);
    }

    #[test]
    fn a_batch_gets_consecutive_seqs_per_room_and_dedupes_keys() {
        let (alice, eve) = (user("alice"), user("eve"));
        let (a, b, missing) = (RoomId::new(), RoomId::new(), RoomId::new());
        let context = AppendContext {
            earlier: HashMap::new(),
            rooms: HashMap::from([
                (
                    a,
                    RoomCounters {
                        last_seq: 7,
                        msg_count: 5,
                        last_message: None,
                    },
                ),
                (b, RoomCounters::default()),
            ]),
            members: HashMap::from([((a, alice.id), 2), ((b, alice.id), 0)]),
            blocked: HashSet::new(),
        };
        let batch = [
            send(a, &alice, "k1"),
            send(b, &alice, ""),
            send(a, &alice, ""),
            send(a, &alice, "k1"),
            send(b, &alice, "k1"),
            send(a, &eve, ""),
            send(missing, &alice, ""),
        ];

        let plan = plan_appends(&batch, context);

        let outcome: Vec<_> = plan
            .results
            .iter()
            .map(|r| match r {
                Ok(appended) => Ok((appended.message.seq, appended.fresh)),
                Err(Error::Taken(_)) => Err("taken"),
                Err(Error::Forbidden(_)) => Err("forbidden"),
                Err(Error::NotFound(_)) => Err("not found"),
                Err(other) => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            outcome,
            [
                Ok((8, true)),
                Ok((1, true)),
                Ok((9, true)),
                Ok((8, false)),
                Err("taken"),
                Err("forbidden"),
                Err("not found"),
            ]
        );
        assert_eq!(plan.fresh.len(), 3);
        let numbers: Vec<_> = plan
            .fresh
            .iter()
            .map(|f| (f.message.seq, f.ord, f.sender_ord))
            .collect();
        assert_eq!(numbers, [(8, 6, 3), (1, 1, 1), (9, 7, 4)]);
        assert_eq!(
            plan.rooms,
            HashMap::from([
                (
                    a,
                    RoomCounters {
                        last_seq: 9,
                        msg_count: 7,
                        last_message: Some(plan.fresh[2].message.id),
                    }
                ),
                (
                    b,
                    RoomCounters {
                        last_seq: 1,
                        msg_count: 1,
                        last_message: Some(plan.fresh[1].message.id),
                    }
                )
            ])
        );
    }
}

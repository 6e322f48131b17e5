//! The rooms with members connected here: who is in each, and the newest
//! seq each delivered, so that room events (messages, and every later
//! change to the conversation) go out gapless and in order whichever way
//! they arrive (this node's writer, the bus, a read of the database):
//! `deliver` refuses an event that would skip a seq and says where the gap
//! starts.

use std::collections::HashSet;

use chat_domain::{RoomEvent, RoomEventKind, RoomId, User, UserId};

use super::resume::{offer, Ordered};
use super::streams::{Overflow, StreamId};
use super::{Hub, State};
use crate::events;
use crate::frame::Frame;

/// What `deliver` did with a room event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered to the room's streams here.
    Delivered,
    /// No stream here is in the room, or they have it already.
    Skipped,
    /// Not delivered: the room's streams here last got `after`, and the
    /// events between must go first.
    Gap { after: u64 },
}

pub(super) struct RoomEntry {
    /// The connected users who are members.
    pub(super) members: HashSet<UserId>,
    /// The newest seq delivered here (or known not to be needed).
    pub(super) last_seq: u64,
}

impl RoomEntry {
    pub(super) fn new(last_seq: u64) -> Self {
        Self {
            members: HashSet::new(),
            last_seq,
        }
    }
}

impl Hub {
    /// Sends a stored room event to every open stream of every member of
    /// its room, unless that would skip a seq (see `Delivery::Gap`) or they
    /// have it already. The stream that sent a message (if any) gets
    /// `sent` instead, once: when the message is delivered or skipped.
    pub fn deliver(&self, event: &RoomEvent, origin: Option<StreamId>) -> Delivery {
        let mut state = self.lock();
        let delivery = match state.rooms.get_mut(&event.room_id) {
            None => Delivery::Skipped,
            Some(room) if event.seq <= room.last_seq => Delivery::Skipped,
            Some(room) if event.seq > room.last_seq + 1 => {
                return Delivery::Gap {
                    after: room.last_seq,
                }
            }
            Some(room) => {
                room.last_seq = event.seq;
                if let Some(message) = event.new_message() {
                    // A message ends its sender's typing: the next keystroke
                    // is news again, not a repeat within the interval.
                    state.typing.forget(message.sender.id, message.room_id);
                }
                Delivery::Delivered
            }
        };
        let order = Ordered {
            room_id: event.room_id,
            seq: event.seq,
            ack: false,
        };
        let mut overflow = Overflow::default();
        if delivery == Delivery::Delivered {
            let frame = events::live(event);
            let members: Vec<UserId> = state.rooms[&event.room_id]
                .members
                .iter()
                .copied()
                .collect();
            state.tell_users(&members, &frame, Some(order), origin, &mut overflow);
            // A member who left or was removed hears that, then nothing
            // more of the room: on every node, as each delivers the event.
            if let RoomEventKind::Member { user, change, .. } = &event.kind {
                if change.ends_membership() {
                    state.drop_member(user.id, event.room_id);
                }
            }
        }
        if let (Some(origin), Some(message)) = (origin, event.new_message()) {
            if let Some(entry) = state.streams.get_mut(&origin) {
                let sent = events::sent(message);
                let ack = Ordered { ack: true, ..order };
                offer(entry, origin, &sent, Some(ack), &mut overflow);
            }
        }
        self.close_overflowed(&mut state, overflow);
        delivery
    }

    /// Tells the streams of a room's members that messages before
    /// `from_seq` were skipped (to page with History), and moves the room
    /// on to just before `from_seq`.
    pub fn resync(&self, room_id: RoomId, from_seq: u64) {
        let mut state = self.lock();
        let Some(room) = state.rooms.get_mut(&room_id) else {
            return;
        };
        if from_seq <= room.last_seq + 1 {
            return;
        }
        room.last_seq = from_seq - 1;
        let members: Vec<UserId> = room.members.iter().copied().collect();
        let frame = events::resync(room_id, from_seq);
        let mut overflow = Overflow::default();
        state.tell_users(&members, &frame, None, None, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// Every room with members here, and the newest seq delivered in it.
    pub fn room_positions(&self) -> Vec<(RoomId, u64)> {
        self.lock()
            .rooms
            .iter()
            .map(|(&id, room)| (id, room.last_seq))
            .collect()
    }

    /// Records that a user joined a room whose newest seq was `last_seq`
    /// (read after the join); if the user is online (here or elsewhere), it
    /// and the room's online members here learn of each other.
    pub fn join(&self, user_id: UserId, room_id: RoomId, last_seq: u64) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        let here = state.users.get_mut(&user_id).and_then(|entry| {
            let joined = entry.rooms.insert(room_id);
            joined.then(|| (entry.online, entry.user.clone()))
        });
        if let Some((online, user)) = here {
            state
                .rooms
                .entry(room_id)
                .or_insert_with(|| RoomEntry::new(last_seq))
                .members
                .insert(user_id);
            if online {
                let others = state.members_except(room_id, user_id);
                if !state.remote.contains_key(&user_id) {
                    state.tell_users_from(
                        user_id,
                        &others,
                        &events::presence(&user, true),
                        &mut overflow,
                    );
                }
                let mut online_others: Vec<User> = others
                    .iter()
                    .filter_map(|m| state.users.get(m))
                    .filter(|m| m.online)
                    .map(|m| m.user.clone())
                    .collect();
                online_others.extend(
                    state
                        .remote_rooms
                        .get(&room_id)
                        .into_iter()
                        .flatten()
                        .filter(|m| **m != user_id && !others.contains(m))
                        .filter_map(|m| state.remote.get(m))
                        .map(|m| m.user.clone()),
                );
                online_others.retain(|other| !state.blocks(user_id, other.id));
                for other in online_others {
                    state.tell_users(
                        &[user_id],
                        &events::presence(&other, true),
                        None,
                        None,
                        &mut overflow,
                    );
                }
            }
        }
        let online_here = state.users.get(&user_id).is_some_and(|u| u.online);
        if let Some(remote) = state.remote.get_mut(&user_id) {
            if remote.rooms.insert(room_id) {
                let user = remote.user.clone();
                state
                    .remote_rooms
                    .entry(room_id)
                    .or_default()
                    .insert(user_id);
                if !online_here {
                    let others = state.members_except(room_id, user_id);
                    state.tell_users_from(
                        user_id,
                        &others,
                        &events::presence(&user, true),
                        &mut overflow,
                    );
                }
            }
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Records that a user left a room.
    pub fn leave(&self, user_id: UserId, room_id: RoomId) {
        self.lock().drop_member(user_id, room_id);
    }

    /// Tells a user's changed profile to every stream here of the users
    /// who share one of `rooms` (the user's rooms) with it, and to its own;
    /// the profile also replaces the one the hub keeps for presence.
    pub fn profile(&self, user: &User, rooms: &[RoomId]) {
        let mut state = self.lock();
        let rooms: HashSet<RoomId> = rooms.iter().copied().collect();
        let mut users = state.members_of(&rooms, user.id);
        users.push(user.id);
        self.live_sessions.forget_user(user.id);
        if let Some(entry) = state.users.get_mut(&user.id) {
            entry.user = user.clone();
        }
        if let Some(remote) = state.remote.get_mut(&user.id) {
            remote.user = user.clone();
        }
        let mut overflow = Overflow::default();
        state.tell_users(&users, &events::profile(user), None, None, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// A user with streams here, as their last profile change left them.
    pub fn user(&self, user_id: UserId) -> Option<User> {
        self.lock()
            .users
            .get(&user_id)
            .map(|entry| entry.user.clone())
    }

    /// Offers a frame to every stream of one user here.
    pub fn tell_user(&self, user_id: UserId, frame: &crate::Frame) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        state.tell_users(&[user_id], frame, None, None, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// The newest seq delivered in a room here; `None` when no stream here
    /// is in it.
    pub fn room_position(&self, room_id: RoomId) -> Option<u64> {
        self.lock().rooms.get(&room_id).map(|room| room.last_seq)
    }

    /// Ends a room for its members here: the room was deleted. Each of
    /// their streams gets `ending` (an `error` naming the room), and then
    /// nothing more from it, as if every member had left. Returns how many
    /// members were connected here.
    pub fn end_room(&self, room_id: RoomId, ending: &Frame) -> usize {
        let mut state = self.lock();
        let members: Vec<UserId> = state
            .rooms
            .get(&room_id)
            .map(|room| room.members.iter().copied().collect())
            .unwrap_or_default();
        let mut overflow = Overflow::default();
        state.tell_users(&members, ending, None, None, &mut overflow);
        for &user_id in &members {
            if let Some(entry) = state.users.get_mut(&user_id) {
                entry.rooms.remove(&room_id);
            }
        }
        state.rooms.remove(&room_id);
        if let Some(remote) = state.remote_rooms.remove(&room_id) {
            for user_id in remote {
                if let Some(user) = state.remote.get_mut(&user_id) {
                    user.rooms.remove(&room_id);
                }
            }
        }
        self.close_overflowed(&mut state, overflow);
        members.len()
    }

    /// Whether the hub knows `user_id` to be a member of `room_id`. `None`
    /// when it cannot tell (the user has no open stream here).
    pub fn is_member(&self, user_id: UserId, room_id: RoomId) -> Option<bool> {
        let state = self.lock();
        let entry = state.users.get(&user_id)?;
        entry.rooms.contains(&room_id).then_some(true)
    }
}

impl State {
    /// Takes a user out of a room, here and as known of other nodes.
    pub(super) fn drop_member(&mut self, user_id: UserId, room_id: RoomId) {
        if let Some(entry) = self.users.get_mut(&user_id) {
            entry.rooms.remove(&room_id);
        }
        self.forget_member(room_id, user_id);
        if let Some(remote) = self.remote.get_mut(&user_id) {
            remote.rooms.remove(&room_id);
            self.forget_remote_member(room_id, user_id);
        }
    }

    /// The other connected users who share a room with `user_id`.
    pub(super) fn peers(&self, user_id: UserId) -> Vec<UserId> {
        let Some(user) = self.users.get(&user_id) else {
            return Vec::new();
        };
        self.members_of(&user.rooms, user_id)
    }

    /// The connected users in any of `rooms`, but `user_id`.
    pub(super) fn members_of(&self, rooms: &HashSet<RoomId>, user_id: UserId) -> Vec<UserId> {
        let peers: HashSet<UserId> = rooms
            .iter()
            .filter_map(|room| self.rooms.get(room))
            .flat_map(|room| &room.members)
            .copied()
            .filter(|&peer| peer != user_id)
            .collect();
        peers.into_iter().collect()
    }

    /// The connected members of a room, but `user_id`.
    fn members_except(&self, room_id: RoomId, user_id: UserId) -> Vec<UserId> {
        self.rooms
            .get(&room_id)
            .into_iter()
            .flat_map(|room| &room.members)
            .copied()
            .filter(|&m| m != user_id)
            .collect()
    }

    pub(super) fn forget_member(&mut self, room_id: RoomId, user_id: UserId) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&user_id);
            if room.members.is_empty() {
                self.rooms.remove(&room_id);
            }
        }
    }
}

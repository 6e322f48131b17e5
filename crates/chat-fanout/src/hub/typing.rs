//! Typing, coalesced: at most one typing event per user and room is
//! relayed in each [`TYPING_INTERVAL`], so a client that sends one per
//! keystroke costs its room's members one event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chat_domain::{RoomId, User, UserId};

use super::streams::Overflow;
use super::Hub;
use crate::events;

/// At most one typing event per user and room is relayed in this time: a
/// client that sends one per keystroke costs its room's members one event.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);
/// Users and rooms whose last typing event is remembered, at most: about
/// 5 MiB. When full, typing older than [`TYPING_INTERVAL`] is forgotten;
/// if that frees nothing, new typing is dropped (it is only a hint).
const TYPING_CAPACITY: usize = 100_000;

/// When each (user, room) last had its typing relayed.
#[derive(Default)]
pub(super) struct TypingTimes {
    pub(super) last: HashMap<(UserId, RoomId), Instant>,
}

impl TypingTimes {
    /// Records typing at `now`, unless it was relayed less than the
    /// interval ago or the table is full of recent typing: then false.
    pub(super) fn note(&mut self, user_id: UserId, room_id: RoomId, now: Instant) -> bool {
        let key = (user_id, room_id);
        if !self.is_due(key, now) {
            return false;
        }
        if !self.last.contains_key(&key) && self.last.len() >= TYPING_CAPACITY {
            self.sweep(now);
            if self.last.len() >= TYPING_CAPACITY {
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }

    /// Whether typing would be relayed at `now`.
    pub(super) fn is_due(&self, key: (UserId, RoomId), now: Instant) -> bool {
        self.last
            .get(&key)
            .is_none_or(|&last| now.saturating_duration_since(last) >= TYPING_INTERVAL)
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        self.last
            .retain(|_, last| now.saturating_duration_since(*last) < TYPING_INTERVAL);
    }

    /// The user sent a message in the room: its next typing is relayed.
    pub(super) fn forget(&mut self, user_id: UserId, room_id: RoomId) {
        if !self.last.is_empty() {
            self.last.remove(&(user_id, room_id));
        }
    }
}

impl Hub {
    /// Tells the other members of a room that `user` is typing, unless it
    /// was told less than [`TYPING_INTERVAL`] ago. Returns whether it was
    /// told (here, if anyone here is a member): only then do the other
    /// nodes need to hear of it.
    pub fn typing(&self, room_id: RoomId, user: &User) -> bool {
        self.typing_at(room_id, user, Instant::now())
    }

    /// Whether typing by `user_id` in `room_id` would be relayed now: not
    /// while the one relayed last is younger than [`TYPING_INTERVAL`].
    pub fn typing_is_due(&self, user_id: UserId, room_id: RoomId) -> bool {
        self.lock()
            .typing
            .is_due((user_id, room_id), Instant::now())
    }

    pub(super) fn typing_at(&self, room_id: RoomId, user: &User, now: Instant) -> bool {
        let mut state = self.lock();
        if !state.typing.note(user.id, room_id, now) {
            return false;
        }
        let Some(room) = state.rooms.get(&room_id) else {
            return true;
        };
        let others: Vec<UserId> = room
            .members
            .iter()
            .copied()
            .filter(|&m| m != user.id)
            .collect();
        let frame = events::typing(room_id, user);
        let mut overflow = Overflow::default();
        state.tell_users_from(user.id, &others, &frame, &mut overflow);
        self.close_overflowed(&mut state, overflow);
        true
    }
}

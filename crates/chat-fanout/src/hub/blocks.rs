//! Who blocks whom, for the users connected here: a blocker's streams hear
//! no typing or presence of the users it blocks (`State::tell_users_from`).
//!
//! The store holds the blocks. A stream reads its user's on opening; a
//! change, here or on another node, reaches the hub as `block_changed`.
//! A set read before a change it crossed is stale, so `set_blocks` keeps
//! what the changes made of the set instead.

use std::collections::HashSet;

use chat_domain::UserId;

use super::Hub;

impl Hub {
    /// How many block changes reached `user_id`'s entry so far: read it
    /// (after `register`) before reading the user's blocks from the store,
    /// and give it to `set_blocks`.
    pub fn block_changes(&self, user_id: UserId) -> u64 {
        self.lock()
            .users
            .get(&user_id)
            .map_or(0, |entry| entry.block_changes)
    }

    /// Sets the users `user_id` blocks, as read from the store after
    /// `block_changes` answered `changes_before`; a change that arrived
    /// meanwhile was read later, so the set is then left as it is.
    pub fn set_blocks(&self, user_id: UserId, blocks: HashSet<UserId>, changes_before: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.users.get_mut(&user_id) {
            if entry.block_changes == changes_before {
                entry.blocks = blocks;
            }
        }
    }

    /// `blocker` now blocks `blocked`, or no longer does (as the store says
    /// after the change), if `blocker` is connected here.
    pub fn block_changed(&self, blocker: UserId, blocked: UserId, blocks: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.users.get_mut(&blocker) {
            entry.block_changes += 1;
            if blocks {
                entry.blocks.insert(blocked);
            } else {
                entry.blocks.remove(&blocked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chat_domain::RoomId;
    use chat_proto::server_event::Event;

    use crate::hub::tests::{hub, next, open, user};

    #[test]
    fn a_blocker_hears_no_typing_or_presence_of_the_blocked() {
        let hub = hub(None);
        let (alice, bob) = (user("alice"), user("bob"));
        let (room, other_room) = (RoomId::new(), RoomId::new());
        let rooms = [(room, 0), (other_room, 0)];
        let (_, mut alices, _) = open(&hub, &alice, &rooms);
        hub.block_changed(alice.id, bob.id, true);

        let (_, mut bobs, ready) = open(&hub, &bob, &rooms);
        assert!(next(&mut alices).is_none(), "no presence of bob");
        assert_eq!(ready.online_users.len(), 1, "bob still sees alice");
        assert!(hub.typing(room, &bob));
        assert!(next(&mut alices).is_none(), "no typing of bob");
        assert!(hub.typing(room, &alice));
        assert!(matches!(next(&mut bobs), Some(Event::Typing(_))));
        let online = hub.online_users(alice.id, &[room]);
        assert_eq!(online.len(), 1, "alice lists herself, not bob");
        let (_, _, alices_ready) = open(&hub, &alice, &rooms);
        assert!(alices_ready.online_users.is_empty(), "ready leaves bob out");

        hub.block_changed(alice.id, bob.id, false);
        assert!(hub.typing(other_room, &bob));
        assert!(matches!(next(&mut alices), Some(Event::Typing(_))));
        assert_eq!(hub.online_users(alice.id, &[room]).len(), 2);
    }

    #[test]
    fn a_set_read_before_a_change_it_crossed_does_not_undo_it() {
        let hub = hub(None);
        let (alice, bob) = (user("alice"), user("bob"));
        let (_, _alices, _) = open(&hub, &alice, &[]);
        let before = hub.block_changes(alice.id);
        hub.block_changed(alice.id, bob.id, true);
        // Read before the change: stale, left out.
        hub.set_blocks(alice.id, HashSet::new(), before);
        assert!(hub.lock().blocks(alice.id, bob.id));
        let now = hub.block_changes(alice.id);
        hub.set_blocks(alice.id, HashSet::new(), now);
        assert!(!hub.lock().blocks(alice.id, bob.id));
    }
}

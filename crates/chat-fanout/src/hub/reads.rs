//! Read markers as events: when a member's marker moves, its own streams
//! hear where it is now (so every device agrees on what is unread), and
//! the other members of a small room may get a read receipt. Which of the
//! two a move brings, and how often, the server decides (coalescing
//! receipts, counting members); the hub only delivers, here, to the
//! streams connected to this node.

use chat_domain::{RoomId, User, UserId};

use super::streams::Overflow;
use super::Hub;
use crate::events;

/// A member's read marker moved. Not a room event: it has no seq.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadNotice {
    pub room_id: RoomId,
    /// The reader.
    pub user: User,
    /// Its marker now.
    pub last_read_seq: u64,
    /// For the reader's own streams (`events::own_read`).
    pub own: bool,
    /// For the other members' streams, as a receipt
    /// (`events::read_receipt`).
    pub receipt: bool,
}

impl Hub {
    /// Delivers a moved read marker to the streams here that it is for:
    /// the reader's own, and with `receipt`, those of the room's other
    /// members.
    pub fn read(&self, notice: &ReadNotice) {
        let ReadNotice {
            room_id,
            ref user,
            last_read_seq,
            own,
            receipt,
        } = *notice;
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        if own {
            let frame = events::own_read(room_id, user, last_read_seq);
            state.tell_users(&[user.id], &frame, None, None, &mut overflow);
        }
        if receipt {
            let others: Vec<UserId> = state
                .rooms
                .get(&room_id)
                .into_iter()
                .flat_map(|room| &room.members)
                .copied()
                .filter(|&member| member != user.id)
                .collect();
            if !others.is_empty() {
                let frame = events::read_receipt(room_id, user, last_read_seq);
                state.tell_users(&others, &frame, None, None, &mut overflow);
            }
        }
        self.close_overflowed(&mut state, overflow);
    }
}

#[cfg(test)]
mod tests {
    use chat_proto::server_event::{self, Event};

    use super::super::tests::{hub, next, open, user};
    use super::*;

    fn read_of(event: Option<Event>) -> Option<(String, String, u64)> {
        match event? {
            Event::Read(server_event::Read {
                room_id,
                user,
                last_read_seq,
            }) => Some((room_id, user?.username, last_read_seq)),
            other => panic!("expected read, got {other:?}"),
        }
    }

    #[test]
    fn a_moved_marker_reaches_every_stream_of_the_reader_and_receipts_the_others() {
        let hub = hub(None);
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let (room, elsewhere) = (RoomId::new(), RoomId::new());
        let (_, mut phone, _) = open(&hub, &alice, &[(room, 5)]);
        let (_, mut laptop, _) = open(&hub, &alice, &[(room, 5)]);
        let (_, mut bobs, _) = open(&hub, &bob, &[(room, 5)]);
        let (_, mut carols, _) = open(&hub, &carol, &[(elsewhere, 0)]);
        // Each stream of the peers hears the others arrive; that is not
        // what this test is about.
        for stream in [&mut phone, &mut laptop, &mut bobs, &mut carols] {
            while next(stream).is_some() {}
        }

        hub.read(&ReadNotice {
            room_id: room,
            user: alice.clone(),
            last_read_seq: 4,
            own: true,
            receipt: false,
        });
        let own = Some((room.to_string(), "alice".to_owned(), 4));
        assert_eq!(read_of(next(&mut phone)), own);
        assert_eq!(read_of(next(&mut laptop)), own);
        assert_eq!(read_of(next(&mut bobs)), None, "no receipt was asked for");

        hub.read(&ReadNotice {
            room_id: room,
            user: alice.clone(),
            last_read_seq: 5,
            own: false,
            receipt: true,
        });
        assert_eq!(
            read_of(next(&mut phone)),
            None,
            "a receipt is for the others"
        );
        assert_eq!(
            read_of(next(&mut bobs)),
            Some((room.to_string(), "alice".to_owned(), 5))
        );
        assert_eq!(read_of(next(&mut carols)), None, "not a member");
    }
}

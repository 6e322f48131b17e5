//! A visit's stream reader: takes every server event, checks each message
//! (and each join, an event of the room's log too) against the user's
//! cursors (a skipped seq is a gap, one at or below the
//! cursor a duplicate), counts the rest, and tells the visit how many of
//! its sends were answered and when the stream has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_client::pb::{self, server_event};
use tokio::sync::watch;
use tonic::{Code, Streaming};

use super::tally::Tally;
use super::World;

/// A user's newest seq per room, kept across its visits: what a resume
/// asks for, and what every message received is checked against. The
/// lobby has none (a user is in it for one visit at most).
#[derive(Clone, Default)]
pub struct Cursors(Arc<Mutex<chat_client::Cursors>>);

/// What a message's seq says against its room's cursor.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The room's first message for this user: nothing to check it against.
    First,
    Next,
    /// This many seqs were skipped.
    Gap(u64),
    Duplicate,
}

impl Cursors {
    fn lock(&self) -> MutexGuard<'_, chat_client::Cursors> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cursors as a resume asks for them.
    pub fn to_pb(&self) -> Vec<pb::RoomCursor> {
        self.lock().to_pb()
    }

    /// Checks a message against its room's cursor, which moves to it.
    fn see(&self, room_id: &str, seq: u64) -> Seen {
        let mut cursors = self.lock();
        let seen = match cursors.get(room_id) {
            None => Seen::First,
            Some(cursor) if seq <= cursor => Seen::Duplicate,
            Some(cursor) if seq == cursor + 1 => Seen::Next,
            Some(cursor) => Seen::Gap(seq - cursor - 1),
        };
        cursors.track(room_id, seq);
        seen
    }

    /// A resync: the stream skips to `from_seq` in the room (older
    /// messages are for History), so that is no gap. Cursors only move
    /// forward: a resync that went back would show as duplicates.
    fn resync(&self, room_id: &str, from_seq: u64) {
        self.lock().track(room_id, from_seq.saturating_sub(1));
    }
}

/// What a reader tells its visit.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// Answers to the visit's ChatStream sends: `sent`, or an `error`
    /// that names the send.
    pub answered: u64,
    /// The stream is over (the reader sets this last).
    pub ended: bool,
}

/// Waits until the reader says the stream has ended (or is gone).
pub async fn ended(state: &mut watch::Receiver<State>) {
    // An error means the reader is gone: the stream is over too.
    let _ = state.wait_for(|s| s.ended).await;
}

/// Reads a visit's stream until it ends: counts every event, checks each
/// message against the user's cursors, and counts answers into `state`. A
/// stream the server ends is an error unless the visit was logging out.
pub async fn read(
    world: Arc<World>,
    cursors: Cursors,
    mut events: Streaming<pb::ServerEvent>,
    state: watch::Sender<State>,
    logging_out: Arc<AtomicBool>,
) {
    let end = loop {
        match events.message().await {
            Ok(Some(event)) => take(&world, &cursors, event.event, &state),
            Ok(None) => break Code::Ok,
            Err(status) => break status.code(),
        }
    };
    let tally = &world.tally;
    if logging_out.load(Ordering::Relaxed) {
        Tally::add(&tally.ended_by_logout, 1);
    } else {
        tally.error("stream ended by the server", end);
    }
    state.send_modify(|s| s.ended = true);
}

fn take(
    world: &World,
    cursors: &Cursors,
    event: Option<server_event::Event>,
    state: &watch::Sender<State>,
) {
    let tally = &world.tally;
    match event {
        Some(server_event::Event::Message(message)) => {
            Tally::add(&tally.received, 1);
            check(world, cursors, &message);
        }
        Some(server_event::Event::Sent(sent)) => {
            Tally::add(&tally.sent, 1);
            if let Some(message) = &sent.message {
                check(world, cursors, message);
            }
            state.send_modify(|s| s.answered += 1);
        }
        Some(server_event::Event::Error(error)) => {
            tally.error("stream request", Code::from(error.code));
            if !error.client_msg_id.is_empty() {
                state.send_modify(|s| s.answered += 1);
            }
        }
        Some(server_event::Event::Resync(resync)) => {
            Tally::add(&tally.resyncs, 1);
            cursors.resync(&resync.room_id, resync.from_seq);
        }
        Some(server_event::Event::Presence(_)) => Tally::add(&tally.presence_received, 1),
        Some(server_event::Event::Typing(_)) => Tally::add(&tally.typing_received, 1),
        // Nonce 0 is the server's heartbeat; the visit's own ping is 1.
        Some(server_event::Event::Pong(pong)) if pong.nonce == 0 => {
            Tally::add(&tally.heartbeats, 1);
        }
        // The visitors' first joins of their rooms are events of the
        // rooms' logs, which take seqs like messages.
        Some(server_event::Event::Member(member)) => {
            check_seq(world, cursors, &member.room_id, member.seq);
        }
        // The soak's visitors neither edit, delete, react, mark read, nor
        // change rooms or profiles.
        Some(
            server_event::Event::Ready(_)
            | server_event::Event::Pong(_)
            | server_event::Event::Edited(_)
            | server_event::Event::Deleted(_)
            | server_event::Event::Reaction(_)
            | server_event::Event::Read(_)
            | server_event::Event::RoomUpdated(_)
            | server_event::Event::Invited(_)
            | server_event::Event::Profile(_),
        ) => {}
        None => tally.error("stream event", "empty"),
    }
}

/// Checks a message against the user's cursor for its room.
fn check(world: &World, cursors: &Cursors, message: &pb::Message) {
    check_seq(world, cursors, &message.room_id, message.seq);
}

/// Checks an event of a room's log (a message, or another user's join)
/// against the room's cursor, which moves to it.
fn check_seq(world: &World, cursors: &Cursors, room_id: &str, seq: u64) {
    if room_id == world.lobby {
        return;
    }
    let tally = &world.tally;
    match cursors.see(room_id, seq) {
        Seen::First | Seen::Next => {}
        Seen::Gap(missed) => Tally::add(&tally.gaps, missed),
        Seen::Duplicate => Tally::add(&tally.duplicates, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_in_order_pass_the_check() {
        let cursors = Cursors::default();
        assert_eq!(cursors.see("r", 4), Seen::First);
        assert_eq!(cursors.see("r", 5), Seen::Next);
        assert_eq!(cursors.see("other", 1), Seen::First);
        assert_eq!(cursors.see("r", 6), Seen::Next);
    }

    #[test]
    fn a_skipped_seq_is_a_gap_and_a_repeated_one_a_duplicate() {
        let cursors = Cursors::default();
        cursors.see("r", 1);
        assert_eq!(cursors.see("r", 4), Seen::Gap(2));
        assert_eq!(cursors.see("r", 4), Seen::Duplicate);
        assert_eq!(cursors.see("r", 2), Seen::Duplicate);
        assert_eq!(cursors.see("r", 5), Seen::Next);
    }

    #[test]
    fn a_resync_moves_the_cursor_to_where_the_stream_goes_on() {
        let cursors = Cursors::default();
        cursors.see("r", 3);
        cursors.resync("r", 40);
        assert_eq!(cursors.see("r", 40), Seen::Next);
        cursors.resync("r", 10);
        assert_eq!(cursors.see("r", 10), Seen::Duplicate);
    }

    #[test]
    fn a_resume_asks_for_every_room_from_its_cursor() {
        let cursors = Cursors::default();
        cursors.see("a", 3);
        cursors.see("b", 7);
        cursors.see("a", 4);
        let resume: Vec<(String, u64)> = cursors
            .to_pb()
            .into_iter()
            .map(|c| (c.room_id, c.after_seq))
            .collect();
        assert_eq!(resume, vec![("a".into(), 4), ("b".into(), 7)]);
    }
}

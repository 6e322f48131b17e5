//! Resume: a stream gets every message it missed once, in order, and then
//! the live ones, while new messages keep arriving. Both halves of the
//! protocol live here:
//!
//! - the hold, in the hub: while a stream catches up (or waits to learn
//!   whether it will), live messages of its rooms wait in its hold instead
//!   of its queue (`offer`); `catch_up_on` narrows the hold to the rooms
//!   being caught up on; `release` ends it with the newest seq sent per
//!   room, dropping held messages the catch-up already sent, or refuses
//!   when the hold overflowed and the catch-up must read on;
//! - the catch-up (`catch_up`): which page of which room to read next, the
//!   `resync` of a room too far behind, the pace of the client, and when to
//!   release.
//!
//! The fan-out knows no database: the catch-up reads missed messages
//! through [`MissedEvents`], which the server implements on its store.
//!
//! `OutboundStream` sends the catch-up queue before the live queue, so the
//! seam is in order with no gap and no duplicate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use chat_domain::{RoomEvent, RoomId};

use super::streams::{push, Overflow, StreamEntry, StreamId};
use super::Hub;
use crate::events;
use crate::frame::Frame;
use crate::queue::{self, TrySendError};

/// The most missed messages a resume sends per room; older ones are
/// announced with `resync` and paged with History.
pub const RESUME_LIMIT: u32 = 1000;
/// How long a ChatStream holds live messages waiting for its first client
/// event, which may be a `resume`. Any first event ends the wait at once.
pub const RESUME_WINDOW: Duration = Duration::from_millis(500);
/// Missed messages a catch-up reads at once: 64 texts of 4 KiB are
/// 256 KiB, about what the catch-up queue holds (of the longest texts,
/// 4096 four-byte characters, a page is 1 MiB, and the queue takes 16).
pub const CATCH_UP_PAGE: u32 = 64;
/// How long a catch-up waits for a client that takes nothing before ending
/// its stream: far beyond any client that reads at all, and short enough
/// that a client that stopped does not keep its catch-up (and its turn)
/// for long.
pub const CATCH_UP_STALL: Duration = Duration::from_secs(30);
/// Catch-up frames a stream may have waiting: the reader of the database
/// waits for the client instead of reading ahead. Twice a catch-up page
/// ([`CATCH_UP_PAGE`]), so that the next page is read while the client
/// takes the last.
pub(super) const CATCH_UP_CAPACITY: usize = 128;
/// Bytes of catch-up frames a stream may have waiting: 64 messages of
/// 4 KiB, 16 of the longest (16 KiB). With the page being read, a catch-up
/// holds about twice this (five times, with a page of the longest texts).
pub(super) const CATCH_UP_BYTES: usize = 256 * 1024;
/// Catch-ups one user runs at once; the user's other resumed streams wait
/// their turn (their live messages held, then read from the database).
/// A user's streams are many (`--max-streams-per-user`); what their
/// catch-ups hold at once is this many times a catch-up's bound.
pub(super) const CATCH_UPS_PER_USER: usize = 4;

/// Live messages kept back from a stream while it catches up.
#[derive(Default)]
pub(super) struct Hold {
    /// The rooms being caught up on. `None` until known (a ChatStream
    /// before its first event): then every message waits.
    rooms: Option<HashSet<RoomId>>,
    messages: Vec<HeldMessage>,
    /// Messages of the caught-up rooms were dropped for want of room; the
    /// catch-up reads them from the database again instead.
    behind: bool,
}

struct HeldMessage {
    order: Ordered,
    frame: Frame,
}

/// Where a frame sits in its room's order, for frames that carry a message.
#[derive(Clone, Copy)]
pub(super) struct Ordered {
    pub(super) room_id: RoomId,
    pub(super) seq: u64,
    /// The sender's acknowledgement (`sent`): owed even to a stream that
    /// has the message already.
    pub(super) ack: bool,
}

/// Gives a stream a frame. A message frame waits while the stream is held,
/// and is dropped if the stream has it already (a resumed room's cursor).
pub(super) fn offer(
    entry: &mut StreamEntry,
    id: StreamId,
    frame: &Frame,
    order: Option<Ordered>,
    overflow: &mut Overflow,
) {
    let Some(Ordered { room_id, seq, ack }) = order else {
        return push(entry, id, frame.clone(), overflow);
    };
    let capacity = entry.queue.max_capacity();
    if let Some(hold) = &mut entry.hold {
        match &hold.rooms {
            // Not a room being caught up on: it goes out live below.
            Some(rooms) if !rooms.contains(&room_id) => {}
            // The catch-up will read it from the database.
            Some(_) if hold.behind => return,
            Some(_) if hold.messages.len() >= capacity => {
                hold.messages.clear();
                hold.behind = true;
                return;
            }
            // Waiting for a first event that never came in time.
            None if hold.messages.len() >= capacity => return overflow.push(id),
            _ => {
                hold.messages.push(HeldMessage {
                    order: Ordered { room_id, seq, ack },
                    frame: frame.clone(),
                });
                return;
            }
        }
    }
    if let Some(cursor) = entry.cursors.get_mut(&room_id) {
        if seq <= *cursor && !ack {
            return;
        }
        *cursor = seq.max(*cursor);
    }
    push(entry, id, frame.clone(), overflow);
}

impl Hub {
    /// The turns of the stream's user to catch up: a catch-up runs while
    /// it holds one. `None` once the stream is gone.
    pub fn catch_up_turns(&self, id: StreamId) -> Option<Arc<Semaphore>> {
        let mut state = self.lock();
        let user_id = state.streams.get(&id)?.user_id;
        let user = state.users.get_mut(&user_id)?;
        let turns = user
            .catch_ups
            .get_or_insert_with(|| Arc::new(Semaphore::new(CATCH_UPS_PER_USER)));
        Some(Arc::clone(turns))
    }

    /// Narrows a stream's hold to the rooms it catches up on: messages of
    /// other rooms (held or to come) go out live.
    pub fn catch_up_on(&self, id: StreamId, rooms: HashSet<RoomId>) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        if let Some(entry) = state.streams.get_mut(&id) {
            let held = entry.hold.as_mut().map(|hold| {
                let (keep, free) = std::mem::take(&mut hold.messages)
                    .into_iter()
                    .partition(|held| rooms.contains(&held.order.room_id));
                hold.messages = keep;
                hold.rooms = Some(rooms);
                free
            });
            for held in held.unwrap_or_default() {
                offer(entry, id, &held.frame, Some(held.order), &mut overflow);
            }
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Tries to end a stream's hold, given the newest seq its catch-up sent
    /// per room. Returns false, and keeps holding, when messages had to be
    /// dropped meanwhile: read again from `reached`, then call again. Once
    /// released, the stream gets live messages, none it has already.
    pub fn release(&self, id: StreamId, reached: &HashMap<RoomId, u64>) -> bool {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        let Some(entry) = state.streams.get_mut(&id) else {
            return true;
        };
        if let Some(hold) = &mut entry.hold {
            if hold.behind {
                hold.behind = false;
                return false;
            }
        }
        entry.cursors.clone_from(reached);
        let held = entry.hold.take().map(|hold| hold.messages);
        for held in held.unwrap_or_default() {
            offer(entry, id, &held.frame, Some(held.order), &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
        true
    }
}

/// Ends the hold of a stream that catches up on nothing, and closes its
/// catch-up channel (which frees it).
pub fn go_live(hub: &Hub, id: StreamId, catch_up: queue::Sender<Frame>) {
    drop(catch_up);
    // Only rooms being caught up on can fall behind: this cannot fail.
    let released = hub.release(id, &HashMap::new());
    debug_assert!(released);
}

/// Where a catch-up reads the room events a stream missed: the server's
/// store. Seqs are dense (each room's log is numbered 1, 2, 3... as its
/// events are stored), though a room's messages may skip the seqs of other
/// events.
pub trait MissedEvents {
    /// What a read fails with.
    type Error;

    /// The newest seq of each of these rooms that exists.
    fn newest(
        &self,
        rooms: &[RoomId],
    ) -> impl Future<Output = Result<Vec<(RoomId, u64)>, Self::Error>> + Send;

    /// The events of `room_id` after seq `after`, oldest first, each with
    /// its message as it is now: at most `limit`, all of them stored
    /// (`after + limit` is at most the newest seq `newest` gave).
    fn after(
        &self,
        room_id: RoomId,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RoomEvent>, Self::Error>> + Send;
}

/// Why a catch-up ended its stream.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUpError<E> {
    /// The client took nothing for [`CATCH_UP_STALL`].
    Stalled,
    /// Reading missed messages failed.
    Read(E),
}

impl<E: fmt::Display> fmt::Display for CatchUpError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stalled => write!(
                f,
                "catch-up stalled: nothing was read for {}s; reconnect and resume",
                CATCH_UP_STALL.as_secs()
            ),
            Self::Read(error) => write!(f, "reading missed messages: {error}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CatchUpError<E> {}

/// Sends a resumed stream what it missed in each room, oldest first (at
/// most [`RESUME_LIMIT`] per room, after a `resync` when there were more),
/// then releases its live messages, minus those the catch-up already sent.
/// A client slower than the room reads on from `source`, at its own pace,
/// until it has caught up.
///
/// What a catch-up holds is bounded whatever the client does: it reads
/// [`CATCH_UP_PAGE`] messages at a time, only once the client has taken
/// most of the page before (the stream's catch-up queue is bounded by
/// frames and bytes, `Hub::register`); a user runs a few catch-ups at a
/// time (`Hub::catch_up_turns`); and a client that takes nothing for
/// [`CATCH_UP_STALL`] loses the stream.
///
/// # Errors
/// [`CatchUpError::Read`] when `source` fails; [`CatchUpError::Stalled`]
/// for a stalled client. A stream that goes away meanwhile is not an error.
pub async fn catch_up<S: MissedEvents>(
    hub: &Hub,
    id: StreamId,
    cursors: Vec<(RoomId, u64)>,
    frames: queue::Sender<Frame>,
    source: &S,
) -> Result<(), CatchUpError<S::Error>> {
    hub.catch_up_on(id, cursors.iter().map(|&(room, _)| room).collect());
    let Some(turns) = hub.catch_up_turns(id) else {
        return Ok(());
    };
    let ended = hub.ended(id);
    let _turn = tokio::select! {
        () = ended.cancelled() => return Ok(()),
        turn = turns.acquire_owned() => match turn {
            Ok(turn) => turn,
            Err(_) => return Ok(()),
        },
    };
    let mut reached: HashMap<RoomId, u64> = cursors.into_iter().collect();
    loop {
        let rooms: Vec<RoomId> = reached.keys().copied().collect();
        let newest: HashMap<RoomId, u64> = source
            .newest(&rooms)
            .await
            .map_err(CatchUpError::Read)?
            .into_iter()
            .collect();
        for (&room_id, last) in &mut reached {
            let newest = newest.get(&room_id).copied().unwrap_or(0);
            if !send_missed(source, room_id, last, newest, &frames).await? {
                return Ok(());
            }
        }
        if hub.release(id, &reached) {
            return Ok(());
        }
    }
}

/// Sends a room's messages after `*last` up to `newest` (the newest
/// `RESUME_LIMIT` of them, after a `resync` when there are more), a page at
/// a time as the client takes them, moving `*last` on. Returns false once
/// the stream is gone.
async fn send_missed<S: MissedEvents>(
    source: &S,
    room_id: RoomId,
    last: &mut u64,
    newest: u64,
    frames: &queue::Sender<Frame>,
) -> Result<bool, CatchUpError<S::Error>> {
    let mut resync = false;
    if newest.saturating_sub(*last) > u64::from(RESUME_LIMIT) {
        *last = newest - u64::from(RESUME_LIMIT);
        resync = true;
    }
    while *last < newest {
        let page_end = newest.min(*last + u64::from(CATCH_UP_PAGE));
        // Room for a page before reading it: what waits is at most the
        // queue's bound and one page.
        let (items, bytes) = (
            frames.max_capacity().saturating_sub(CATCH_UP_PAGE as usize),
            frames.max_bytes() / 2,
        );
        if !wait_for_room(frames, items, bytes).await? {
            return Ok(false);
        }
        let after = *last;
        let limit = u32::try_from(page_end - after).expect("at most a page");
        let missed = source
            .after(room_id, after, limit)
            .await
            .map_err(CatchUpError::Read)?;
        for event in missed.into_iter().filter(|e| e.seq > after) {
            if std::mem::take(&mut resync)
                && !give(frames, events::resync(room_id, event.seq)).await?
            {
                return Ok(false);
            }
            let seq = event.seq;
            let frame = events::missed(&event);
            drop(event);
            if !give(frames, frame).await? {
                return Ok(false);
            }
            *last = seq;
        }
        *last = page_end;
    }
    Ok(true)
}

/// Queues a catch-up frame, waiting for room. Returns false once the
/// stream is gone.
///
/// # Errors
/// [`CatchUpError::Stalled`] when the client stalls.
async fn give<E>(frames: &queue::Sender<Frame>, frame: Frame) -> Result<bool, CatchUpError<E>> {
    let mut frame = frame;
    loop {
        match frames.try_send(frame) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Closed(_)) => return Ok(false),
            Err(TrySendError::Full(back)) => {
                let bytes = frames.max_bytes().saturating_sub(back.len());
                if !wait_for_room(frames, frames.max_capacity() - 1, bytes).await? {
                    return Ok(false);
                }
                frame = back;
            }
        }
    }
}

/// Waits until at most `items` frames of at most `bytes` wait in a
/// catch-up queue. Returns false once the stream is gone.
///
/// # Errors
/// [`CatchUpError::Stalled`] when the client took nothing for
/// [`CATCH_UP_STALL`].
async fn wait_for_room<E>(
    frames: &queue::Sender<Frame>,
    items: usize,
    bytes: usize,
) -> Result<bool, CatchUpError<E>> {
    loop {
        let taken = frames.taken();
        match tokio::time::timeout(CATCH_UP_STALL, frames.wait_for_room(items, bytes)).await {
            Ok(open) => return Ok(open),
            Err(_) if frames.taken() != taken => {}
            Err(_) => return Err(CatchUpError::Stalled),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use tokio_stream::StreamExt as _;

    use chat_domain::{SessionId, Timestamp, User};
    use chat_proto::server_event::Event;

    use super::super::tests::{hub, message, next, open, user, NowOrNever as _};
    use super::super::OutboundStream;
    use super::*;

    /// Something that happens while the catch-up reads a page.
    type Step = Box<dyn FnOnce(&FakeStore) + Send>;

    /// The messages of each room, as the store would hold them, and what
    /// happens meanwhile: before each page is read, the next scripted step
    /// runs (live messages stored and delivered, a leave, a client gone).
    #[derive(Default)]
    struct FakeStore {
        rooms: Mutex<HashMap<RoomId, Vec<RoomEvent>>>,
        during_reads: Mutex<VecDeque<Step>>,
        reads: AtomicUsize,
    }

    impl FakeStore {
        /// A store holding messages 1..=`newest` of `room`, sent by `sender`.
        fn with(room: RoomId, newest: u64, sender: &User) -> Self {
            let store = Self::default();
            for seq in 1..=newest {
                store.store(message(room, seq, sender));
            }
            store
        }

        fn store(&self, message: RoomEvent) {
            self.rooms
                .lock()
                .unwrap()
                .entry(message.room_id)
                .or_default()
                .push(message);
        }

        /// Stores a message and delivers it, as the writer does.
        fn live(&self, hub: &Hub, message: RoomEvent, origin: Option<StreamId>) {
            self.store(message.clone());
            hub.deliver(&message, origin);
        }

        fn during_read(&self, step: impl FnOnce(&FakeStore) + Send + 'static) {
            self.during_reads.lock().unwrap().push_back(Box::new(step));
        }
    }

    impl MissedEvents for FakeStore {
        type Error = String;

        async fn newest(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>, String> {
            let stored = self.rooms.lock().unwrap();
            Ok(rooms
                .iter()
                .filter_map(|room| Some((*room, stored.get(room)?.last()?.seq)))
                .collect())
        }

        async fn after(
            &self,
            room_id: RoomId,
            after: u64,
            limit: u32,
        ) -> Result<Vec<RoomEvent>, String> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let step = self.during_reads.lock().unwrap().pop_front();
            if let Some(step) = step {
                step(self);
            }
            let stored = self.rooms.lock().unwrap();
            Ok(stored[&room_id]
                .iter()
                .filter(|m| m.seq > after)
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }

    /// Opens a stream that holds its live messages for a resume, in rooms
    /// whose newest seqs are given, and takes its `ready`.
    fn open_resuming(
        hub: &Arc<Hub>,
        user: &User,
        rooms: &[(RoomId, u64)],
    ) -> (StreamId, OutboundStream, queue::Sender<Frame>) {
        let far = Timestamp::now().plus(Duration::from_secs(3600));
        let (id, mut stream, frames) = hub.register(user, SessionId::new(), far, true).unwrap();
        hub.activate(id, rooms);
        assert!(matches!(next(&mut stream), Some(Event::Ready(_))));
        (id, stream, frames)
    }

    /// What a stream received, as `room:seq` for messages (`room` by
    /// its name in `names`), `sent:key`, or `resync:room:from`.
    fn received(stream: &mut OutboundStream, names: &[(RoomId, &str)]) -> Vec<String> {
        let name = |room_id: &str| {
            names
                .iter()
                .find(|(id, _)| id.to_string() == room_id)
                .map_or("?", |(_, name)| name)
                .to_owned()
        };
        std::iter::from_fn(|| next(stream))
            .map(|event| match event {
                Event::Message(m) => format!("{}:{}", name(&m.room_id), m.seq),
                Event::Sent(s) => format!("sent:{}", s.client_msg_id),
                Event::Resync(r) => format!("resync:{}:{}", name(&r.room_id), r.from_seq),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn live_messages_arriving_during_a_catch_up_follow_it_in_order() {
        let hub = hub(None);
        let (alice, bob, room, other) = (user("alice"), user("bob"), RoomId::new(), RoomId::new());
        let store = FakeStore::with(room, 5, &bob);
        store.store(message(other, 1, &bob));
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, 5), (other, 1)]);
        let (live, sender) = (Arc::clone(&hub), bob.clone());
        store.during_read(move |store| {
            let bob = sender;
            store.live(&live, message(room, 6, &bob), None);
            store.live(&live, message(other, 2, &bob), None);
            store.live(&live, message(room, 7, &bob), None);
        });

        catch_up(&hub, id, vec![(room, 2)], frames, &store)
            .await
            .unwrap();

        assert_eq!(
            received(&mut stream, &[(room, "r"), (other, "o")]),
            ["r:3", "r:4", "r:5", "o:2", "r:6", "r:7"],
            "the missed messages, then the live ones; another room's without waiting"
        );
        store.live(&hub, message(room, 8, &bob), None);
        assert_eq!(received(&mut stream, &[(room, "r")]), ["r:8"], "released");
    }

    #[tokio::test]
    async fn a_late_duplicate_of_a_caught_up_message_is_dropped_but_an_ack_is_not() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let store = FakeStore::with(room, 3, &bob);
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, 3)]);
        // Before the catch-up reads the room's newest seq: held, and read
        // from the store as well.
        store.live(&hub, message(room, 4, &bob), None);
        store.live(&hub, message(room, 5, &alice), Some(id));
        store.live(&hub, message(room, 6, &bob), None);

        catch_up(&hub, id, vec![(room, 1)], frames, &store)
            .await
            .unwrap();

        assert_eq!(
            received(&mut stream, &[(room, "r")]),
            ["r:2", "r:3", "r:4", "r:5", "r:6", "sent:k5"]
        );
        assert_eq!(
            hub.deliver(&message(room, 6, &bob), None),
            crate::hub::Delivery::Skipped
        );
        assert!(next(&mut stream).is_none());
    }

    #[tokio::test]
    async fn a_hold_that_overflows_is_read_again_from_the_store() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let store = FakeStore::with(room, 2, &bob);
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, 2)]);
        let (live, bob) = (Arc::clone(&hub), bob.clone());
        // More than the stream's queue (16) holds.
        store.during_read(move |store| {
            for seq in 3..=22 {
                store.live(&live, message(room, seq, &bob), None);
            }
        });

        catch_up(&hub, id, vec![(room, 0)], frames, &store)
            .await
            .unwrap();

        let expected: Vec<String> = (1..=22).map(|seq| format!("r:{seq}")).collect();
        assert_eq!(received(&mut stream, &[(room, "r")]), expected);
        assert_eq!(store.reads.load(Ordering::SeqCst), 2, "read again once");
        assert_eq!(hub.open_streams(), 1);
    }

    #[tokio::test]
    async fn a_hold_waiting_for_its_first_event_ends_the_stream_when_it_overflows() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let (_, mut stream, _frames) = open_resuming(&hub, &alice, &[(room, 0)]);

        for seq in 1..=17 {
            hub.deliver(&message(room, seq, &bob), None);
        }

        let status = stream.next().now_or_never().flatten().unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(hub.open_streams(), 0);
    }

    #[test]
    fn a_stream_that_does_not_resume_gets_its_held_messages_at_once() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, 0)]);
        hub.deliver(&message(room, 1, &bob), None);
        assert!(next(&mut stream).is_none(), "held for the first event");

        go_live(&hub, id, frames);

        hub.deliver(&message(room, 2, &bob), None);
        assert_eq!(received(&mut stream, &[(room, "r")]), ["r:1", "r:2"]);
    }

    #[tokio::test]
    async fn a_resume_racing_a_leave_gets_what_came_before_the_leave_only() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let store = FakeStore::with(room, 3, &bob);
        let (_, mut bobs, _) = open(&hub, &bob, &[(room, 3)]);
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, 3)]);
        let (live, sender, leaving) = (Arc::clone(&hub), bob.clone(), alice.id);
        store.during_read(move |store| {
            let bob = sender;
            store.live(&live, message(room, 4, &bob), None);
            live.leave(leaving, room);
            store.live(&live, message(room, 5, &bob), None);
        });

        catch_up(&hub, id, vec![(room, 1)], frames, &store)
            .await
            .unwrap();

        assert_eq!(received(&mut stream, &[(room, "r")]), ["r:2", "r:3", "r:4"]);
        let bobs_events = received(&mut bobs, &[(room, "r")]);
        assert_eq!(bobs_events[bobs_events.len() - 2..], ["r:4", "r:5"]);
    }

    #[tokio::test]
    async fn a_catch_up_whose_stream_goes_away_ends_quietly() {
        let hub = hub(None);
        let (alice, bob, room, other) = (user("alice"), user("bob"), RoomId::new(), RoomId::new());
        let store = FakeStore::with(room, 3, &bob);
        store.store(message(other, 1, &bob));
        let (id, stream, frames) = open_resuming(&hub, &alice, &[(room, 3), (other, 1)]);
        store.during_read(move |_| drop(stream));

        let result = catch_up(&hub, id, vec![(room, 0), (other, 0)], frames, &store).await;

        assert_eq!(result, Ok(()));
        assert_eq!(store.reads.load(Ordering::SeqCst), 1, "nothing read after");
        assert_eq!(hub.open_streams(), 0);
    }

    #[tokio::test]
    async fn a_room_too_far_behind_is_resynced_and_sends_its_newest_messages() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let newest = u64::from(RESUME_LIMIT) + 10;
        let store = FakeStore::with(room, newest, &bob);
        let (id, mut stream, frames) = open_resuming(&hub, &alice, &[(room, newest)]);
        // A client that reads as the catch-up writes: more than its queue.
        let client = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(Ok(frame)) = stream.next().await {
                let event = frame.event();
                let last = matches!(&event, Event::Message(m) if m.seq == newest);
                events.push(event);
                if last {
                    break;
                }
            }
            (events, stream)
        });

        catch_up(&hub, id, vec![(room, 0)], frames, &store)
            .await
            .unwrap();

        let (events, _stream) = client.await.unwrap();
        assert!(matches!(
            &events[0],
            Event::Resync(r) if r.room_id == room.to_string() && r.from_seq == 11
        ));
        let seqs: Vec<u64> = events[1..]
            .iter()
            .map(|event| match event {
                Event::Message(m) => m.seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, (11..=newest).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_whose_client_takes_nothing_ends_at_the_deadline() {
        let (frames, _client) = queue::bounded(2, usize::MAX);
        frames.try_send(events::pong(1)).unwrap();
        frames.try_send(events::pong(1)).unwrap();
        let started = tokio::time::Instant::now();

        let error = give::<String>(&frames, events::pong(1)).await.unwrap_err();

        assert_eq!(started.elapsed(), CATCH_UP_STALL);
        assert_eq!(error, CatchUpError::Stalled);
        assert_eq!(
            error.to_string(),
            "catch-up stalled: nothing was read for 30s; reconnect and resume"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_waits_as_long_as_its_client_takes_something() {
        let (frames, mut client) = queue::bounded(3, usize::MAX);
        for _ in 0..3 {
            frames.try_send(events::pong(1)).unwrap();
        }
        let pace = CATCH_UP_STALL * 2 / 3;
        let reader = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(pace).await;
                std::future::poll_fn(|cx| client.poll_recv(cx)).await;
            }
            client
        });
        let started = tokio::time::Instant::now();

        assert!(wait_for_room::<String>(&frames, 0, 0).await.unwrap());
        assert_eq!(started.elapsed(), pace * 3);

        drop(reader.await.unwrap());
        assert!(
            !give::<String>(&frames, events::pong(1)).await.unwrap(),
            "the client is gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_ends_its_catch_up_and_keeps_its_hold() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let newest = 2 * CATCH_UP_CAPACITY as u64;
        let store = FakeStore::with(room, newest, &bob);
        let (id, _stream, frames) = open_resuming(&hub, &alice, &[(room, newest)]);
        let started = tokio::time::Instant::now();

        let result = catch_up(&hub, id, vec![(room, 0)], frames, &store).await;

        assert_eq!(result, Err(CatchUpError::Stalled));
        assert_eq!(started.elapsed(), CATCH_UP_STALL);
        assert!(
            hub.lock().streams[&id].hold.is_some(),
            "not released: the server ends the stream"
        );
    }
}

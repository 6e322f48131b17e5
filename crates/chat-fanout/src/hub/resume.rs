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
//! through [`MissedMessages`], which the server implements on its store.
//!
//! `OutboundStream` sends the catch-up queue before the live queue, so the
//! seam is in order with no gap and no duplicate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use chat_domain::{Message, RoomId};

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
/// Missed messages a catch-up reads at once: 64 of the largest (4 KiB) are
/// 256 KiB, about what the catch-up queue holds.
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
/// Bytes of catch-up frames a stream may have waiting: 64 messages of the
/// largest size. With the page being read, a catch-up holds about twice
/// this.
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

/// Where a catch-up reads the messages a stream missed: the server's
/// store. Seqs are dense (each room's messages are numbered 1, 2, 3... as
/// they are stored).
pub trait MissedMessages {
    /// What a read fails with.
    type Error;

    /// The newest seq of each of these rooms that exists.
    fn newest(
        &self,
        rooms: &[RoomId],
    ) -> impl Future<Output = Result<Vec<(RoomId, u64)>, Self::Error>> + Send;

    /// The messages of `room_id` after seq `after`, oldest first: at most
    /// `limit`, all of them stored (`after + limit` is at most the newest
    /// seq `newest` gave).
    fn after(
        &self,
        room_id: RoomId,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Message>, Self::Error>> + Send;
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
pub async fn catch_up<S: MissedMessages>(
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
async fn send_missed<S: MissedMessages>(
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
        let messages = source
            .after(room_id, after, limit)
            .await
            .map_err(CatchUpError::Read)?;
        for message in messages.into_iter().filter(|m| m.seq > after) {
            if std::mem::take(&mut resync)
                && !give(frames, events::resync(room_id, message.seq)).await?
            {
                return Ok(false);
            }
            let seq = message.seq;
            let frame = events::missed_message(&message);
            drop(message);
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

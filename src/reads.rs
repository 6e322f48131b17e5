//! Read markers (`MarkRead`): their cheap path, and their events.
//!
//! A member's read marker says that every event of a room up to it is
//! read. It only moves forward, and never past the room's newest seq.
//! Clients move it often (each time a message scrolls into view), so a
//! call costs one indexed read and no write: the marker waits here, in
//! memory, and one task writes every waiting marker once a second in one
//! statement (`Store::store_read_markers`), so a burst of markers costs one
//! write. That statement keeps the larger of the stored and the new seq,
//! so no order of writes, on any node, takes a marker back.
//!
//! What bounds it: at most [`MAX_WAITING_MARKERS`] markers wait (reaching
//! it writes them at once, and a caller whose marker finds no room waits
//! for that write); a marker that does not move costs its read and nothing
//! else; a marker that moves can move only as often as its room has
//! events, and brings the reader's own streams one `read` event each time;
//! receipts to other members are coalesced to one per reader and room per
//! [`RECEIPT_INTERVAL`]. `MarkRead` shares nothing with the send rate.
//!
//! Reads that report read state (`ListRooms`, and the rooms `JoinRoom` and
//! `OpenDirectRoom` answer with) first write the caller's waiting markers
//! (`flush_user`), so a client sees its own marks at once. Markers waiting
//! on another node reach the database within a second. On shutdown the
//! task writes what waits before the database closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{RoomId, User, UserId};
use crate::error::{Error, Result};
use crate::hub::ReadNotice;
use crate::router::Router;
use crate::store::{ReadMarker, Store};

/// How often waiting markers are written: the most a marker waits, and
/// how stale another node's view of it may be.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Markers waiting to be written, at most (about 300 KiB, one statement
/// when written): reaching it writes them at once.
pub const MAX_WAITING_MARKERS: usize = 4096;
/// Rooms of at most this many members get read receipts (a direct room
/// always does): beyond it, who read what is noise, and its fan-out grows
/// with the room.
pub const RECEIPT_MAX_MEMBERS: u32 = 100;
/// At most one receipt per reader and room in this time; the latest wins.
pub const RECEIPT_INTERVAL: Duration = Duration::from_secs(1);
/// How often receipts held back by [`RECEIPT_INTERVAL`] are checked: a
/// held receipt goes out at most this late.
const RECEIPT_TICK: Duration = Duration::from_millis(100);
/// Readers and rooms whose last receipt is remembered, at most (about
/// 5 MiB). When full of recent receipts, new ones are dropped: a receipt
/// is only a hint.
const RECEIPT_CAPACITY: usize = 100_000;
/// How long a caller whose marker finds no room waits for the write that
/// makes room, before it is told to retry.
const FULL_WAIT: Duration = Duration::from_secs(5);
/// How often a caller reads its position again when a write of markers
/// lands between its read and its turn (so that it cannot answer with, or
/// announce, a marker older than one already written).
const REREADS: u32 = 3;

/// The read markers of this node's callers, and the task that writes them.
pub struct ReadMarkers {
    store: Arc<dyn Store>,
    router: Arc<dyn Router>,
    waiting: Mutex<Waiting>,
    /// Counts the writes that took markers out of `waiting`.
    writes: AtomicU64,
    /// Wakes the task to write before its next tick.
    wake: Notify,
    /// Woken after each write of markers.
    written: Notify,
    receipts: Mutex<Receipts>,
}

/// Markers not yet written (or being written), by user and room.
#[derive(Default)]
struct Waiting {
    users: HashMap<UserId, HashMap<RoomId, u64>>,
    len: usize,
}

impl Waiting {
    fn get(&self, user_id: UserId, room_id: RoomId) -> Option<u64> {
        self.users.get(&user_id)?.get(&room_id).copied()
    }

    /// Sets a marker, unless it is a new one and `MAX_WAITING_MARKERS`
    /// wait already: then false.
    fn set(&mut self, user_id: UserId, room_id: RoomId, seq: u64) -> bool {
        let full = self.len >= MAX_WAITING_MARKERS;
        let rooms = self.users.entry(user_id).or_default();
        match rooms.get_mut(&room_id) {
            Some(waiting) => *waiting = seq,
            None if full => {
                if rooms.is_empty() {
                    self.users.remove(&user_id);
                }
                return false;
            }
            None => {
                rooms.insert(room_id, seq);
                self.len += 1;
            }
        }
        true
    }

    /// Forgets the markers written, unless they moved on meanwhile.
    fn written(&mut self, markers: &[ReadMarker]) {
        for marker in markers {
            let Some(rooms) = self.users.get_mut(&marker.user_id) else {
                continue;
            };
            if rooms.get(&marker.room_id) == Some(&marker.seq) {
                rooms.remove(&marker.room_id);
                self.len -= 1;
                if rooms.is_empty() {
                    self.users.remove(&marker.user_id);
                }
            }
        }
    }

    fn markers<'a>(
        user_id: UserId,
        rooms: &'a HashMap<RoomId, u64>,
    ) -> impl Iterator<Item = ReadMarker> + 'a {
        rooms.iter().map(move |(&room_id, &seq)| ReadMarker {
            room_id,
            user_id,
            seq,
        })
    }
}

/// Read receipts, coalesced per reader and room.
#[derive(Default)]
struct Receipts {
    /// When each (reader, room) last had a receipt sent.
    sent: HashMap<(UserId, RoomId), Instant>,
    /// Receipts held back, the latest per (reader, room).
    held: HashMap<(UserId, RoomId), (User, u64)>,
}

impl Receipts {
    /// Whether a receipt for `seq` goes out now; if not, it is held (the
    /// latest wins) until its interval is over, or dropped when the table
    /// is full of recent receipts.
    fn offer(&mut self, reader: &User, room_id: RoomId, seq: u64, now: Instant) -> bool {
        let key = (reader.id, room_id);
        if let Some(held) = self.held.get_mut(&key) {
            held.1 = seq;
            return false;
        }
        if let Some(&sent) = self.sent.get(&key) {
            if now.saturating_duration_since(sent) < RECEIPT_INTERVAL {
                self.held.insert(key, (reader.clone(), seq));
                return false;
            }
        } else if self.sent.len() >= RECEIPT_CAPACITY {
            self.sweep(now);
            if self.sent.len() >= RECEIPT_CAPACITY {
                return false;
            }
        }
        self.sent.insert(key, now);
        true
    }

    /// The held receipts whose interval is over, now sent.
    fn due(&mut self, now: Instant) -> Vec<(User, RoomId, u64)> {
        let due: Vec<(UserId, RoomId)> = self
            .held
            .keys()
            .filter(|key| {
                self.sent
                    .get(key)
                    .is_none_or(|&sent| now.saturating_duration_since(sent) >= RECEIPT_INTERVAL)
            })
            .copied()
            .collect();
        due.into_iter()
            .filter_map(|key| {
                let (reader, seq) = self.held.remove(&key)?;
                self.sent.insert(key, now);
                Some((reader, key.1, seq))
            })
            .collect()
    }

    /// Forgets receipts sent longer ago than the interval, none held.
    fn sweep(&mut self, now: Instant) {
        let held = &self.held;
        self.sent.retain(|key, sent| {
            held.contains_key(key) || now.saturating_duration_since(*sent) < RECEIPT_INTERVAL
        });
    }
}

/// What a caller's turn did with its marker.
enum Turn {
    /// Markers were written since the caller read its position.
    Reread,
    /// The marker is already there, or further.
    Unmoved(u64),
    Moved(u64),
    /// No room for one more waiting marker.
    Full,
}

impl ReadMarkers {
    /// The markers, and the task that writes them until `stop`, then once
    /// more.
    pub fn spawn(
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        stop: CancellationToken,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let markers = Arc::new(Self {
            store,
            router,
            waiting: Mutex::new(Waiting::default()),
            writes: AtomicU64::new(0),
            wake: Notify::new(),
            written: Notify::new(),
            receipts: Mutex::new(Receipts::default()),
        });
        let task = tokio::spawn(Arc::clone(&markers).run(stop));
        (markers, task)
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn receipts(&self) -> MutexGuard<'_, Receipts> {
        self.receipts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves `reader`'s marker in a room forward to `seq` (clamped to the
    /// room's newest seq) and returns where it is; tells the reader's
    /// streams, and as a receipt the other members of a small room, when
    /// it moved.
    ///
    /// # Errors
    /// NOT_FOUND for no such room, PERMISSION_DENIED for a non-member,
    /// UNAVAILABLE when markers cannot be written for a while.
    pub async fn mark(&self, reader: &User, room_id: RoomId, seq: u64) -> Result<u64> {
        let deadline = Instant::now() + FULL_WAIT;
        let mut rereads = 0;
        loop {
            let writes = self.writes.load(Ordering::Acquire);
            let position = self
                .store
                .read_position(room_id, reader.id, RECEIPT_MAX_MEMBERS + 1)
                .await?;
            position.membership.require_member(room_id)?;
            let wanted = seq.min(position.last_seq);
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let turn = {
                let mut waiting = self.waiting();
                let current = waiting
                    .get(reader.id, room_id)
                    .unwrap_or(0)
                    .max(position.last_read_seq);
                if self.writes.load(Ordering::Acquire) != writes && rereads < REREADS {
                    Turn::Reread
                } else if wanted <= current {
                    Turn::Unmoved(current)
                } else if waiting.set(reader.id, room_id, wanted) {
                    if waiting.len >= MAX_WAITING_MARKERS {
                        self.wake.notify_one();
                    }
                    Turn::Moved(wanted)
                } else {
                    Turn::Full
                }
            };
            match turn {
                Turn::Reread => rereads += 1,
                Turn::Unmoved(current) => return Ok(current),
                Turn::Moved(moved) => {
                    let small = position.members <= RECEIPT_MAX_MEMBERS;
                    self.announce(reader, room_id, moved, small).await;
                    return Ok(moved);
                }
                Turn::Full => {
                    self.wake.notify_one();
                    if tokio::time::timeout_at(deadline, written).await.is_err() {
                        return Err(Error::Unavailable(
                            "read markers cannot be stored at the moment; retry".to_owned(),
                        ));
                    }
                }
            }
        }
    }

    /// Tells every stream of the reader where its marker is, and with a
    /// receipt (coalesced) the other members of a small room.
    async fn announce(&self, reader: &User, room_id: RoomId, seq: u64, small_room: bool) {
        let receipt = small_room && self.receipts().offer(reader, room_id, seq, Instant::now());
        self.router
            .read(&ReadNotice {
                room_id,
                user: reader.clone(),
                last_read_seq: seq,
                own: true,
                receipt,
            })
            .await;
    }

    /// Writes the user's waiting markers now, so that what is read next
    /// shows them. A failure is logged: the reader then sees the stored
    /// markers, and the task retries.
    pub async fn flush_user(&self, user_id: UserId) {
        let markers: Vec<ReadMarker> = {
            let waiting = self.waiting();
            let Some(rooms) = waiting.users.get(&user_id) else {
                return;
            };
            Waiting::markers(user_id, rooms).collect()
        };
        if let Err(error) = self.write(markers).await {
            tracing::warn!(%error, %user_id, "writing a user's read markers failed; retrying later");
        }
    }

    /// Writes every waiting marker.
    async fn flush(&self) {
        let markers: Vec<ReadMarker> = {
            let waiting = self.waiting();
            waiting
                .users
                .iter()
                .flat_map(|(&user_id, rooms)| Waiting::markers(user_id, rooms))
                .collect()
        };
        let count = markers.len();
        if let Err(error) = self.write(markers).await {
            tracing::warn!(%error, count, "writing read markers failed; retrying in a second");
        }
    }

    async fn write(&self, markers: Vec<ReadMarker>) -> Result<(), crate::store::Error> {
        if markers.is_empty() {
            return Ok(());
        }
        self.store.store_read_markers(&markers).await?;
        {
            let mut waiting = self.waiting();
            waiting.written(&markers);
            self.writes.fetch_add(1, Ordering::AcqRel);
        }
        self.written.notify_waiters();
        Ok(())
    }

    /// Sends the receipts whose interval is over.
    async fn send_due_receipts(&self) {
        let due = self.receipts().due(Instant::now());
        for (reader, room_id, seq) in due {
            self.router
                .read(&ReadNotice {
                    room_id,
                    user: reader,
                    last_read_seq: seq,
                    own: false,
                    receipt: true,
                })
                .await;
        }
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        let mut receipts = tokio::time::interval(RECEIPT_TICK);
        let mut sweep = tokio::time::interval(RECEIPT_INTERVAL);
        for timer in [&mut flush, &mut receipts, &mut sweep] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                _ = flush.tick() => self.flush().await,
                () = self.wake.notified() => self.flush().await,
                _ = receipts.tick() => self.send_due_receipts().await,
                _ = sweep.tick() => self.receipts().sweep(Instant::now()),
                () = stop.cancelled() => break,
            }
        }
        // Every call has had its grace by now: what waits is all there is.
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader() -> User {
        User {
            id: UserId::new(),
            username: "alice".into(),
            display_name: String::new(),
        }
    }

    #[test]
    fn a_burst_of_receipts_sends_the_first_and_then_the_latest_once_a_second() {
        let (alice, room) = (reader(), RoomId::new());
        let mut receipts = Receipts::default();
        let start = Instant::now();

        assert!(receipts.offer(&alice, room, 1, start));
        for seq in 2..=20 {
            let at = start + Duration::from_millis(seq * 10);
            assert!(!receipts.offer(&alice, room, seq, at), "seq {seq}");
        }
        assert!(receipts.due(start + Duration::from_millis(500)).is_empty());

        let due = receipts.due(start + RECEIPT_INTERVAL);
        assert_eq!(due, vec![(alice.clone(), room, 20)]);
        assert!(receipts.due(start + 3 * RECEIPT_INTERVAL).is_empty());
    }

    #[test]
    fn receipts_of_other_rooms_and_readers_are_not_held_back() {
        let (alice, bob) = (reader(), reader());
        let (room, other) = (RoomId::new(), RoomId::new());
        let mut receipts = Receipts::default();
        let now = Instant::now();

        assert!(receipts.offer(&alice, room, 1, now));
        assert!(receipts.offer(&alice, other, 1, now));
        assert!(receipts.offer(&bob, room, 1, now));
        assert!(receipts.offer(&alice, room, 2, now + RECEIPT_INTERVAL));
    }

    #[test]
    fn waiting_markers_are_bounded_and_forgotten_once_written_unless_they_moved() {
        let mut waiting = Waiting::default();
        let users: Vec<UserId> = (0..MAX_WAITING_MARKERS).map(|_| UserId::new()).collect();
        let room = RoomId::new();
        for &user in &users {
            assert!(waiting.set(user, room, 1));
        }
        assert!(!waiting.set(UserId::new(), room, 1), "full");
        assert!(waiting.set(users[0], room, 2), "a waiting marker moves on");
        assert_eq!(waiting.len, MAX_WAITING_MARKERS);

        let written: Vec<ReadMarker> = users
            .iter()
            .map(|&user_id| ReadMarker {
                room_id: room,
                user_id,
                seq: 1,
            })
            .collect();
        waiting.written(&written);

        assert_eq!(waiting.len, 1);
        assert_eq!(waiting.get(users[0], room), Some(2), "moved on meanwhile");
        assert_eq!(waiting.get(users[1], room), None);
    }
}

//! The hub: who is connected on this node, which rooms they are in, and the
//! fan-out of events to their open streams.
//!
//! Each open stream (ChatStream or Subscribe) has a bounded queue of encoded
//! frames. The hub pushes into queues without waiting: a stream whose queue
//! is full is ended with RESOURCE_EXHAUSTED rather than slowing the others or
//! growing without bound. Events are encoded once per fan-out and the bytes
//! shared by every receiving queue.
//!
//! The hub holds one std `Mutex`, only for short sections with no `.await`:
//! every operation is bookkeeping plus `try_send`s.
//!
//! Each room with members here remembers the newest seq it delivered, so
//! messages go out gapless and in order whichever way they arrive (this
//! node's writer, the bus, a read of the database): `deliver` refuses a
//! message that would skip one and says where the gap starts.
//!
//! With several nodes, the hub also keeps what the other nodes say about
//! who is online there (`remote_*`): a user is online while any node holds
//! one of its streams, and presence is announced when that changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use chat_domain::{Message, RoomId, SessionId, Timestamp, User, UserId};
use chat_proto::server_event::Event;
use chat_proto::{self as pb, server_event};

use crate::frame::{Droppable, Frame};
use crate::live::LiveSessions;
use crate::metrics::FanoutMetrics;
use crate::queue::{self, TrySendError};

/// Identifies one open stream on this node.
pub type StreamId = u64;

/// Identifies a server node of a cluster.
pub type NodeId = uuid::Uuid;

/// Why a stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("too many open streams for this session: at most {0}; close one first")]
    TooManyForSession(usize),
    #[error("too many open streams for this user: at most {0} over all sessions; close one first")]
    TooManyForUser(usize),
}

/// A user online on a node, with its rooms.
pub type OnlineUser = (User, Vec<RoomId>);

/// What `deliver` did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered to the room's streams here.
    Delivered,
    /// No stream here is in the room, or they have it already.
    Skipped,
    /// Not delivered: the room's streams here last got `after`, and the
    /// messages between must go first.
    Gap { after: u64 },
}

/// A change in who is online on this node, for the other nodes.
#[derive(Clone, Debug)]
pub enum LocalPresence {
    Online { user: User, rooms: Vec<RoomId> },
    Offline { user_id: UserId },
}

/// Catch-up frames a stream may have waiting: the reader of the database
/// waits for the client instead of reading ahead. Twice a catch-up page
/// (`stream::catch_up`), so that the next page is read while the client
/// takes the last.
const CATCH_UP_CAPACITY: usize = 128;
/// Bytes of catch-up frames a stream may have waiting: 64 messages of the
/// largest size. With the page being read, a catch-up holds about twice
/// this.
const CATCH_UP_BYTES: usize = 256 * 1024;
/// Catch-ups one user runs at once; the user's other resumed streams wait
/// their turn (their live messages held, then read from the database).
/// A user's streams are many (`--max-streams-per-user`); what their
/// catch-ups hold at once is this many times a catch-up's bound.
const CATCH_UPS_PER_USER: usize = 4;

pub struct Hub {
    state: Mutex<State>,
    next_stream: AtomicU64,
    /// Frames a stream may have waiting before it counts as too slow.
    queue_capacity: usize,
    limits: StreamLimits,
    metrics: FanoutMetrics,
    /// Where changes of this node's online users go, for the bus.
    presence: Option<mpsc::Sender<LocalPresence>>,
    /// Sessions recently found live; every revocation goes through here.
    live_sessions: LiveSessions,
}

/// How many streams one client may hold open.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub per_session: usize,
    pub per_user: usize,
}

#[derive(Default)]
struct State {
    streams: HashMap<StreamId, StreamEntry>,
    users: HashMap<UserId, UserEntry>,
    /// Rooms with members connected here.
    rooms: HashMap<RoomId, RoomEntry>,
    /// Users online on other nodes.
    remote: HashMap<UserId, RemoteUser>,
    /// Room -> the users online elsewhere who are members.
    remote_rooms: HashMap<RoomId, HashSet<UserId>>,
    /// Node -> the users it says are online there.
    nodes: HashMap<NodeId, HashSet<UserId>>,
    sessions: HashMap<SessionId, Vec<StreamId>>,
    /// Streams by the expiry of the token that opened them.
    expiries: BTreeSet<(Timestamp, StreamId)>,
    /// Set by shutdown: no new streams.
    closed: bool,
    /// When each user last had its typing relayed, per room.
    typing: TypingTimes,
}

/// At most one typing event per user and room is relayed in this time: a
/// client that sends one per keystroke costs its room's members one event.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);
/// Users and rooms whose last typing event is remembered, at most: about
/// 5 MiB. When full, typing older than [`TYPING_INTERVAL`] is forgotten;
/// if that frees nothing, new typing is dropped (it is only a hint).
const TYPING_CAPACITY: usize = 100_000;

/// When each (user, room) last had its typing relayed.
#[derive(Default)]
struct TypingTimes {
    last: HashMap<(UserId, RoomId), Instant>,
}

impl TypingTimes {
    /// Records typing at `now`, unless it was relayed less than the
    /// interval ago or the table is full of recent typing: then false.
    fn note(&mut self, user_id: UserId, room_id: RoomId, now: Instant) -> bool {
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
    fn is_due(&self, key: (UserId, RoomId), now: Instant) -> bool {
        self.last
            .get(&key)
            .is_none_or(|&last| now.saturating_duration_since(last) >= TYPING_INTERVAL)
    }

    fn sweep(&mut self, now: Instant) {
        self.last
            .retain(|_, last| now.saturating_duration_since(*last) < TYPING_INTERVAL);
    }

    /// The user sent a message in the room: its next typing is relayed.
    fn forget(&mut self, user_id: UserId, room_id: RoomId) {
        if !self.last.is_empty() {
            self.last.remove(&(user_id, room_id));
        }
    }
}

/// Why a stream is being removed.
enum Ending {
    /// Ended by the server with this status.
    Status(Status),
    /// Its queue overflowed.
    TooSlow,
    /// The client went away: nobody to tell.
    Gone,
}

struct StreamEntry {
    user_id: UserId,
    session_id: SessionId,
    expires_at: Timestamp,
    queue: queue::Sender<Frame>,
    /// Ends the stream with a status, ahead of anything still queued.
    end: Option<oneshot::Sender<Box<Status>>>,
    /// False until the stream's `ready` event is queued: nothing may come
    /// before it.
    active: bool,
    /// Cancelled when the stream is removed, for tasks serving it.
    ended: CancellationToken,
    /// While the stream catches up on missed messages (or waits to learn
    /// whether it will), live messages wait here instead of the queue.
    /// Boxed: the hub's table holds every stream's entry, and most streams
    /// hold back messages only briefly, if at all.
    hold: Option<Box<Hold>>,
    /// For rooms it resumed: the newest seq the stream has been given, so
    /// a message read during catch-up and then delivered live is dropped.
    cursors: HashMap<RoomId, u64>,
}

/// Live messages kept back from a stream while it catches up.
#[derive(Default)]
struct Hold {
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
struct Ordered {
    room_id: RoomId,
    seq: u64,
    /// The sender's acknowledgement (`sent`): owed even to a stream that
    /// has the message already.
    ack: bool,
}

struct RoomEntry {
    /// The connected users who are members.
    members: HashSet<UserId>,
    /// The newest seq delivered here (or known not to be needed).
    last_seq: u64,
}

impl RoomEntry {
    fn new(last_seq: u64) -> Self {
        Self {
            members: HashSet::new(),
            last_seq,
        }
    }
}

/// A user online on other nodes, as they describe it.
struct RemoteUser {
    user: User,
    rooms: HashSet<RoomId>,
    nodes: HashSet<NodeId>,
}

struct UserEntry {
    user: User,
    streams: Vec<StreamId>,
    rooms: HashSet<RoomId>,
    /// Whether others have been told this user is online.
    online: bool,
    /// Turns to catch up, made on the first catch-up.
    catch_ups: Option<Arc<Semaphore>>,
}

/// The receiving end of a stream: the frames the hub queued for it, ended
/// early by a status when the hub closes it. Dropping it (the client went
/// away) unregisters the stream.
pub struct OutboundStream {
    id: StreamId,
    hub: Arc<Hub>,
    queue: queue::Receiver<Frame>,
    /// Missed messages being caught up on; they go out before anything in
    /// `queue` but the `ready` event. `None` once the catch-up is over.
    catch_up: Option<queue::Receiver<Frame>>,
    end: oneshot::Receiver<Box<Status>>,
    /// Whether `ready`, always first in `queue`, has gone out.
    ready_sent: bool,
    finished: bool,
}

impl Stream for OutboundStream {
    type Item = Result<Frame, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Ok(status)) = Pin::new(&mut self.end).poll(cx) {
            self.finished = true;
            return Poll::Ready(Some(Err(*status)));
        }
        if self.ready_sent {
            if let Some(catch_up) = &mut self.catch_up {
                match catch_up.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Poll::Ready(None) => self.catch_up = None,
                    Poll::Pending => {}
                }
            }
        }
        match self.queue.poll_recv(cx) {
            Poll::Ready(Some(frame)) => {
                self.ready_sent = true;
                if let Some(sent_at) = frame.sent_at() {
                    self.hub
                        .metrics
                        .observe_delivery(Timestamp::now().since(sent_at));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for OutboundStream {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        self.hub
            .close_all_of(&mut state, vec![(self.id, Ending::Gone)]);
    }
}

impl Hub {
    /// A hub whose streams may each have `queue_capacity` frames waiting.
    /// With `presence`, changes of who is online here are sent there (for
    /// the other nodes); when it is full, a change is dropped, and the next
    /// full account of this node's users (`local_presence`) corrects it.
    pub fn new(
        queue_capacity: usize,
        limits: StreamLimits,
        metrics: FanoutMetrics,
        presence: Option<mpsc::Sender<LocalPresence>>,
        session_cache_ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            next_stream: AtomicU64::new(1),
            queue_capacity,
            limits,
            metrics,
            presence,
            live_sessions: LiveSessions::new(session_cache_ttl),
        })
    }

    fn publish_presence(&self, change: LocalPresence) {
        if let Some(presence) = &self.presence {
            if presence.try_send(change).is_err() {
                tracing::debug!("presence queue full: the next snapshot tells the other nodes");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves bookkeeping that is still
        // consistent enough to serve; never turn it into more panics.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream for a user's session. It receives nothing until
    /// `activate`, so that the `ready` event comes first.
    ///
    /// With `hold`, live messages wait until `release`: meanwhile, missed
    /// messages sent into the returned catch-up channel go out first.
    ///
    /// # Errors
    /// [`RegisterError`] once the server is shutting down, or when the
    /// session or the user has as many streams open as allowed.
    pub fn register(
        self: &Arc<Self>,
        user: &User,
        session_id: SessionId,
        expires_at: Timestamp,
        hold: bool,
    ) -> Result<(StreamId, OutboundStream, queue::Sender<Frame>), RegisterError> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue_rx) = queue::queue(self.queue_capacity);
        let (catch_up_tx, catch_up_rx) = queue::bounded(CATCH_UP_CAPACITY, CATCH_UP_BYTES);
        let (end_tx, end_rx) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            return Err(RegisterError::ShuttingDown);
        }
        let StreamLimits {
            per_session,
            per_user,
        } = self.limits;
        if state.sessions.get(&session_id).map_or(0, Vec::len) >= per_session {
            return Err(RegisterError::TooManyForSession(per_session));
        }
        if state.users.get(&user.id).map_or(0, |u| u.streams.len()) >= per_user {
            return Err(RegisterError::TooManyForUser(per_user));
        }
        self.metrics.streams_open.inc();
        state.streams.insert(
            id,
            StreamEntry {
                user_id: user.id,
                session_id,
                expires_at,
                queue: queue_tx,
                end: Some(end_tx),
                active: false,
                ended: CancellationToken::new(),
                hold: hold.then(Box::default),
                cursors: HashMap::new(),
            },
        );
        state
            .users
            .entry(user.id)
            .or_insert_with(|| UserEntry {
                user: user.clone(),
                streams: Vec::new(),
                rooms: HashSet::new(),
                online: false,
                catch_ups: None,
            })
            .streams
            .push(id);
        state.sessions.entry(session_id).or_default().push(id);
        state.expiries.insert((expires_at, id));
        drop(state);
        let outbound = OutboundStream {
            id,
            hub: Arc::clone(self),
            queue: queue_rx,
            catch_up: Some(catch_up_rx),
            end: end_rx,
            ready_sent: false,
            finished: false,
        };
        Ok((id, outbound, catch_up_tx))
    }

    /// Starts a registered stream: records the user's rooms (each with its
    /// newest seq, read before this call), queues the `ready` event, and
    /// announces the user if it was online nowhere.
    pub fn activate(&self, id: StreamId, rooms: &[(RoomId, u64)]) {
        let mut state = self.lock();
        let Some(user_id) = state.streams.get(&id).map(|s| s.user_id) else {
            return;
        };
        for &(room, last_seq) in rooms {
            state
                .rooms
                .entry(room)
                .or_insert_with(|| RoomEntry::new(last_seq))
                .members
                .insert(user_id);
        }
        let user_entry = state
            .users
            .get_mut(&user_id)
            .expect("a stream's user is registered");
        user_entry.rooms.extend(rooms.iter().map(|&(room, _)| room));
        let first_here = !user_entry.online;
        user_entry.online = true;
        let user = user_entry.user.clone();
        let announce = first_here && !state.remote.contains_key(&user_id);
        if first_here {
            self.metrics.users_online.inc();
            self.publish_presence(LocalPresence::Online {
                user: user.clone(),
                rooms: state.users[&user_id].rooms.iter().copied().collect(),
            });
        }
        let session_id = state.streams[&id].session_id;

        let peers = state.peers(user_id);
        let ready = Frame::from_event(Event::Ready(server_event::Ready {
            user: Some(pb::User::from(&user)),
            session_id: session_id.to_string(),
            online_users: state
                .online_peers(user_id)
                .iter()
                .map(pb::User::from)
                .collect(),
        }));
        let entry = state.streams.get_mut(&id).expect("checked above");
        entry.active = true;
        let mut overflow = Overflow::default();
        push(entry, id, ready, &mut overflow);
        if announce {
            state.tell_users(&peers, &presence(&user, true), None, None, &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Sends a stored message to every open stream of every member of its
    /// room, unless that would skip a message (see `Delivery::Gap`) or they
    /// have it already. The stream that sent it (if any) gets `sent`
    /// instead, once: when the message is delivered or skipped.
    pub fn deliver(&self, message: &Message, origin: Option<StreamId>) -> Delivery {
        let mut state = self.lock();
        let delivery = match state.rooms.get_mut(&message.room_id) {
            None => Delivery::Skipped,
            Some(room) if message.seq <= room.last_seq => Delivery::Skipped,
            Some(room) if message.seq > room.last_seq + 1 => {
                return Delivery::Gap {
                    after: room.last_seq,
                }
            }
            Some(room) => {
                room.last_seq = message.seq;
                // A message ends its sender's typing: the next keystroke
                // is news again, not a repeat within the interval.
                state.typing.forget(message.sender.id, message.room_id);
                Delivery::Delivered
            }
        };
        let order = Ordered {
            room_id: message.room_id,
            seq: message.seq,
            ack: false,
        };
        let mut overflow = Overflow::default();
        if delivery == Delivery::Delivered {
            let frame =
                Frame::live_message(Event::Message(pb::Message::from(message)), message.sent_at);
            let members: Vec<UserId> = state.rooms[&message.room_id]
                .members
                .iter()
                .copied()
                .collect();
            state.tell_users(&members, &frame, Some(order), origin, &mut overflow);
        }
        if let Some(origin) = origin {
            if let Some(entry) = state.streams.get_mut(&origin) {
                let sent = Frame::from_event(Event::Sent(server_event::Sent {
                    client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
                    message: Some(pb::Message::from(message)),
                }));
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
        let frame = Frame::from_event(Event::Resync(server_event::Resync {
            room_id: room_id.to_string(),
            from_seq,
        }));
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

    fn typing_at(&self, room_id: RoomId, user: &User, now: Instant) -> bool {
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
        let frame = Frame::ephemeral(Event::Typing(server_event::Typing {
            room_id: room_id.to_string(),
            user: Some(pb::User::from(user)),
        }));
        let mut overflow = Overflow::default();
        state.tell_users(&others, &frame, None, None, &mut overflow);
        self.close_overflowed(&mut state, overflow);
        true
    }

    /// Forgets what no longer matters: typing older than the interval, and
    /// the room its tables kept after they shrank.
    pub fn sweep(&self) {
        let mut state = self.lock();
        state.typing.sweep(Instant::now());
        state.shrink();
    }

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

    /// Queues one frame for one stream.
    pub fn send_to(&self, id: StreamId, frame: Frame) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        if let Some(entry) = state.streams.get_mut(&id) {
            push(entry, id, frame, &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
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
                    state.tell_users(&others, &presence(&user, true), None, None, &mut overflow);
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
                for other in online_others {
                    state.tell_users(
                        &[user_id],
                        &presence(&other, true),
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
                    state.tell_users(&others, &presence(&user, true), None, None, &mut overflow);
                }
            }
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Records that a user left a room.
    pub fn leave(&self, user_id: UserId, room_id: RoomId) {
        let mut state = self.lock();
        if let Some(entry) = state.users.get_mut(&user_id) {
            entry.rooms.remove(&room_id);
        }
        state.forget_member(room_id, user_id);
        if let Some(remote) = state.remote.get_mut(&user_id) {
            remote.rooms.remove(&room_id);
            state.forget_remote_member(room_id, user_id);
        }
    }

    /// Whether the hub knows `user_id` to be a member of `room_id`. `None`
    /// when it cannot tell (the user has no open stream here).
    pub fn is_member(&self, user_id: UserId, room_id: RoomId) -> Option<bool> {
        let state = self.lock();
        let entry = state.users.get(&user_id)?;
        entry.rooms.contains(&room_id).then_some(true)
    }

    /// The online members of these rooms, on any node, each once, by name.
    pub fn online_users(&self, rooms: &[RoomId]) -> Vec<User> {
        let state = self.lock();
        let mut users: HashMap<UserId, &User> = HashMap::new();
        for room in rooms {
            let here = state
                .rooms
                .get(room)
                .into_iter()
                .flat_map(|room| &room.members)
                .filter_map(|m| state.users.get(m))
                .filter(|u| u.online)
                .map(|u| &u.user);
            let elsewhere = state
                .remote_rooms
                .get(room)
                .into_iter()
                .flatten()
                .filter_map(|m| state.remote.get(m))
                .map(|u| &u.user);
            users.extend(here.chain(elsewhere).map(|u| (u.id, u)));
        }
        let mut users: Vec<User> = users.into_values().cloned().collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }

    /// The users online here, with their rooms: this node's full account
    /// for the other nodes.
    pub fn local_presence(&self) -> Vec<OnlineUser> {
        self.lock()
            .users
            .values()
            .filter(|u| u.online)
            .map(|u| (u.user.clone(), u.rooms.iter().copied().collect()))
            .collect()
    }

    /// The sessions with streams open here, and their users.
    pub fn open_sessions(&self) -> Vec<(SessionId, UserId)> {
        let state = self.lock();
        state
            .sessions
            .iter()
            .filter_map(|(&session, streams)| {
                let stream = state.streams.get(streams.first()?)?;
                Some((session, stream.user_id))
            })
            .collect()
    }

    /// Another node says `user` is online there, in `rooms`.
    pub fn remote_online(&self, node: NodeId, user: User, rooms: Vec<RoomId>) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        state.remote_online(node, user, rooms, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// Another node says `user_id` has no stream there any more.
    pub fn remote_offline(&self, node: NodeId, user_id: UserId) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        state.remote_offline(node, user_id, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// Another node's full account of its online users: whoever it said
    /// before and leaves out now is offline there.
    pub fn remote_snapshot(&self, node: NodeId, users: Vec<OnlineUser>) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        let listed: HashSet<UserId> = users.iter().map(|(user, _)| user.id).collect();
        let gone: Vec<UserId> = state
            .nodes
            .get(&node)
            .into_iter()
            .flatten()
            .filter(|user| !listed.contains(user))
            .copied()
            .collect();
        for user_id in gone {
            state.remote_offline(node, user_id, &mut overflow);
        }
        for (user, rooms) in users {
            state.remote_online(node, user, rooms, &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Another node left, or went silent: none of its users is online there.
    pub fn remote_node_gone(&self, node: NodeId) {
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        let users: Vec<UserId> = state
            .nodes
            .get(&node)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for user_id in users {
            state.remote_offline(node, user_id, &mut overflow);
        }
        state.nodes.remove(&node);
        self.close_overflowed(&mut state, overflow);
    }

    /// Sessions recently found live, which calls consult before the
    /// database.
    pub fn live_sessions(&self) -> &LiveSessions {
        &self.live_sessions
    }

    /// Forgets a revoked session, so its next call is refused, and ends
    /// every stream of it with UNAUTHENTICATED.
    pub fn revoke_session(&self, session_id: SessionId) {
        self.live_sessions.revoke(session_id);
        let mut state = self.lock();
        let ids = state.sessions.get(&session_id).cloned().unwrap_or_default();
        let closing = ids
            .into_iter()
            .map(|id| {
                (
                    id,
                    Ending::Status(Status::unauthenticated("session revoked")),
                )
            })
            .collect();
        self.close_all_of(&mut state, closing);
    }

    /// Ends the streams whose access token has expired by `now`.
    pub fn expire(&self, now: Timestamp) {
        let mut state = self.lock();
        let expired: Vec<StreamId> = state
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|&(_, id)| id)
            .collect();
        let closing = expired
            .into_iter()
            .map(|id| {
                (
                    id,
                    Ending::Status(Status::unauthenticated("access token expired")),
                )
            })
            .collect();
        self.close_all_of(&mut state, closing);
    }

    /// Sends the idle-stream heartbeat (a `pong` with nonce 0) to every stream.
    pub fn heartbeat(&self) {
        let frame = Frame::ephemeral(Event::Pong(server_event::Pong { nonce: 0 }));
        let mut state = self.lock();
        let mut overflow = Overflow::default();
        for (&id, entry) in state.streams.iter_mut().filter(|(_, e)| e.active) {
            push(entry, id, frame.clone(), &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Refuses new streams and ends every open one with UNAVAILABLE.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.closed = true;
        let closing = state
            .streams
            .keys()
            .map(|&id| {
                (
                    id,
                    Ending::Status(Status::unavailable("server is shutting down")),
                )
            })
            .collect();
        self.close_all_of(&mut state, closing);
    }

    /// Ends a stream with a status.
    pub fn close(&self, id: StreamId, status: Status) {
        let mut state = self.lock();
        self.close_all_of(&mut state, vec![(id, Ending::Status(status))]);
    }

    /// Cancelled once the stream is gone (already, if it is gone now).
    pub fn ended(&self, id: StreamId) -> CancellationToken {
        match self.lock().streams.get(&id) {
            Some(entry) => entry.ended.clone(),
            None => {
                let ended = CancellationToken::new();
                ended.cancel();
                ended
            }
        }
    }

    /// How many streams are open on this node.
    pub fn open_streams(&self) -> usize {
        self.lock().streams.len()
    }

    fn slow_consumer(&self) -> Status {
        Status::resource_exhausted(format!(
            "stream too slow: more than {} events were waiting; reconnect and resume",
            self.queue_capacity
        ))
    }

    fn count_dropped(&self, overflow: &Overflow) {
        if overflow.ephemeral_dropped > 0 {
            self.metrics
                .ephemeral_dropped
                .inc_by(overflow.ephemeral_dropped);
        }
    }

    fn close_overflowed(&self, state: &mut State, overflow: Overflow) {
        self.count_dropped(&overflow);
        if !overflow.streams.is_empty() {
            let closing = overflow
                .streams
                .into_iter()
                .map(|id| (id, Ending::TooSlow))
                .collect();
            self.close_all_of(state, closing);
        }
    }

    /// Removes streams, ending each as it says. A user whose last stream
    /// goes is announced offline, which may overflow, and so close, further
    /// streams.
    fn close_all_of(&self, state: &mut State, mut closing: Vec<(StreamId, Ending)>) {
        while let Some((id, ending)) = closing.pop() {
            let Some(mut entry) = state.streams.remove(&id) else {
                continue;
            };
            entry.ended.cancel();
            self.metrics.streams_open.dec();
            let status = match ending {
                Ending::Status(status) => Some(status),
                Ending::TooSlow => {
                    self.metrics.slow_consumer_disconnects.inc();
                    Some(self.slow_consumer())
                }
                Ending::Gone => None,
            };
            if let (Some(end), Some(status)) = (entry.end.take(), status) {
                // The receiver may be gone already; then there is no one to tell.
                let _ = end.send(Box::new(status));
            }
            state.expiries.remove(&(entry.expires_at, id));
            if let Some(ids) = state.sessions.get_mut(&entry.session_id) {
                ids.retain(|&s| s != id);
                if ids.is_empty() {
                    state.sessions.remove(&entry.session_id);
                }
            }
            let user_id = entry.user_id;
            let Some(user) = state.users.get_mut(&user_id) else {
                continue;
            };
            user.streams.retain(|&s| s != id);
            let (remaining, was_online) = (user.streams.clone(), user.online);
            let still_active = remaining
                .iter()
                .any(|s| state.streams.get(s).is_some_and(|e| e.active));
            if was_online && !still_active {
                let user = state.users.get_mut(&user_id).expect("looked up above");
                user.online = false;
                self.metrics.users_online.dec();
                self.publish_presence(LocalPresence::Offline { user_id });
                if !state.remote.contains_key(&user_id) {
                    let gone = state.users[&user_id].user.clone();
                    let peers = state.peers(user_id);
                    let mut overflow = Overflow::default();
                    state.tell_users(&peers, &presence(&gone, false), None, None, &mut overflow);
                    self.count_dropped(&overflow);
                    closing.extend(overflow.streams.into_iter().map(|id| (id, Ending::TooSlow)));
                }
            }
            if remaining.is_empty() {
                state.forget_user(user_id);
            }
        }
    }
}

impl State {
    /// Gives back the room of tables that grew for a crowd now gone: a
    /// `HashMap` otherwise keeps its largest size for good.
    fn shrink(&mut self) {
        fn shrink<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
            // Some slack, so that a table that breathes is not rebuilt
            // at every sweep.
            if map.capacity() > 4 * map.len() + 64 {
                map.shrink_to(2 * map.len());
            }
        }
        shrink(&mut self.streams);
        shrink(&mut self.users);
        shrink(&mut self.rooms);
        shrink(&mut self.remote);
        shrink(&mut self.remote_rooms);
        shrink(&mut self.nodes);
        shrink(&mut self.sessions);
        shrink(&mut self.typing.last);
    }

    /// The other connected users who share a room with `user_id`.
    fn peers(&self, user_id: UserId) -> Vec<UserId> {
        let Some(user) = self.users.get(&user_id) else {
            return Vec::new();
        };
        self.members_of(&user.rooms, user_id)
    }

    /// The connected users in any of `rooms`, but `user_id`.
    fn members_of(&self, rooms: &HashSet<RoomId>, user_id: UserId) -> Vec<UserId> {
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

    /// The users online on any node who share a room with `user_id`.
    fn online_peers(&self, user_id: UserId) -> Vec<User> {
        let Some(user) = self.users.get(&user_id) else {
            return Vec::new();
        };
        let mut online: HashMap<UserId, &User> = self
            .peers(user_id)
            .iter()
            .filter_map(|peer| self.users.get(peer))
            .filter(|peer| peer.online)
            .map(|peer| (peer.user.id, &peer.user))
            .collect();
        for room in &user.rooms {
            for peer in self.remote_rooms.get(room).into_iter().flatten() {
                if *peer != user_id {
                    if let Some(remote) = self.remote.get(peer) {
                        online.insert(*peer, &remote.user);
                    }
                }
            }
        }
        online.into_values().cloned().collect()
    }

    /// Records a user online on another node; if it was online nowhere,
    /// its peers here hear of it.
    fn remote_online(
        &mut self,
        node: NodeId,
        user: User,
        rooms: Vec<RoomId>,
        overflow: &mut Overflow,
    ) {
        let user_id = user.id;
        self.nodes.entry(node).or_default().insert(user_id);
        let rooms: HashSet<RoomId> = rooms.into_iter().collect();
        let newly = !self.remote.contains_key(&user_id);
        let entry = self.remote.entry(user_id).or_insert_with(|| RemoteUser {
            user: user.clone(),
            rooms: HashSet::new(),
            nodes: HashSet::new(),
        });
        entry.nodes.insert(node);
        let before = std::mem::replace(&mut entry.rooms, rooms.clone());
        for room in before.difference(&rooms) {
            self.forget_remote_member(*room, user_id);
        }
        for room in &rooms {
            self.remote_rooms.entry(*room).or_default().insert(user_id);
        }
        let online_here = self.users.get(&user_id).is_some_and(|u| u.online);
        if online_here {
            return;
        }
        // Newly online, or online in rooms it was not known to be in.
        let announce_in: HashSet<RoomId> = if newly {
            rooms
        } else {
            rooms.difference(&before).copied().collect()
        };
        let peers = self.members_of(&announce_in, user_id);
        self.tell_users(&peers, &presence(&user, true), None, None, overflow);
    }

    /// Records a user gone from another node; if it is now online nowhere,
    /// its peers here hear of it.
    fn remote_offline(&mut self, node: NodeId, user_id: UserId, overflow: &mut Overflow) {
        if let Some(users) = self.nodes.get_mut(&node) {
            users.remove(&user_id);
        }
        let Some(entry) = self.remote.get_mut(&user_id) else {
            return;
        };
        entry.nodes.remove(&node);
        if !entry.nodes.is_empty() {
            return;
        }
        let gone = self.remote.remove(&user_id).expect("looked up above");
        for room in &gone.rooms {
            self.forget_remote_member(*room, user_id);
        }
        if self.users.get(&user_id).is_some_and(|u| u.online) {
            return;
        }
        let peers = self.members_of(&gone.rooms, user_id);
        self.tell_users(&peers, &presence(&gone.user, false), None, None, overflow);
    }

    fn forget_remote_member(&mut self, room_id: RoomId, user_id: UserId) {
        if let Some(members) = self.remote_rooms.get_mut(&room_id) {
            members.remove(&user_id);
            if members.is_empty() {
                self.remote_rooms.remove(&room_id);
            }
        }
    }

    /// Offers a frame to every active stream of the given users, except
    /// `skip`; full queues are collected in `overflow`.
    fn tell_users(
        &mut self,
        users: &[UserId],
        frame: &Frame,
        order: Option<Ordered>,
        skip: Option<StreamId>,
        overflow: &mut Overflow,
    ) {
        for user_id in users {
            let Some(user) = self.users.get(user_id) else {
                continue;
            };
            for &id in &user.streams {
                if Some(id) == skip {
                    continue;
                }
                if let Some(entry) = self.streams.get_mut(&id) {
                    if entry.active {
                        offer(entry, id, frame, order, overflow);
                    }
                }
            }
        }
    }

    fn forget_user(&mut self, user_id: UserId) {
        if let Some(user) = self.users.remove(&user_id) {
            for room in user.rooms {
                self.forget_member(room, user_id);
            }
        }
    }

    fn forget_member(&mut self, room_id: RoomId, user_id: UserId) {
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.remove(&user_id);
            if room.members.is_empty() {
                self.rooms.remove(&room_id);
            }
        }
    }
}

/// Gives a stream a frame. A message frame waits while the stream is held,
/// and is dropped if the stream has it already (a resumed room's cursor).
fn offer(
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

/// Queues a frame for a stream. Typing and heartbeats are dropped instead
/// once the queue is under pressure, presence only when it is full; none of
/// them ever ends a stream: only what the client cannot do without does.
fn push(entry: &mut StreamEntry, id: StreamId, frame: Frame, overflow: &mut Overflow) {
    if frame.droppable() == Droppable::UnderPressure
        && entry.queue.len() >= pressure_threshold(entry.queue.max_capacity())
    {
        overflow.ephemeral_dropped += 1;
        return;
    }
    match entry.queue.try_send(frame) {
        Err(TrySendError::Full(frame)) if frame.droppable() != Droppable::Never => {
            overflow.ephemeral_dropped += 1;
        }
        Err(TrySendError::Full(_)) => overflow.push(id),
        Ok(()) | Err(TrySendError::Closed(_)) => {}
    }
}

/// Frames waiting past which a stream's queue counts as under pressure:
/// half of it, so that the other half stays free for messages while the
/// client catches up.
fn pressure_threshold(capacity: usize) -> usize {
    capacity / 2
}

/// What a fan-out left to do once it is over: streams to end as too slow,
/// and ephemeral frames dropped, to count.
#[derive(Default)]
struct Overflow {
    streams: Vec<StreamId>,
    ephemeral_dropped: u64,
}

impl Overflow {
    fn push(&mut self, id: StreamId) {
        self.streams.push(id);
    }
}

fn presence(user: &User, online: bool) -> Frame {
    Frame::state_hint(Event::Presence(server_event::Presence {
        user: Some(pb::User::from(user)),
        online,
    }))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    fn user(name: &str) -> User {
        User {
            id: UserId::new(),
            username: name.into(),
        }
    }

    fn hub(presence: Option<mpsc::Sender<LocalPresence>>) -> Arc<Hub> {
        let limits = StreamLimits {
            per_session: 10,
            per_user: 10,
        };
        Hub::new(
            16,
            limits,
            FanoutMetrics::default(),
            presence,
            crate::live::TTL,
        )
    }

    /// Opens a live stream for `user` in `rooms` and takes its `ready`.
    fn open(
        hub: &Arc<Hub>,
        user: &User,
        rooms: &[(RoomId, u64)],
    ) -> (StreamId, OutboundStream, server_event::Ready) {
        let far = Timestamp::now().plus(Duration::from_secs(3600));
        let (id, mut stream, _) = hub.register(user, SessionId::new(), far, false).unwrap();
        hub.activate(id, rooms);
        let Some(Event::Ready(ready)) = next(&mut stream) else {
            panic!("ready comes first");
        };
        (id, stream, ready)
    }

    /// The next queued event, if any, without waiting.
    fn next(stream: &mut OutboundStream) -> Option<Event> {
        let frame = stream.next().now_or_never()??.ok()?;
        Some(frame.event())
    }

    trait NowOrNever: std::future::Future + Sized {
        fn now_or_never(self) -> Option<Self::Output> {
            let waker = std::task::Waker::noop();
            let mut context = Context::from_waker(waker);
            match std::pin::pin!(self).poll(&mut context) {
                Poll::Ready(output) => Some(output),
                Poll::Pending => None,
            }
        }
    }

    impl<F: std::future::Future> NowOrNever for F {}

    fn message(room_id: RoomId, seq: u64, sender: &User) -> Message {
        Message {
            id: chat_domain::MessageId::new(),
            room_id,
            seq,
            sender: sender.clone(),
            text: format!("#{seq}"),
            sent_at: Timestamp::now(),
            client_msg_id: Some(format!("k{seq}")),
        }
    }

    fn presence_event(event: Option<Event>) -> (String, bool) {
        match event {
            Some(Event::Presence(p)) => (p.user.unwrap().username, p.online),
            other => panic!("expected presence, got {other:?}"),
        }
    }

    #[test]
    fn messages_go_out_in_order_and_a_gap_is_reported_not_skipped() {
        let hub = hub(None);
        let (alice, room) = (user("alice"), RoomId::new());
        let (_, mut stream, _) = open(&hub, &alice, &[(room, 4)]);

        assert_eq!(
            hub.deliver(&message(room, 4, &alice), None),
            Delivery::Skipped
        );
        assert_eq!(
            hub.deliver(&message(room, 5, &alice), None),
            Delivery::Delivered
        );
        assert_eq!(
            hub.deliver(&message(room, 7, &alice), None),
            Delivery::Gap { after: 5 }
        );
        assert_eq!(
            hub.deliver(&message(room, 6, &alice), None),
            Delivery::Delivered
        );
        assert_eq!(
            hub.deliver(&message(room, 7, &alice), None),
            Delivery::Delivered
        );
        assert_eq!(
            hub.deliver(&message(RoomId::new(), 1, &alice), None),
            Delivery::Skipped
        );

        let seqs: Vec<u64> = std::iter::from_fn(|| match next(&mut stream)? {
            Event::Message(m) => Some(m.seq),
            other => panic!("{other:?}"),
        })
        .collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(hub.room_positions(), [(room, 7)]);
    }

    #[test]
    fn the_sender_is_acknowledged_even_when_its_stream_had_the_message() {
        let hub = hub(None);
        let (alice, room) = (user("alice"), RoomId::new());
        let (id, mut stream, _) = open(&hub, &alice, &[(room, 0)]);

        // A read of the store delivered it first, then the writer reports it.
        hub.deliver(&message(room, 1, &alice), None);
        assert_eq!(
            hub.deliver(&message(room, 1, &alice), Some(id)),
            Delivery::Skipped
        );

        assert!(matches!(next(&mut stream), Some(Event::Message(m)) if m.seq == 1));
        assert!(matches!(next(&mut stream), Some(Event::Sent(s)) if s.client_msg_id == "k1"));
        assert!(next(&mut stream).is_none());
    }

    #[test]
    fn resync_moves_a_room_on_and_tells_its_streams() {
        let hub = hub(None);
        let (alice, room) = (user("alice"), RoomId::new());
        let (_, mut stream, _) = open(&hub, &alice, &[(room, 2)]);

        hub.resync(room, 10);

        assert!(matches!(next(&mut stream), Some(Event::Resync(r)) if r.from_seq == 10));
        assert_eq!(
            hub.deliver(&message(room, 10, &alice), None),
            Delivery::Delivered
        );
    }

    #[test]
    fn users_online_on_other_nodes_count_until_every_node_lets_go() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let (node_a, node_b) = (NodeId::new_v4(), NodeId::new_v4());
        let (_, mut stream, _) = open(&hub, &alice, &[(room, 0)]);

        hub.remote_online(node_a, bob.clone(), vec![room]);
        hub.remote_online(node_b, bob.clone(), vec![room]);
        assert_eq!(presence_event(next(&mut stream)), ("bob".into(), true));
        assert!(next(&mut stream).is_none(), "announced once");
        let online: Vec<String> = hub
            .online_users(&[room])
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(online, ["alice", "bob"]);
        let (_, _, ready) = open(&hub, &alice, &[(room, 0)]);
        assert_eq!(ready.online_users.len(), 1, "ready lists bob");

        hub.remote_offline(node_a, bob.id);
        assert!(next(&mut stream).is_none(), "still online on node b");
        hub.remote_node_gone(node_b);
        assert_eq!(presence_event(next(&mut stream)), ("bob".into(), false));
    }

    #[test]
    fn a_snapshot_replaces_what_a_node_said_before() {
        let hub = hub(None);
        let (alice, bob, carol, room) = (user("alice"), user("bob"), user("carol"), RoomId::new());
        let node = NodeId::new_v4();
        let (_, mut stream, _) = open(&hub, &alice, &[(room, 0)]);
        hub.remote_online(node, bob.clone(), vec![room]);
        assert_eq!(presence_event(next(&mut stream)), ("bob".into(), true));

        hub.remote_snapshot(node, vec![(carol.clone(), vec![room])]);

        let mut changes = vec![
            presence_event(next(&mut stream)),
            presence_event(next(&mut stream)),
        ];
        changes.sort();
        assert_eq!(changes, [("bob".into(), false), ("carol".into(), true)]);
    }

    #[test]
    fn this_nodes_presence_changes_are_published() {
        let (tx, mut rx) = mpsc::channel(8);
        let hub = hub(Some(tx));
        let (alice, room) = (user("alice"), RoomId::new());

        let (_, stream, _) = open(&hub, &alice, &[(room, 0)]);
        drop(stream);

        assert!(matches!(
            rx.try_recv(),
            Ok(LocalPresence::Online { user, rooms }) if user.id == alice.id && rooms == [room]
        ));
        assert!(matches!(
            rx.try_recv(),
            Ok(LocalPresence::Offline { user_id }) if user_id == alice.id
        ));
    }

    #[test]
    fn typing_is_relayed_once_per_user_and_room_in_each_interval() {
        let hub = hub(None);
        let (alice, bob, room, other) = (user("alice"), user("bob"), RoomId::new(), RoomId::new());
        let (_, mut stream, _) = open(&hub, &bob, &[(room, 0)]);
        let start = Instant::now();
        let second = Duration::from_secs(1);

        assert!(hub.typing_is_due(alice.id, room));
        assert!(hub.typing_at(room, &alice, start));
        assert!(!hub.typing_is_due(alice.id, room));
        assert!(!hub.typing_at(room, &alice, start + second));
        assert!(
            hub.typing_at(other, &alice, start + second),
            "a room of its own"
        );
        assert!(
            hub.typing_at(room, &bob, start + second),
            "a user of its own"
        );
        assert!(hub.typing_at(room, &alice, start + TYPING_INTERVAL));

        let typing = std::iter::from_fn(|| next(&mut stream))
            .filter(|event| matches!(event, Event::Typing(t) if t.user.as_ref().unwrap().username == "alice"))
            .count();
        assert_eq!(typing, 2);
        hub.lock().typing.sweep(start + 3 * TYPING_INTERVAL);
        assert!(hub.lock().typing.last.is_empty());
    }

    #[test]
    fn a_message_makes_its_senders_next_typing_news_again() {
        let hub = hub(None);
        let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
        let (_, _stream, _) = open(&hub, &bob, &[(room, 0)]);
        let now = Instant::now();

        assert!(hub.typing_at(room, &alice, now));
        hub.deliver(&message(room, 1, &alice), None);

        assert!(
            hub.typing_at(room, &alice, now),
            "typing right after a message is relayed"
        );
        hub.deliver(&message(room, 2, &bob), None);
        assert!(
            !hub.typing_at(room, &alice, now),
            "another's message changes nothing"
        );
    }

    #[test]
    fn a_stream_under_pressure_drops_ephemeral_events_and_keeps_its_messages() {
        let hub = hub(None);
        let (alice, bob) = (user("alice"), user("bob"));
        let rooms: Vec<(RoomId, u64)> = (0..40).map(|_| (RoomId::new(), 0)).collect();
        let (_, mut stream, _) = open(&hub, &bob, &rooms);

        for &(room, _) in &rooms {
            hub.typing(room, &alice);
        }
        hub.heartbeat();
        for seq in 1..=8 {
            assert_eq!(
                hub.deliver(&message(rooms[0].0, seq, &alice), None),
                Delivery::Delivered
            );
        }

        let events: Vec<Event> = std::iter::from_fn(|| next(&mut stream)).collect();
        let typing = events
            .iter()
            .filter(|e| matches!(e, Event::Typing(_)))
            .count();
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect();
        // Half the queue of 16 takes ephemeral events; the rest waits for
        // messages.
        assert_eq!(typing, 8);
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        assert_eq!(hub.metrics.ephemeral_dropped.get(), 33);
        assert_eq!(hub.open_streams(), 1);
    }

    #[test]
    fn a_users_streams_share_its_few_turns_to_catch_up() {
        let hub = hub(None);
        let (alice, bob) = (user("alice"), user("bob"));
        let (first, _s1, _) = open(&hub, &alice, &[]);
        let (second, _s2, _) = open(&hub, &alice, &[]);
        let (other, _s3, _) = open(&hub, &bob, &[]);

        let turns = hub.catch_up_turns(first).unwrap();
        assert!(Arc::ptr_eq(&turns, &hub.catch_up_turns(second).unwrap()));
        assert!(!Arc::ptr_eq(&turns, &hub.catch_up_turns(other).unwrap()));
        assert_eq!(turns.available_permits(), CATCH_UPS_PER_USER);
        assert!(hub.catch_up_turns(StreamId::MAX).is_none());
    }
}

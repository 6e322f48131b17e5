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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::domain::{Message, RoomId, SessionId, Timestamp, User, UserId};
use crate::error::{Error, Result};
use crate::metrics::{Limit, Metrics};
use crate::pb::server_event::Event;
use crate::pb::{self, server_event};
use crate::stream::Frame;

/// Identifies one open stream on this node.
pub type StreamId = u64;

/// Catch-up frames a stream may have waiting: the reader of the database
/// waits for the client instead of reading ahead.
const CATCH_UP_CAPACITY: usize = 64;

pub struct Hub {
    state: Mutex<State>,
    next_stream: AtomicU64,
    /// Frames a stream may have waiting before it counts as too slow.
    queue_capacity: usize,
    limits: StreamLimits,
    metrics: Arc<Metrics>,
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
    /// Room -> the connected users who are members.
    rooms: HashMap<RoomId, HashSet<UserId>>,
    sessions: HashMap<SessionId, Vec<StreamId>>,
    /// Streams by the expiry of the token that opened them.
    expiries: BTreeSet<(Timestamp, StreamId)>,
    /// Set by shutdown: no new streams.
    closed: bool,
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
    queue: mpsc::Sender<Frame>,
    /// Ends the stream with a status, ahead of anything still queued.
    end: Option<oneshot::Sender<Status>>,
    /// False until the stream's `ready` event is queued: nothing may come
    /// before it.
    active: bool,
    /// Cancelled when the stream is removed, for tasks serving it.
    ended: CancellationToken,
    /// While the stream catches up on missed messages (or waits to learn
    /// whether it will), live messages wait here instead of the queue.
    hold: Option<Hold>,
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
    room_id: RoomId,
    seq: u64,
    frame: Frame,
}

impl HeldMessage {
    fn order(&self) -> Ordered {
        Ordered {
            room_id: self.room_id,
            seq: self.seq,
        }
    }
}

/// Where a frame sits in its room's order, for frames that carry a message.
#[derive(Clone, Copy)]
struct Ordered {
    room_id: RoomId,
    seq: u64,
}

struct UserEntry {
    user: User,
    streams: Vec<StreamId>,
    rooms: HashSet<RoomId>,
    /// Whether others have been told this user is online.
    online: bool,
}

/// The receiving end of a stream: the frames the hub queued for it, ended
/// early by a status when the hub closes it. Dropping it (the client went
/// away) unregisters the stream.
pub struct OutboundStream {
    id: StreamId,
    hub: Arc<Hub>,
    queue: mpsc::Receiver<Frame>,
    /// Missed messages being caught up on; they go out before anything in
    /// `queue` but the `ready` event. `None` once the catch-up is over.
    catch_up: Option<mpsc::Receiver<Frame>>,
    end: oneshot::Receiver<Status>,
    metrics: Arc<Metrics>,
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
            return Poll::Ready(Some(Err(status)));
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
                    self.metrics
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
    pub fn new(queue_capacity: usize, limits: StreamLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            next_stream: AtomicU64::new(1),
            queue_capacity,
            limits,
            metrics,
        })
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
    /// UNAVAILABLE once the server is shutting down; RESOURCE_EXHAUSTED
    /// when the session or the user has as many streams open as allowed.
    pub fn register(
        self: &Arc<Self>,
        user: &User,
        session_id: SessionId,
        expires_at: Timestamp,
        hold: bool,
    ) -> Result<(StreamId, OutboundStream, mpsc::Sender<Frame>)> {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue_rx) = mpsc::channel(self.queue_capacity);
        let (catch_up_tx, catch_up_rx) = mpsc::channel(CATCH_UP_CAPACITY);
        let (end_tx, end_rx) = oneshot::channel();
        let mut state = self.lock();
        if state.closed {
            return Err(Error::Unavailable("server is shutting down".into()));
        }
        let StreamLimits {
            per_session,
            per_user,
        } = self.limits;
        if state.sessions.get(&session_id).map_or(0, Vec::len) >= per_session {
            self.metrics.rejected(Limit::StreamsPerSession);
            return Err(Error::ResourceExhausted(format!(
                "too many open streams for this session: at most {per_session}; close one first"
            )));
        }
        if state.users.get(&user.id).map_or(0, |u| u.streams.len()) >= per_user {
            self.metrics.rejected(Limit::StreamsPerUser);
            return Err(Error::ResourceExhausted(format!(
                "too many open streams for this user: at most {per_user} over all sessions; close one first"
            )));
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
                hold: hold.then(Hold::default),
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
            metrics: Arc::clone(&self.metrics),
            ready_sent: false,
            finished: false,
        };
        Ok((id, outbound, catch_up_tx))
    }

    /// Starts a registered stream: records the user's rooms, queues the
    /// `ready` event, and announces the user if this is its first stream.
    pub fn activate(&self, id: StreamId, rooms: &[RoomId]) {
        let mut state = self.lock();
        let Some(user_id) = state.streams.get(&id).map(|s| s.user_id) else {
            return;
        };
        for &room in rooms {
            state.rooms.entry(room).or_default().insert(user_id);
        }
        let user_entry = state
            .users
            .get_mut(&user_id)
            .expect("a stream's user is registered");
        user_entry.rooms.extend(rooms.iter().copied());
        let announce = !user_entry.online;
        user_entry.online = true;
        if announce {
            self.metrics.users_online.inc();
        }
        let user = user_entry.user.clone();
        let session_id = state.streams[&id].session_id;

        let peers = state.peers(user_id);
        let ready = Frame::from_event(Event::Ready(server_event::Ready {
            user: Some(pb::User::from(&user)),
            session_id: session_id.to_string(),
            online_users: peers
                .iter()
                .filter_map(|peer| state.users.get(peer))
                .filter(|peer| peer.online)
                .map(|peer| pb::User::from(&peer.user))
                .collect(),
        }));
        let entry = state.streams.get_mut(&id).expect("checked above");
        entry.active = true;
        let mut overflow = Vec::new();
        push(entry, id, ready, &mut overflow);
        if announce {
            state.tell_users(&peers, &presence(&user, true), None, None, &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Sends a stored message to every open stream of every member of its
    /// room; the stream that sent it (if any) gets `sent` instead.
    pub fn deliver(&self, message: &Message, origin: Option<StreamId>) {
        let frame =
            Frame::live_message(Event::Message(pb::Message::from(message)), message.sent_at);
        let order = Some(Ordered {
            room_id: message.room_id,
            seq: message.seq,
        });
        let mut state = self.lock();
        let mut overflow = Vec::new();
        if let Some(members) = state.rooms.get(&message.room_id) {
            let members: Vec<UserId> = members.iter().copied().collect();
            state.tell_users(&members, &frame, order, origin, &mut overflow);
        }
        if let Some(origin) = origin {
            if let Some(entry) = state.streams.get_mut(&origin) {
                let sent = Frame::from_event(Event::Sent(server_event::Sent {
                    client_msg_id: message.client_msg_id.clone().unwrap_or_default(),
                    message: Some(pb::Message::from(message)),
                }));
                offer(entry, origin, &sent, order, &mut overflow);
            }
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Tells the other members of a room that `user` is typing.
    pub fn typing(&self, room_id: RoomId, user: &User) {
        let frame = Frame::from_event(Event::Typing(server_event::Typing {
            room_id: room_id.to_string(),
            user: Some(pb::User::from(user)),
        }));
        let mut state = self.lock();
        let Some(members) = state.rooms.get(&room_id) else {
            return;
        };
        let others: Vec<UserId> = members.iter().copied().filter(|&m| m != user.id).collect();
        let mut overflow = Vec::new();
        state.tell_users(&others, &frame, None, None, &mut overflow);
        self.close_overflowed(&mut state, overflow);
    }

    /// Narrows a stream's hold to the rooms it catches up on: messages of
    /// other rooms (held or to come) go out live.
    pub fn catch_up_on(&self, id: StreamId, rooms: HashSet<RoomId>) {
        let mut state = self.lock();
        let mut overflow = Vec::new();
        if let Some(entry) = state.streams.get_mut(&id) {
            let held = entry.hold.as_mut().map(|hold| {
                let (keep, free) = std::mem::take(&mut hold.messages)
                    .into_iter()
                    .partition(|held| rooms.contains(&held.room_id));
                hold.messages = keep;
                hold.rooms = Some(rooms);
                free
            });
            for held in held.unwrap_or_default() {
                offer(entry, id, &held.frame, Some(held.order()), &mut overflow);
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
        let mut overflow = Vec::new();
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
            offer(entry, id, &held.frame, Some(held.order()), &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
        true
    }

    /// Queues one frame for one stream.
    pub fn send_to(&self, id: StreamId, frame: Frame) {
        let mut state = self.lock();
        let mut overflow = Vec::new();
        if let Some(entry) = state.streams.get_mut(&id) {
            push(entry, id, frame, &mut overflow);
        }
        self.close_overflowed(&mut state, overflow);
    }

    /// Records that a user joined a room; if the user is online, it and the
    /// room's online members learn of each other.
    pub fn join(&self, user_id: UserId, room_id: RoomId) {
        let mut state = self.lock();
        let Some(entry) = state.users.get_mut(&user_id) else {
            return;
        };
        if !entry.rooms.insert(room_id) {
            return;
        }
        let (online, user) = (entry.online, entry.user.clone());
        let members = state.rooms.entry(room_id).or_default();
        members.insert(user_id);
        let others: Vec<UserId> = members.iter().copied().filter(|&m| m != user_id).collect();
        if !online {
            return;
        }
        let mut overflow = Vec::new();
        state.tell_users(&others, &presence(&user, true), None, None, &mut overflow);
        let online_others: Vec<User> = others
            .iter()
            .filter_map(|m| state.users.get(m))
            .filter(|m| m.online)
            .map(|m| m.user.clone())
            .collect();
        for other in online_others {
            state.tell_users(
                &[user_id],
                &presence(&other, true),
                None,
                None,
                &mut overflow,
            );
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
    }

    /// Whether the hub knows `user_id` to be a member of `room_id`. `None`
    /// when it cannot tell (the user has no open stream here).
    pub fn is_member(&self, user_id: UserId, room_id: RoomId) -> Option<bool> {
        let state = self.lock();
        let entry = state.users.get(&user_id)?;
        entry.rooms.contains(&room_id).then_some(true)
    }

    /// Online users: every one, or the members of one room.
    pub fn online_users(&self, room_id: Option<RoomId>) -> Vec<User> {
        let state = self.lock();
        let mut users: Vec<User> = match room_id {
            None => state
                .users
                .values()
                .filter(|u| u.online)
                .map(|u| u.user.clone())
                .collect(),
            Some(room) => state
                .rooms
                .get(&room)
                .into_iter()
                .flatten()
                .filter_map(|m| state.users.get(m))
                .filter(|u| u.online)
                .map(|u| u.user.clone())
                .collect(),
        };
        users.sort_by(|a, b| a.username.cmp(&b.username));
        users
    }

    /// Ends every stream of a session with UNAUTHENTICATED.
    pub fn revoke_session(&self, session_id: SessionId) {
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
        let frame = Frame::from_event(Event::Pong(server_event::Pong { nonce: 0 }));
        let mut state = self.lock();
        let mut overflow = Vec::new();
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

    fn close_overflowed(&self, state: &mut State, overflow: Vec<StreamId>) {
        if !overflow.is_empty() {
            let closing = overflow
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
                let _ = end.send(status);
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
                let gone = user.user.clone();
                let peers = state.peers(user_id);
                let mut overflow = Vec::new();
                state.tell_users(&peers, &presence(&gone, false), None, None, &mut overflow);
                closing.extend(overflow.into_iter().map(|id| (id, Ending::TooSlow)));
            }
            if remaining.is_empty() {
                state.forget_user(user_id);
            }
        }
    }
}

impl State {
    /// The other connected users who share a room with `user_id`.
    fn peers(&self, user_id: UserId) -> Vec<UserId> {
        let Some(user) = self.users.get(&user_id) else {
            return Vec::new();
        };
        let peers: HashSet<UserId> = user
            .rooms
            .iter()
            .filter_map(|room| self.rooms.get(room))
            .flatten()
            .copied()
            .filter(|&peer| peer != user_id)
            .collect();
        peers.into_iter().collect()
    }

    /// Offers a frame to every active stream of the given users, except
    /// `skip`; full queues are collected in `overflow`.
    fn tell_users(
        &mut self,
        users: &[UserId],
        frame: &Frame,
        order: Option<Ordered>,
        skip: Option<StreamId>,
        overflow: &mut Vec<StreamId>,
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
        if let Some(members) = self.rooms.get_mut(&room_id) {
            members.remove(&user_id);
            if members.is_empty() {
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
    overflow: &mut Vec<StreamId>,
) {
    let Some(Ordered { room_id, seq }) = order else {
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
                    room_id,
                    seq,
                    frame: frame.clone(),
                });
                return;
            }
        }
    }
    if let Some(cursor) = entry.cursors.get_mut(&room_id) {
        if seq <= *cursor {
            return;
        }
        *cursor = seq;
    }
    push(entry, id, frame.clone(), overflow);
}

fn push(entry: &mut StreamEntry, id: StreamId, frame: Frame, overflow: &mut Vec<StreamId>) {
    if let Err(mpsc::error::TrySendError::Full(_)) = entry.queue.try_send(frame) {
        overflow.push(id);
    }
}

fn presence(user: &User, online: bool) -> Frame {
    Frame::from_event(Event::Presence(server_event::Presence {
        user: Some(pb::User::from(user)),
        online,
    }))
}

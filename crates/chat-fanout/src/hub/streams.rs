//! The stream registry: each open stream's queue and owner, the limits on
//! how many a session and a user may hold, the queueing of frames into
//! them, and every way a stream ends (revoked, expired, too slow, shut
//! down, gone).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use chat_domain::{RoomId, SessionId, Timestamp, User, UserId};

use super::outbound::OutboundStream;
use super::presence::LocalPresence;
use super::resume::{offer, Hold, Ordered, CATCH_UP_BYTES, CATCH_UP_CAPACITY};
use super::rooms::RoomEntry;
use super::{Hub, State};
use crate::events;
use crate::frame::{Droppable, Frame};
use crate::queue::{self, TrySendError};

/// Identifies one open stream on this node.
pub type StreamId = u64;

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

/// How many streams one client may hold open.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub per_session: usize,
    pub per_user: usize,
}

/// Why a stream is being removed.
pub(super) enum Ending {
    /// Ended by the server with this status.
    Status(Status),
    /// Its queue overflowed.
    TooSlow,
    /// The client went away: nobody to tell.
    Gone,
}

pub(super) struct StreamEntry {
    pub(super) user_id: UserId,
    session_id: SessionId,
    expires_at: Timestamp,
    pub(super) queue: queue::Sender<Frame>,
    /// Ends the stream with a status, ahead of anything still queued.
    end: Option<oneshot::Sender<Box<Status>>>,
    /// False until the stream's `ready` event is queued: nothing may come
    /// before it.
    pub(super) active: bool,
    /// Cancelled when the stream is removed, for tasks serving it.
    ended: CancellationToken,
    /// While the stream catches up on missed messages (or waits to learn
    /// whether it will), live messages wait here instead of the queue.
    /// Boxed: the hub's table holds every stream's entry, and most streams
    /// hold back messages only briefly, if at all.
    pub(super) hold: Option<Box<Hold>>,
    /// For rooms it resumed: the newest seq the stream has been given, so
    /// a message read during catch-up and then delivered live is dropped.
    pub(super) cursors: HashMap<RoomId, u64>,
}

pub(super) struct UserEntry {
    pub(super) user: User,
    pub(super) streams: Vec<StreamId>,
    pub(super) rooms: HashSet<RoomId>,
    /// Whether others have been told this user is online.
    pub(super) online: bool,
    /// Turns to catch up, made on the first catch-up.
    pub(super) catch_ups: Option<Arc<Semaphore>>,
    /// The users this one blocks: its streams hear no typing or presence
    /// of theirs. At most `chat_domain::MAX_BLOCKED_USERS`.
    pub(super) blocks: HashSet<UserId>,
    /// How many block changes reached this entry: a set read from the
    /// store before one of them is stale (`Hub::set_blocks`).
    pub(super) block_changes: u64,
}

/// What a fan-out left to do once it is over: streams to end as too slow,
/// and ephemeral frames dropped, to count.
#[derive(Default)]
pub(super) struct Overflow {
    streams: Vec<StreamId>,
    ephemeral_dropped: u64,
}

impl Overflow {
    pub(super) fn push(&mut self, id: StreamId) {
        self.streams.push(id);
    }
}

impl Hub {
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
                blocks: HashSet::new(),
                block_changes: 0,
            })
            .streams
            .push(id);
        state.sessions.entry(session_id).or_default().push(id);
        state.expiries.insert((expires_at, id));
        drop(state);
        let outbound = OutboundStream::new(id, Arc::clone(self), queue_rx, catch_up_rx, end_rx);
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
        let ready = events::ready(
            &user,
            session_id,
            &state.online_peers(user_id),
            self.heartbeat_interval,
        );
        let entry = state.streams.get_mut(&id).expect("checked above");
        entry.active = true;
        let mut overflow = Overflow::default();
        push(entry, id, ready, &mut overflow);
        if announce {
            state.tell_users_from(
                user_id,
                &peers,
                &events::presence(&user, true),
                &mut overflow,
            );
        }
        self.close_overflowed(&mut state, overflow);
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

    /// Forgets every session of a user, so their next calls are refused,
    /// and ends every stream of the user here with UNAUTHENTICATED: the
    /// operator disabled the account or reset its password, and names only
    /// the user. Counted as a revocation first, as `revoke_session` is, so
    /// that a stream registered after this took the lock rechecks its
    /// session.
    pub fn revoke_user(&self, user_id: UserId) {
        self.live_sessions.forget_user(user_id);
        let mut state = self.lock();
        let closing = state
            .users
            .get(&user_id)
            .map(|user| user.streams.clone())
            .unwrap_or_default()
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
        let frame = events::heartbeat();
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

    /// Ends the streams a fan-out overflowed, and counts what it dropped.
    pub(super) fn close_overflowed(&self, state: &mut State, overflow: Overflow) {
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
    pub(super) fn close_all_of(&self, state: &mut State, mut closing: Vec<(StreamId, Ending)>) {
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
                    state.tell_users_from(
                        user_id,
                        &peers,
                        &events::presence(&gone, false),
                        &mut overflow,
                    );
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
    /// Offers a frame to every active stream of the given users, except
    /// `skip`; full queues are collected in `overflow`.
    pub(super) fn tell_users(
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

    /// Like `tell_users`, for what `from` did that the users who block
    /// `from` do not hear: typing and presence.
    pub(super) fn tell_users_from(
        &mut self,
        from: UserId,
        users: &[UserId],
        frame: &Frame,
        overflow: &mut Overflow,
    ) {
        let hearing: Vec<UserId> = users
            .iter()
            .copied()
            .filter(|&user| !self.blocks(user, from))
            .collect();
        self.tell_users(&hearing, frame, None, None, overflow);
    }

    /// Whether `blocker`, connected here, blocks `blocked`.
    pub(super) fn blocks(&self, blocker: UserId, blocked: UserId) -> bool {
        self.users
            .get(&blocker)
            .is_some_and(|entry| entry.blocks.contains(&blocked))
    }

    fn forget_user(&mut self, user_id: UserId) {
        if let Some(user) = self.users.remove(&user_id) {
            for room in user.rooms {
                self.forget_member(room, user_id);
            }
        }
    }
}

/// Queues a frame for a stream. Typing and heartbeats are dropped instead
/// once the queue is under pressure, presence only when it is full; none of
/// them ever ends a stream: only what the client cannot do without does.
pub(super) fn push(entry: &mut StreamEntry, id: StreamId, frame: Frame, overflow: &mut Overflow) {
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

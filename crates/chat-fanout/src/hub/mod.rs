//! The hub: who is connected on this node, which rooms they are in, and the
//! fan-out of events to their open streams.
//!
//! Each open stream (ChatStream or Subscribe) has a bounded queue of encoded
//! frames. The hub pushes into queues without waiting: a stream whose queue
//! is full is ended with RESOURCE_EXHAUSTED rather than slowing the others or
//! growing without bound. Events are built and encoded once per fan-out
//! (`events`) and the bytes shared by every receiving queue.
//!
//! The hub holds one std `Mutex`, only for short sections with no `.await`:
//! every operation is bookkeeping plus `try_send`s. What it keeps under that
//! lock is split by concern, one file each:
//!
//! - `streams`: the stream registry, its limits, and how streams end;
//! - `rooms`: the rooms with members here, their order and its gaps;
//! - `presence`: who is online, here and on the other nodes;
//! - `typing`: typing, coalesced per user and room;
//! - `blocks`: who blocks whom, which typing and presence leave out;
//! - `reads`: moved read markers, to the reader's streams and as receipts;
//! - `resume`: the hold of a resuming stream, and its catch-up;
//! - `outbound`: the receiving end of a stream, which tonic polls.

mod blocks;
mod outbound;
mod presence;
mod reads;
pub mod resume;
mod rooms;
mod streams;
#[cfg(test)]
mod tests;
mod typing;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use chat_domain::{RoomId, SessionId, Timestamp, UserId};

use crate::live::LiveSessions;
use crate::metrics::FanoutMetrics;

pub use outbound::OutboundStream;
pub use presence::{LocalPresence, NodeId, OnlineUser};
pub use reads::ReadNotice;
pub use rooms::Delivery;
pub use streams::{RegisterError, StreamId, StreamLimits};
pub use typing::TYPING_INTERVAL;

use presence::RemoteUser;
use rooms::RoomEntry;
use streams::{StreamEntry, UserEntry};
use typing::TypingTimes;

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
    /// How often idle streams hear a heartbeat; `ready` tells each stream.
    heartbeat_interval: Duration,
}

/// Everything the hub keeps, under its one lock.
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

impl Hub {
    /// A hub whose streams may each have `queue_capacity` frames waiting.
    /// With `presence`, changes of who is online here are sent there (for
    /// the other nodes); when it is full, a change is dropped, and the next
    /// full account of this node's users (`local_presence`) corrects it.
    /// `heartbeat_interval` is only told to streams: the caller sends the
    /// heartbeats (`heartbeat`) on that beat.
    pub fn new(
        queue_capacity: usize,
        limits: StreamLimits,
        metrics: FanoutMetrics,
        presence: Option<mpsc::Sender<LocalPresence>>,
        session_cache_ttl: Duration,
        heartbeat_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            next_stream: AtomicU64::new(1),
            queue_capacity,
            limits,
            metrics,
            presence,
            live_sessions: LiveSessions::new(session_cache_ttl),
            heartbeat_interval,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves bookkeeping that is still
        // consistent enough to serve; never turn it into more panics.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets what no longer matters: typing older than the interval, and
    /// the room its tables kept after they shrank.
    pub fn sweep(&self) {
        let mut state = self.lock();
        state.typing.sweep(Instant::now());
        state.shrink();
    }

    /// Sessions recently found live, which calls consult before the
    /// database.
    pub fn live_sessions(&self) -> &LiveSessions {
        &self.live_sessions
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
}

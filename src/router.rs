//! Routing: how events reach the hubs holding the streams that want them.
//!
//! Services publish through `dyn Router`. `LocalRouter` hands events to this
//! node's hub; `bus::NatsRouter` (several nodes) also publishes them to every
//! other node, behind the same interface.
//!
//! Room events (messages, and every later change to a conversation) reach
//! a hub through a `Sequencer`, whichever way they come: it delivers each
//! room's events gapless and in order, reading from the store whatever a
//! hub would otherwise skip.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Room, RoomEvent, RoomId, SessionId, User, UserId};
use crate::hub::{Delivery, Hub, ReadNotice, StreamId};
use crate::metrics::Metrics;
use crate::store::Store;

/// The most missed events a gap fill delivers per room; before older
/// ones, the room's streams get `resync` and page them with History.
const FILL_LIMIT: u32 = 1000;

#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// A room event was stored: deliver it to the room's streams. `origin`
    /// is the local stream that sent a new message, which gets `sent`
    /// instead of `message`. Called in seq order for each room.
    async fn event(&self, event: &RoomEvent, origin: Option<StreamId>);

    /// `user` is typing in a room.
    async fn typing(&self, room_id: RoomId, user: &User);

    /// A member's read marker moved: tell the streams it is for, on every
    /// node.
    async fn read(&self, notice: &ReadNotice);

    /// A session was revoked: its streams must end.
    async fn revoke_session(&self, session_id: SessionId);

    /// A user became a member of a room whose newest seq was `last_seq`.
    async fn joined(&self, user_id: UserId, room_id: RoomId, last_seq: u64);

    /// A user stopped being a member of a room.
    async fn left(&self, user_id: UserId, room_id: RoomId);

    /// A user was invited to a room (the room as they see it): their
    /// streams, on every node, hear it.
    async fn invited(&self, user_id: UserId, room: &Room, by: &User);

    /// A user (in these rooms) changed their profile: the streams of
    /// everyone sharing a room with them, and their own, on every node,
    /// hear it.
    async fn profile(&self, user: &User, rooms: &[RoomId]);

    /// `blocker` blocked `blocked`, or lifted the block (`blocks`), as
    /// stored: the blocker's streams, on every node, hear no more typing or
    /// presence of theirs, or hear it again.
    async fn blocked(&self, blocker: UserId, blocked: UserId, blocks: bool);

    /// The store holds events of a room that no router carried (the admin
    /// tool logged them; every node hears of it from the control events):
    /// deliver them to this node's streams, from the store.
    async fn logged_elsewhere(&self, room_id: RoomId);
}

/// Delivers room events to a hub in each room's order, filling gaps from
/// the store. One delivery at a time, so that a fill and the events after
/// it cannot overtake each other.
///
/// Only the store moves a room on: a seq it does not hold never reaches a
/// stream, and a gap it cannot fill is skipped (streams get `resync`),
/// never waited on.
pub struct Sequencer {
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    turn: tokio::sync::Mutex<()>,
}

/// What became of a room event another node announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Delivered, or had here already, or wanted by no stream here.
    Delivered,
    /// It would skip seqs, and the store does not hold its seq: nothing of
    /// it was delivered.
    Unconfirmed,
    /// It would skip seqs, and the store could not be read: the tail check
    /// delivers it once the store can be.
    Unchecked,
}

/// The store could not be read (and that was logged).
struct Unread;

impl Sequencer {
    pub fn new(hub: Arc<Hub>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            hub,
            store,
            metrics,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Delivers a room event this node stored, after the ones before it
    /// that this hub's streams have not had.
    pub async fn deliver(&self, event: &RoomEvent, origin: Option<StreamId>) {
        let _turn = self.turn.lock().await;
        if let Delivery::Gap { after } = self.hub.deliver(event, origin) {
            tracing::debug!(room_id = %event.room_id, after, seq = event.seq, "filling a gap");
            if self.fill(event.room_id, after, event.seq).await.is_err() {
                self.hub.resync(event.room_id, event.seq);
            }
            if let Delivery::Gap { .. } = self.hub.deliver(event, origin) {
                // The store lacked what the seq promised: never hold the
                // room back for it.
                self.hub.resync(event.room_id, event.seq);
                self.hub.deliver(event, origin);
            }
        }
    }

    /// Delivers a room event another node says it stored. The one a room
    /// expects next is delivered as it came: the bus is authenticated, and
    /// a read of the store for every event would slow the fan-out. One
    /// that would skip seqs is only the occasion to deliver what the store
    /// holds after this hub's position, the store's copies; so a seq the
    /// store does not hold reaches no stream and moves no room on.
    pub async fn deliver_remote(&self, event: &RoomEvent) -> Confirmation {
        let _turn = self.turn.lock().await;
        let Delivery::Gap { after } = self.hub.deliver(event, None) else {
            return Confirmation::Delivered;
        };
        tracing::debug!(room_id = %event.room_id, after, seq = event.seq, "filling a gap");
        match self.fill(event.room_id, after, u64::MAX).await {
            Ok(newest) if newest >= event.seq => Confirmation::Delivered,
            Ok(_) => Confirmation::Unconfirmed,
            Err(Unread) => Confirmation::Unchecked,
        }
    }

    /// Delivers a room event another node says it stored at `seq`, read
    /// from the store with whatever came before it that this hub lacks
    /// (`Body::Logged`: membership and settings changes travel as their
    /// place in the log, never as content).
    pub async fn deliver_logged(&self, room_id: RoomId, seq: u64) {
        let _turn = self.turn.lock().await;
        let Some(at) = self.hub.room_position(room_id) else {
            return;
        };
        if at < seq {
            // Logged; the tail check tries again.
            let _ = self.fill(room_id, at, u64::MAX).await;
        }
    }

    /// Delivers what the store holds beyond what this hub delivered, for
    /// rooms the store is ahead in: events whose bus delivery was lost.
    pub async fn catch_up(&self, behind: &[(RoomId, u64)]) {
        let _turn = self.turn.lock().await;
        for &(room_id, after) in behind {
            // Logged; the next check tries again.
            let _ = self.fill(room_id, after, u64::MAX).await;
        }
    }

    /// Delivers the room's stored events after `after` (up to `before`,
    /// exclusive, or all there are), each with its message as it is now,
    /// and returns the newest seq read, or `after` when there was none.
    /// Seqs the store lacks are skipped: the streams are told to page them
    /// with History.
    async fn fill(&self, room_id: RoomId, after: u64, before: u64) -> Result<u64, Unread> {
        let read = self
            .store
            .room_events(room_id, after, u64::MAX, FILL_LIMIT)
            .await;
        let (missed, more) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, %room_id, "reading missed events failed");
                return Err(Unread);
            }
        };
        if let (true, Some(first)) = (more, missed.first()) {
            self.hub.resync(room_id, first.seq);
        }
        for event in missed.iter().filter(|e| e.seq < before) {
            let mut delivery = self.hub.deliver(event, None);
            if let Delivery::Gap { after } = delivery {
                tracing::warn!(
                    %room_id,
                    after,
                    seq = event.seq,
                    "the database lacks the events before this one: streams resync past them"
                );
                self.hub.resync(room_id, event.seq);
                delivery = self.hub.deliver(event, None);
            }
            if delivery == Delivery::Delivered {
                self.metrics.gap_fills.inc();
            }
        }
        Ok(missed.last().map_or(after, |last| last.seq))
    }
}

/// Routes within this node only.
pub struct LocalRouter {
    hub: Arc<Hub>,
    sequencer: Sequencer,
}

impl LocalRouter {
    pub fn new(hub: Arc<Hub>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            sequencer: Sequencer::new(Arc::clone(&hub), store, metrics),
            hub,
        }
    }
}

#[async_trait]
impl Router for LocalRouter {
    async fn event(&self, event: &RoomEvent, origin: Option<StreamId>) {
        self.sequencer.deliver(event, origin).await;
    }

    async fn typing(&self, room_id: RoomId, user: &User) {
        // Coalesced by the hub; nothing else to tell.
        let _relayed = self.hub.typing(room_id, user);
    }

    async fn read(&self, notice: &ReadNotice) {
        self.hub.read(notice);
    }

    async fn revoke_session(&self, session_id: SessionId) {
        self.hub.revoke_session(session_id);
    }

    async fn joined(&self, user_id: UserId, room_id: RoomId, last_seq: u64) {
        self.hub.join(user_id, room_id, last_seq);
    }

    async fn left(&self, user_id: UserId, room_id: RoomId) {
        self.hub.leave(user_id, room_id);
    }

    async fn invited(&self, user_id: UserId, room: &Room, by: &User) {
        self.hub
            .tell_user(user_id, &chat_fanout::events::invited(room, by));
    }

    async fn profile(&self, user: &User, rooms: &[RoomId]) {
        self.hub.profile(user, rooms);
    }

    async fn blocked(&self, blocker: UserId, blocked: UserId, blocks: bool) {
        self.hub.block_changed(blocker, blocked, blocks);
    }

    async fn logged_elsewhere(&self, room_id: RoomId) {
        self.sequencer.deliver_logged(room_id, u64::MAX).await;
    }
}

//! Routing: how events reach the hubs holding the streams that want them.
//!
//! Services publish through `dyn Router`. `LocalRouter` hands events to this
//! node's hub; a bus-backed router (several nodes) publishes them to every
//! node's hub instead, behind the same interface.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Message, RoomId, SessionId, User, UserId};
use crate::hub::{Hub, StreamId};

#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// A message was stored: deliver it to the room's streams. `origin` is
    /// the local stream that sent it, which gets `sent` instead of `message`.
    /// Called in seq order for each room.
    async fn message(&self, message: &Message, origin: Option<StreamId>);

    /// `user` is typing in a room.
    async fn typing(&self, room_id: RoomId, user: &User);

    /// A session was revoked: its streams must end.
    async fn revoke_session(&self, session_id: SessionId);

    /// A user became a member of a room.
    async fn joined(&self, user_id: UserId, room_id: RoomId);

    /// A user stopped being a member of a room.
    async fn left(&self, user_id: UserId, room_id: RoomId);
}

/// Routes within this node only.
pub struct LocalRouter {
    hub: Arc<Hub>,
}

impl LocalRouter {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Router for LocalRouter {
    async fn message(&self, message: &Message, origin: Option<StreamId>) {
        self.hub.deliver(message, origin);
    }

    async fn typing(&self, room_id: RoomId, user: &User) {
        self.hub.typing(room_id, user);
    }

    async fn revoke_session(&self, session_id: SessionId) {
        self.hub.revoke_session(session_id);
    }

    async fn joined(&self, user_id: UserId, room_id: RoomId) {
        self.hub.join(user_id, room_id);
    }

    async fn left(&self, user_id: UserId, room_id: RoomId) {
        self.hub.leave(user_id, room_id);
    }
}

//! Who is online: the users with a stream here, and what the other nodes
//! say about theirs (`remote_*`). A user is online while any node holds one
//! of its streams, and presence is announced when that changes.

use std::collections::{HashMap, HashSet};

use chat_domain::{RoomId, User, UserId};

use super::streams::Overflow;
use super::{Hub, State};
use crate::events;

/// Identifies a server node of a cluster.
pub type NodeId = uuid::Uuid;

/// A user online on a node, with its rooms.
pub type OnlineUser = (User, Vec<RoomId>);

/// A change in who is online on this node, for the other nodes.
#[derive(Clone, Debug)]
pub enum LocalPresence {
    Online { user: User, rooms: Vec<RoomId> },
    Offline { user_id: UserId },
}

/// A user online on other nodes, as they describe it.
pub(super) struct RemoteUser {
    pub(super) user: User,
    pub(super) rooms: HashSet<RoomId>,
    nodes: HashSet<NodeId>,
}

impl Hub {
    pub(super) fn publish_presence(&self, change: LocalPresence) {
        if let Some(presence) = &self.presence {
            if presence.try_send(change).is_err() {
                tracing::debug!("presence queue full: the next snapshot tells the other nodes");
            }
        }
    }

    /// The online members of these rooms, on any node, each once, by name,
    /// but for those `viewer` blocks.
    pub fn online_users(&self, viewer: UserId, rooms: &[RoomId]) -> Vec<User> {
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
        users.retain(|&user, _| !state.blocks(viewer, user));
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
}

impl State {
    /// The users online on any node who share a room with `user_id`.
    pub(super) fn online_peers(&self, user_id: UserId) -> Vec<User> {
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
        online.retain(|peer, _| !user.blocks.contains(peer));
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
        self.tell_users_from(user_id, &peers, &events::presence(&user, true), overflow);
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
        self.tell_users_from(
            user_id,
            &peers,
            &events::presence(&gone.user, false),
            overflow,
        );
    }

    pub(super) fn forget_remote_member(&mut self, room_id: RoomId, user_id: UserId) {
        if let Some(members) = self.remote_rooms.get_mut(&room_id) {
            members.remove(&user_id);
            if members.is_empty() {
                self.remote_rooms.remove(&room_id);
            }
        }
    }
}

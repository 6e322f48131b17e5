//! The bus between the nodes of a cluster: NATS core.
//!
//! Every node publishes what happens on it (stored messages, typing,
//! moved read markers, revoked sessions, joins and leaves, who is online)
//! under the cluster's subject prefix, and subscribes to everything under
//! it; `no_echo` keeps a node's own publications from coming back. PostgreSQL stays the source of
//! truth, and NATS core is at most once, so:
//!
//! - messages go through the `Sequencer`, which fills any gap in a room's
//!   seqs from the store before delivering; a check every second finds
//!   rooms whose newest messages never arrived;
//! - presence: each node sends its full list of online users every few
//!   seconds (which is also its heartbeat), besides each change; a node not
//!   heard from for `NODE_TIMEOUT` is taken as dead and its users offline;
//! - revocations: after the connection to NATS comes back, every session
//!   with a stream here is checked against the store.
//!
//! Nothing heard on the bus is believed unless it is sealed with the
//! cluster secret (`seal`), for its subject, within the last minute; the
//! rest is counted (`chat_bus_rejected_total`) and dropped. Even then the
//! bus never makes a node believe more than the store confirms: a join is
//! applied only when the store lists the member, a leave only when it no
//! longer does, a revocation ends streams only when the store has the
//! session revoked, and a message that would skip seqs delivers only the
//! store's copies (see `Sequencer::deliver_remote`).
//!
//! Publishing never waits: events go into a bounded queue that a task sends
//! on, and when it is full (NATS unreachable for long) they are dropped; the
//! rules above make up for them.

mod connect;
pub mod seal;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{Event, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::{redact_url, Config};
use crate::domain::{Room, RoomEvent, RoomId, SessionId, Timestamp, User, UserId};
use crate::hub::{Hub, LocalPresence, NodeId, OnlineUser, ReadNotice, StreamId};
use crate::metrics::{BusRejection, Metrics};
use crate::router::{Confirmation, Router, Sequencer};
use crate::store::{self, Store};
use seal::ClusterKeys;
use wire::{Body, Envelope, Malformed, Membership, Snapshot, WireRead, WireUser};

/// Events waiting to be published.
const OUTBOUND_CAPACITY: usize = 65_536;
/// How often a node sends its full list of online users.
const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(5);
/// A node not heard from for this long is taken as dead: its users go
/// offline everywhere.
const NODE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often rooms are checked for stored messages the bus never brought.
const TAIL_CHECK: Duration = Duration::from_secs(1);
/// Users per snapshot part, well under NATS's 1 MiB payload limit.
const SNAPSHOT_PART: usize = 1000;
/// How long a shutdown waits for the bus to take the last events.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// The longest wait between attempts to reach NATS again.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// At most one warning per this long about rejected bus messages: a flood
/// of forgeries is counted, not written out one line each.
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Routes to this node's hub and, through NATS, to every other node's.
pub struct NatsRouter {
    hub: Arc<Hub>,
    sequencer: Arc<Sequencer>,
    outbound: Outbound,
    prefix: String,
}

/// The queue of events to publish.
#[derive(Clone)]
struct Outbound {
    node: NodeId,
    queue: mpsc::Sender<(String, Bytes)>,
    metrics: Arc<Metrics>,
}

impl Outbound {
    /// Encodes and queues an event, once, whoever receives it.
    fn publish(&self, subject: String, body: Body) {
        let envelope = Envelope {
            node: self.node.as_bytes().to_vec(),
            body: Some(body),
        };
        let payload = Bytes::from(envelope.encode_to_vec());
        if self.queue.try_send((subject, payload)).is_err() {
            self.metrics.bus_dropped.inc();
            tracing::debug!("bus queue full: an event is dropped");
        }
    }
}

impl NatsRouter {
    /// Connects to the NATS of `config.nats_url` and starts the tasks that
    /// publish and receive. `presence` carries this node's presence
    /// changes, from its hub.
    ///
    /// # Errors
    /// When there is no cluster secret, NATS cannot be reached or refuses
    /// the credentials, or the URL is not one.
    pub async fn start(
        config: &Config,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        presence: mpsc::Receiver<LocalPresence>,
        stop: CancellationToken,
    ) -> anyhow::Result<(Arc<Self>, Vec<JoinHandle<()>>)> {
        let url = config
            .nats_url
            .as_deref()
            .context("no NATS URL to connect to")?;
        let prefix = config.nats_subject_prefix.as_str();
        let keys = ClusterKeys::from_config(config)?;
        let node = NodeId::new_v4();
        let addresses = url
            .split(',')
            .map(|address| address.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the NATS URL {}", redact_url(url)))?;
        let (events_tx, events) = mpsc::channel(64);
        let client = connect::options(config)
            .await?
            .name(format!("chat-server {node}"))
            .no_echo()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let exponent = u32::try_from(attempts.min(5)).unwrap_or(5);
                (Duration::from_millis(100) * 2u32.pow(exponent)).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let events = events_tx.clone();
                async move {
                    // Only reconnections matter, and one pending is enough.
                    let _ = events.try_send(event);
                }
            })
            .connect(addresses)
            .await
            .with_context(|| format!("connecting to NATS at {}", redact_url(url)))?;
        let subscription = client
            .subscribe(format!("{prefix}.>"))
            .await
            .context("subscribing to the cluster's subjects")?;
        tracing::info!(%node, prefix, "joined the cluster bus");

        let (queue, outgoing) = mpsc::channel(OUTBOUND_CAPACITY);
        let outbound = Outbound {
            node,
            queue,
            metrics: Arc::clone(&metrics),
        };
        let sequencer = Arc::new(Sequencer::new(
            Arc::clone(&hub),
            Arc::clone(&store),
            Arc::clone(&metrics),
        ));
        let router = Arc::new(Self {
            hub: Arc::clone(&hub),
            sequencer: Arc::clone(&sequencer),
            outbound: outbound.clone(),
            prefix: prefix.to_owned(),
        });
        let sender = tokio::spawn(send(client.clone(), keys.clone(), outgoing, stop.clone()));
        let node_task = Node {
            me: node,
            prefix: prefix.to_owned(),
            hub,
            store,
            sequencer,
            outbound,
            keys,
            rejections: Rejections::new(metrics),
            heard: HashMap::new(),
            snapshots: HashMap::new(),
            epoch: 0,
            lagging: HashMap::new(),
        };
        let receiver = tokio::spawn(node_task.run(subscription, presence, events, client, stop));
        Ok((router, vec![receiver, sender]))
    }

    fn room_subject(&self, room_id: RoomId) -> String {
        format!("{}.room.{room_id}", self.prefix)
    }

    fn node_subject(&self) -> String {
        node_subject(&self.prefix)
    }
}

fn node_subject(prefix: &str) -> String {
    format!("{prefix}.node")
}

#[async_trait]
impl Router for NatsRouter {
    async fn event(&self, event: &RoomEvent, origin: Option<StreamId>) {
        self.outbound
            .publish(self.room_subject(event.room_id), Body::from(event));
        self.sequencer.deliver(event, origin).await;
    }

    async fn typing(&self, room_id: RoomId, user: &User) {
        // The hub coalesces a user's typing per room: what it does not
        // relay here, the other nodes need not hear either.
        if !self.hub.typing(room_id, user) {
            return;
        }
        self.outbound.publish(
            self.room_subject(room_id),
            Body::Typing(wire::Typing {
                room_id: room_id.uuid().as_bytes().to_vec(),
                user_id: user.id.uuid().as_bytes().to_vec(),
                username: user.username.clone(),
            }),
        );
    }

    async fn read(&self, notice: &ReadNotice) {
        // Not stored, so nothing to confirm: like typing, a hint the next
        // one corrects if the bus loses it.
        self.outbound.publish(
            self.room_subject(notice.room_id),
            Body::Read(WireRead::from(notice)),
        );
        self.hub.read(notice);
    }

    async fn revoke_session(&self, session_id: SessionId) {
        self.outbound.publish(
            self.node_subject(),
            Body::Revoke(session_id.uuid().as_bytes().to_vec()),
        );
        self.hub.revoke_session(session_id);
    }

    async fn joined(&self, user_id: UserId, room_id: RoomId, last_seq: u64) {
        self.outbound.publish(
            self.node_subject(),
            Body::Joined(membership(user_id, room_id, last_seq)),
        );
        self.hub.join(user_id, room_id, last_seq);
    }

    async fn left(&self, user_id: UserId, room_id: RoomId) {
        self.outbound.publish(
            self.node_subject(),
            Body::Left(membership(user_id, room_id, 0)),
        );
        self.hub.leave(user_id, room_id);
    }

    async fn profile(&self, user: &User, rooms: &[RoomId]) {
        self.outbound.publish(
            self.node_subject(),
            Body::Profile(WireUser::new(user, rooms)),
        );
        self.hub.profile(user, rooms);
    }

    async fn blocked(&self, blocker: UserId, blocked: UserId, blocks: bool) {
        self.outbound.publish(
            self.node_subject(),
            Body::Blocked(wire::WireBlock {
                blocker_id: blocker.uuid().as_bytes().to_vec(),
                blocked_id: blocked.uuid().as_bytes().to_vec(),
                blocks,
            }),
        );
        self.hub.block_changed(blocker, blocked, blocks);
    }

    async fn invited(&self, user_id: UserId, room: &Room, by: &User) {
        let frame = chat_fanout::events::invited(room, by);
        self.outbound.publish(
            self.node_subject(),
            Body::ToUser(wire::WireToUser {
                user_id: user_id.uuid().as_bytes().to_vec(),
                event: frame.bytes().to_vec(),
            }),
        );
        self.hub.tell_user(user_id, &frame);
    }

    async fn logged_elsewhere(&self, room_id: RoomId) {
        // Every node hears of it from the control events: nothing to say.
        self.sequencer.deliver_logged(room_id, u64::MAX).await;
    }
}

fn membership(user_id: UserId, room_id: RoomId, last_seq: u64) -> Membership {
    Membership {
        user_id: user_id.uuid().as_bytes().to_vec(),
        room_id: room_id.uuid().as_bytes().to_vec(),
        last_seq,
    }
}

/// Seals and publishes queued events in order. While NATS is unreachable
/// the client buffers what it can; the queue in front of it bounds the
/// rest. Once `stop` is cancelled, what is queued gets a moment to go out.
/// Events are sealed as they leave the queue, so that one that waited in
/// it is not taken for a replay.
async fn send(
    client: async_nats::Client,
    keys: ClusterKeys,
    mut outgoing: mpsc::Receiver<(String, Bytes)>,
    stop: CancellationToken,
) {
    let publish = |(subject, envelope): (String, Bytes)| {
        let client = client.clone();
        let payload = keys.seal(&subject, envelope);
        async move {
            if let Err(error) = client.publish(subject, payload).await {
                tracing::debug!(%error, "publishing to the bus failed");
            }
        }
    };
    loop {
        tokio::select! {
            next = outgoing.recv() => match next {
                Some(event) => publish(event).await,
                None => break,
            },
            () = stop.cancelled() => break,
        }
    }
    let rest = async {
        while let Ok(event) = outgoing.try_recv() {
            publish(event).await;
        }
        client.flush().await
    };
    if !matches!(tokio::time::timeout(SHUTDOWN_FLUSH, rest).await, Ok(Ok(()))) {
        tracing::debug!("the bus could not take the last events before shutdown");
    }
}

/// This node's side of the cluster: applies what the others say, and tells
/// them who is online here.
struct Node {
    me: NodeId,
    prefix: String,
    hub: Arc<Hub>,
    store: Arc<dyn Store>,
    sequencer: Arc<Sequencer>,
    outbound: Outbound,
    keys: ClusterKeys,
    rejections: Rejections,
    /// When each other node was last heard from.
    heard: HashMap<NodeId, Instant>,
    /// Snapshots being received, by node: their epoch and users so far.
    snapshots: HashMap<NodeId, (u64, Vec<OnlineUser>)>,
    /// Counts this node's snapshots.
    epoch: u64,
    /// Rooms the store was ahead in at the last tail check, and its seq.
    lagging: HashMap<RoomId, u64>,
}

impl Node {
    async fn run(
        mut self,
        mut subscription: async_nats::Subscriber,
        mut presence: mpsc::Receiver<LocalPresence>,
        mut events: mpsc::Receiver<Event>,
        client: async_nats::Client,
        stop: CancellationToken,
    ) {
        let mut snapshot = tokio::time::interval(SNAPSHOT_INTERVAL);
        let mut tail = tokio::time::interval(TAIL_CHECK);
        for timer in [&mut snapshot, &mut tail] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                received = subscription.next() => {
                    let Some(received) = received else { break };
                    self.receive(received).await;
                }
                Some(change) = presence.recv() => self.tell_presence(change),
                _ = snapshot.tick() => {
                    self.send_snapshot(&mut presence);
                    self.forget_silent_nodes();
                }
                _ = tail.tick() => self.check_tails().await,
                Some(event) = events.recv() => self.on_connection_event(event),
                () = stop.cancelled() => break,
            }
        }
        let goodbye = Envelope {
            node: self.me.as_bytes().to_vec(),
            body: Some(Body::Goodbye(true)),
        };
        let subject = node_subject(&self.prefix);
        let sealed = self.keys.seal(&subject, goodbye.encode_to_vec().into());
        let said = async {
            client.publish(subject, sealed).await?;
            client.flush().await?;
            Ok::<_, async_nats::Error>(())
        };
        if !matches!(tokio::time::timeout(SHUTDOWN_FLUSH, said).await, Ok(Ok(()))) {
            tracing::debug!("could not say goodbye to the cluster; it will notice the silence");
        }
    }

    /// Acts on a bus message if it is authentic, and counts it if not.
    async fn receive(&mut self, received: async_nats::Message) {
        let subject = received.subject.as_str();
        let envelope = match self.keys.open(subject, received.payload, Timestamp::now()) {
            Ok(envelope) => envelope,
            Err(unopened) => {
                self.rejections.count(unopened.reason(), subject, &unopened);
                return;
            }
        };
        match self.apply(&envelope).await {
            Ok(Applied::Yes) => {}
            Ok(Applied::Unconfirmed(what)) => {
                self.rejections
                    .count(BusRejection::Unconfirmed, subject, &what);
            }
            Err(malformed) => {
                self.rejections
                    .count(BusRejection::Malformed, subject, &malformed);
            }
        }
    }

    /// Acts on an authentic envelope, as far as the store confirms it.
    async fn apply(&mut self, envelope: &[u8]) -> Result<Applied, Malformed> {
        let envelope = Envelope::decode(envelope)?;
        let node = wire::node_id(&envelope.node)?;
        if node == self.me {
            return Ok(Applied::Yes);
        }
        self.heard.insert(node, Instant::now());
        match envelope.body.ok_or(Malformed::Empty)? {
            body @ (Body::Message(_) | Body::Edited(_) | Body::Deleted(_) | Body::Reaction(_)) => {
                let event = RoomEvent::try_from(body)?;
                match self.sequencer.deliver_remote(&event).await {
                    Confirmation::Delivered | Confirmation::Unchecked => {}
                    Confirmation::Unconfirmed => {
                        return Ok(Applied::Unconfirmed(
                            "a room event whose seq the database does not hold",
                        ))
                    }
                }
            }
            Body::Typing(typing) => {
                let user = User::named(wire::user_id(&typing.user_id)?, typing.username);
                // Coalesced by the hub; nothing to tell further.
                let _relayed = self.hub.typing(wire::room_id(&typing.room_id)?, &user);
            }
            Body::Read(read) => self.hub.read(&ReadNotice::try_from(read)?),
            Body::Logged(logged) => {
                self.sequencer
                    .deliver_logged(wire::room_id(&logged.room_id)?, logged.seq)
                    .await;
            }
            Body::Profile(user) => {
                let (user, rooms) = user.parse()?;
                self.hub.profile(&user, &rooms);
            }
            Body::ToUser(to_user) => {
                let event = crate::pb::ServerEvent::decode(to_user.event.as_slice())?;
                let event = event.event.ok_or(Malformed::Empty)?;
                self.hub.tell_user(
                    wire::user_id(&to_user.user_id)?,
                    &chat_fanout::events::relayed(event),
                );
            }
            Body::Blocked(block) => {
                let blocker = wire::user_id(&block.blocker_id)?;
                let blocked = wire::user_id(&block.blocked_id)?;
                match self.store.blocks(blocker, blocked).await {
                    Ok(blocks) => {
                        self.hub.block_changed(blocker, blocked, blocks);
                        if blocks != block.blocks {
                            return Ok(Applied::Unconfirmed(
                                "a block or unblock the database does not hold",
                            ));
                        }
                    }
                    Err(error) => {
                        // The blocker's next stream reads its blocks whole.
                        tracing::warn!(%error, "reading a block another node announced");
                    }
                }
            }
            Body::Revoke(session) => return Ok(self.revoke(wire::session_id(&session)?).await),
            Body::Joined(joined) => {
                return Ok(self
                    .join(
                        wire::user_id(&joined.user_id)?,
                        wire::room_id(&joined.room_id)?,
                        joined.last_seq,
                    )
                    .await)
            }
            Body::Left(left) => {
                return Ok(self
                    .leave(wire::user_id(&left.user_id)?, wire::room_id(&left.room_id)?)
                    .await)
            }
            Body::Online(user) => {
                let (user, rooms) = user.parse()?;
                self.hub.remote_online(node, user, rooms);
            }
            Body::Offline(user_id) => self.hub.remote_offline(node, wire::user_id(&user_id)?),
            Body::Snapshot(part) => self.receive_snapshot(node, part)?,
            Body::Goodbye(_) => {
                tracing::info!(%node, "a node left the cluster");
                self.heard.remove(&node);
                self.snapshots.remove(&node);
                self.hub.remote_node_gone(node);
            }
        }
        Ok(Applied::Yes)
    }

    /// A join, if the store lists the member: the room's streams here
    /// start from the older of the two newest seqs (the store's and the
    /// envelope's), so the bus cannot move a room past what is stored.
    /// Read in line, so that the room's next messages find the member.
    async fn join(&self, user_id: UserId, room_id: RoomId, said_last_seq: u64) -> Applied {
        match self.store.room_position(room_id, user_id).await {
            Ok((store::Membership::Member, last_seq)) => {
                self.hub.join(user_id, room_id, said_last_seq.min(last_seq));
                Applied::Yes
            }
            Ok(_) => Applied::Unconfirmed("a join the database does not list"),
            Err(error) => {
                // Nothing is let in unconfirmed; the member's next stream
                // reads its rooms from the store.
                tracing::warn!(%error, %user_id, %room_id, "could not confirm a join from the bus: ignored");
                Applied::Yes
            }
        }
    }

    /// A leave, unless the store still lists the member. When the store
    /// cannot say, the leave is applied: it only takes away.
    async fn leave(&self, user_id: UserId, room_id: RoomId) -> Applied {
        match self.store.membership(room_id, user_id).await {
            Ok(store::Membership::Member) => {
                Applied::Unconfirmed("a leave of someone the database lists as a member")
            }
            Ok(_) => {
                self.hub.leave(user_id, room_id);
                Applied::Yes
            }
            Err(error) => {
                tracing::warn!(%error, %user_id, %room_id, "could not confirm a leave from the bus: applied");
                self.hub.leave(user_id, room_id);
                Applied::Yes
            }
        }
    }

    /// A revocation. The session is forgotten as live either way (its next
    /// call asks the store); its streams here end if the store has it
    /// revoked, or cannot say.
    async fn revoke(&self, session_id: SessionId) -> Applied {
        let user_id = self
            .hub
            .open_sessions()
            .into_iter()
            .find_map(|(session, user)| (session == session_id).then_some(user));
        let Some(user_id) = user_id else {
            self.hub.live_sessions().revoke(session_id);
            return Applied::Yes;
        };
        match self
            .store
            .live_session(session_id, user_id, Timestamp::now())
            .await
        {
            Ok(Some(_)) => Applied::Unconfirmed("a revocation of a session the database has live"),
            Ok(None) => {
                self.hub.revoke_session(session_id);
                Applied::Yes
            }
            Err(error) => {
                tracing::warn!(%error, %session_id, "could not confirm a revocation from the bus: applied");
                self.hub.revoke_session(session_id);
                Applied::Yes
            }
        }
    }

    /// Collects a snapshot's parts; the last one replaces what the node
    /// said before. A part out of order drops the snapshot: the next one
    /// comes soon.
    fn receive_snapshot(&mut self, node: NodeId, part: Snapshot) -> Result<(), Malformed> {
        let users = part
            .users
            .into_iter()
            .map(WireUser::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if part.part == 0 {
            self.snapshots.insert(node, (part.epoch, Vec::new()));
        }
        let Some((epoch, collected)) = self.snapshots.get_mut(&node) else {
            return Ok(());
        };
        let expected = u32::try_from(collected.len().div_ceil(SNAPSHOT_PART)).unwrap_or(u32::MAX);
        if *epoch != part.epoch || part.part != expected {
            self.snapshots.remove(&node);
            return Ok(());
        }
        collected.extend(users);
        if part.last {
            let (_, users) = self.snapshots.remove(&node).expect("looked up above");
            self.hub.remote_snapshot(node, users);
        }
        Ok(())
    }

    fn tell_presence(&self, change: LocalPresence) {
        let body = match change {
            LocalPresence::Online { user, rooms } => Body::Online(WireUser::new(&user, &rooms)),
            LocalPresence::Offline { user_id } => Body::Offline(user_id.uuid().as_bytes().to_vec()),
        };
        self.outbound.publish(node_subject(&self.prefix), body);
    }

    /// Sends the changes still queued, then the full list of users online
    /// here, in parts.
    fn send_snapshot(&mut self, presence: &mut mpsc::Receiver<LocalPresence>) {
        while let Ok(change) = presence.try_recv() {
            self.tell_presence(change);
        }
        self.epoch += 1;
        let users = self.hub.local_presence();
        let parts: Vec<&[OnlineUser]> = if users.is_empty() {
            vec![&[]]
        } else {
            users.chunks(SNAPSHOT_PART).collect()
        };
        let count = parts.len();
        for (index, part) in parts.into_iter().enumerate() {
            self.outbound.publish(
                node_subject(&self.prefix),
                Body::Snapshot(Snapshot {
                    epoch: self.epoch,
                    part: u32::try_from(index).unwrap_or(u32::MAX),
                    last: index + 1 == count,
                    users: part
                        .iter()
                        .map(|(user, rooms)| WireUser::new(user, rooms))
                        .collect(),
                }),
            );
        }
    }

    /// Takes nodes silent for too long as dead.
    fn forget_silent_nodes(&mut self) {
        let now = Instant::now();
        let silent: Vec<NodeId> = self
            .heard
            .iter()
            .filter(|(_, &at)| now.duration_since(at) > NODE_TIMEOUT)
            .map(|(&node, _)| node)
            .collect();
        for node in silent {
            tracing::warn!(%node, "a node went silent: its users are offline");
            self.heard.remove(&node);
            self.snapshots.remove(&node);
            self.hub.remote_node_gone(node);
        }
    }

    /// Delivers messages the store has had for a whole check interval but
    /// the bus never brought (the latest of a room, lost, get no later
    /// message to reveal the gap).
    async fn check_tails(&mut self) {
        let delivered: HashMap<RoomId, u64> = self.hub.room_positions().into_iter().collect();
        if delivered.is_empty() {
            self.lagging.clear();
            return;
        }
        let rooms: Vec<RoomId> = delivered.keys().copied().collect();
        let stored = match self.store.last_seqs(&rooms).await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "checking rooms for missed messages failed");
                return;
            }
        };
        let behind: Vec<(RoomId, u64)> = self
            .lagging
            .iter()
            .filter_map(|(room, &seq)| {
                let at = *delivered.get(room)?;
                (at < seq).then_some((*room, at))
            })
            .collect();
        self.lagging = stored
            .into_iter()
            .filter(|(room, seq)| delivered.get(room).is_some_and(|at| at < seq))
            .collect();
        if !behind.is_empty() {
            tracing::debug!(rooms = behind.len(), "delivering messages the bus lost");
            self.sequencer.catch_up(&behind).await;
        }
    }

    fn on_connection_event(&self, event: Event) {
        match event {
            Event::Connected | Event::SlowConsumer(_) => {
                tracing::info!(%event, "bus: checking sessions for revocations it may have missed");
                tokio::spawn(sweep_revoked(
                    Arc::clone(&self.hub),
                    Arc::clone(&self.store),
                ));
            }
            Event::Disconnected => tracing::warn!("bus: disconnected from NATS; reconnecting"),
            other => tracing::debug!(event = %other, "bus event"),
        }
    }
}

/// Whether an authentic envelope was acted on.
enum Applied {
    /// Acted on (or nothing to do here).
    Yes,
    /// The store does not confirm what it says.
    Unconfirmed(&'static str),
}

/// Counts the bus messages not acted on, and says so in the log without
/// letting a flood of them flood it.
struct Rejections {
    metrics: Arc<Metrics>,
    /// No warning before then; only counting.
    quiet_until: Option<Instant>,
    /// Rejections since the last warning.
    unlogged: u64,
}

impl Rejections {
    fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            quiet_until: None,
            unlogged: 0,
        }
    }

    fn count(&mut self, reason: BusRejection, subject: &str, why: &dyn std::fmt::Display) {
        self.metrics.bus_rejected(reason);
        tracing::debug!(reason = reason.as_str(), subject, %why, "rejected a bus message");
        let now = Instant::now();
        if self.quiet_until.is_some_and(|until| now < until) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            reason = reason.as_str(),
            subject,
            %why,
            rejected_since_last_warning = self.unlogged,
            "rejected a bus message; more within {REJECTION_LOG_INTERVAL:?} are only counted \
             (chat_bus_rejected_total)"
        );
        self.quiet_until = Some(now + REJECTION_LOG_INTERVAL);
        self.unlogged = 0;
    }
}

/// Ends the streams of sessions revoked while revocations could not reach
/// this node.
async fn sweep_revoked(hub: Arc<Hub>, store: Arc<dyn Store>) {
    let now = Timestamp::now();
    for (session_id, user_id) in hub.open_sessions() {
        match store.live_session(session_id, user_id, now).await {
            Ok(Some(_)) => {}
            Ok(None) => hub.revoke_session(session_id),
            Err(error) => {
                tracing::warn!(%error, "checking sessions for revocations failed");
                return;
            }
        }
    }
}

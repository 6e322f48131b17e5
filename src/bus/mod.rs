//! The bus between the nodes of a cluster: NATS core.
//!
//! Every node publishes what happens on it (stored messages, typing,
//! revoked sessions, joins and leaves, who is online) under the cluster's
//! subject prefix, and subscribes to everything under it; `no_echo` keeps a
//! node's own publications from coming back. PostgreSQL stays the source of
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
//! Publishing never waits: events go into a bounded queue that a task sends
//! on, and when it is full (NATS unreachable for long) they are dropped; the
//! rules above make up for them.

mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, Event, ServerAddr};
use async_trait::async_trait;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::config::redact_url;
use crate::domain::{Message, RoomId, SessionId, Timestamp, User, UserId};
use crate::hub::{Hub, LocalPresence, NodeId, OnlineUser, StreamId};
use crate::metrics::Metrics;
use crate::router::{Router, Sequencer};
use crate::store::Store;
use wire::{Body, Envelope, Malformed, Membership, Snapshot, WireMessage, WireUser};

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
    /// Connects to NATS and starts the tasks that publish and receive.
    /// `presence` carries this node's presence changes, from its hub.
    ///
    /// # Errors
    /// When NATS cannot be reached or the URL is not one.
    pub async fn start(
        url: &str,
        prefix: &str,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        presence: mpsc::Receiver<LocalPresence>,
        stop: CancellationToken,
    ) -> anyhow::Result<(Arc<Self>, Vec<JoinHandle<()>>)> {
        let node = NodeId::new_v4();
        let addresses = url
            .split(',')
            .map(|address| address.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the NATS URL {}", redact_url(url)))?;
        let (events_tx, events) = mpsc::channel(64);
        let client = ConnectOptions::new()
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
            metrics,
        ));
        let router = Arc::new(Self {
            hub: Arc::clone(&hub),
            sequencer: Arc::clone(&sequencer),
            outbound: outbound.clone(),
            prefix: prefix.to_owned(),
        });
        let sender = tokio::spawn(send(client.clone(), outgoing, stop.clone()));
        let node_task = Node {
            me: node,
            prefix: prefix.to_owned(),
            hub,
            store,
            sequencer,
            outbound,
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
    async fn message(&self, message: &Message, origin: Option<StreamId>) {
        self.outbound.publish(
            self.room_subject(message.room_id),
            Body::Message(WireMessage::from(message)),
        );
        self.sequencer.deliver(message, origin).await;
    }

    async fn typing(&self, room_id: RoomId, user: &User) {
        self.outbound.publish(
            self.room_subject(room_id),
            Body::Typing(wire::Typing {
                room_id: room_id.uuid().as_bytes().to_vec(),
                user_id: user.id.uuid().as_bytes().to_vec(),
                username: user.username.clone(),
            }),
        );
        self.hub.typing(room_id, user);
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
}

fn membership(user_id: UserId, room_id: RoomId, last_seq: u64) -> Membership {
    Membership {
        user_id: user_id.uuid().as_bytes().to_vec(),
        room_id: room_id.uuid().as_bytes().to_vec(),
        last_seq,
    }
}

/// Publishes queued events in order. While NATS is unreachable the client
/// buffers what it can; the queue in front of it bounds the rest. Once
/// `stop` is cancelled, what is queued gets a moment to go out.
async fn send(
    client: async_nats::Client,
    mut outgoing: mpsc::Receiver<(String, Bytes)>,
    stop: CancellationToken,
) {
    let publish = |(subject, payload): (String, Bytes)| {
        let client = client.clone();
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
                    if let Err(error) = self.receive(&received.payload).await {
                        tracing::debug!(%error, subject = %received.subject, "dropped a bus message");
                    }
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
        let said = async {
            client
                .publish(node_subject(&self.prefix), goodbye.encode_to_vec().into())
                .await?;
            client.flush().await?;
            Ok::<_, async_nats::Error>(())
        };
        if !matches!(tokio::time::timeout(SHUTDOWN_FLUSH, said).await, Ok(Ok(()))) {
            tracing::debug!("could not say goodbye to the cluster; it will notice the silence");
        }
    }

    async fn receive(&mut self, payload: &[u8]) -> Result<(), Malformed> {
        let envelope = Envelope::decode(payload)?;
        let node = wire::node_id(&envelope.node)?;
        if node == self.me {
            return Ok(());
        }
        self.heard.insert(node, Instant::now());
        match envelope.body.ok_or(Malformed::Empty)? {
            Body::Message(message) => {
                let message = Message::try_from(message)?;
                self.sequencer.deliver(&message, None).await;
            }
            Body::Typing(typing) => {
                let user = User {
                    id: wire::user_id(&typing.user_id)?,
                    username: typing.username,
                };
                self.hub.typing(wire::room_id(&typing.room_id)?, &user);
            }
            Body::Revoke(session) => self.hub.revoke_session(wire::session_id(&session)?),
            Body::Joined(joined) => self.hub.join(
                wire::user_id(&joined.user_id)?,
                wire::room_id(&joined.room_id)?,
                joined.last_seq,
            ),
            Body::Left(left) => self
                .hub
                .leave(wire::user_id(&left.user_id)?, wire::room_id(&left.room_id)?),
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
        Ok(())
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

//! Several nodes, one cluster: three real `chat-server` processes sharing a
//! fresh PostgreSQL database and a NATS subject prefix of their own, spoken
//! to by real gRPC clients.
//!
//! PostgreSQL comes from `CHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), NATS from
//! `CHAT_TEST_NATS_URL` (default `nats://127.0.0.1:4222`); the NATS restart
//! test starts a `nats-server` of its own (`CHAT_TEST_NATS_SERVER`, default
//! `nats-server` on the PATH or in /usr/sbin). Where a service is missing
//! the tests say so loudly and skip, except under `CI=true`, where they fail.
//!
//! The tests run one at a time: each holds three servers, and the timing
//! promises (a revoked stream ends within 1 s) are checked as such.
//!
//! Every node is given the cluster secret (`--cluster-secret-file`); the
//! forgery tests publish on the cluster's subjects with a NATS client of
//! their own, as anyone who can reach the NATS server could.

#[allow(dead_code)]
#[path = "api/child.rs"]
mod child;

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, server_event::Event};
use chat_client::{AuthorizedChat, BearerToken, Cursors, ResumingSubscription};
use chat_server::bus::seal::ClusterKeys;
use chat_server::bus::wire::{
    Body, Envelope, Membership, Typing, WireBlock, WireMessage, WireRead, WireUser,
};
use chat_server::domain::Timestamp;
use prost::Message as _;
use sqlx::{Connection as _, Executor as _, PgConnection};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::time::{timeout, Instant};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use child::ChildServer;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const PASSWORD: &str = "correct horse battery";
/// How long an event that should come may take.
const PATIENCE: Duration = Duration::from_secs(10);

/// One cluster test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Fails under CI; elsewhere says loudly that the test did not run.
fn skip(why: &str) {
    assert!(!under_ci(), "{why}: under CI=true this is a failure");
    // Straight to stderr: the harness swallows the output of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! cluster test SKIPPED: {why}.\n\
         !!!!!!!! Start PostgreSQL and NATS (see the README); CI=true fails here.\n"
    );
}

/// Three nodes (or as many as asked) on one database and one NATS prefix.
struct Cluster {
    nodes: Vec<Option<ChildServer>>,
    addrs: Vec<SocketAddr>,
    /// Where each node serves its metrics.
    metrics: Vec<SocketAddr>,
    nats_url: String,
    prefix: String,
    database_url: String,
    /// The cluster secret, in the file every node is given.
    secret: String,
    secret_file: tempfile::NamedTempFile,
    /// Given to every node besides the usual ones.
    extra_args: Vec<String>,
    /// Dropped with the cluster.
    _database: Database,
}

/// A database of the test's own, dropped at the end even if it fails.
struct Database {
    admin_url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

impl Cluster {
    /// Starts `size` nodes on the machine's NATS, or returns `None` (after
    /// saying why) when PostgreSQL or NATS is unreachable outside CI.
    async fn start(size: usize) -> Option<Self> {
        let nats_url =
            std::env::var("CHAT_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.into());
        if let Err(e) = reach_nats(&nats_url).await {
            skip(&format!("NATS at {nats_url} is unreachable ({e})"));
            return None;
        }
        Self::start_on(size, nats_url).await
    }

    async fn start_on(size: usize, nats_url: String) -> Option<Self> {
        Self::start_with(size, nats_url, &[]).await
    }

    /// Starts `size` nodes on this NATS, each given `extra_args` too.
    async fn start_with(size: usize, nats_url: String, extra_args: &[&str]) -> Option<Self> {
        let admin_url =
            std::env::var("CHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(admin) => admin,
            Err(e) => {
                skip(&format!("PostgreSQL at {admin_url} is unreachable ({e})"));
                return None;
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("chat_test_{id}");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("creating the test database");
        let database = Database {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let secret = format!("cluster secret {id}");
        let mut secret_file = tempfile::NamedTempFile::new().expect("a secret file");
        writeln!(secret_file, "{secret}").expect("writing the secret file");
        let mut cluster = Self {
            nodes: Vec::new(),
            addrs: Vec::new(),
            metrics: Vec::new(),
            nats_url,
            prefix: format!("chat_test_{id}"),
            database_url: with_database(&admin_url, &name),
            secret,
            secret_file,
            extra_args: extra_args.iter().map(|&arg| arg.to_owned()).collect(),
            _database: database,
        };
        for _ in 0..size {
            let metrics = free_address();
            let node = cluster.start_node(metrics).await;
            cluster.addrs.push(node.addr);
            cluster.metrics.push(metrics);
            cluster.nodes.push(Some(node));
        }
        Some(cluster)
    }

    async fn start_node(&self, metrics: SocketAddr) -> ChildServer {
        let metrics = metrics.to_string();
        let secret_file = self.secret_file.path().display().to_string();
        let mut args = vec![
            "--database-url",
            &self.database_url,
            "--nats-url",
            &self.nats_url,
            "--nats-subject-prefix",
            &self.prefix,
            "--cluster-secret-file",
            &secret_file,
            // Shared by the nodes, so that a token from one works on all.
            "--jwt-secret",
            "the cluster tests' signing secret",
            "--metrics-listen",
            &metrics,
            "--database-pool-size",
            "4",
            // A session found live stays trusted for the whole test
            // unless a revocation reaches the node: calls refused after
            // one on another node prove that revocations cross nodes.
            "--session-cache-ttl",
            "1h",
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        // The first `address=` logged must be the gRPC one: the metrics
        // endpoint's is not logged.
        ChildServer::start_with_args(&args, "info,chat_server::metrics=warn").await
    }

    /// The value of a metric (name and labels as exposed) on a node; 0
    /// while it was never counted.
    async fn metric(&self, node: usize, series: &str) -> f64 {
        let mut connection = tokio::net::TcpStream::connect(self.metrics[node])
            .await
            .expect("connecting to the metrics endpoint");
        connection
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
            .await
            .expect("asking for metrics");
        let mut response = String::new();
        connection
            .read_to_string(&mut response)
            .await
            .expect("reading metrics");
        response
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    /// Waits until a node's metric reaches `at_least`.
    async fn until_metric(&self, node: usize, series: &str, at_least: f64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.metric(node, series).await;
            if value >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node}: {series} is {value}, not at least {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn channel(&self, node: usize) -> Channel {
        Channel::from_shared(format!("http://{}", self.addrs[node]))
            .unwrap()
            .connect()
            .await
            .expect("connecting to a node")
    }

    /// Registers a user through `node` and logs it in there.
    async fn user(&self, node: usize, name: &str) -> User {
        let mut auth = AuthServiceClient::new(self.channel(node).await);
        auth.register(pb::RegisterRequest {
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("register");
        self.login(node, name).await
    }

    /// A new session of an existing user, logged in through `node`.
    async fn login(&self, node: usize, name: &str) -> User {
        let mut auth = AuthServiceClient::new(self.channel(node).await);
        let login = auth
            .login(pb::LoginRequest {
                username: name.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("login")
            .into_inner();
        User {
            user: login.user.clone().unwrap(),
            token: login.access_token,
            session_id: login.session_id,
        }
    }

    /// The user's ChatService client on a node.
    async fn chat(&self, node: usize, user: &User) -> AuthorizedChat {
        ChatServiceClient::with_interceptor(self.channel(node).await, user.bearer())
    }

    /// Opens a Subscribe stream on a node and returns it after `ready`.
    async fn subscribe(&self, node: usize, user: &User) -> (Events, pb::server_event::Ready) {
        let stream = self
            .chat(node, user)
            .await
            .subscribe(pb::SubscribeRequest::default())
            .await
            .expect("subscribe")
            .into_inner();
        let mut events = Events(stream);
        let ready = events
            .wait_for(|event| match event {
                Event::Ready(ready) => Some(ready.clone()),
                _ => None,
            })
            .await;
        (events, ready)
    }

    /// Kills a node with SIGKILL: no goodbye, no flush.
    async fn kill(&mut self, node: usize) {
        let mut server = self.nodes[node].take().expect("a running node");
        server.child.kill().await.expect("SIGKILL");
    }

    /// Waits until `node` lists exactly these usernames as online.
    async fn until_online_on(&self, node: usize, viewer: &User, expected: &[&str]) {
        let mut chat = self.chat(node, viewer).await;
        let expected: BTreeSet<String> = expected.iter().map(|&name| name.to_owned()).collect();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let online: BTreeSet<String> = chat
                .list_online_users(pb::ListOnlineUsersRequest::default())
                .await
                .expect("list online users")
                .into_inner()
                .users
                .into_iter()
                .map(|user| user.username)
                .collect();
            if online == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} lists {online:?} online, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A local address free a moment ago.
fn free_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// The URL with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{database}")
}

async fn reach_nats(url: &str) -> std::io::Result<()> {
    let address = url.trim_start_matches("nats://");
    timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .map_err(|_| std::io::Error::other("timed out"))?
    .map(drop)
}

/// A logged-in session.
struct User {
    user: pb::User,
    token: String,
    session_id: String,
}

impl User {
    fn bearer(&self) -> BearerToken {
        BearerToken::new(&self.token).unwrap()
    }

    fn name(&self) -> &str {
        &self.user.username
    }
}

/// A stream of server events.
struct Events(Streaming<pb::ServerEvent>);

impl Events {
    /// The first event `pick` takes, skipping the others; fails after
    /// `PATIENCE`.
    async fn wait_for<T>(&mut self, pick: impl FnMut(&Event) -> Option<T>) -> T {
        self.wait_longer_for(PATIENCE, pick).await
    }

    async fn wait_longer_for<T>(
        &mut self,
        patience: Duration,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.0.message()).await {
                Ok(Ok(Some(pb::ServerEvent { event: Some(event) }))) => {
                    if let Some(picked) = pick(&event) {
                        return picked;
                    }
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(status)) => panic!("the stream failed: {status:?}"),
                Err(_) => panic!("nothing expected came within {patience:?}"),
            }
        }
    }

    /// The next `count` messages, skipping other events.
    async fn messages(&mut self, count: usize, patience: Duration) -> Vec<pb::Message> {
        let mut messages = Vec::with_capacity(count);
        let deadline = Instant::now() + patience;
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} of {count} messages came within {patience:?}",
                messages.len()
            );
            messages.push(
                self.wait_longer_for(left, |event| match event {
                    Event::Message(message) => Some(message.clone()),
                    _ => None,
                })
                .await,
            );
        }
        messages
    }
}

fn presence_of(event: &Event, username: &str, online: bool) -> Option<()> {
    match event {
        Event::Presence(presence)
            if presence.online == online
                && presence
                    .user
                    .as_ref()
                    .is_some_and(|u| u.username == username) =>
        {
            Some(())
        }
        _ => None,
    }
}

async fn create_room(chat: &mut AuthorizedChat, name: &str) -> pb::Room {
    chat.create_room(pb::CreateRoomRequest {
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("create room")
    .into_inner()
    .room
    .unwrap()
}

async fn join(chat: &mut AuthorizedChat, room: &pb::Room) {
    chat.join_room(pb::JoinRoomRequest {
        room_id: room.id.clone(),
    })
    .await
    .expect("join room");
}

async fn send(chat: &mut AuthorizedChat, room: &pb::Room, text: &str, key: &str) -> pb::Message {
    chat.send_message(pb::SendMessageRequest {
        room_id: room.id.clone(),
        text: text.into(),
        client_msg_id: key.into(),
        ..Default::default()
    })
    .await
    .expect("send message")
    .into_inner()
    .message
    .unwrap()
}

/// Asserts a room's messages, as one stream got them, are the `n` seqs
/// from `first` on, once each and in order (the seqs before `first` are
/// the room's joins).
#[track_caller]
fn assert_gapless(messages: &[pb::Message], first: u64, n: u64) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (first..first + n).collect();
    assert_eq!(seqs, expected, "not every seq once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_on_different_nodes_chat_and_see_presence_and_typing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let carol = cluster.user(2, "carol").await;
    let (mut alice_chat, mut bob_chat, mut carol_chat) = (
        cluster.chat(0, &alice).await,
        cluster.chat(1, &bob).await,
        cluster.chat(2, &carol).await,
    );
    let room = create_room(&mut alice_chat, "general").await;
    join(&mut bob_chat, &room).await;
    join(&mut carol_chat, &room).await;

    let (mut alice_events, _) = cluster.subscribe(0, &alice).await;
    cluster.until_online_on(1, &bob, &["alice"]).await;
    let (mut bob_events, bob_ready) = cluster.subscribe(1, &bob).await;

    let online: Vec<&str> = bob_ready
        .online_users
        .iter()
        .map(|u| u.username.as_str())
        .collect();
    assert_eq!(
        online,
        ["alice"],
        "ready lists who is online on other nodes"
    );
    alice_events
        .wait_for(|event| presence_of(event, "bob", true))
        .await;
    cluster.until_online_on(2, &carol, &["alice", "bob"]).await;

    let sent = send(&mut bob_chat, &room, "hello from node 1", "").await;
    let got = alice_events.messages(1, PATIENCE).await;
    assert_eq!(
        (got[0].id.as_str(), got[0].text.as_str()),
        (sent.id.as_str(), "hello from node 1")
    );

    bob_chat
        .send_typing(pb::SendTypingRequest {
            room_id: room.id.clone(),
        })
        .await
        .expect("send typing");
    alice_events
        .wait_for(|event| match event {
            Event::Typing(typing) if typing.user.as_ref().is_some_and(|u| u.username == "bob") => {
                Some(())
            }
            _ => None,
        })
        .await;

    let from_carol = send(&mut carol_chat, &room, "and from node 2", "").await;
    let got = bob_events.messages(2, PATIENCE).await;
    assert_eq!(got[1].id, from_carol.id, "node 1 hears node 2 too");

    drop(bob_events);
    alice_events
        .wait_for(|event| presence_of(event, "bob", false))
        .await;
    cluster.until_online_on(2, &carol, &["alice"]).await;
    assert_eq!(alice.name(), "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_on_every_node_give_gapless_seqs_in_one_order() {
    const PER_NODE: usize = 150;
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let watcher = cluster.user(0, "watcher").await;
    let mut watcher_chat = cluster.chat(0, &watcher).await;
    let room = create_room(&mut watcher_chat, "busy").await;
    let mut watchers = Vec::new();
    for node in 0..3 {
        watchers.push(cluster.subscribe(node, &watcher).await.0);
    }

    // Every sender joins (seqs 1 to 3) before any sends.
    let mut chats = Vec::new();
    for node in 0..3 {
        let sender = cluster.user(node, &format!("sender{node}")).await;
        let mut chat = cluster.chat(node, &sender).await;
        join(&mut chat, &room).await;
        chats.push(chat);
    }
    let mut senders = Vec::new();
    for (node, mut chat) in chats.into_iter().enumerate() {
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..PER_NODE {
                send(
                    &mut chat,
                    &room,
                    &format!("node {node} #{i}"),
                    &format!("{node}-{i}"),
                )
                .await;
            }
        }));
    }
    for sender in senders {
        sender.await.expect("a sender");
    }

    let total = 3 * PER_NODE;
    let mut orders = Vec::new();
    for events in &mut watchers {
        let messages = events.messages(total, Duration::from_secs(30)).await;
        assert_gapless(&messages, 4, total as u64);
        orders.push(messages.into_iter().map(|m| m.id).collect::<Vec<_>>());
    }
    assert!(
        orders.windows(2).all(|pair| pair[0] == pair[1]),
        "every stream sees one order"
    );

    // A retry reaching another node returns the stored message, once.
    let sender = cluster.login(0, "sender0").await;
    let mut on_0 = cluster.chat(0, &sender).await;
    let mut on_2 = cluster.chat(2, &sender).await;
    let first = send(&mut on_0, &room, "retried", "retry-key").await;
    let retried = send(&mut on_2, &room, "retried", "retry-key").await;
    assert_eq!((retried.id, retried.seq), (first.id, first.seq));
    for events in &mut watchers {
        let got = events.messages(1, PATIENCE).await;
        // After the three joins and the `total` messages.
        assert_eq!(got[0].seq, total as u64 + 4);
    }
    let page = watcher_chat
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            before_seq: 0,
            limit: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.messages.last().unwrap().seq,
        total as u64 + 4,
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_session_on_one_node_ends_its_stream_on_another_within_a_second() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let phone = cluster.user(0, "bob").await;
    let laptop = cluster.login(0, "bob").await;
    let (mut phone_events, _) = cluster.subscribe(2, &phone).await;
    let mut phone_on_c =
        ChatServiceClient::with_interceptor(cluster.channel(2).await, phone.bearer());
    phone_on_c
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("the phone calls node C");

    let mut auth = AuthServiceClient::with_interceptor(cluster.channel(0).await, laptop.bearer());
    auth.revoke_session(pb::RevokeSessionRequest {
        session_id: phone.session_id.clone(),
    })
    .await
    .expect("revoke");
    let revoked = Instant::now();

    let ended = timeout(Duration::from_secs(5), async {
        loop {
            match phone_events.0.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream ends");
    let took = revoked.elapsed();
    let status = ended.expect("the stream ends with a status");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "session revoked")
    );
    eprintln!("the revoked stream on another node ended {took:?} after the revocation");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let refused = phone_on_c
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect_err("a revoked session's call on node C");
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::Unauthenticated, "session revoked or expired")
    );
}

/// A member removed on one node stops hearing the room on another within
/// a second (after its `member` event), and a resume there gets the room
/// refused while the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_removed_on_one_node_stops_hearing_the_room_on_another_within_a_second() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let mut bob_chat = cluster.chat(1, &bob).await;
    let room = create_room(&mut alice_chat, "general").await;
    let other = create_room(&mut alice_chat, "other").await;
    join(&mut bob_chat, &room).await;
    join(&mut bob_chat, &other).await;
    let (mut bob_events, _) = cluster.subscribe(1, &bob).await;
    let before = send(&mut alice_chat, &room, "before", "").await;
    assert_eq!(bob_events.messages(1, PATIENCE).await[0].id, before.id);

    alice_chat
        .remove_member(pb::RemoveMemberRequest {
            room_id: room.id.clone(),
            user_id: bob.user.id.clone(),
            ban: false,
            reason: String::new(),
        })
        .await
        .expect("remove bob");
    let removed = Instant::now();
    let event = bob_events
        .wait_for(|event| match event {
            Event::Member(member) => Some(member.clone()),
            _ => None,
        })
        .await;
    let took = removed.elapsed();
    assert_eq!(
        (event.change(), event.room_id.as_str()),
        (pb::MemberChange::Removed, room.id.as_str())
    );
    eprintln!("the removal reached the other node's stream {took:?} after it was made");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    send(&mut alice_chat, &room, "after", "").await;
    let elsewhere = send(&mut alice_chat, &other, "elsewhere", "").await;
    let next = bob_events.messages(1, PATIENCE).await;
    assert_eq!(next[0].id, elsewhere.id, "nothing more of the room");

    // Resuming on node 2: the room is refused, the other goes on.
    let resumed = ChatServiceClient::with_interceptor(cluster.channel(1).await, bob.bearer())
        .subscribe(pb::SubscribeRequest {
            cursors: vec![
                pb::RoomCursor {
                    room_id: room.id.clone(),
                    after_seq: before.seq,
                },
                pb::RoomCursor {
                    room_id: other.id.clone(),
                    after_seq: 0,
                },
            ],
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut resumed = Events(resumed);
    let refused = resumed
        .wait_for(|event| match event {
            Event::Error(error) => Some(error.clone()),
            Event::Message(m) if m.room_id == room.id => panic!("a message of the room: {m:?}"),
            _ => None,
        })
        .await;
    assert_eq!(
        (refused.code, refused.room_id.as_str()),
        (Code::PermissionDenied as i32, room.id.as_str())
    );
    let got = resumed.messages(1, PATIENCE).await;
    assert_eq!(got[0].id, elsewhere.id);
}

/// Bob's typing, or carol's (whichever comes first) in `events`.
async fn next_typist(events: &mut Events) -> String {
    events
        .wait_for(|event| match event {
            Event::Typing(typing) => typing.user.as_ref().map(|u| u.username.clone()),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_made_on_one_node_silences_typing_on_another() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let carol = cluster.user(0, "carol").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let mut bob_chat = cluster.chat(0, &bob).await;
    let mut carol_chat = cluster.chat(0, &carol).await;
    let room = create_room(&mut alice_chat, "general").await;
    let other = create_room(&mut alice_chat, "other").await;
    for chat in [&mut bob_chat, &mut carol_chat] {
        join(chat, &room).await;
    }
    join(&mut bob_chat, &other).await;
    // Alice listens on node 2; everything else happens on node 1.
    let (mut alice_events, _) = cluster.subscribe(1, &alice).await;

    alice_chat
        .block_user(pb::BlockUserRequest {
            username: "bob".into(),
        })
        .await
        .expect("block bob");
    // Published by node 1 after the block's notice, so they reach node 2
    // after it too.
    for chat in [&mut bob_chat, &mut carol_chat] {
        chat.send_typing(pb::SendTypingRequest {
            room_id: room.id.clone(),
        })
        .await
        .expect("send typing");
    }
    assert_eq!(next_typist(&mut alice_events).await, "carol", "not bob");

    alice_chat
        .unblock_user(pb::UnblockUserRequest {
            username: "bob".into(),
        })
        .await
        .expect("unblock bob");
    bob_chat
        .send_typing(pb::SendTypingRequest {
            room_id: other.id.clone(),
        })
        .await
        .expect("send typing");
    assert_eq!(next_typist(&mut alice_events).await, "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_loses_nothing_and_its_users_go_offline() {
    const MESSAGES: usize = 400;
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let carol = cluster.user(1, "carol").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let room = create_room(&mut alice_chat, "general").await;
    join(&mut cluster.chat(1, &bob).await, &room).await;
    join(&mut cluster.chat(1, &carol).await, &room).await;

    let (mut alice_events, _) = cluster.subscribe(0, &alice).await;
    // bob follows the room on node 1, resuming wherever it has to.
    let mut bob_stream =
        ResumingSubscription::new(cluster.channel(1).await, bob.bearer(), Cursors::default());
    let first = timeout(PATIENCE, bob_stream.next()).await.expect("ready");
    assert!(matches!(first, Ok(Event::Ready(_))), "{first:?}");
    let (_carol_events, _) = cluster.subscribe(1, &carol).await;
    cluster
        .until_online_on(0, &alice, &["alice", "bob", "carol"])
        .await;

    // alice sends on node 0 all along; node 1 dies early on.
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (mut chat, room, acked) = (alice_chat.clone(), room.clone(), Arc::clone(&acked));
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                send(&mut chat, &room, &format!("#{i}"), &format!("k{i}")).await;
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut bob_got: Vec<pb::Message> = Vec::new();
    while acked.load(Ordering::SeqCst) < MESSAGES / 4 {
        if let Ok(Ok(Event::Message(message))) =
            timeout(Duration::from_millis(100), bob_stream.next()).await
        {
            bob_got.push(message);
        }
    }
    cluster.kill(1).await;
    let killed = Instant::now();
    // bob's client notices and goes to node 2, resuming from its cursors.
    bob_stream.reconnect_to(cluster.channel(2).await, bob.bearer());
    sender.await.expect("the sender");

    let deadline = Instant::now() + Duration::from_secs(30);
    while bob_got.len() < MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, bob_stream.next()).await {
            Ok(Ok(Event::Message(message))) => bob_got.push(message),
            Ok(Ok(_)) => {}
            Ok(Err(status)) => panic!("bob's stream failed: {status:?}"),
            Err(_) => panic!("bob has {} of {MESSAGES} messages", bob_got.len()),
        }
    }
    // Seqs 1 and 2 are bob's and carol's joins.
    assert_gapless(&bob_got, 3, MESSAGES as u64);

    // carol never comes back: she goes offline everywhere within 30 s.
    alice_events
        .wait_longer_for(Duration::from_secs(30), |event| {
            presence_of(event, "carol", false)
        })
        .await;
    eprintln!(
        "carol went offline {:?} after her node was killed",
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(30));
    cluster.until_online_on(0, &alice, &["alice", "bob"]).await;
}

/// A `nats-server` of the test's own, to restart at will.
struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// Flags besides the address and port.
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one on a free port, or returns `None` (after saying why)
    /// when there is no `nats-server` outside CI.
    async fn start() -> Option<Self> {
        Self::start_with(&[]).await
    }

    /// Starts one with these flags besides (e.g. `--user`).
    async fn start_with(args: &[&str]) -> Option<Self> {
        let binary = match std::env::var_os("CHAT_TEST_NATS_SERVER") {
            Some(binary) => PathBuf::from(binary),
            None => [
                "nats-server",
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
            ]
            .iter()
            .map(PathBuf::from)
            .find(|candidate| {
                std::process::Command::new(candidate)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            })?,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            binary,
            port,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
            child: None,
        };
        server.run().await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while reach_nats(&self.url()).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("killing nats-server");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_nats_mid_traffic_loses_nothing() {
    const MESSAGES: usize = 300;
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) = NatsServer::start().await else {
        skip("no nats-server binary (set CHAT_TEST_NATS_SERVER)");
        return;
    };
    let Some(cluster) = Cluster::start_on(3, nats.url()).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let watcher = cluster.user(1, "watcher").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let room = create_room(&mut alice_chat, "general").await;
    join(&mut cluster.chat(1, &watcher).await, &room).await;
    let (mut on_1, _) = cluster.subscribe(1, &watcher).await;
    let (mut on_2, _) = cluster.subscribe(2, &watcher).await;

    let mut acked = HashMap::new();
    for i in 0..MESSAGES {
        if i == MESSAGES / 3 {
            nats.kill().await;
        }
        if i == MESSAGES / 2 {
            nats.run().await;
        }
        let message = send(&mut alice_chat, &room, &format!("#{i}"), &format!("k{i}")).await;
        acked.insert(message.seq, message.id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    for events in [&mut on_1, &mut on_2] {
        let got = events.messages(MESSAGES, Duration::from_secs(30)).await;
        // Seq 1 is the watcher's join.
        assert_gapless(&got, 2, MESSAGES as u64);
        assert!(got.iter().all(|m| acked.get(&m.seq) == Some(&m.id)));
    }
    assert_eq!(cluster.nodes.len(), 3);
    drop(cluster);
    nats.kill().await;
}

/// Publishes on a cluster's subjects as anyone who can reach its NATS
/// server can.
struct Forger {
    client: async_nats::Client,
    prefix: String,
    /// Names the forged envelopes' node: one the cluster never saw.
    node: uuid::Uuid,
}

/// How a forged envelope is sealed.
enum Seal<'a> {
    /// Not at all: a bare `Envelope`, as before the bus was authenticated.
    None,
    With(&'a ClusterKeys),
    /// With these keys, as if at this time.
    At(&'a ClusterKeys, Timestamp),
}

impl Forger {
    async fn connect(cluster: &Cluster) -> Self {
        Self {
            client: async_nats::connect(&cluster.nats_url)
                .await
                .expect("a NATS client of the forger's own"),
            prefix: cluster.prefix.clone(),
            node: uuid::Uuid::new_v4(),
        }
    }

    async fn publish(&self, subject: &str, body: Body, seal: &Seal<'_>) {
        let subject = format!("{}.{subject}", self.prefix);
        let envelope = bytes::Bytes::from(
            Envelope {
                node: self.node.as_bytes().to_vec(),
                body: Some(body),
            }
            .encode_to_vec(),
        );
        let payload = match seal {
            Seal::None => envelope,
            Seal::With(keys) => keys.seal(&subject, envelope),
            Seal::At(keys, at) => keys.seal_at(&subject, envelope, *at),
        };
        self.client
            .publish(subject, payload)
            .await
            .expect("publishing a forgery");
        self.client.flush().await.expect("flushing the forgeries");
    }
}

fn id_bytes(id: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(id)
        .expect("a UUID")
        .as_bytes()
        .to_vec()
}

/// A message as a node would announce it, in `room`, at `seq`, claiming
/// to be from `sender`.
fn forged_message(room: &pb::Room, seq: u64, sender: &pb::User, text: &str) -> Body {
    Body::Message(WireMessage {
        id: uuid::Uuid::now_v7().as_bytes().to_vec(),
        room_id: id_bytes(&room.id),
        seq,
        sender_id: id_bytes(&sender.id),
        sender_name: sender.username.clone(),
        text: text.into(),
        sent_at: Timestamp::now().0,
        client_msg_id: None,
        edited_at: None,
        ..Default::default()
    })
}

fn forged_membership(user: &pb::User, room: &pb::Room) -> Membership {
    Membership {
        user_id: id_bytes(&user.id),
        room_id: id_bytes(&room.id),
        last_seq: 0,
    }
}

/// What the forgery tests hold: two nodes, and on node 0 the streams of
/// alice, of bob (a session of his that is live), and of mallory, who
/// shares the room `general` with them but not their direct room.
struct Scene {
    cluster: Cluster,
    alice: User,
    bob: User,
    mallory: User,
    general: pb::Room,
    direct: pb::Room,
    alice_events: Events,
    bob_events: Events,
    mallory_events: Events,
    bob_chat: AuthorizedChat,
}

const FORGED: &str = "forged";

impl Scene {
    async fn set() -> Option<Self> {
        let cluster = Cluster::start(2).await?;
        let alice = cluster.user(0, "alice").await;
        let bob = cluster.user(1, "bob").await;
        let mallory = cluster.user(0, "mallory").await;
        let mut alice_chat = cluster.chat(0, &alice).await;
        let mut bob_chat = cluster.chat(1, &bob).await;
        let general = create_room(&mut alice_chat, "general").await;
        join(&mut bob_chat, &general).await;
        join(&mut cluster.chat(0, &mallory).await, &general).await;
        let direct = alice_chat
            .open_direct_room(pb::OpenDirectRoomRequest {
                username: "bob".into(),
            })
            .await
            .expect("open a direct room")
            .into_inner()
            .room
            .unwrap();
        let (mut alice_events, _) = cluster.subscribe(0, &alice).await;
        let (bob_events, _) = cluster.subscribe(0, &bob).await;
        let (mallory_events, _) = cluster.subscribe(0, &mallory).await;
        // Node 0 follows both rooms from seq 1 on.
        send(&mut bob_chat, &general, "hello", "").await;
        send(&mut bob_chat, &direct, "hi alice", "").await;
        alice_events.messages(2, PATIENCE).await;
        Some(Self {
            cluster,
            alice,
            bob,
            mallory,
            general,
            direct,
            alice_events,
            bob_events,
            mallory_events,
            bob_chat,
        })
    }

    /// bob writes to alice in their direct room, then to `general`; the
    /// streams on node 0 must get exactly these, live, and nothing forged
    /// before them, and bob's stream and session must still be open.
    async fn real_messages_still_flow(&mut self) {
        let private = send(&mut self.bob_chat, &self.direct, "just us", "").await;
        let marker = send(&mut self.bob_chat, &self.general, "still here", "").await;
        // General's seqs 1 and 2 are bob's and mallory's joins.
        assert_eq!((private.seq, marker.seq), (2, 4), "seqs the store gave");

        let alice_got = until_message(&mut self.alice_events, &marker).await;
        let texts: Vec<&str> = alice_got
            .iter()
            .filter_map(|event| match event {
                Event::Message(message) => Some(message.text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["just us", "still here"], "alice's messages, live");
        assert_nothing_forged(&alice_got);

        let mallory_got = until_message(&mut self.mallory_events, &marker).await;
        assert!(
            !mallory_got.iter().any(|event| matches!(
                event,
                Event::Message(message) if message.room_id == self.direct.id
            )),
            "mallory got a message of alice and bob's direct room: {mallory_got:?}"
        );
        assert_nothing_forged(&mallory_got);

        let bob_got = until_message(&mut self.bob_events, &marker).await;
        assert_nothing_forged(&bob_got);
        self.cluster
            .chat(0, &self.bob)
            .await
            .list_rooms(pb::ListRoomsRequest::default())
            .await
            .expect("bob's session still works on node 0");
        assert_eq!(
            (self.alice.name(), self.mallory.name()),
            ("alice", "mallory")
        );
    }
}

/// Every event up to and including `last`'s message; fails if the stream
/// ends.
async fn until_message(events: &mut Events, last: &pb::Message) -> Vec<Event> {
    let mut got = Vec::new();
    events
        .wait_for(|event| {
            got.push(event.clone());
            match event {
                Event::Message(message) if message.id == last.id => Some(()),
                _ => None,
            }
        })
        .await;
    got
}

#[track_caller]
fn assert_nothing_forged(events: &[Event]) {
    for event in events {
        match event {
            Event::Message(message) => assert_ne!(message.text, FORGED, "{events:?}"),
            Event::Typing(_) | Event::Resync(_) => panic!("a forgery came through: {events:?}"),
            Event::Presence(presence) => assert!(
                presence
                    .user
                    .as_ref()
                    .is_some_and(|u| u.username != "ghost"),
                "{events:?}"
            ),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envelopes_not_sealed_with_the_cluster_secret_are_counted_and_change_nothing() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut scene) = Scene::set().await else {
        return;
    };
    let forger = Forger::connect(&scene.cluster).await;
    let wrong_keys = ClusterKeys::new(&["not this cluster's secret"]).unwrap();
    let right_keys = ClusterKeys::new(&[scene.cluster.secret.as_str()]).unwrap();
    let (general, direct) = (&scene.general, &scene.direct);
    let (alice, bob, mallory) = (
        scene.alice.user.clone(),
        scene.bob.user.clone(),
        scene.mallory.user.clone(),
    );
    let general_subject = format!("room.{}", general.id);
    let ghost = pb::User {
        id: uuid::Uuid::new_v4().to_string(),
        username: "ghost".into(),
        display_name: String::new(),
    };
    let forgeries: Vec<(&str, Body)> = vec![
        // bob's name on words he never wrote, at the seq the room expects.
        // (Seqs 1 and 2 of general are bob's and mallory's joins, 3 "hello".)
        (&general_subject, forged_message(general, 4, &bob, FORGED)),
        // A seq so high that a room believing it would wait forever.
        (
            &general_subject,
            forged_message(general, 1 << 40, &bob, FORGED),
        ),
        // mallory let into alice and bob's direct room.
        ("node", Body::Joined(forged_membership(&mallory, direct))),
        // alice put out of general.
        ("node", Body::Left(forged_membership(&alice, general))),
        // bob's live session revoked.
        ("node", Body::Revoke(id_bytes(&scene.bob.session_id))),
        (
            &general_subject,
            Body::Typing(Typing {
                room_id: id_bytes(&general.id),
                user_id: id_bytes(&bob.id),
                username: bob.username.clone(),
            }),
        ),
        (
            "node",
            Body::Online(WireUser {
                id: id_bytes(&ghost.id),
                username: ghost.username.clone(),
                rooms: vec![id_bytes(&general.id)],
                display_name: String::new(),
            }),
        ),
    ];
    for (subject, body) in &forgeries {
        forger.publish(subject, body.clone(), &Seal::None).await;
        forger
            .publish(subject, body.clone(), &Seal::With(&wrong_keys))
            .await;
    }
    // Sealed with the right secret ten minutes ago: a replay.
    let long_ago = Timestamp(Timestamp::now().0 - 600_000_000);
    forger
        .publish(
            "node",
            Body::Joined(forged_membership(&mallory, direct)),
            &Seal::At(&right_keys, long_ago),
        )
        .await;
    forger
        .publish(
            &general_subject,
            a_body_with_a_short_id(),
            &Seal::With(&right_keys),
        )
        .await;

    let forged = forgeries.len() as f64;
    for node in 0..2 {
        let cluster = &scene.cluster;
        cluster
            .until_metric(
                node,
                r#"chat_bus_rejected_total{reason="unsigned"}"#,
                forged,
            )
            .await;
        cluster
            .until_metric(node, r#"chat_bus_rejected_total{reason="bad_mac"}"#, forged)
            .await;
        cluster
            .until_metric(node, r#"chat_bus_rejected_total{reason="stale"}"#, 1.0)
            .await;
        cluster
            .until_metric(node, r#"chat_bus_rejected_total{reason="malformed"}"#, 1.0)
            .await;
    }

    scene.real_messages_still_flow().await;
    assert_eq!(
        scene
            .cluster
            .metric(0, r#"chat_bus_rejected_total{reason="unconfirmed"}"#)
            .await,
        0.0,
        "nothing unsealed got as far as the database checks"
    );
}

/// A body whose user id is 3 bytes, not 16: sealed right, it is still
/// malformed.
fn a_body_with_a_short_id() -> Body {
    Body::Offline(vec![1, 2, 3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_forgeries_change_nothing_the_database_does_not_confirm() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut scene) = Scene::set().await else {
        return;
    };
    // Whoever holds the secret (or a node with a bug) still cannot make a
    // node believe what the database does not say.
    let forger = Forger::connect(&scene.cluster).await;
    let keys = ClusterKeys::new(&[scene.cluster.secret.as_str()]).unwrap();
    let (general, direct) = (&scene.general, &scene.direct);
    let (alice, bob, mallory) = (
        scene.alice.user.clone(),
        scene.bob.user.clone(),
        scene.mallory.user.clone(),
    );
    let general_subject = format!("room.{}", general.id);
    let forgeries: Vec<(&str, Body)> = vec![
        (
            &general_subject,
            forged_message(general, 1 << 40, &bob, FORGED),
        ),
        // One past the seq the room expects: a gap the store cannot fill.
        (&general_subject, forged_message(general, 5, &bob, FORGED)),
        ("node", Body::Joined(forged_membership(&mallory, direct))),
        ("node", Body::Left(forged_membership(&alice, general))),
        ("node", Body::Revoke(id_bytes(&scene.bob.session_id))),
        // Alice never blocked bob: her streams must go on hearing him.
        (
            "node",
            Body::Blocked(WireBlock {
                blocker_id: id_bytes(&alice.id),
                blocked_id: id_bytes(&bob.id),
                blocks: true,
            }),
        ),
    ];
    for (subject, body) in &forgeries {
        forger
            .publish(subject, body.clone(), &Seal::With(&keys))
            .await;
    }

    // Node 1 holds no stream: it has no room to move on and no stream of
    // bob's session to end, and checks only the join, the leave and the
    // block.
    for (node, unconfirmed) in [(0, forgeries.len()), (1, 3)] {
        scene
            .cluster
            .until_metric(
                node,
                r#"chat_bus_rejected_total{reason="unconfirmed"}"#,
                unconfirmed as f64,
            )
            .await;
    }

    // In their direct room: nobody else hears typing, which on any other
    // stream would count as a forgery come through.
    scene
        .bob_chat
        .send_typing(pb::SendTypingRequest {
            room_id: direct.id.clone(),
        })
        .await
        .expect("send typing");
    scene
        .alice_events
        .wait_for(|event| match event {
            Event::Typing(typing) if typing.user.as_ref().is_some_and(|u| u.username == "bob") => {
                Some(())
            }
            _ => None,
        })
        .await;
    scene.real_messages_still_flow().await;
}

/// Runs the server binary to its exit, and returns its status and what
/// it wrote to stderr.
async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let data = tempfile::tempdir().expect("a directory");
    let database_url = format!("sqlite://{}", data.path().join("chat.db").display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
    command
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .args(["--database-url", &database_url])
        .args(args)
        .env_remove("CHAT_CLUSTER_SECRET")
        .env_remove("CHAT_CLUSTER_SECRET_FILE")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the server gives up within 30 s")
        .expect("running chat-server");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_node_given_nats_without_a_cluster_secret_refuses_to_start_and_says_why() {
    // No NATS is needed: the node stops before it connects.
    let nats = ["--nats-url", "nats://127.0.0.1:1"];

    let (status, stderr) = run_to_exit(&nats, &[]).await;

    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "--nats-url needs a cluster secret, the same on every node, to authenticate what \
             the nodes say to each other: give --cluster-secret-file PATH (one secret per line, \
             at least 16 bytes) or set CHAT_CLUSTER_SECRET"
        ),
        "{stderr}"
    );

    let (status, stderr) = run_to_exit(&nats, &[("CHAT_CLUSTER_SECRET", "too short")]).await;

    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("in CHAT_CLUSTER_SECRET")
            && stderr.contains("cluster secret 1 is 9 bytes: each must be at least 16"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("too short"),
        "the secret is not echoed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_log_in_to_nats_with_its_credentials_and_refuse_to_start_with_wrong_ones() {
    const PASSWORD_OF_NATS: &str = "nats password 7f3a";
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) =
        NatsServer::start_with(&["--user", "chat", "--pass", PASSWORD_OF_NATS]).await
    else {
        skip("no nats-server binary (set CHAT_TEST_NATS_SERVER)");
        return;
    };
    let Some(cluster) = Cluster::start_with(
        2,
        nats.url(),
        &["--nats-user", "chat", "--nats-password", PASSWORD_OF_NATS],
    )
    .await
    else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let room = create_room(&mut alice_chat, "general").await;
    join(&mut cluster.chat(1, &bob).await, &room).await;
    let (mut bob_events, _) = cluster.subscribe(1, &bob).await;
    let sent = send(&mut alice_chat, &room, "over an authenticated NATS", "").await;
    let got = bob_events.messages(1, PATIENCE).await;
    assert_eq!(got[0].id, sent.id, "the nodes talk through NATS");

    let secret_file = cluster.secret_file.path().display().to_string();
    let url = nats.url();
    let node = ["--nats-url", &url, "--cluster-secret-file", &secret_file];
    for (what, credentials) in [
        (
            "a wrong password",
            vec!["--nats-user", "chat", "--nats-password", "wrong"],
        ),
        ("no credentials", vec![]),
    ] {
        let args: Vec<&str> = node.iter().copied().chain(credentials).collect();
        let (status, stderr) = run_to_exit(&args, &[]).await;
        assert!(!status.success(), "started with {what}: {stderr}");
        assert!(
            stderr.contains("connecting to NATS at") && stderr.contains("authorization violation"),
            "with {what}: {stderr}"
        );
        assert!(!stderr.contains(PASSWORD_OF_NATS), "{stderr}");
    }
    drop(cluster);
    nats.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_logs_in_to_nats_with_a_token_from_a_file_and_refuses_to_start_with_a_wrong_one() {
    const TOKEN: &str = "a nats token 91c2";
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(mut nats) = NatsServer::start_with(&["--auth", TOKEN]).await else {
        skip("no nats-server binary (set CHAT_TEST_NATS_SERVER)");
        return;
    };
    let mut right = tempfile::NamedTempFile::new().expect("a token file");
    writeln!(right, "{TOKEN}").expect("writing the token");
    let mut wrong = tempfile::NamedTempFile::new().expect("a token file");
    writeln!(wrong, "not the token").expect("writing the token");
    let right = right.path().display().to_string();
    let wrong = wrong.path().display().to_string();

    // A node logs its address only once it joined the bus.
    let Some(cluster) = Cluster::start_with(1, nats.url(), &["--nats-token-file", &right]).await
    else {
        return;
    };

    let secret_file = cluster.secret_file.path().display().to_string();
    let url = nats.url();
    let (status, stderr) = run_to_exit(
        &[
            "--nats-url",
            &url,
            "--cluster-secret-file",
            &secret_file,
            "--nats-token-file",
            &wrong,
        ],
        &[],
    )
    .await;
    assert!(!status.success(), "started with a wrong token: {stderr}");
    assert!(stderr.contains("authorization violation"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    drop(cluster);
    nats.kill().await;
}

/// Two users, one on each of a two-node cluster's nodes, in one room: what
/// the first sends reaches the second's stream, which only NATS can carry.
async fn assert_nodes_chat_through_nats(cluster: &Cluster, text: &str) {
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(1, "bob").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let room = create_room(&mut alice_chat, "general").await;
    join(&mut cluster.chat(1, &bob).await, &room).await;
    let (mut bob_events, _) = cluster.subscribe(1, &bob).await;

    let sent = send(&mut alice_chat, &room, text, "").await;

    let got = bob_events.messages(1, PATIENCE).await;
    assert_eq!(
        (got[0].id.as_str(), got[0].text.as_str()),
        (sent.id.as_str(), text),
        "the nodes talk through NATS"
    );
}

/// A self-signed certificate (no CA above it) for `localhost` and
/// 127.0.0.1, written to `NAME.pem` and `NAME.key` in `dir`; returns their
/// paths.
fn self_signed_localhost(dir: &std::path::Path, name: &str) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a certificate");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("writing the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("writing the key");
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_trusting_its_certificate_reach_nats_over_tls_and_others_refuse_to_start() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let certificates = tempfile::tempdir().expect("a directory");
    let (cert, key) = self_signed_localhost(certificates.path(), "nats");
    let (another_cert, _) = self_signed_localhost(certificates.path(), "another");
    // A server with `--tls` talks to no client that does not upgrade.
    let Some(mut nats) =
        NatsServer::start_with(&["--tls", "--tlscert", &cert, "--tlskey", &key]).await
    else {
        skip("no nats-server binary (set CHAT_TEST_NATS_SERVER)");
        return;
    };
    let Some(cluster) = Cluster::start_with(2, nats.url(), &["--nats-tls-ca", &cert]).await else {
        return;
    };

    assert_nodes_chat_through_nats(&cluster, "over NATS with TLS").await;

    let secret_file = cluster.secret_file.path().display().to_string();
    let url = nats.url();
    let tls_url = url.replace("nats://", "tls://");
    for (what, node) in [
        (
            "no CA",
            vec!["--nats-url", &url, "--cluster-secret-file", &secret_file],
        ),
        (
            "no CA and a tls:// URL",
            vec![
                "--nats-url",
                &tls_url,
                "--cluster-secret-file",
                &secret_file,
            ],
        ),
        (
            "another certificate as its CA",
            vec![
                "--nats-url",
                &url,
                "--cluster-secret-file",
                &secret_file,
                "--nats-tls-ca",
                &another_cert,
            ],
        ),
    ] {
        let (status, stderr) = run_to_exit(&node, &[]).await;
        assert!(!status.success(), "started with {what}: {stderr}");
        assert!(
            stderr.contains("connecting to NATS at") && stderr.contains("invalid peer certificate"),
            "with {what}: {stderr}"
        );
    }
    drop(cluster);
    nats.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_log_in_to_nats_with_an_nkey_seed_and_refuse_to_start_with_another() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let node_key = nkeys::KeyPair::new_user();
    let mut seed = tempfile::NamedTempFile::new().expect("a seed file");
    writeln!(seed, "{}", node_key.seed().expect("a seed")).expect("writing the seed");
    let mut another_seed = tempfile::NamedTempFile::new().expect("a seed file");
    let another_key = nkeys::KeyPair::new_user().seed().expect("a seed");
    writeln!(another_seed, "{another_key}").expect("writing the seed");
    let mut config = tempfile::NamedTempFile::new().expect("a config file");
    writeln!(
        config,
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
        node_key.public_key()
    )
    .expect("writing the config");
    let config = config.into_temp_path();
    let Some(mut nats) = NatsServer::start_with(&["-c", &config.display().to_string()]).await
    else {
        skip("no nats-server binary (set CHAT_TEST_NATS_SERVER)");
        return;
    };
    let seed = seed.path().display().to_string();
    let Some(cluster) = Cluster::start_with(2, nats.url(), &["--nats-nkey-file", &seed]).await
    else {
        return;
    };

    assert_nodes_chat_through_nats(&cluster, "over NATS with an NKey").await;

    let secret_file = cluster.secret_file.path().display().to_string();
    let another_seed = another_seed.path().display().to_string();
    let url = nats.url();
    for (what, credentials) in [
        ("another seed", vec!["--nats-nkey-file", &another_seed]),
        ("no credentials", vec![]),
    ] {
        let args: Vec<&str> = ["--nats-url", &url, "--cluster-secret-file", &secret_file]
            .into_iter()
            .chain(credentials)
            .collect();
        let (status, stderr) = run_to_exit(&args, &[]).await;
        assert!(!status.success(), "started with {what}: {stderr}");
        assert!(
            stderr.contains("connecting to NATS at") && stderr.contains("authorization violation"),
            "with {what}: {stderr}"
        );
        assert!(
            !stderr.contains(&another_key),
            "the seed is not echoed: {stderr}"
        );
    }
    drop(cluster);
    nats.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_a_reaction_and_a_deletion_on_three_nodes_reach_every_node_in_one_order() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let watcher = cluster.user(2, "watcher").await;
    let mut on_0 = cluster.chat(0, &alice).await;
    let mut on_2 = cluster.chat(2, &alice).await;
    let mut watcher_on_1 = cluster.chat(1, &watcher).await;
    let room = create_room(&mut on_0, "edits").await;
    join(&mut watcher_on_1, &room).await;
    let mut streams = Vec::new();
    for node in 0..3 {
        streams.push(cluster.subscribe(node, &watcher).await.0);
    }
    let message = send(&mut on_0, &room, "draft", "k1").await;

    on_0.edit_message(pb::EditMessageRequest {
        room_id: room.id.clone(),
        message_id: message.id.clone(),
        text: "final".into(),
    })
    .await
    .expect("edit on node 0");
    watcher_on_1
        .add_reaction(pb::AddReactionRequest {
            room_id: room.id.clone(),
            message_id: message.id.clone(),
            emoji: "👍".into(),
        })
        .await
        .expect("reaction on node 1");
    on_2.delete_message(pb::DeleteMessageRequest {
        room_id: room.id.clone(),
        message_id: message.id.clone(),
    })
    .await
    .expect("delete on node 2");
    // A thread reply quoting a message and naming a member, sent on node 2,
    // checked on PostgreSQL's path.
    let root = send(&mut on_0, &room, "topic", "k2").await;
    let reply = on_2
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "@Watcher look".into(),
            reply_to_id: root.id.clone(),
            thread_root_id: root.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a thread reply on node 2")
        .into_inner()
        .message
        .unwrap();

    for (node, events) in streams.iter_mut().enumerate() {
        let mut seen = Vec::new();
        while seen.len() < 6 {
            seen.push(
                events
                    .wait_for(|event| match event {
                        Event::Message(m) => Some(format!(
                            "message {} {}{}{}",
                            m.seq,
                            m.text,
                            if m.thread_root_id.is_empty() {
                                ""
                            } else {
                                " in thread"
                            },
                            m.mentions
                                .iter()
                                .map(|u| format!(" @{}", u.username))
                                .collect::<String>()
                        )),
                        Event::Edited(e) => {
                            Some(format!("edited {} {}", e.seq, e.message.as_ref()?.text))
                        }
                        Event::Reaction(r) => Some(format!(
                            "reaction {} {} by {}",
                            r.seq,
                            r.emoji,
                            r.user.as_ref()?.username
                        )),
                        Event::Deleted(d) => {
                            Some(format!("deleted {} by {}", d.seq, d.by.as_ref()?.username))
                        }
                        _ => None,
                    })
                    .await,
            );
        }
        assert_eq!(
            seen,
            [
                // Seq 1 is the watcher's join.
                "message 2 draft",
                "edited 3 final",
                "reaction 4 👍 by watcher",
                "deleted 5 by alice",
                "message 6 topic",
                "message 7 @Watcher look in thread @watcher",
            ],
            "the stream on node {node}"
        );
    }
    let thread = watcher_on_1
        .list_thread(pb::ListThreadRequest {
            room_id: room.id.clone(),
            thread_root_id: root.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list the thread on node 1")
        .into_inner();
    assert_eq!(thread.root.unwrap().thread_reply_count, 1);
    assert_eq!(thread.messages.len(), 1);
    assert_eq!(thread.messages[0].id, reply.id);
    assert_eq!(thread.messages[0].reply_to.as_ref().unwrap().text, "topic");
}

/// The reader and the room of a `read` event, and where its marker is.
fn read_of(event: &Event) -> Option<(String, String, u64)> {
    match event {
        Event::Read(read) => Some((
            read.user.as_ref()?.username.clone(),
            read.room_id.clone(),
            read.last_read_seq,
        )),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_marker_moved_on_one_node_reaches_the_streams_on_another() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let alice = cluster.user(0, "alice").await;
    let bob = cluster.user(0, "bob").await;
    let mut alice_chat = cluster.chat(0, &alice).await;
    let mut bob_chat = cluster.chat(0, &bob).await;
    let direct = alice_chat
        .open_direct_room(pb::OpenDirectRoomRequest {
            username: "bob".into(),
        })
        .await
        .expect("open direct room")
        .into_inner()
        .room
        .unwrap();
    let sent = send(&mut alice_chat, &direct, "seen?", "").await;
    let (mut bobs_other_device, _) = cluster.subscribe(1, &bob).await;
    let (mut alice_events, _) = cluster.subscribe(1, &alice).await;

    let marked = bob_chat
        .mark_read(pb::MarkReadRequest {
            room_id: direct.id.clone(),
            seq: sent.seq,
        })
        .await
        .expect("mark read on node 0")
        .into_inner()
        .last_read_seq;

    let read = ("bob".to_owned(), direct.id.clone(), sent.seq);
    assert_eq!(marked, sent.seq);
    assert_eq!(bobs_other_device.wait_for(read_of).await, read);
    assert_eq!(alice_events.wait_for(read_of).await, read, "the receipt");

    // A read whose room id is no id is dropped as malformed, sealed or not.
    let forger = Forger::connect(&cluster).await;
    let keys = ClusterKeys::new(&[cluster.secret.as_str()]).unwrap();
    let garbled = Body::Read(WireRead {
        room_id: vec![1, 2, 3],
        user: Some(WireUser {
            id: id_bytes(&bob.user.id),
            username: "bob".into(),
            rooms: Vec::new(),
            display_name: String::new(),
        }),
        last_read_seq: 99,
        own: true,
        receipt: true,
    });
    forger
        .publish(&format!("room.{}", direct.id), garbled, &Seal::With(&keys))
        .await;
    cluster
        .until_metric(1, r#"chat_bus_rejected_total{reason="malformed"}"#, 1.0)
        .await;
    let second = send(&mut alice_chat, &direct, "still here", "").await;
    let next = bobs_other_device
        .wait_for(|event| match event {
            Event::Message(message) => Some(message.seq),
            Event::Read(read) => panic!("a garbled read got through: {read:?}"),
            _ => None,
        })
        .await;
    assert_eq!(next, second.seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_a_user_with_the_admin_tool_ends_its_stream_on_another_node_within_a_second() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let bob = cluster.user(0, "bob").await;
    let (mut events, _) = cluster.subscribe(1, &bob).await;
    let mut bob_on_b = cluster.chat(1, &bob).await;
    // Node B now trusts the session for an hour (`--session-cache-ttl`):
    // only the control event can make it forget.
    bob_on_b
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("bob calls node B");

    // The tool knows only the database: no NATS, no node.
    let ran = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--database-url", &cluster.database_url])
        .args(["admin", "users", "disable", "bob"])
        .env_remove("CHAT_DATABASE_URL")
        .env_remove("CHAT_NATS_URL")
        .output()
        .await
        .expect("running chat-server admin");
    let disabled = Instant::now();
    assert!(ran.status.success(), "{ran:?}");

    let ended = timeout(Duration::from_secs(5), async {
        loop {
            match events.0.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream ends");
    let took = disabled.elapsed();
    let status = ended.expect("the stream ends with a status");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "session revoked")
    );
    eprintln!("the disabled user's stream on node B ended {took:?} after the tool");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let refused = bob_on_b
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect_err("a disabled user's call on node B");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut auth = AuthServiceClient::new(cluster.channel(1).await);
    let login = auth
        .login(pb::LoginRequest {
            username: "bob".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("a disabled user's login");
    assert_eq!(
        (login.code(), login.message()),
        (Code::PermissionDenied, "this account is disabled")
    );
}

//! Starting a real server for a test, and clients to talk to it.
//!
//! `spawn_app()` starts the whole server in-process on port 0 with a fresh
//! SQLite database in a temporary folder, exactly as `main` does, and stops
//! it when the `TestApp` is dropped.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, client_event, server_event};
use chat_server::config::Config;
use chat_server::state::AppState;
use chat_server::{metrics, startup};
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

/// The password every test user has.
pub const PASSWORD: &str = "correct horse battery";
/// How long a test waits for an event that should come.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub type Auth = AuthServiceClient<InterceptedService<Channel, Bearer>>;
pub type Chat = ChatServiceClient<InterceptedService<Channel, Bearer>>;

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    pub state: AppState,
    channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    config: Config,
    dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server whose configuration `configure` adjusts first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}/chat.db", dir.path().display());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    // Tests push thousands of messages; the abuse tests set the real rate.
    config.limits.send_rate = 1_000_000;
    config.limits.send_burst = 1_000_000;
    // And create and join rooms by the hundred; tests/api/security.rs sets
    // the real rates.
    config.limits.room_create_rate = 1_000_000;
    config.limits.room_create_burst = 1_000_000;
    config.limits.room_join_rate = 1_000_000;
    config.limits.room_join_burst = 1_000_000;
    config.limits.room_change_rate = 1_000_000;
    config.limits.room_change_burst = 1_000_000;
    configure(&mut config);
    start(config, dir).await
}

async fn start(config: Config, dir: TempDir) -> TestApp {
    init_logs();
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::build(config.clone()).await.expect("state");
    let metrics_listener = tokio::net::TcpListener::bind(
        config
            .metrics_listen
            .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
    )
    .await
    .unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    tokio::spawn(metrics::serve(
        metrics_listener,
        state.metrics.clone(),
        std::future::pending(),
    ));
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(startup::run(listener, state.clone(), async {
        let _ = stop.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting to the test server");
    TestApp {
        addr,
        metrics_addr,
        state,
        channel,
        shutdown: Some(shutdown),
        server: Some(server),
        config,
        dir,
    }
}

/// Logs show with `TEST_LOG=1`.
fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,h2=info,hyper=info",
                ))
                .with_test_writer()
                .init();
        }
    });
}

impl TestApp {
    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }

    /// Stops this server and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        start(self.config.clone(), dir).await
    }

    /// The value of a metric (with its labels, as in the text format, e.g.
    /// `chat_rejections_total{limit="send"}`), read over HTTP from `/metrics`;
    /// 0 when it has not been recorded yet.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.metrics_addr, "/metrics").await;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                (key == name).then(|| value.parse().expect("a metric value"))
            })
            .unwrap_or(0.0)
    }

    pub fn auth(&self) -> Auth {
        AuthServiceClient::with_interceptor(self.channel.clone(), Bearer(None))
    }

    /// A ChatService client sending `authorization: <value>` verbatim.
    pub fn chat_with_authorization(&self, value: Option<&str>) -> Chat {
        ChatServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(value.map(|v| v.parse().unwrap())),
        )
    }

    /// A ChatService client with its own HTTP/2 connection, as a separate
    /// device would have: its flow control is its own.
    pub async fn chat_on_new_connection(&self, user: &TestUser) -> Chat {
        let bearer = format!("Bearer {}", user.login.access_token);
        ChatServiceClient::with_interceptor(
            self.channel().await,
            Bearer(Some(bearer.parse().unwrap())),
        )
    }

    pub fn auth_with_authorization(&self, value: Option<&str>) -> Auth {
        AuthServiceClient::with_interceptor(
            self.channel.clone(),
            Bearer(value.map(|v| v.parse().unwrap())),
        )
    }

    pub async fn register(&self, username: &str) -> pb::User {
        self.auth()
            .register(pb::RegisterRequest {
                username: username.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("register")
            .into_inner()
            .user
            .unwrap()
    }

    /// A new session of an existing user.
    pub async fn login(&self, username: &str) -> TestUser {
        let login = self
            .auth()
            .login(pb::LoginRequest {
                username: username.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("login")
            .into_inner();
        let bearer = format!("Bearer {}", login.access_token);
        TestUser {
            user: login.user.clone().unwrap(),
            chat: self.chat_with_authorization(Some(&bearer)),
            auth: self.auth_with_authorization(Some(&bearer)),
            login,
        }
    }

    /// Registers and logs in.
    pub async fn user(&self, username: &str) -> TestUser {
        self.register(username).await;
        self.login(username).await
    }

    /// alice and bob, both members of one group room, "general". Bob's
    /// join is the room's first event (seq 1): alice's first message there
    /// has seq 2.
    pub async fn alice_and_bob_in_a_room(&self) -> (TestUser, TestUser, pb::Room) {
        let alice = self.user("alice").await;
        let bob = self.user("bob").await;
        let room = alice.create_room("general").await;
        bob.join(&room).await;
        (alice, bob, room)
    }

    /// A new connection to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Adds `authorization` metadata to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// One logged-in session of a user, with clients carrying its token.
pub struct TestUser {
    pub user: pb::User,
    pub login: pb::LoginResponse,
    pub chat: Chat,
    pub auth: Auth,
}

impl TestUser {
    pub async fn create_room(&self, name: &str) -> pb::Room {
        self.chat
            .clone()
            .create_room(pb::CreateRoomRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect("create room")
            .into_inner()
            .room
            .unwrap()
    }

    pub async fn join(&self, room: &pb::Room) {
        self.chat
            .clone()
            .join_room(pb::JoinRoomRequest {
                room_id: room.id.clone(),
            })
            .await
            .expect("join room");
    }

    pub async fn send(&self, room: &pb::Room, text: &str) -> pb::Message {
        self.chat
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.id.clone(),
                text: text.into(),
                client_msg_id: String::new(),
                ..Default::default()
            })
            .await
            .expect("send message")
            .into_inner()
            .message
            .unwrap()
    }

    /// The direct room with another user.
    pub async fn open_direct_room(&self, username: &str) -> pb::Room {
        self.chat
            .clone()
            .open_direct_room(pb::OpenDirectRoomRequest {
                username: username.into(),
            })
            .await
            .expect("open direct room")
            .into_inner()
            .room
            .unwrap()
    }

    /// A page of a room's history.
    pub async fn history(
        &self,
        room: &pb::Room,
        before_seq: u64,
        limit: u32,
    ) -> pb::HistoryResponse {
        self.chat
            .clone()
            .history(pb::HistoryRequest {
                room_id: room.id.clone(),
                before_seq,
                limit,
            })
            .await
            .expect("history")
            .into_inner()
    }

    /// Sends `workers * per_worker` messages from `workers` concurrent
    /// callers (each message padded with `padding` bytes); the sends start
    /// now, the returned future waits for all of them.
    pub fn flood(
        &self,
        room: &pb::Room,
        workers: u64,
        per_worker: u64,
        padding: usize,
    ) -> impl std::future::Future<Output = ()> {
        let tasks: Vec<_> = (0..workers)
            .map(|worker| {
                let mut chat = self.chat.clone();
                let room_id = room.id.clone();
                tokio::spawn(async move {
                    for i in 0..per_worker {
                        chat.send_message(pb::SendMessageRequest {
                            room_id: room_id.clone(),
                            text: format!("w{worker} m{i} {}", "x".repeat(padding)),
                            client_msg_id: format!("w{worker}-{i}"),
                            ..Default::default()
                        })
                        .await
                        .expect("send message");
                    }
                })
            })
            .collect();
        async move {
            for task in tasks {
                task.await.expect("sender task");
            }
        }
    }

    /// Opens a ChatStream and returns it with its `ready` event.
    pub async fn chat_stream(&self) -> (EventStream, server_event::Ready) {
        let (tx, rx) = mpsc::channel(64);
        let events = self
            .chat
            .clone()
            .chat_stream(ReceiverStream::new(rx))
            .await
            .expect("open ChatStream")
            .into_inner();
        let mut stream = EventStream {
            sender: Some(tx),
            events,
        };
        let ready = stream.ready().await;
        (stream, ready)
    }

    /// Opens a Subscribe stream resuming from these cursors (room, seq),
    /// and returns it with its `ready` event.
    pub async fn subscribe_from(
        &self,
        cursors: &[(&pb::Room, u64)],
    ) -> (EventStream, server_event::Ready) {
        let request = pb::SubscribeRequest {
            cursors: cursors
                .iter()
                .map(|(room, after_seq)| pb::RoomCursor {
                    room_id: room.id.clone(),
                    after_seq: *after_seq,
                })
                .collect(),
        };
        let events = self
            .chat
            .clone()
            .subscribe(request)
            .await
            .expect("open Subscribe")
            .into_inner();
        let mut stream = EventStream {
            sender: None,
            events,
        };
        let ready = stream.ready().await;
        (stream, ready)
    }

    /// Opens a Subscribe stream and returns it with its `ready` event.
    pub async fn subscribe(&self) -> (EventStream, server_event::Ready) {
        let events = self
            .chat
            .clone()
            .subscribe(pb::SubscribeRequest::default())
            .await
            .expect("open Subscribe")
            .into_inner();
        let mut stream = EventStream {
            sender: None,
            events,
        };
        let ready = stream.ready().await;
        (stream, ready)
    }
}

/// A live stream of server events, and (for ChatStream) a way to send.
pub struct EventStream {
    sender: Option<mpsc::Sender<pb::ClientEvent>>,
    events: Streaming<pb::ServerEvent>,
}

impl EventStream {
    pub async fn send(&self, event: client_event::Event) {
        self.sender
            .as_ref()
            .expect("a ChatStream")
            .send(pb::ClientEvent { event: Some(event) })
            .await
            .expect("stream open");
    }

    pub async fn send_text(&self, room: &pb::Room, text: &str, client_msg_id: &str) {
        self.send(client_event::Event::Send(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: text.into(),
            client_msg_id: client_msg_id.into(),
            ..Default::default()
        }))
        .await;
    }

    /// Stops sending: the client half-closes its side.
    pub fn close_sending(&mut self) {
        self.sender = None;
    }

    /// The next event; fails the test if none comes in time or the stream ends.
    pub async fn next(&mut self) -> server_event::Event {
        match tokio::time::timeout(PATIENCE, self.events.message()).await {
            Ok(Ok(Some(event))) => event.event.expect("an event"),
            Ok(Ok(None)) => panic!("the stream ended"),
            Ok(Err(status)) => panic!("the stream failed: {status:?}"),
            Err(_) => panic!("no event within {PATIENCE:?}"),
        }
    }

    async fn ready(&mut self) -> server_event::Ready {
        match self.next().await {
            server_event::Event::Ready(ready) => ready,
            other => panic!("expected ready first, got {other:?}"),
        }
    }

    pub async fn next_message(&mut self) -> pb::Message {
        match self.next().await {
            server_event::Event::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    pub async fn next_presence(&mut self) -> server_event::Presence {
        match self.next().await {
            server_event::Event::Presence(presence) => presence,
            other => panic!("expected presence, got {other:?}"),
        }
    }

    /// The status that ends the stream, skipping events before it.
    pub async fn ended_with(&mut self) -> Status {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Status::ok("ended"),
                Ok(Err(status)) => return status,
                Err(_) => panic!("the stream did not end within {PATIENCE:?}"),
            }
        }
    }

    /// Asserts that the stream ends with exactly this status.
    pub async fn assert_ends_with(&mut self, code: Code, message: &str) {
        let ended = self.ended_with().await;
        assert_eq!(
            (ended.code(), ended.message()),
            (code, message),
            "{ended:?}"
        );
    }

    /// Asserts that nothing arrives for a while.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(item) = tokio::time::timeout(quiet, self.events.message()).await {
            panic!("expected silence, got {item:?}");
        }
    }
}

/// Asserts a call failed with `code` and exactly `message`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, message: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "unexpected status {status:?}"
    );
}

/// The body of a plain HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use http_body_util::BodyExt as _;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let response = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .expect("an HTTP answer");
    assert!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).expect("a text body")
}

impl TestApp {
    /// Waits until a metric (as for [`TestApp::metric`]) has this value;
    /// fails the test if it does not within [`PATIENCE`].
    pub async fn metric_becomes(&self, name: &str, expected: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.metric(name).await;
            if value == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} is {value}, not {expected}, after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What a well-behaved client may wait for its own message to come back
/// while others misbehave. Far above the few milliseconds it takes on an
/// idle machine, far below what a starved server would show.
pub const NORMAL_LATENCY: Duration = Duration::from_millis(500);

/// Carol and dave chat in their own room, on the test app's own
/// connection: the well-behaved pair that abuse must not disturb.
pub struct Bystanders {
    dave: TestUser,
    carol_stream: EventStream,
    room: pb::Room,
}

impl Bystanders {
    pub async fn join(app: &TestApp) -> Self {
        let carol = app.user("carol").await;
        let dave = app.user("dave").await;
        let room = carol.create_room("quiet corner").await;
        dave.join(&room).await;
        let (carol_stream, _) = carol.subscribe().await;
        Self {
            dave,
            carol_stream,
            room,
        }
    }

    /// Dave sends a few messages; each reaches carol's stream within
    /// [`NORMAL_LATENCY`].
    pub async fn assert_chat_is_normal(&mut self) {
        for i in 0..5 {
            let started = std::time::Instant::now();
            let sent = self.dave.send(&self.room, &format!("still here {i}")).await;
            let received = loop {
                match self.carol_stream.next().await {
                    server_event::Event::Message(message) => break message,
                    server_event::Event::Presence(_) | server_event::Event::Pong(_) => continue,
                    other => panic!("unexpected event {other:?}"),
                }
            };
            let latency = started.elapsed();
            assert_eq!(received.id, sent.id);
            assert!(
                latency < NORMAL_LATENCY,
                "a well-behaved client waited {latency:?} for its message"
            );
        }
    }
}

/// Sends messages' bytes as they are, and reads answers undecoded: one
/// client for every method, whatever its types.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

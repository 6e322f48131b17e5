//! A churn load for soak runs: simulated users come and go against a
//! running server for a set time, then everyone leaves. `scripts/soak`
//! starts the server, runs this, and samples the server's memory, file
//! descriptors and open streams meanwhile (see `docs/soak.md`).
//!
//! Users are registered once at the start. Then each, in a loop: connects
//! (its own HTTP/2 connection), logs in (a new session), joins its shared
//! rooms, opens a `ChatStream` or a `Subscribe` stream that resumes from the
//! cursors of its previous visits, sends now and then (sometimes in a
//! direct room, or a room it joins and leaves within the visit), receives,
//! then logs out or just drops the connection, and pauses.
//!
//! Everything a user receives is checked against its per-room cursors: a
//! message that skips a seq is a gap, one at or below the cursor a
//! duplicate. Gaps or duplicates make the program exit with status 3.
//!
//! ```sh
//! cargo run --release --example soak -- --server http://127.0.0.1:50051 --users 200 --duration 10m
//! ```

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::{self, client_event, server_event};
use chat_client::{AuthorizedChat, Client};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming};

/// Every simulated user's password.
const PASSWORD: &str = "soak password 1";
/// How long a visit waits for the acknowledgements of its ChatStream sends,
/// or for its stream to end after a logout, before counting a timeout.
const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// How long the end of the run waits for users to finish their visits.
const LEAVE_WAIT: Duration = Duration::from_secs(30);
/// Client events a ChatStream may have waiting to go up.
const OUTBOUND_CAPACITY: usize = 16;

/// A soak load: users connect, chat and disconnect for a set time.
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// The server to load.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,

    /// Simulated users, registered once at the start.
    #[arg(long, default_value_t = 200)]
    users: usize,

    /// How long the churn runs; then every user disconnects.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,

    /// Shared group rooms.
    #[arg(long, default_value_t = 10)]
    rooms: usize,

    /// Shared rooms each user is a member of.
    #[arg(long, default_value_t = 3)]
    rooms_per_user: usize,

    /// Shortest stay of one visit.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    online_min: Duration,

    /// Longest stay of one visit.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    online_max: Duration,

    /// Shortest pause between visits.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pause_min: Duration,

    /// Longest pause between visits.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pause_max: Duration,

    /// Mean time between one connected user's sends (each wait is drawn
    /// between half and one and a half times this). The default stays far
    /// below the server's per-user send rate (10/s, bursts of 20).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    send_interval: Duration,

    /// Share of visits that open a direct room with a random other user and
    /// write there first.
    #[arg(long, default_value_t = 0.2)]
    direct_share: f64,

    /// Share of visits that join the lobby room, write there, and leave it
    /// before disconnecting.
    #[arg(long, default_value_t = 0.1)]
    lobby_share: f64,

    /// Share of visits that use `ChatStream`; the others use `Subscribe`
    /// and send with the unary RPCs.
    #[arg(long, default_value_t = 0.67)]
    chat_stream_share: f64,

    /// Share of visits that end with Logout; the others drop the
    /// connection without a word.
    #[arg(long, default_value_t = 0.5)]
    logout_share: f64,

    /// Registrations in flight at once (each costs an argon2 hash).
    #[arg(long, default_value_t = 4)]
    register_concurrency: usize,

    /// The users exist already (an earlier run on the same server): skip
    /// registering them.
    #[arg(long)]
    skip_register: bool,

    /// How often a progress line is printed.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    progress: Duration,

    /// Usernames are PREFIX0, PREFIX1, …; rooms PREFIX-room-0, …
    #[arg(long, default_value = "soak")]
    prefix: String,

    /// How long to wait between setting up (registering) and the churn, so
    /// that a sampler can take its starting measurement in between.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    start_delay: Duration,

    /// Seed of the random choices, for a repeatable run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What the run did, counted by every user.
#[derive(Default)]
struct Stats {
    visits: AtomicU64,
    connect_failures: AtomicU64,
    logins: AtomicU64,
    chat_streams: AtomicU64,
    subscribes: AtomicU64,
    resumes: AtomicU64,
    logouts: AtomicU64,
    dropped: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    typing_sent: AtomicU64,
    typing_received: AtomicU64,
    presence_received: AtomicU64,
    heartbeats: AtomicU64,
    direct_rooms: AtomicU64,
    lobby_visits: AtomicU64,
    resyncs: AtomicU64,
    ended_by_logout: AtomicU64,
    gaps: AtomicU64,
    duplicates: AtomicU64,
    /// Failures by step and gRPC code.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn error(&self, step: &str, code: impl std::fmt::Debug) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(format!("{step}: {code:?}")).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        errors.values().sum()
    }
}

/// What every user shares.
struct World {
    args: Args,
    usernames: Vec<String>,
    /// The shared group rooms' ids.
    rooms: Vec<String>,
    lobby: String,
    stats: Stats,
    /// Users connected right now.
    online: AtomicU64,
    stop: CancellationToken,
}

/// One simulated user, across visits.
struct User {
    index: usize,
    rooms: Vec<String>,
    /// The newest seq received per room (the lobby excluded): what a resume
    /// asks for, and what every received message is checked against.
    cursors: Arc<Mutex<HashMap<String, u64>>>,
    rng: StdRng,
    messages: u64,
}

/// How a visit's stream sends.
enum Sender {
    /// ChatStream: client events up the stream.
    Stream(mpsc::Sender<pb::ClientEvent>),
    /// Subscribe: the unary RPCs.
    Unary,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    anyhow::ensure!(args.users >= 2, "--users must be at least 2");
    anyhow::ensure!(
        args.rooms_per_user <= args.rooms,
        "--rooms-per-user must be at most --rooms"
    );
    anyhow::ensure!(
        args.online_min <= args.online_max && args.pause_min <= args.pause_max,
        "each minimum must be at most its maximum"
    );

    let usernames: Vec<String> = (0..args.users)
        .map(|i| format!("{}{i}", args.prefix))
        .collect();
    let setup = Instant::now();
    if !args.skip_register {
        register_all(&args, &usernames).await?;
    }
    let (rooms, lobby) = create_rooms(&args, &usernames[0]).await?;
    println!(
        "setup: {} {} users, {} shared rooms, in {:.1?}",
        if args.skip_register {
            "reusing"
        } else {
            "registered"
        },
        args.users,
        rooms.len(),
        setup.elapsed()
    );
    // scripts/soak takes its starting sample after this line.
    println!("setup done; churn starts in {:?}", args.start_delay);
    sleep(args.start_delay).await;
    println!("churn started: {:?}", args.duration);

    let world = Arc::new(World {
        usernames,
        rooms,
        lobby,
        stats: Stats::default(),
        online: AtomicU64::new(0),
        stop: CancellationToken::new(),
        args,
    });
    let mut users = JoinSet::new();
    for index in 0..world.args.users {
        let world = world.clone();
        let mut rng = StdRng::seed_from_u64(world.args.seed ^ (index as u64).wrapping_mul(0x9E37));
        let rooms = world
            .rooms
            .choose_multiple(&mut rng, world.args.rooms_per_user)
            .cloned()
            .collect();
        let user = User {
            index,
            rooms,
            cursors: Arc::default(),
            rng,
            messages: 0,
        };
        users.spawn(live(world, user));
    }

    let started = Instant::now();
    let end = started + world.args.duration;
    let mut progress = tokio::time::interval_at(started + world.args.progress, world.args.progress);
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            _ = progress.tick() => print_progress(&world, started),
        }
    }
    println!(
        "churn over after {:.0?}: every user leaves",
        started.elapsed()
    );
    world.stop.cancel();
    let leaving = async { while users.join_next().await.is_some() {} };
    if timeout(LEAVE_WAIT, leaving).await.is_err() {
        println!(
            "{} users still busy after {LEAVE_WAIT:?}; stopping them",
            users.len()
        );
        users.shutdown().await;
    }
    println!(
        "all users left ({} connected)",
        world.online.load(Ordering::Relaxed)
    );
    print_summary(&world, started.elapsed());
    let stats = &world.stats;
    Ok(
        if Stats::get(&stats.gaps) + Stats::get(&stats.duplicates) > 0 {
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Registers every user; a name already taken (a reused database) is fine.
async fn register_all(args: &Args, usernames: &[String]) -> anyhow::Result<()> {
    let client = Client::connect(&args.server)
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    let permits = Arc::new(Semaphore::new(args.register_concurrency.max(1)));
    let mut registering = JoinSet::new();
    for name in usernames {
        let (client, name) = (client.clone(), name.clone());
        let permit = permits.clone().acquire_owned().await?;
        registering.spawn(async move {
            let registered = client.register(&name, PASSWORD).await;
            drop(permit);
            match registered {
                Ok(_) => Ok(()),
                Err(status) if status.code() == Code::AlreadyExists => Ok(()),
                Err(status) => Err(status).with_context(|| format!("registering {name}")),
            }
        });
    }
    while let Some(done) = registering.join_next().await {
        done??;
    }
    Ok(())
}

/// Finds or creates the shared rooms and the lobby, as the first user.
async fn create_rooms(args: &Args, owner: &str) -> anyhow::Result<(Vec<String>, String)> {
    let client = Client::connect(&args.server).await?;
    client.login(owner, PASSWORD).await.context("logging in")?;
    let mut chat = client.chat().await?;
    let existing: HashMap<String, String> = chat
        .list_rooms(pb::ListRoomsRequest::default())
        .await?
        .into_inner()
        .rooms
        .into_iter()
        .map(|room| (room.name, room.id))
        .collect();
    let names = (0..args.rooms)
        .map(|k| format!("{}-room-{k}", args.prefix))
        .chain([format!("{}-lobby", args.prefix)]);
    let mut ids = Vec::new();
    for name in names {
        let id = match existing.get(&name) {
            Some(id) => id.clone(),
            None => {
                chat.create_room(pb::CreateRoomRequest { name: name.clone() })
                    .await
                    .with_context(|| format!("creating {name}"))?
                    .into_inner()
                    .room
                    .context("the server sent no room")?
                    .id
            }
        };
        ids.push(id);
    }
    AuthServiceClient::with_interceptor(client.channel(), client.token().await?)
        .logout(pb::LogoutRequest {})
        .await?;
    let lobby = ids.pop().expect("the lobby is last");
    Ok((ids, lobby))
}

/// One user's life: visits and pauses until the run stops.
async fn live(world: Arc<World>, mut user: User) {
    let args = &world.args;
    // Spread the first logins over the first visit's length.
    let first = user.rng.gen_range(Duration::ZERO..=args.online_max);
    tokio::select! {
        () = world.stop.cancelled() => return,
        () = sleep(first) => {}
    }
    while !world.stop.is_cancelled() {
        visit(&world, &mut user).await;
        let pause = user.rng.gen_range(args.pause_min..=args.pause_max);
        tokio::select! {
            () = world.stop.cancelled() => break,
            () = sleep(pause) => {}
        }
    }
}

/// Counts a connected user while it lives.
struct Online<'a>(&'a AtomicU64);

impl<'a> Online<'a> {
    fn new(online: &'a AtomicU64) -> Self {
        online.fetch_add(1, Ordering::Relaxed);
        Self(online)
    }
}

impl Drop for Online<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One visit: connect, log in, chat, leave. Failures are counted, by step.
async fn visit(world: &Arc<World>, user: &mut User) {
    let (args, stats) = (&world.args, &world.stats);
    let Ok(client) = Client::connect(&args.server).await else {
        Stats::add(&stats.connect_failures, 1);
        stats.error("connect", "transport");
        return;
    };
    let _online = Online::new(&world.online);
    Stats::add(&stats.visits, 1);
    let name = &world.usernames[user.index];
    if let Err(status) = client.login(name, PASSWORD).await {
        return stats.error("login", status.code());
    }
    Stats::add(&stats.logins, 1);
    let mut chat = match client.chat().await {
        Ok(chat) => chat,
        Err(status) => return stats.error("token", status.code()),
    };
    let Some(extra) = join_rooms(world, user, &mut chat).await else {
        return;
    };

    // The stream, resuming from the previous visits' cursors.
    let cursors: Vec<pb::RoomCursor> = {
        let cursors = user.cursors.lock().unwrap_or_else(|p| p.into_inner());
        cursors
            .iter()
            .map(|(room_id, &after_seq)| pb::RoomCursor {
                room_id: room_id.clone(),
                after_seq,
            })
            .collect()
    };
    if !cursors.is_empty() {
        Stats::add(&stats.resumes, 1);
    }
    let use_chat_stream = user.rng.gen_bool(args.chat_stream_share);
    let opened = if use_chat_stream {
        open_chat_stream(&mut chat, cursors).await
    } else {
        chat.subscribe(pb::SubscribeRequest { cursors })
            .await
            .map(|response| (response.into_inner(), Sender::Unary))
    };
    let (events, sender) = match opened {
        Ok(opened) => opened,
        Err(status) => return stats.error("open stream", status.code()),
    };
    Stats::add(
        if use_chat_stream {
            &stats.chat_streams
        } else {
            &stats.subscribes
        },
        1,
    );
    let (acks_tx, mut acks) = watch::channel(0u64);
    let logging_out = Arc::new(AtomicBool::new(false));
    let ended = CancellationToken::new();
    let reader = tokio::spawn(read_events(
        world.clone(),
        user.cursors.clone(),
        events,
        acks_tx,
        logging_out.clone(),
        ended.clone(),
    ));

    // Chat until the visit is over, the run stops, or the server ends the stream.
    let until = Instant::now() + user.rng.gen_range(args.online_min..=args.online_max);
    let mut targets = extra.clone();
    let mut sends = 0u64;
    'chat: loop {
        let wait = args.send_interval.mul_f64(user.rng.gen_range(0.5..1.5));
        let wake = Instant::now() + wait;
        if wake >= until {
            tokio::select! {
                () = world.stop.cancelled() => {}
                () = ended.cancelled() => {}
                () = tokio::time::sleep_until(until) => {}
            }
            break;
        }
        tokio::select! {
            () = world.stop.cancelled() => break,
            () = ended.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
        }
        let room_id = targets
            .pop()
            .unwrap_or_else(|| user.rooms.choose(&mut user.rng).expect("rooms").clone());
        let typing = user.rng.gen_bool(0.2);
        user.messages += 1;
        let send = pb::SendMessageRequest {
            room_id: room_id.clone(),
            text: format!("{name} says hello, #{}", user.messages),
            client_msg_id: uuid::Uuid::new_v4().to_string(),
        };
        match &sender {
            Sender::Stream(up) => {
                let mut events = Vec::with_capacity(2);
                if typing {
                    events.push(client_event::Event::Typing(client_event::Typing {
                        room_id: room_id.clone(),
                    }));
                }
                events.push(client_event::Event::Send(send));
                for event in events {
                    if up
                        .send(pb::ClientEvent { event: Some(event) })
                        .await
                        .is_err()
                    {
                        // The stream is over; `ended` says why.
                        break 'chat;
                    }
                }
                sends += 1;
                if typing {
                    Stats::add(&stats.typing_sent, 1);
                }
            }
            Sender::Unary => {
                if typing {
                    match chat.send_typing(pb::SendTypingRequest { room_id }).await {
                        Ok(_) => Stats::add(&stats.typing_sent, 1),
                        Err(status) => stats.error("SendTyping", status.code()),
                    }
                }
                match chat.send_message(send).await {
                    Ok(_) => Stats::add(&stats.sent, 1),
                    Err(status) => stats.error("SendMessage", status.code()),
                }
            }
        }
    }

    // Leave: wait for the acknowledgements, leave the lobby, then log out or
    // just drop the connection.
    if sends > 0 && !ended.is_cancelled() {
        let acked = timeout(SETTLE_WAIT, acks.wait_for(|&n| n >= sends)).await;
        if !matches!(acked, Ok(Ok(_))) && !ended.is_cancelled() {
            stats.error("waiting for acknowledgements", "timeout");
        }
    }
    if let Some(lobby) = extra.iter().find(|&id| *id == world.lobby) {
        if let Err(status) = chat
            .leave_room(pb::LeaveRoomRequest {
                room_id: lobby.clone(),
            })
            .await
        {
            stats.error("LeaveRoom", status.code());
        }
    }
    if user.rng.gen_bool(args.logout_share) {
        logging_out.store(true, Ordering::Relaxed);
        let logout = match client.token().await {
            Ok(token) => AuthServiceClient::with_interceptor(client.channel(), token)
                .logout(pb::LogoutRequest {})
                .await
                .map(|_| ()),
            Err(status) => Err(status),
        };
        match logout {
            Ok(()) => {
                Stats::add(&stats.logouts, 1);
                // Logout ends the session's streams.
                if timeout(SETTLE_WAIT, ended.cancelled()).await.is_err() {
                    stats.error("stream still open after logout", "timeout");
                }
            }
            Err(status) => stats.error("Logout", status.code()),
        }
    } else {
        Stats::add(&stats.dropped, 1);
    }
    drop(sender);
    reader.abort();
    let _ = reader.await;
}

/// Joins the user's shared rooms (again: joining is idempotent), maybe the
/// lobby, maybe a direct room. Returns the rooms to write in first.
async fn join_rooms(
    world: &World,
    user: &mut User,
    chat: &mut AuthorizedChat,
) -> Option<Vec<String>> {
    let (args, stats) = (&world.args, &world.stats);
    for room_id in &user.rooms {
        if let Err(status) = chat
            .join_room(pb::JoinRoomRequest {
                room_id: room_id.clone(),
            })
            .await
        {
            stats.error("JoinRoom", status.code());
            return None;
        }
    }
    let mut extra = Vec::new();
    if user.rng.gen_bool(args.lobby_share) {
        match chat
            .join_room(pb::JoinRoomRequest {
                room_id: world.lobby.clone(),
            })
            .await
        {
            Ok(_) => {
                Stats::add(&stats.lobby_visits, 1);
                extra.push(world.lobby.clone());
            }
            Err(status) => stats.error("JoinRoom (lobby)", status.code()),
        }
    }
    if user.rng.gen_bool(args.direct_share) {
        let other = loop {
            let other = user.rng.gen_range(0..world.usernames.len());
            if other != user.index {
                break other;
            }
        };
        match chat
            .open_direct_room(pb::OpenDirectRoomRequest {
                username: world.usernames[other].clone(),
            })
            .await
        {
            Ok(response) => {
                Stats::add(&stats.direct_rooms, 1);
                extra.extend(response.into_inner().room.map(|room| room.id));
            }
            Err(status) => stats.error("OpenDirectRoom", status.code()),
        }
    }
    Some(extra)
}

/// Opens a ChatStream whose first event resumes from `cursors`, or is a
/// ping when there are none (so live events start at once).
async fn open_chat_stream(
    chat: &mut AuthorizedChat,
    cursors: Vec<pb::RoomCursor>,
) -> Result<(Streaming<pb::ServerEvent>, Sender), Status> {
    let (up, outbound) = mpsc::channel(OUTBOUND_CAPACITY);
    let first = if cursors.is_empty() {
        client_event::Event::Ping(client_event::Ping { nonce: 1 })
    } else {
        client_event::Event::Resume(client_event::Resume { cursors })
    };
    up.send(pb::ClientEvent { event: Some(first) })
        .await
        .expect("the receiver is still here");
    let events = chat
        .chat_stream(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    Ok((events, Sender::Stream(up)))
}

/// Reads a visit's stream until it ends: counts every event, checks each
/// message against the user's cursors, and counts acknowledgements (and
/// failed sends) into `acks`.
async fn read_events(
    world: Arc<World>,
    cursors: Arc<Mutex<HashMap<String, u64>>>,
    mut events: Streaming<pb::ServerEvent>,
    acks: watch::Sender<u64>,
    logging_out: Arc<AtomicBool>,
    ended: CancellationToken,
) {
    let stats = &world.stats;
    let track = |message: &pb::Message| {
        if message.room_id == world.lobby {
            return;
        }
        let mut cursors = cursors.lock().unwrap_or_else(|p| p.into_inner());
        match cursors.get_mut(&message.room_id) {
            Some(cursor) => {
                if message.seq <= *cursor {
                    Stats::add(&stats.duplicates, 1);
                } else {
                    Stats::add(&stats.gaps, message.seq - *cursor - 1);
                    *cursor = message.seq;
                }
            }
            None => {
                cursors.insert(message.room_id.clone(), message.seq);
            }
        }
    };
    let end = loop {
        let event = match events.message().await {
            Ok(Some(event)) => event,
            Ok(None) => break Code::Ok,
            Err(status) => break status.code(),
        };
        match event.event {
            Some(server_event::Event::Message(message)) => {
                Stats::add(&stats.received, 1);
                track(&message);
            }
            Some(server_event::Event::Sent(sent)) => {
                Stats::add(&stats.sent, 1);
                if let Some(message) = &sent.message {
                    track(message);
                }
                acks.send_modify(|n| *n += 1);
            }
            Some(server_event::Event::Error(error)) => {
                stats.error("stream request", Code::from(error.code));
                if !error.client_msg_id.is_empty() {
                    acks.send_modify(|n| *n += 1);
                }
            }
            Some(server_event::Event::Resync(resync)) => {
                Stats::add(&stats.resyncs, 1);
                // The stream skips to from_seq; older ones are for History.
                let mut cursors = cursors.lock().unwrap_or_else(|p| p.into_inner());
                cursors.insert(resync.room_id, resync.from_seq.saturating_sub(1));
            }
            Some(server_event::Event::Presence(_)) => Stats::add(&stats.presence_received, 1),
            Some(server_event::Event::Typing(_)) => Stats::add(&stats.typing_received, 1),
            Some(server_event::Event::Pong(pong)) if pong.nonce == 0 => {
                Stats::add(&stats.heartbeats, 1);
            }
            Some(server_event::Event::Ready(_) | server_event::Event::Pong(_)) => {}
            None => stats.error("stream event", "empty"),
        }
    };
    if logging_out.load(Ordering::Relaxed) {
        Stats::add(&stats.ended_by_logout, 1);
    } else {
        stats.error("stream ended by the server", end);
    }
    ended.cancel();
}

fn print_progress(world: &World, started: Instant) {
    let stats = &world.stats;
    println!(
        "t={:>4}s online={:>3} visits={} sent={} received={} errors={}",
        started.elapsed().as_secs(),
        world.online.load(Ordering::Relaxed),
        Stats::get(&stats.visits),
        Stats::get(&stats.sent),
        Stats::get(&stats.received),
        stats.error_count(),
    );
}

fn print_summary(world: &World, elapsed: Duration) {
    let (args, stats) = (&world.args, &world.stats);
    let get = Stats::get;
    let rows = [
        ("users", args.users as u64),
        ("visits (connections)", get(&stats.visits)),
        ("connect failures", get(&stats.connect_failures)),
        ("logins", get(&stats.logins)),
        ("ChatStreams opened", get(&stats.chat_streams)),
        ("Subscribes opened", get(&stats.subscribes)),
        ("streams resumed from cursors", get(&stats.resumes)),
        ("visits ended by Logout", get(&stats.logouts)),
        ("  their streams ended by it", get(&stats.ended_by_logout)),
        ("visits ended by dropping", get(&stats.dropped)),
        ("direct rooms opened", get(&stats.direct_rooms)),
        ("lobby joins (and leaves)", get(&stats.lobby_visits)),
        ("messages sent (acknowledged)", get(&stats.sent)),
        ("messages received", get(&stats.received)),
        ("typing sent", get(&stats.typing_sent)),
        ("typing received", get(&stats.typing_received)),
        ("presence received", get(&stats.presence_received)),
        ("heartbeats received", get(&stats.heartbeats)),
        ("resyncs", get(&stats.resyncs)),
        ("gaps (missed seqs)", get(&stats.gaps)),
        ("duplicates", get(&stats.duplicates)),
    ];
    println!("summary after {:.0?} of churn:", elapsed);
    for (what, n) in rows {
        println!("  {what:<30} {n:>9}");
    }
    let errors = stats.errors.lock().unwrap_or_else(|p| p.into_inner());
    if errors.is_empty() {
        println!("  errors: none");
    } else {
        println!("  errors by step and code:");
        for (what, n) in errors.iter() {
            println!("    {what:<50} {n:>7}");
        }
    }
}

//! One simulated user's life in the soak: visits and pauses until the run
//! stops. A visit connects, logs in, joins rooms, opens a stream, chats,
//! and leaves; every step that fails is counted (by step and gRPC code)
//! and ends the visit where going on would make no sense.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::{self, client_event};
use chat_client::{AuthorizedChat, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::dice::Dice;
use super::reader::{self, Cursors, State};
use super::tally::Tally;
use super::World;
use crate::accounts;
use crate::net;
use crate::scenario::member;

/// How long a visit waits for the answers to its ChatStream sends, or for
/// its stream to end after a logout, before counting a timeout.
const SETTLE_WAIT: Duration = Duration::from_secs(5);
/// Client events a ChatStream may have waiting to go up: a user sends a
/// message (and maybe a typing event) every second or so.
const OUTBOUND_CAPACITY: usize = 16;
/// Share of sends that a typing event goes before.
const TYPING_SHARE: f64 = 0.2;

/// One simulated user, across visits.
pub struct User {
    index: usize,
    /// The shared rooms it belongs to.
    rooms: Vec<String>,
    cursors: Cursors,
    dice: Dice,
    /// Messages it has written, for their texts and ids.
    messages: u64,
}

impl User {
    pub fn new(index: usize, rooms: Vec<String>, dice: Dice) -> Self {
        Self {
            index,
            rooms,
            cursors: Cursors::default(),
            dice,
            messages: 0,
        }
    }

    /// Its next message, to `room_id`.
    fn write(&mut self, world: &World, room_id: String) -> pb::SendMessageRequest {
        self.messages += 1;
        pb::SendMessageRequest {
            room_id,
            text: format!(
                "{} says hello, #{}",
                world.usernames[self.index], self.messages
            ),
            client_msg_id: format!("{}-{}-{}", world.run_id, self.index, self.messages),
            ..Default::default()
        }
    }
}

/// How a visit's stream sends.
enum Sender {
    /// ChatStream: client events up the stream.
    Stream(mpsc::Sender<pb::ClientEvent>),
    /// Subscribe: the unary RPCs.
    Unary,
}

/// A visit's open stream.
struct Stream {
    sender: Sender,
    /// What the reader reports: answers to sends, and the end.
    state: watch::Receiver<State>,
    /// Set before Logout, so the reader takes the stream's end as expected.
    logging_out: Arc<AtomicBool>,
    reader: JoinHandle<()>,
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

/// A user's life: visits and pauses until the run stops.
pub async fn live(world: Arc<World>, mut user: User) {
    let opts = &world.opts;
    // Spread the first logins over the first visit's length.
    let first = user.dice.between(Duration::ZERO, opts.online_max);
    tokio::select! {
        () = world.stopped() => return,
        () = sleep(first) => {}
    }
    while !world.stopping() {
        visit(&world, &mut user).await;
        let pause = user.dice.between(opts.pause_min, opts.pause_max);
        tokio::select! {
            () = world.stopped() => break,
            () = sleep(pause) => {}
        }
    }
}

/// One visit: connect, log in, join, open a stream, chat, leave.
async fn visit(world: &Arc<World>, user: &mut User) {
    let tally = &world.tally;
    let Ok(channel) = net::connect(world.server, None).await else {
        Tally::add(&tally.connect_failures, 1);
        tally.error("connect", "transport");
        return;
    };
    let _online = Online::new(&world.online);
    Tally::add(&tally.visits, 1);
    let client = Client::from_channel(channel);
    let name = &world.usernames[user.index];
    if let Err(status) = client.login(name, accounts::PASSWORD).await {
        return tally.error("login", status.code());
    }
    Tally::add(&tally.logins, 1);
    let mut chat = match client.chat().await {
        Ok(chat) => chat,
        Err(status) => return tally.error("token", status.code()),
    };
    let Some(extra) = join_rooms(world, user, &mut chat).await else {
        return;
    };
    let Some(mut stream) = open_stream(world, user, &mut chat).await else {
        return;
    };
    let sends = converse(world, user, &mut chat, &mut stream, extra.clone()).await;
    leave(world, user, &client, &mut chat, stream, sends, &extra).await;
}

/// Joins the user's shared rooms (again: joining is idempotent), maybe the
/// lobby, maybe a direct room. Returns the rooms to write in first; none
/// when a shared room could not be joined.
async fn join_rooms(
    world: &World,
    user: &mut User,
    chat: &mut AuthorizedChat,
) -> Option<Vec<String>> {
    let (opts, tally) = (&world.opts, &world.tally);
    for room_id in &user.rooms {
        let request = pb::JoinRoomRequest {
            room_id: room_id.clone(),
        };
        if let Err(status) = chat.join_room(request).await {
            tally.error("JoinRoom", status.code());
            return None;
        }
    }
    let mut extra = Vec::new();
    if user.dice.chance(opts.lobby_share) {
        let request = pb::JoinRoomRequest {
            room_id: world.lobby.clone(),
        };
        match chat.join_room(request).await {
            Ok(_) => {
                Tally::add(&tally.lobby_visits, 1);
                extra.push(world.lobby.clone());
            }
            Err(status) => tally.error("JoinRoom (lobby)", status.code()),
        }
    }
    if user.dice.chance(opts.direct_share) {
        // Anyone but the user itself.
        let others = world.usernames.len() - 1;
        let other = (user.index + 1 + user.dice.below(others)) % world.usernames.len();
        let request = pb::OpenDirectRoomRequest {
            username: world.usernames[other].clone(),
        };
        match chat.open_direct_room(request).await {
            Ok(response) => {
                Tally::add(&tally.direct_rooms, 1);
                extra.extend(response.into_inner().room.map(|room| room.id));
            }
            Err(status) => tally.error("OpenDirectRoom", status.code()),
        }
    }
    Some(extra)
}

/// Opens a ChatStream or a Subscribe stream, resuming from the previous
/// visits' cursors, with its reader.
async fn open_stream(
    world: &Arc<World>,
    user: &mut User,
    chat: &mut AuthorizedChat,
) -> Option<Stream> {
    let tally = &world.tally;
    let cursors = user.cursors.to_pb();
    if !cursors.is_empty() {
        Tally::add(&tally.resumes, 1);
    }
    let use_chat_stream = user.dice.chance(world.opts.chat_stream_share);
    let opened = if use_chat_stream {
        open_chat_stream(chat, cursors).await
    } else {
        chat.subscribe(pb::SubscribeRequest { cursors })
            .await
            .map(|response| (response.into_inner(), Sender::Unary))
    };
    let (events, sender) = match opened {
        Ok(opened) => opened,
        Err(status) => {
            tally.error("open stream", status.code());
            return None;
        }
    };
    Tally::add(
        if use_chat_stream {
            &tally.chat_streams
        } else {
            &tally.subscribes
        },
        1,
    );
    let (state_tx, state) = watch::channel(State::default());
    let logging_out = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(reader::read(
        Arc::clone(world),
        user.cursors.clone(),
        events,
        state_tx,
        Arc::clone(&logging_out),
    ));
    Some(Stream {
        sender,
        state,
        logging_out,
        reader,
    })
}

/// Opens a ChatStream whose first event resumes from `cursors`, or is a
/// ping when there are none (so that live events start at once).
async fn open_chat_stream(
    chat: &mut AuthorizedChat,
    cursors: Vec<pb::RoomCursor>,
) -> Result<(Streaming<pb::ServerEvent>, Sender), Status> {
    let (up, outbound) = mpsc::channel(OUTBOUND_CAPACITY);
    let first = if cursors.is_empty() {
        member::ping(1)
    } else {
        pb::ClientEvent {
            event: Some(client_event::Event::Resume(client_event::Resume {
                cursors,
            })),
        }
    };
    up.send(first)
        .await
        .map_err(|_| Status::internal("the outbound stream closed before it opened"))?;
    let events = chat
        .chat_stream(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    Ok((events, Sender::Stream(up)))
}

/// Chats until the visit is over, the run stops, or the server ends the
/// stream: a message now and then, sometimes after a typing event, to the
/// `first` rooms and then to the user's shared ones. Returns the messages
/// sent up a ChatStream (whose answers the visit waits for).
async fn converse(
    world: &World,
    user: &mut User,
    chat: &mut AuthorizedChat,
    stream: &mut Stream,
    mut first: Vec<String>,
) -> u64 {
    let opts = &world.opts;
    let until = Instant::now() + user.dice.between(opts.online_min, opts.online_max);
    let mut sends = 0;
    loop {
        let wake = Instant::now() + opts.send_interval.mul_f64(user.dice.factor(0.5, 1.5));
        if wake >= until {
            tokio::select! {
                () = world.stopped() => {}
                () = reader::ended(&mut stream.state) => {}
                () = sleep_until(until) => {}
            }
            return sends;
        }
        tokio::select! {
            () = world.stopped() => return sends,
            () = reader::ended(&mut stream.state) => return sends,
            () = sleep_until(wake) => {}
        }
        let room_id = first
            .pop()
            .unwrap_or_else(|| user.dice.pick(&user.rooms).clone());
        let typing = user.dice.chance(TYPING_SHARE);
        let message = user.write(world, room_id);
        match &stream.sender {
            Sender::Stream(up) => {
                if !send_up(up, typing, message).await {
                    // The stream is over; the reader says why.
                    return sends;
                }
                sends += 1;
                if typing {
                    Tally::add(&world.tally.typing_sent, 1);
                }
            }
            Sender::Unary => send_unary(world, chat, typing, message).await,
        }
    }
}

/// Sends a message up a ChatStream, after a typing event when `typing`.
/// Returns false when the stream is over.
async fn send_up(
    up: &mpsc::Sender<pb::ClientEvent>,
    typing: bool,
    message: pb::SendMessageRequest,
) -> bool {
    let mut events = Vec::with_capacity(2);
    if typing {
        events.push(client_event::Event::Typing(client_event::Typing {
            room_id: message.room_id.clone(),
        }));
    }
    events.push(client_event::Event::Send(message));
    for event in events {
        if up
            .send(pb::ClientEvent { event: Some(event) })
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Sends a message with SendMessage, after SendTyping when `typing`.
async fn send_unary(
    world: &World,
    chat: &mut AuthorizedChat,
    typing: bool,
    message: pb::SendMessageRequest,
) {
    let tally = &world.tally;
    if typing {
        let request = pb::SendTypingRequest {
            room_id: message.room_id.clone(),
        };
        match chat.send_typing(request).await {
            Ok(_) => Tally::add(&tally.typing_sent, 1),
            Err(status) => tally.error("SendTyping", status.code()),
        }
    }
    match chat.send_message(message).await {
        Ok(_) => Tally::add(&tally.sent, 1),
        Err(status) => tally.error("SendMessage", status.code()),
    }
}

/// Leaves: waits for the answers to the stream's sends, leaves the lobby,
/// then logs out or just drops the connection.
async fn leave(
    world: &World,
    user: &mut User,
    client: &Client,
    chat: &mut AuthorizedChat,
    mut stream: Stream,
    sends: u64,
    extra: &[String],
) {
    let tally = &world.tally;
    wait_for_answers(world, &mut stream.state, sends).await;
    if extra.contains(&world.lobby) {
        let request = pb::LeaveRoomRequest {
            room_id: world.lobby.clone(),
        };
        if let Err(status) = chat.leave_room(request).await {
            tally.error("LeaveRoom", status.code());
        }
    }
    if user.dice.chance(world.opts.logout_share) {
        stream.logging_out.store(true, Ordering::Relaxed);
        match log_out(client).await {
            Ok(()) => {
                Tally::add(&tally.logouts, 1);
                // Logout ends the session's streams.
                let ended = timeout(SETTLE_WAIT, reader::ended(&mut stream.state)).await;
                if ended.is_err() {
                    tally.error("stream still open after logout", "timeout");
                }
            }
            Err(status) => tally.error("Logout", status.code()),
        }
    } else {
        Tally::add(&tally.dropped, 1);
    }
    drop(stream.sender);
    stream.reader.abort();
    let _ = stream.reader.await;
}

/// Waits up to `SETTLE_WAIT` for an answer to each of `sends`; counts a
/// timeout unless the stream ended meanwhile.
async fn wait_for_answers(world: &World, state: &mut watch::Receiver<State>, sends: u64) {
    if sends == 0 || state.borrow().ended {
        return;
    }
    let _ = timeout(
        SETTLE_WAIT,
        state.wait_for(|s| s.answered >= sends || s.ended),
    )
    .await;
    let now = *state.borrow();
    if now.answered < sends && !now.ended {
        world.tally.error("waiting for acknowledgements", "timeout");
    }
}

/// Ends the client's session with Logout.
///
/// # Errors
/// The server's refusal, or a token that could not be refreshed.
pub async fn log_out(client: &Client) -> Result<(), Status> {
    let token = client.token().await?;
    AuthServiceClient::with_interceptor(client.channel(), token)
        .logout(pb::LogoutRequest {})
        .await?;
    Ok(())
}

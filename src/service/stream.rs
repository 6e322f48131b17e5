//! Live event streams: opening one (Subscribe, ChatStream) and serving the
//! client side of a ChatStream.

pub use chat_fanout::{queue, Droppable, Frame};

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::auth::Principal;
use crate::domain::{MessageId, RoomId, Timestamp};
use crate::error::{Error, Result};
use crate::hub::{OutboundStream, RegisterError, StreamId};
use crate::metrics::Limit;
use crate::pb::client_event::Event;
use crate::pb::{self, server_event};
use crate::service::requests::{self, ClientEvent, Cursor, SendMessage};
use crate::state::AppState;
use crate::store::NewMessage;
use crate::writer::{error_frame, Reply};
use queue::TrySendError;

/// The most missed messages a resume sends per room; older ones are
/// announced with `resync` and paged with History.
pub const RESUME_LIMIT: u32 = 1000;
/// How long a ChatStream holds live messages waiting for its first client
/// event, which may be a `resume`. Any first event ends the wait at once.
const RESUME_WINDOW: Duration = Duration::from_millis(500);
/// Missed messages a catch-up reads from the database at once: 64 of the
/// largest (4 KiB) are 256 KiB, about what the catch-up queue holds.
const CATCH_UP_PAGE: u32 = 64;
/// How long a catch-up waits for a client that takes nothing before ending
/// its stream: far beyond any client that reads at all, and short enough
/// that a client that stopped does not keep its catch-up (and its turn)
/// for long.
pub const CATCH_UP_STALL: Duration = Duration::from_secs(30);

/// An open stream, before it is handed to tonic.
pub struct Opened {
    pub id: StreamId,
    pub outbound: OutboundStream,
    /// Where a catch-up sends missed messages; dropped when there is none.
    pub catch_up: queue::Sender<Frame>,
}

/// Opens a stream for an authenticated caller: registers it, loads the
/// caller's rooms, then starts it (its first event is `ready`). With
/// `hold`, live messages wait for `Hub::release`.
///
/// # Errors
/// UNAVAILABLE when shutting down; database errors.
pub async fn open(state: &AppState, principal: &Principal, hold: bool) -> Result<Opened> {
    let (id, outbound, catch_up) = state
        .hub
        .register(
            &principal.user,
            principal.session_id,
            principal.expires_at,
            hold,
        )
        .inspect_err(|refused| match refused {
            RegisterError::TooManyForSession(_) => state.metrics.rejected(Limit::StreamsPerSession),
            RegisterError::TooManyForUser(_) => state.metrics.rejected(Limit::StreamsPerUser),
            RegisterError::ShuttingDown => {}
        })?;
    recheck_session(state, principal).await?;
    // Registered first, so a room joined while the list loads is not missed.
    let rooms = state.store.room_positions_of(principal.user.id).await?;
    state.hub.activate(id, &rooms);
    if let Err(error) = state
        .store
        .touch_session(principal.session_id, Timestamp::now())
        .await
    {
        tracing::warn!(%error, "recording a session's last use");
    }
    tracing::debug!(stream = id, user_id = %principal.user.id, "stream opened");
    Ok(Opened {
        id,
        outbound,
        catch_up,
    })
}

/// Makes sure the session was not revoked between its check
/// (`authenticate`) and the stream's registration, when the revocation
/// found no stream to end. A Subscribe checks its cursors in between, which
/// takes a while with many rooms.
///
/// A revocation is stored first, then counted (`LiveSessions::revoke`),
/// then ends the session's streams under the hub's lock (`revoke_session`;
/// a revocation from another node comes over the bus to the same call,
/// after that node stored it). Against a stream registered under that lock:
/// - the revocation takes the hub's lock after the registration: it finds
///   the stream and ends it;
/// - it takes the lock before: it was counted before the registration, so
///   the count read here, after it, has moved since `authenticate` began
///   (or, counted before that, `authenticate` found the session revoked),
///   and the session read here, after it was stored, is not live.
///
/// Any revocation moves the count, so a stream opened meanwhile reads its
/// session once more: rare, and one query.
///
/// # Errors
/// UNAUTHENTICATED when the session is no longer live; database errors.
async fn recheck_session(state: &AppState, principal: &Principal) -> Result<()> {
    if !state
        .hub
        .live_sessions()
        .revoked_since(principal.revocations)
    {
        return Ok(());
    }
    let live = state
        .store
        .live_session(principal.session_id, principal.user.id, Timestamp::now())
        .await?;
    match live {
        Some(_) => Ok(()),
        None => Err(Error::unauthenticated("session revoked")),
    }
}

/// Checks resume cursors, already checked by `requests::cursors`, against
/// the store: rooms the caller is a member of. A cursor past a room's newest
/// message is taken as that message.
///
/// # Errors
/// NOT_FOUND or PERMISSION_DENIED for the first bad one.
pub async fn check_cursors(
    state: &AppState,
    principal: &Principal,
    cursors: Vec<Cursor>,
) -> Result<Vec<Cursor>> {
    let mut checked: Vec<Cursor> = Vec::with_capacity(cursors.len());
    for (room_id, after_seq) in cursors {
        let (membership, last_seq) = state
            .store
            .room_position(room_id, principal.user.id)
            .await?;
        membership.require_member(room_id)?;
        checked.push((room_id, after_seq.min(last_seq)));
    }
    Ok(checked)
}

/// Sends a resumed stream what it missed in each room, oldest first (at
/// most `RESUME_LIMIT` per room, after a `resync` when there were more),
/// then releases its live messages, minus those the catch-up already sent.
/// A client slower than the room reads on from the database, at its own
/// pace, until it has caught up.
///
/// What a catch-up holds is bounded whatever the client does: it reads
/// [`CATCH_UP_PAGE`] messages at a time, only once the client has taken
/// most of the page before (the stream's catch-up queue is bounded by
/// frames and bytes, `Hub::register`); a user runs a few catch-ups at a
/// time (`Hub::catch_up_turns`); and a client that takes nothing for
/// [`CATCH_UP_STALL`] loses the stream.
///
/// # Errors
/// Database errors; RESOURCE_EXHAUSTED for a stalled client. A stream that
/// goes away meanwhile is not an error.
pub async fn catch_up(
    state: &AppState,
    id: StreamId,
    cursors: Vec<(RoomId, u64)>,
    frames: queue::Sender<Frame>,
) -> Result<()> {
    state
        .hub
        .catch_up_on(id, cursors.iter().map(|&(room, _)| room).collect());
    let Some(turns) = state.hub.catch_up_turns(id) else {
        return Ok(());
    };
    let ended = state.hub.ended(id);
    let _turn = tokio::select! {
        () = ended.cancelled() => return Ok(()),
        turn = turns.acquire_owned() => match turn {
            Ok(turn) => turn,
            Err(_) => return Ok(()),
        },
    };
    let mut reached: HashMap<RoomId, u64> = cursors.into_iter().collect();
    loop {
        let rooms: Vec<RoomId> = reached.keys().copied().collect();
        let newest: HashMap<RoomId, u64> =
            state.store.last_seqs(&rooms).await?.into_iter().collect();
        for (&room_id, last) in &mut reached {
            let newest = newest.get(&room_id).copied().unwrap_or(0);
            if !send_missed(state, room_id, last, newest, &frames).await? {
                return Ok(());
            }
        }
        if state.hub.release(id, &reached) {
            return Ok(());
        }
    }
}

/// Sends a room's messages after `*last` up to `newest` (the newest
/// `RESUME_LIMIT` of them, after a `resync` when there are more), a page at
/// a time as the client takes them, moving `*last` on. Returns false once
/// the stream is gone.
///
/// Seqs are dense (each room's messages are numbered 1, 2, 3... as they
/// are stored), so a page is the window of seqs after `*last`; History
/// reads it, oldest first.
async fn send_missed(
    state: &AppState,
    room_id: RoomId,
    last: &mut u64,
    newest: u64,
    frames: &queue::Sender<Frame>,
) -> Result<bool> {
    let mut resync = false;
    if newest.saturating_sub(*last) > u64::from(RESUME_LIMIT) {
        *last = newest - u64::from(RESUME_LIMIT);
        resync = true;
    }
    while *last < newest {
        let page_end = newest.min(*last + u64::from(CATCH_UP_PAGE));
        // Room for a page before reading it: what waits is at most the
        // queue's bound and one page.
        let (items, bytes) = (
            frames.max_capacity().saturating_sub(CATCH_UP_PAGE as usize),
            frames.max_bytes() / 2,
        );
        if !wait_for_room(frames, items, bytes).await? {
            return Ok(false);
        }
        let (messages, _) = state
            .store
            .history(room_id, page_end + 1, CATCH_UP_PAGE)
            .await?;
        let after = *last;
        for message in messages.into_iter().filter(|m| m.seq > after) {
            if std::mem::take(&mut resync) {
                let resync = Frame::from_event(server_event::Event::Resync(server_event::Resync {
                    room_id: room_id.to_string(),
                    from_seq: message.seq,
                }));
                if !give(frames, resync).await? {
                    return Ok(false);
                }
            }
            let seq = message.seq;
            let frame =
                Frame::from_event(server_event::Event::Message(pb::Message::from(&message)));
            drop(message);
            if !give(frames, frame).await? {
                return Ok(false);
            }
            *last = seq;
        }
        *last = page_end;
    }
    Ok(true)
}

/// Queues a catch-up frame, waiting for room. Returns false once the
/// stream is gone.
///
/// # Errors
/// RESOURCE_EXHAUSTED when the client stalls.
async fn give(frames: &queue::Sender<Frame>, frame: Frame) -> Result<bool> {
    let mut frame = frame;
    loop {
        match frames.try_send(frame) {
            Ok(()) => return Ok(true),
            Err(TrySendError::Closed(_)) => return Ok(false),
            Err(TrySendError::Full(back)) => {
                let bytes = frames.max_bytes().saturating_sub(back.len());
                if !wait_for_room(frames, frames.max_capacity() - 1, bytes).await? {
                    return Ok(false);
                }
                frame = back;
            }
        }
    }
}

/// Waits until at most `items` frames of at most `bytes` wait in a
/// catch-up queue. Returns false once the stream is gone.
///
/// # Errors
/// RESOURCE_EXHAUSTED when the client took nothing for [`CATCH_UP_STALL`].
async fn wait_for_room(frames: &queue::Sender<Frame>, items: usize, bytes: usize) -> Result<bool> {
    loop {
        let taken = frames.taken();
        match tokio::time::timeout(CATCH_UP_STALL, frames.wait_for_room(items, bytes)).await {
            Ok(open) => return Ok(open),
            Err(_) if frames.taken() != taken => {}
            Err(_) => {
                return Err(Error::ResourceExhausted(format!(
                    "catch-up stalled: nothing was read for {}s; reconnect and resume",
                    CATCH_UP_STALL.as_secs()
                )))
            }
        }
    }
}

/// Ends the hold of a stream that catches up on nothing, and closes its
/// catch-up channel (which frees it).
fn go_live(state: &AppState, id: StreamId, catch_up: queue::Sender<Frame>) {
    drop(catch_up);
    // Only rooms being caught up on can fall behind: this cannot fail.
    let released = state.hub.release(id, &HashMap::new());
    debug_assert!(released);
}

/// Runs a catch-up in its own task; a failure ends the stream.
pub fn spawn_catch_up(
    state: AppState,
    id: StreamId,
    cursors: Vec<(RoomId, u64)>,
    frames: queue::Sender<Frame>,
) {
    tokio::spawn(async move {
        if let Err(error) = catch_up(&state, id, cursors, frames).await {
            state.hub.close(id, Status::from(error));
        }
    });
}

/// Reads a ChatStream's client events until the client stops sending or the
/// stream ends. Answers go into the stream's own queue, in order with
/// everything else it receives.
///
/// This task lives as long as the stream, mostly waiting: the first event
/// (with its timer and resume lookups) and each event's handling run in
/// futures of their own, boxed, so that the waiting task stays small.
pub async fn serve_client_events(
    state: AppState,
    principal: Principal,
    id: StreamId,
    catch_up_frames: queue::Sender<Frame>,
    mut inbound: Streaming<pb::ClientEvent>,
) {
    let ended = state.hub.ended(id);
    let first = Box::pin(first_event(
        &state,
        &principal,
        id,
        catch_up_frames,
        &mut inbound,
        &ended,
    ))
    .await;
    let mut next = match first {
        FirstEvent::Other(event) => Some(event),
        FirstEvent::Handled => None,
        FirstEvent::Done => return,
    };
    loop {
        let event = match next.take() {
            Some(event) => event,
            None => {
                let received = tokio::select! {
                    () = ended.cancelled() => break,
                    received = inbound.message() => received,
                };
                match received {
                    Ok(Some(event)) => event,
                    // The client closed its side; the stream still runs downwards.
                    Ok(None) => break,
                    // A broken or oversized request stream: the whole
                    // stream ends now, not when the hub notices it gone.
                    Err(status) => {
                        tracing::debug!(stream = id, %status, "client stream failed");
                        state.hub.close(id, status);
                        break;
                    }
                }
            }
        };
        if let Err((client_msg_id, error)) = Box::pin(handle(&state, &principal, id, event)).await {
            state.hub.send_to(id, error_frame(&client_msg_id, &error));
        }
    }
}

/// What the first client event left to do.
enum FirstEvent {
    /// An event other than `resume`, still to be handled.
    Other(pb::ClientEvent),
    /// A `resume` (or nothing in time): handled.
    Handled,
    /// The stream, or the client's side of it, is over.
    Done,
}

/// Waits for the first client event, which decides whether the stream
/// resumes, and starts the stream's live messages accordingly.
async fn first_event(
    state: &AppState,
    principal: &Principal,
    id: StreamId,
    catch_up_frames: queue::Sender<Frame>,
    inbound: &mut Streaming<pb::ClientEvent>,
    ended: &CancellationToken,
) -> FirstEvent {
    let first = tokio::select! {
        () = ended.cancelled() => return FirstEvent::Done,
        first = tokio::time::timeout(RESUME_WINDOW, inbound.message()) => first,
    };
    match first {
        Ok(Ok(Some(pb::ClientEvent {
            event: Some(Event::Resume(resume)),
        }))) => {
            let checked = match requests::cursors(&resume.cursors) {
                Ok(cursors) => check_cursors(state, principal, cursors).await,
                Err(error) => Err(error),
            };
            match checked {
                Ok(cursors) => spawn_catch_up(state.clone(), id, cursors, catch_up_frames),
                Err(error) => {
                    state.hub.send_to(id, error_frame("", &error));
                    go_live(state, id, catch_up_frames);
                }
            }
            FirstEvent::Handled
        }
        Ok(Ok(Some(event))) => {
            go_live(state, id, catch_up_frames);
            FirstEvent::Other(event)
        }
        // No first event in time: nothing to resume.
        Err(_) => {
            go_live(state, id, catch_up_frames);
            FirstEvent::Handled
        }
        // The client closed its side at once: the stream still runs downwards.
        Ok(Ok(None)) => {
            go_live(state, id, catch_up_frames);
            FirstEvent::Done
        }
        Ok(Err(status)) => {
            tracing::debug!(stream = id, %status, "client stream failed");
            state.hub.close(id, status);
            FirstEvent::Done
        }
    }
}

/// Handles one client event; an error goes back as an `error` event with
/// the send's `client_msg_id` (if it was a send).
async fn handle(
    state: &AppState,
    principal: &Principal,
    id: StreamId,
    event: pb::ClientEvent,
) -> Result<(), (String, Error)> {
    let event = requests::client_event(event)
        .map_err(|rejected| (rejected.client_msg_id, rejected.error))?;
    match event {
        ClientEvent::Send(send) => {
            let key = send.client_msg_id.as_deref().unwrap_or_default().to_owned();
            if let Err(error) = state.send_limiter.check(principal.user.id) {
                return Err((key, error));
            }
            state
                .writer
                .enqueue(new_message(principal, send), Reply::Stream(id))
                .await
                .map_err(|e| (key, e))
        }
        ClientEvent::Typing(room_id) => typing_in(state, principal, room_id)
            .await
            .map_err(|e| (String::new(), e)),
        ClientEvent::Ping { nonce } => {
            state.hub.send_to(
                id,
                Frame::from_event(server_event::Event::Pong(server_event::Pong { nonce })),
            );
            Ok(())
        }
    }
}

/// Turns a checked send into a message from the authenticated caller.
pub fn new_message(principal: &Principal, send: SendMessage) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        room_id: send.room_id,
        sender: principal.user.clone(),
        text: send.text,
        sent_at: Timestamp::now(),
        client_msg_id: send.client_msg_id,
    }
}

/// Tells the other members of a room that the caller is typing.
///
/// # Errors
/// NOT_FOUND or PERMISSION_DENIED unless the caller is a member.
pub async fn typing_in(state: &AppState, principal: &Principal, room_id: RoomId) -> Result<()> {
    // Typing the hub would coalesce anyway costs no lookup: the caller's
    // typing relayed there moments ago was checked (here or on the node
    // that relayed it).
    if !state.hub.typing_is_due(principal.user.id, room_id) {
        return Ok(());
    }
    if state.hub.is_member(principal.user.id, room_id) != Some(true) {
        state
            .store
            .membership(room_id, principal.user.id)
            .await?
            .require_member(room_id)?;
    }
    state.router.typing(room_id, &principal.user).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame::from_event(server_event::Event::Pong(server_event::Pong { nonce: 1 }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_whose_client_takes_nothing_ends_at_the_deadline() {
        let (frames, _client) = queue::bounded(2, usize::MAX);
        frames.try_send(frame()).unwrap();
        frames.try_send(frame()).unwrap();
        let started = tokio::time::Instant::now();

        let error = give(&frames, frame()).await.unwrap_err();

        assert_eq!(started.elapsed(), CATCH_UP_STALL);
        let status = Status::from(error);
        assert_eq!(
            (status.code(), status.message()),
            (
                tonic::Code::ResourceExhausted,
                "catch-up stalled: nothing was read for 30s; reconnect and resume"
            )
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_waits_as_long_as_its_client_takes_something() {
        let (frames, mut client) = queue::bounded(3, usize::MAX);
        for _ in 0..3 {
            frames.try_send(frame()).unwrap();
        }
        let pace = CATCH_UP_STALL * 2 / 3;
        let reader = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(pace).await;
                std::future::poll_fn(|cx| client.poll_recv(cx)).await;
            }
            client
        });
        let started = tokio::time::Instant::now();

        assert!(wait_for_room(&frames, 0, 0).await.unwrap());
        assert_eq!(started.elapsed(), pace * 3);

        drop(reader.await.unwrap());
        assert!(!give(&frames, frame()).await.unwrap(), "the client is gone");
    }
}

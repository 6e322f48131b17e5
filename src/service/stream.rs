//! Live event streams: opening one (Subscribe, ChatStream), serving the
//! client side of a ChatStream, and the store's side of a resume (the
//! protocol itself is `chat_fanout::resume`).

pub use chat_fanout::{queue, Droppable, Frame};

use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::auth::Principal;
use crate::domain::{MessageId, RoomEvent, RoomId, Timestamp};
use crate::error::{Error, Result};
use crate::hub::{OutboundStream, RegisterError, StreamId};
use crate::metrics::Limit;
use crate::pb;
use crate::pb::client_event::Event;
use crate::service::requests::{self, ClientEvent, Cursor, SendMessage};
use crate::state::AppState;
use crate::store::{NewMessage, Store};
use crate::writer::{error_frame, Reply};
use chat_fanout::events;
use chat_fanout::resume::{self, go_live, CatchUpError, MissedEvents, RESUME_WINDOW};

// The resume protocol's bounds, under the names they had here.
pub use chat_fanout::resume::{CATCH_UP_STALL, RESUME_LIMIT};

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
    // Registered first, so a room joined while the list loads is not
    // missed, nor a block changed while the blocks load.
    let block_changes = state.hub.block_changes(principal.user.id);
    let blocks = state.store.blocked_users(principal.user.id).await?;
    let blocks = blocks.iter().map(|user| user.id).collect();
    state
        .hub
        .set_blocks(principal.user.id, blocks, block_changes);
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
/// message is taken as that message. A room the caller may not read (no
/// longer a member, or gone) does not cost the others: it is answered
/// apart, with the `error` event `refused_cursors` sends.
///
/// # Errors
/// Database errors.
pub async fn check_cursors(
    state: &AppState,
    principal: &Principal,
    cursors: Vec<Cursor>,
) -> Result<(Vec<Cursor>, Vec<(RoomId, Error)>)> {
    let mut checked: Vec<Cursor> = Vec::with_capacity(cursors.len());
    let mut refused = Vec::new();
    for (room_id, after_seq) in cursors {
        let (membership, last_seq) = state
            .store
            .room_position(room_id, principal.user.id)
            .await?;
        match membership.require_member(room_id) {
            Ok(()) => checked.push((room_id, after_seq.min(last_seq))),
            Err(error) => refused.push((room_id, Error::from(error))),
        }
    }
    Ok((checked, refused))
}

/// Tells a stream which of its resume cursors it may not use, one `error`
/// event each (with the room's id); the stream goes on for the others.
pub fn refused_cursors(state: &AppState, id: StreamId, refused: &[(RoomId, Error)]) {
    for (room_id, error) in refused {
        state.hub.send_to(
            id,
            events::room_error(error.code(), error.client_message(), *room_id),
        );
    }
}

/// Sends a resumed stream what it missed, read from the store, then
/// releases its live messages: the protocol is `resume::catch_up`; this
/// hands it the store.
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
    let source = StoreMissed(state.store.as_ref());
    resume::catch_up(&state.hub, id, cursors, frames, &source)
        .await
        .map_err(catch_up_error)
}

/// The store, as a catch-up reads it.
struct StoreMissed<'a>(&'a dyn Store);

impl MissedEvents for StoreMissed<'_> {
    type Error = Error;

    async fn newest(&self, rooms: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        Ok(self.0.last_seqs(rooms).await?)
    }

    /// A room's log is dense, so the `limit` events after `after` are
    /// those up to `after + limit`.
    async fn after(&self, room_id: RoomId, after: u64, limit: u32) -> Result<Vec<RoomEvent>> {
        let up_to = after + u64::from(limit);
        let (missed, _) = self.0.room_events(room_id, after, up_to, limit).await?;
        Ok(missed)
    }
}

/// What a failed catch-up ends its stream with.
fn catch_up_error(error: CatchUpError<Error>) -> Error {
    match error {
        CatchUpError::Read(error) => error,
        stalled @ CatchUpError::Stalled => Error::ResourceExhausted(stalled.to_string()),
    }
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
                Ok((cursors, refused)) => {
                    refused_cursors(state, id, &refused);
                    spawn_catch_up(state.clone(), id, cursors, catch_up_frames);
                }
                Err(error) => {
                    state.hub.send_to(id, error_frame("", &error));
                    go_live(&state.hub, id, catch_up_frames);
                }
            }
            FirstEvent::Handled
        }
        Ok(Ok(Some(event))) => {
            go_live(&state.hub, id, catch_up_frames);
            FirstEvent::Other(event)
        }
        // No first event in time: nothing to resume.
        Err(_) => {
            go_live(&state.hub, id, catch_up_frames);
            FirstEvent::Handled
        }
        // The client closed its side at once: the stream still runs downwards.
        Ok(Ok(None)) => {
            go_live(&state.hub, id, catch_up_frames);
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
            let mut message = new_message(principal, send);
            // The stream outlives its principal's profile: a change since
            // (which moved the revocation count) shows in the hub's entry.
            if state
                .hub
                .live_sessions()
                .revoked_since(principal.revocations)
            {
                if let Some(user) = state.hub.user(principal.user.id) {
                    message.sender = user;
                }
            }
            state
                .writer
                .enqueue(message, Reply::Stream(id))
                .await
                .map_err(|e| (key, e))
        }
        ClientEvent::Typing(room_id) => typing_in(state, principal, room_id)
            .await
            .map_err(|e| (String::new(), e)),
        ClientEvent::Ping { nonce } => {
            state.hub.send_to(id, events::pong(nonce));
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
        reply_to_id: send.reply_to_id,
        thread_root_id: send.thread_root_id,
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

    #[test]
    fn a_stalled_catch_up_ends_its_stream_with_resource_exhausted() {
        let status = Status::from(catch_up_error(CatchUpError::Stalled));

        assert_eq!(
            (status.code(), status.message()),
            (
                tonic::Code::ResourceExhausted,
                "catch-up stalled: nothing was read for 30s; reconnect and resume"
            )
        );
    }

    #[test]
    fn a_failed_read_ends_a_catch_up_with_its_own_error() {
        let error = catch_up_error(CatchUpError::Read(Error::unauthenticated("gone")));

        assert_eq!(Status::from(error).code(), tonic::Code::Unauthenticated);
    }
}

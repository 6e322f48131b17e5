//! Live event streams: opening one (Subscribe, ChatStream) and serving the
//! client side of a ChatStream.

mod frame;

pub use frame::{Frame, FrameCodec};

use tonic::Streaming;

use crate::auth::Principal;
use crate::domain::{ClientMsgId, MessageId, MessageText, RoomId, Timestamp};
use crate::error::{Error, Result};
use crate::hub::{OutboundStream, StreamId};
use crate::pb::client_event::Event;
use crate::pb::{self, server_event};
use crate::state::AppState;
use crate::store::NewMessage;
use crate::writer::{error_frame, Reply};

/// Opens a stream for an authenticated caller: registers it, loads the
/// caller's rooms, then starts it (its first event is `ready`).
///
/// # Errors
/// UNAVAILABLE when shutting down; database errors.
pub async fn open(state: &AppState, principal: &Principal) -> Result<(StreamId, OutboundStream)> {
    let (id, outbound) =
        state
            .hub
            .register(&principal.user, principal.session_id, principal.expires_at)?;
    // Registered first, so a room joined while the list loads is not missed.
    let rooms = state.store.room_ids_of(principal.user.id).await?;
    state.hub.activate(id, &rooms);
    if let Err(error) = state
        .store
        .touch_session(principal.session_id, Timestamp::now())
        .await
    {
        tracing::warn!(%error, "recording a session's last use");
    }
    tracing::debug!(stream = id, user_id = %principal.user.id, "stream opened");
    Ok((id, outbound))
}

/// Reads a ChatStream's client events until the client stops sending or the
/// stream ends. Answers go into the stream's own queue, in order with
/// everything else it receives.
pub async fn serve_client_events(
    state: AppState,
    principal: Principal,
    id: StreamId,
    mut inbound: Streaming<pb::ClientEvent>,
) {
    let ended = state.hub.ended(id);
    loop {
        let event = tokio::select! {
            () = ended.cancelled() => break,
            event = inbound.message() => event,
        };
        let event = match event {
            Ok(Some(event)) => event,
            // The client closed its side; the stream still runs downwards.
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(stream = id, %status, "client stream failed");
                break;
            }
        };
        if let Err((client_msg_id, error)) = handle(&state, &principal, id, event).await {
            state.hub.send_to(id, error_frame(&client_msg_id, &error));
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
    match event.event {
        Some(Event::Send(send)) => {
            let key = send.client_msg_id.clone();
            let message = new_message(principal, send).map_err(|e| (key.clone(), e))?;
            state
                .writer
                .enqueue(message, Reply::Stream(id))
                .await
                .map_err(|e| (key, e))
        }
        Some(Event::Typing(typing)) => {
            let room_id =
                RoomId::parse("room_id", &typing.room_id).map_err(|e| (String::new(), e))?;
            typing_in(state, principal, room_id)
                .await
                .map_err(|e| (String::new(), e))
        }
        Some(Event::Ping(ping)) => {
            state.hub.send_to(
                id,
                Frame::from_event(server_event::Event::Pong(server_event::Pong {
                    nonce: ping.nonce,
                })),
            );
            Ok(())
        }
        None => Err((String::new(), Error::invalid("event is required"))),
    }
}

/// Turns a send request into a message from the authenticated caller.
///
/// # Errors
/// INVALID_ARGUMENT for a bad room id, text or client_msg_id.
pub fn new_message(principal: &Principal, send: pb::SendMessageRequest) -> Result<NewMessage> {
    Ok(NewMessage {
        id: MessageId::new(),
        room_id: RoomId::parse("room_id", &send.room_id)?,
        sender: principal.user.clone(),
        text: MessageText::parse(send.text)?,
        sent_at: Timestamp::now(),
        client_msg_id: ClientMsgId::parse(send.client_msg_id)?,
    })
}

/// Tells the other members of a room that the caller is typing.
///
/// # Errors
/// NOT_FOUND or PERMISSION_DENIED unless the caller is a member.
pub async fn typing_in(state: &AppState, principal: &Principal, room_id: RoomId) -> Result<()> {
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

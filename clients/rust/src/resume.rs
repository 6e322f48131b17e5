//! Client-side helpers for Rust programs using the generated client:
//! per-room cursors, and a `Subscribe` stream that reconnects with them.
//!
//! A client that remembers, per room, the newest seq it has seen can drop
//! its connection at any time: reconnecting with those cursors brings every
//! message it missed, once, in order, then the live ones.

use std::collections::BTreeMap;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use crate::pb::chat_service_client::ChatServiceClient;
use crate::pb::{self, client_event, server_event};

/// The first wait before reconnecting; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The newest seq seen in each room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursors(BTreeMap<String, u64>);

impl Cursors {
    /// Starts (or moves forward) a room's cursor.
    pub fn track(&mut self, room_id: &str, seq: u64) {
        let cursor = self.0.entry(room_id.to_owned()).or_default();
        *cursor = (*cursor).max(seq);
    }

    /// Moves cursors forward for the messages an event carries.
    pub fn observe(&mut self, event: &server_event::Event) {
        let message = match event {
            server_event::Event::Message(message) => Some(message),
            server_event::Event::Sent(sent) => sent.message.as_ref(),
            _ => None,
        };
        if let Some(message) = message {
            self.track(&message.room_id, message.seq);
        }
    }

    pub fn get(&self, room_id: &str) -> Option<u64> {
        self.0.get(room_id).copied()
    }

    /// The cursors as a resume request carries them.
    pub fn to_pb(&self) -> Vec<pb::RoomCursor> {
        self.0
            .iter()
            .map(|(room_id, &after_seq)| pb::RoomCursor {
                room_id: room_id.clone(),
                after_seq,
            })
            .collect()
    }

    /// The first event of a ChatStream that resumes from these cursors.
    pub fn resume_event(&self) -> pb::ClientEvent {
        pb::ClientEvent {
            event: Some(client_event::Event::Resume(client_event::Resume {
                cursors: self.to_pb(),
            })),
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    /// # Errors
    /// INVALID_ARGUMENT when the token is not valid metadata.
    pub fn new(access_token: &str) -> Result<Self, Status> {
        format!("Bearer {access_token}")
            .parse()
            .map(Self)
            .map_err(|_| Status::invalid_argument("the access token is not valid metadata"))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type AuthorizedChat = ChatServiceClient<InterceptedService<Channel, BearerToken>>;

/// A `Subscribe` stream that survives disconnections: it reconnects (with
/// backoff) and resumes from its cursors, so the events it yields hold
/// every message once, in order per room.
///
/// A `resync` event means more was missed in a room than a resume sends:
/// page the older messages with History (`before_seq = from_seq`).
pub struct ResumingSubscription {
    chat: AuthorizedChat,
    cursors: Cursors,
    stream: Option<Streaming<pb::ServerEvent>>,
    backoff: Duration,
}

impl ResumingSubscription {
    pub fn new(channel: Channel, token: BearerToken, cursors: Cursors) -> Self {
        Self {
            chat: ChatServiceClient::with_interceptor(channel, token),
            cursors,
            stream: None,
            backoff: FIRST_BACKOFF,
        }
    }

    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// Drops the current stream: the next call reconnects and resumes.
    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    /// Moves to another server (or another token); resumes there.
    pub fn reconnect_to(&mut self, channel: Channel, token: BearerToken) {
        self.chat = ChatServiceClient::with_interceptor(channel, token);
        self.stream = None;
    }

    /// The next event, reconnecting as often as needed.
    ///
    /// # Errors
    /// A status no reconnecting can fix (for example UNAUTHENTICATED: the
    /// token expired or was revoked; refresh it and `reconnect_to`).
    pub async fn next(&mut self) -> Result<server_event::Event, Status> {
        loop {
            let result = match &mut self.stream {
                Some(stream) => stream.message().await,
                None => match self
                    .chat
                    .subscribe(pb::SubscribeRequest {
                        cursors: self.cursors.to_pb(),
                    })
                    .await
                {
                    Ok(response) => {
                        self.stream = Some(response.into_inner());
                        continue;
                    }
                    Err(status) => Err(status),
                },
            };
            match result {
                Ok(Some(pb::ServerEvent { event: Some(event) })) => {
                    self.backoff = FIRST_BACKOFF;
                    self.cursors.observe(&event);
                    return Ok(event);
                }
                Ok(Some(pb::ServerEvent { event: None })) => {}
                Ok(None) => self.stream = None,
                Err(status) if worth_retrying(&status) => {
                    self.stream = None;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                Err(status) => {
                    self.stream = None;
                    return Err(status);
                }
            }
        }
    }
}

/// Whether reconnecting may help: not for a rejected token or request.
fn worth_retrying(status: &Status) -> bool {
    !matches!(
        status.code(),
        Code::Unauthenticated
            | Code::PermissionDenied
            | Code::NotFound
            | Code::InvalidArgument
            | Code::FailedPrecondition
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room_id: &str, seq: u64) -> server_event::Event {
        server_event::Event::Message(pb::Message {
            room_id: room_id.into(),
            seq,
            ..Default::default()
        })
    }

    #[test]
    fn cursors_only_move_forward() {
        let mut cursors = Cursors::default();
        cursors.observe(&message("a", 3));
        cursors.observe(&message("a", 2));
        cursors.observe(&message("b", 1));
        assert_eq!((cursors.get("a"), cursors.get("b")), (Some(3), Some(1)));
        assert_eq!(cursors.to_pb().len(), 2);
    }
}

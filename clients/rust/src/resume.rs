//! Client-side helpers for Rust programs using the generated client:
//! per-room cursors, and a `Subscribe` stream that reconnects with them.
//!
//! A client that remembers, per room, the newest seq it has seen can drop
//! its connection at any time: reconnecting with those cursors brings every
//! message it missed, once, in order, then the live ones.
//!
//! A connection can also die without closing (a laptop sleeps, a NAT
//! forgets it, the server hangs): the stream then just says nothing. The
//! server sends every stream a heartbeat each `ready.heartbeat_interval`,
//! so `ResumingSubscription` keeps a watchdog: nothing at all for twice
//! that interval (and a margin) and the stream counts as dead, is dropped,
//! and is resumed like any other lost one (docs/protocol.md).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use crate::pb::chat_service_client::ChatServiceClient;
use crate::pb::{self, client_event, server_event};

/// The first wait before reconnecting; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The heartbeat interval assumed until a `ready` tells it, and of a server
/// that does not (older ones beat every 30 s).
const UNTOLD_HEARTBEAT: Duration = Duration::from_secs(30);
/// Added to two heartbeat intervals before a silent stream counts as dead:
/// room for a beat that comes late over a slow network.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(1);

/// The newest seq seen in each room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursors(BTreeMap<String, u64>);

impl Cursors {
    /// Starts (or moves forward) a room's cursor.
    pub fn track(&mut self, room_id: &str, seq: u64) {
        let cursor = self.0.entry(room_id.to_owned()).or_default();
        *cursor = (*cursor).max(seq);
    }

    /// Moves a room's cursor forward for an event of its log (see
    /// [`log_position`]). An `error` about a room (a resume cursor the
    /// server refused: the room is gone, or the user left it or was
    /// removed) drops that room's cursor, so the next resume does not ask
    /// again. Every other event, `read` markers among them, leaves the
    /// cursors as they are.
    pub fn observe(&mut self, event: &server_event::Event) {
        if let server_event::Event::Error(error) = event {
            if !error.room_id.is_empty() {
                self.0.remove(&error.room_id);
            }
        }
        if let Some((room_id, seq)) = log_position(event) {
            self.track(room_id, seq);
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

/// The room and seq of an event of a room's log, or `None` for an event
/// outside it.
///
/// Every change to a room's conversation takes the room's next seq: a
/// `message` (a thread reply too) or `sent` is at its message's seq; an
/// `edited`, `deleted`, `reaction`, `member` or `room_updated` at the
/// event's own seq, not the seq of the message it changes. A resume from a cursor brings every event after
/// it, so a cursor moved by each of them never brings one twice. `read`
/// markers are per user, not room events: they have no seq (and neither
/// have `ready`, `presence`, `typing`, `pong`, `error` or `resync`).
pub fn log_position(event: &server_event::Event) -> Option<(&str, u64)> {
    use server_event::Event;
    match event {
        Event::Message(message) => Some((&message.room_id, message.seq)),
        Event::Sent(sent) => sent.message.as_ref().map(|m| (m.room_id.as_str(), m.seq)),
        Event::Edited(edited) => edited
            .message
            .as_ref()
            .map(|m| (m.room_id.as_str(), edited.seq)),
        Event::Deleted(deleted) => Some((&deleted.room_id, deleted.seq)),
        Event::Reaction(reaction) => Some((&reaction.room_id, reaction.seq)),
        Event::Member(member) => Some((&member.room_id, member.seq)),
        Event::RoomUpdated(updated) => updated
            .room
            .as_ref()
            .map(|room| (room.id.as_str(), updated.seq)),
        Event::Invited(_)
        | Event::Profile(_)
        | Event::Read(_)
        | Event::Ready(_)
        | Event::Presence(_)
        | Event::Typing(_)
        | Event::Pong(_)
        | Event::Error(_)
        | Event::Resync(_) => None,
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
/// every event of each room's log once, in order per room: messages
/// (thread replies too), edits, deletions and reactions, each moving its
/// room's cursor by its own seq ([`log_position`]). `read` markers have no
/// seq: they pass through and move no cursor. A [`crate::RoomView`] fed
/// these events keeps a room's messages, reactions and thread counts.
///
/// It yields every event, heartbeats (`pong` with nonce 0) included. A
/// stream that says nothing at all for twice its heartbeat interval (as
/// `ready` told it, plus a second) is taken for dead: it is dropped and
/// resumed, over a new connection when the subscription knows its endpoint
/// (`Client::connect` made it), since the old one is likely dead too. A
/// reconnection that brings nothing within the same time is given up and
/// tried again. `stalls` counts these.
///
/// A `resync` event means more was missed in a room than a resume sends:
/// page the older messages with History (`before_seq = from_seq`).
pub struct ResumingSubscription {
    chat: AuthorizedChat,
    token: BearerToken,
    /// Where a new connection comes from after a stall; without it, the
    /// next stream opens on the channel it was given.
    endpoint: Option<Endpoint>,
    cursors: Cursors,
    stream: Option<Streaming<pb::ServerEvent>>,
    backoff: Duration,
    /// As the last `ready` told it.
    heartbeat_interval: Option<Duration>,
    /// When the current stream last said anything, or began to open.
    heard_at: Instant,
    stalls: u64,
}

impl ResumingSubscription {
    pub fn new(channel: Channel, token: BearerToken, cursors: Cursors) -> Self {
        Self {
            chat: ChatServiceClient::with_interceptor(channel, token.clone()),
            token,
            endpoint: None,
            cursors,
            stream: None,
            backoff: FIRST_BACKOFF,
            heartbeat_interval: None,
            heard_at: Instant::now(),
            stalls: 0,
        }
    }

    /// After a stall, reconnects over a new connection to `endpoint`
    /// rather than the channel it was given.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    pub fn cursors(&self) -> &Cursors {
        &self.cursors
    }

    /// How often the server said it sends this subscription a heartbeat,
    /// once a `ready` has told it.
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.heartbeat_interval
    }

    /// How many times a stream (or a reconnection) was given up as dead for
    /// saying nothing for two heartbeat intervals.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// Drops the current stream: the next call reconnects and resumes.
    pub fn disconnect(&mut self) {
        self.stream = None;
    }

    /// Moves to another server (or another token); resumes there. Its
    /// streams reconnect over `channel` from then on, after a stall too: the
    /// endpoint it had may not be that server's.
    pub fn reconnect_to(&mut self, channel: Channel, token: BearerToken) {
        self.chat = ChatServiceClient::with_interceptor(channel, token.clone());
        self.token = token;
        self.endpoint = None;
        self.stream = None;
    }

    /// The next event, reconnecting as often as needed.
    ///
    /// Cancel-safe: dropping the future loses no event (a stream being
    /// opened is opened again on the next call).
    ///
    /// # Errors
    /// A status no reconnecting can fix (for example UNAUTHENTICATED: the
    /// token expired or was revoked; refresh it and `reconnect_to`).
    pub async fn next(&mut self) -> Result<server_event::Event, Status> {
        loop {
            let deadline = self.heard_at + self.patience();
            let result = match &mut self.stream {
                Some(stream) => match tokio::time::timeout_at(deadline, stream.message()).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.stalled();
                        continue;
                    }
                },
                None => {
                    self.heard_at = Instant::now();
                    let deadline = self.heard_at + self.patience();
                    let request = pb::SubscribeRequest {
                        cursors: self.cursors.to_pb(),
                    };
                    match tokio::time::timeout_at(deadline, self.chat.subscribe(request)).await {
                        Ok(Ok(response)) => {
                            self.stream = Some(response.into_inner());
                            continue;
                        }
                        Ok(Err(status)) => Err(status),
                        Err(_) => {
                            self.stalled();
                            continue;
                        }
                    }
                }
            };
            match result {
                Ok(Some(pb::ServerEvent { event: Some(event) })) => {
                    self.heard_at = Instant::now();
                    self.backoff = FIRST_BACKOFF;
                    if let server_event::Event::Ready(ready) = &event {
                        self.heartbeat_interval = ready
                            .heartbeat_interval
                            .and_then(|told| Duration::try_from(told).ok())
                            .filter(|told| !told.is_zero());
                    }
                    self.cursors.observe(&event);
                    return Ok(event);
                }
                Ok(Some(pb::ServerEvent { event: None })) => self.heard_at = Instant::now(),
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

    /// How long a stream may say nothing before it counts as dead.
    fn patience(&self) -> Duration {
        2 * self.heartbeat_interval.unwrap_or(UNTOLD_HEARTBEAT) + WATCHDOG_MARGIN
    }

    /// Gives up on a silent stream (dropping it cancels it), and on its
    /// connection when a new one can be made.
    fn stalled(&mut self) {
        self.stalls += 1;
        self.stream = None;
        if let Some(endpoint) = &self.endpoint {
            self.chat =
                ChatServiceClient::with_interceptor(endpoint.connect_lazy(), self.token.clone());
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

    #[test]
    fn edits_and_deletions_move_their_rooms_cursor_by_their_own_seq() {
        let mut cursors = Cursors::default();
        cursors.observe(&message("a", 3));
        cursors.observe(&server_event::Event::Edited(server_event::Edited {
            seq: 5,
            message: Some(pb::Message {
                room_id: "a".into(),
                seq: 3,
                ..Default::default()
            }),
        }));
        assert_eq!(
            cursors.get("a"),
            Some(5),
            "the edit's seq, not the message's"
        );
        cursors.observe(&server_event::Event::Deleted(server_event::Deleted {
            seq: 6,
            room_id: "a".into(),
            ..Default::default()
        }));
        assert_eq!(cursors.get("a"), Some(6));
    }

    fn reaction(room_id: &str, seq: u64, added: bool) -> server_event::Event {
        server_event::Event::Reaction(server_event::Reaction {
            seq,
            room_id: room_id.into(),
            message_id: "m1".into(),
            emoji: "👍".into(),
            user: None,
            added,
        })
    }

    #[test]
    fn reactions_move_their_rooms_cursor_by_their_own_seq() {
        let mut cursors = Cursors::default();
        cursors.observe(&message("a", 3));
        cursors.observe(&reaction("a", 4, true));
        assert_eq!(cursors.get("a"), Some(4));
        cursors.observe(&reaction("a", 5, false));
        assert_eq!(cursors.get("a"), Some(5), "a removal is an event too");
        cursors.observe(&reaction("b", 2, true));
        assert_eq!((cursors.get("a"), cursors.get("b")), (Some(5), Some(2)));
    }

    #[test]
    fn read_markers_have_no_seq_and_move_no_cursor() {
        let mut cursors = Cursors::default();
        cursors.observe(&message("a", 3));
        let read = server_event::Event::Read(server_event::Read {
            room_id: "a".into(),
            user: None,
            last_read_seq: 9,
        });
        assert_eq!(log_position(&read), None);
        cursors.observe(&read);
        let other_room = server_event::Event::Read(server_event::Read {
            room_id: "b".into(),
            user: None,
            last_read_seq: 1,
        });
        cursors.observe(&other_room);
        assert_eq!(
            cursors.to_pb().len(),
            1,
            "no cursor for a room heard of only by a marker"
        );
        assert_eq!(cursors.get("a"), Some(3));
    }

    #[test]
    fn a_thread_reply_is_a_message_of_the_log() {
        let reply = server_event::Event::Message(pb::Message {
            room_id: "a".into(),
            seq: 7,
            thread_root_id: "root".into(),
            ..Default::default()
        });
        assert_eq!(log_position(&reply), Some(("a", 7)));
    }

    #[test]
    fn a_refused_room_loses_its_cursor() {
        let mut cursors = Cursors::default();
        cursors.track("a", 3);
        cursors.track("b", 4);
        cursors.observe(&server_event::Event::Error(server_event::Error {
            client_msg_id: String::new(),
            code: 7,
            message: "you are not a member of room a".into(),
            room_id: "a".into(),
        }));
        assert_eq!((cursors.get("a"), cursors.get("b")), (None, Some(4)));
    }
}

//! The handlers' input validation: pure functions from protobuf requests to
//! domain values.
//!
//! Every handler checks its request here (after authenticating the caller)
//! before it touches the store or the hub, so these functions are all there
//! is to a request's syntax. Being pure, they are what the property tests
//! and the fuzzer (`fuzz/`, through [`check_encoded`]) exercise; what they
//! accept may still fail later on facts only the database knows
//! (membership, an unknown user, a spent refresh token).
//!
//! A function takes its request by value when the domain value keeps the
//! request's strings (passwords, message text), by reference otherwise.

use crate::domain::{
    ClientMsgId, Emoji, MessageId, MessageText, Password, RoomId, RoomName, SessionId, Username,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::pb;
use crate::pb::client_event::Event;
use crate::store::RoomPage;

/// History page size when the request says 0.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// The largest history page: bounds one response's size and query time.
pub const MAX_HISTORY_LIMIT: u32 = 200;
/// The most rooms one Subscribe or resume may name: each costs a database
/// look-up before the stream starts.
pub const MAX_CURSORS: usize = 1000;

/// Rooms per ListRooms page when the request says 0.
pub const DEFAULT_ROOM_PAGE: u32 = 100;
/// The largest ListRooms page: bounds one response's size and query time.
pub const MAX_ROOM_PAGE: u32 = 1000;

/// Where a client's copy of a room ends: the room, and the last seq it has.
pub type Cursor = (RoomId, u64);

/// # Errors
/// INVALID_ARGUMENT for a bad username, then for a bad password.
pub fn register(request: pb::RegisterRequest) -> Result<(Username, Password)> {
    Ok((
        Username::parse(&request.username)?,
        Password::parse(request.password)?,
    ))
}

/// The one answer to every failed login, whatever failed.
pub fn bad_credentials() -> Error {
    Error::unauthenticated("invalid username or password")
}

/// # Errors
/// UNAUTHENTICATED ([`bad_credentials`]) for a malformed username or
/// password: they can belong to no account, and the answer must not tell
/// them apart from a wrong password.
pub fn login(request: pb::LoginRequest) -> Result<(Username, Password)> {
    match (
        Username::parse(&request.username),
        Password::parse(request.password),
    ) {
        (Ok(username), Ok(password)) => Ok((username, password)),
        _ => Err(bad_credentials()),
    }
}

/// The refresh token to look up.
///
/// # Errors
/// INVALID_ARGUMENT when it is empty.
pub fn refresh(request: &pb::RefreshRequest) -> Result<&str> {
    if request.refresh_token.is_empty() {
        return Err(Error::invalid("refresh_token is required"));
    }
    Ok(&request.refresh_token)
}

/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `session_id`.
pub fn revoke_session(request: &pb::RevokeSessionRequest) -> Result<SessionId> {
    Ok(SessionId::parse("session_id", &request.session_id)?)
}

/// # Errors
/// INVALID_ARGUMENT for a bad room name.
pub fn create_room(request: &pb::CreateRoomRequest) -> Result<RoomName> {
    Ok(RoomName::parse(&request.name)?)
}

/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `room_id`.
pub fn join_room(request: &pb::JoinRoomRequest) -> Result<RoomId> {
    Ok(RoomId::parse("room_id", &request.room_id)?)
}

/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `room_id`.
pub fn leave_room(request: &pb::LeaveRoomRequest) -> Result<RoomId> {
    Ok(RoomId::parse("room_id", &request.room_id)?)
}

/// A page of ListRooms, checked: a page size of 0 means
/// [`DEFAULT_ROOM_PAGE`]; larger ones than [`MAX_ROOM_PAGE`] are capped.
///
/// # Errors
/// INVALID_ARGUMENT for a page token this server did not issue.
pub fn list_rooms(request: &pb::ListRoomsRequest) -> Result<RoomPage> {
    let after = if request.page_token.is_empty() {
        None
    } else {
        Some(parse_room_page_token(&request.page_token)?)
    };
    Ok(RoomPage {
        after,
        limit: match request.page_size {
            0 => DEFAULT_ROOM_PAGE,
            n => n.min(MAX_ROOM_PAGE),
        },
        joined_only: request.joined_only,
    })
}

/// The page token that continues after `last`: its id, URL-safe base64.
pub fn room_page_token(last: RoomId) -> String {
    URL_SAFE_NO_PAD.encode(last.uuid().as_bytes())
}

fn parse_room_page_token(token: &str) -> Result<RoomId> {
    let invalid = || Error::invalid("page_token is not one this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let id = uuid::Uuid::from_slice(&bytes).map_err(|_| invalid())?;
    Ok(RoomId::from_uuid(id))
}

/// The current and the new password of a ChangePassword.
///
/// # Errors
/// PERMISSION_DENIED when the current password cannot be one (too short or
/// long: the same answer as a wrong one); INVALID_ARGUMENT for a new
/// password that breaks the rules.
pub fn change_password(request: pb::ChangePasswordRequest) -> Result<(Password, Password)> {
    let current = Password::parse(request.current_password).map_err(|_| wrong_password())?;
    let new = Password::parse(request.new_password)
        .map_err(|error| Error::invalid(format!("new_password: {}", error)))?;
    Ok((current, new))
}

/// The answer to a wrong current password (ChangePassword, DeleteAccount).
pub fn wrong_password() -> Error {
    Error::denied("wrong password")
}

/// The other user's name.
///
/// # Errors
/// INVALID_ARGUMENT for a bad username.
pub fn open_direct_room(request: &pb::OpenDirectRoomRequest) -> Result<Username> {
    Ok(Username::parse(&request.username)?)
}

/// A message to send, checked; the sender is the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessage {
    pub room_id: RoomId,
    pub text: MessageText,
    pub client_msg_id: ClientMsgId,
    pub reply_to_id: Option<MessageId>,
    pub thread_root_id: Option<MessageId>,
}

/// # Errors
/// INVALID_ARGUMENT for a bad room id, then text, then client_msg_id, then
/// a malformed reply_to_id or thread_root_id.
pub fn send_message(request: pb::SendMessageRequest) -> Result<SendMessage> {
    Ok(SendMessage {
        room_id: RoomId::parse("room_id", &request.room_id)?,
        text: MessageText::parse(request.text)?,
        client_msg_id: ClientMsgId::parse(request.client_msg_id)?,
        reply_to_id: optional_message_id("reply_to_id", &request.reply_to_id)?,
        thread_root_id: optional_message_id("thread_root_id", &request.thread_root_id)?,
    })
}

/// An optional message id: empty means none.
fn optional_message_id(field: &str, value: &str) -> Result<Option<MessageId>> {
    if value.is_empty() {
        return Ok(None);
    }
    Ok(MessageId::parse(field, value).map(Some)?)
}

/// A reaction to add or remove, checked.
#[derive(Clone, Debug)]
pub struct Reaction {
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub emoji: Emoji,
}

/// # Errors
/// INVALID_ARGUMENT for a malformed id, or an `emoji` that is not one
/// emoji.
pub fn reaction(room_id: &str, message_id: &str, emoji: &str) -> Result<Reaction> {
    Ok(Reaction {
        room_id: RoomId::parse("room_id", room_id)?,
        message_id: MessageId::parse("message_id", message_id)?,
        emoji: Emoji::parse(emoji.to_owned())?,
    })
}

/// A page of a thread, checked.
#[derive(Clone, Copy, Debug)]
pub struct ThreadPage {
    pub room_id: RoomId,
    pub root_id: MessageId,
    pub before_seq: u64,
    /// 1 to [`MAX_HISTORY_LIMIT`].
    pub limit: u32,
}

/// Paged like History: a limit of 0 means [`DEFAULT_HISTORY_LIMIT`];
/// larger ones are clamped to [`MAX_HISTORY_LIMIT`].
///
/// # Errors
/// INVALID_ARGUMENT for a missing or malformed id.
pub fn list_thread(request: &pb::ListThreadRequest) -> Result<ThreadPage> {
    Ok(ThreadPage {
        room_id: RoomId::parse("room_id", &request.room_id)?,
        root_id: MessageId::parse("thread_root_id", &request.thread_root_id)?,
        before_seq: request.before_seq,
        limit: page_limit(request.limit),
    })
}

fn page_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_HISTORY_LIMIT,
        n => n.min(MAX_HISTORY_LIMIT),
    }
}

/// An edit, checked.
#[derive(Clone, Debug)]
pub struct EditMessage {
    pub room_id: RoomId,
    pub message_id: MessageId,
    /// Under the rules of a send's text.
    pub text: MessageText,
}

/// # Errors
/// INVALID_ARGUMENT for a malformed id or a text that breaks the rules.
pub fn edit_message(request: pb::EditMessageRequest) -> Result<EditMessage> {
    Ok(EditMessage {
        room_id: RoomId::parse("room_id", &request.room_id)?,
        message_id: MessageId::parse("message_id", &request.message_id)?,
        text: MessageText::parse(request.text)?,
    })
}

/// The room and message to delete.
///
/// # Errors
/// INVALID_ARGUMENT for a malformed id.
pub fn delete_message(request: &pb::DeleteMessageRequest) -> Result<(RoomId, MessageId)> {
    Ok((
        RoomId::parse("room_id", &request.room_id)?,
        MessageId::parse("message_id", &request.message_id)?,
    ))
}

/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `room_id`.
pub fn send_typing(request: &pb::SendTypingRequest) -> Result<RoomId> {
    Ok(RoomId::parse("room_id", &request.room_id)?)
}

/// The room and seq of a MarkRead. Any seq is accepted: the marker is
/// clamped to the room's newest seq, and never moves back.
///
/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `room_id`.
pub fn mark_read(request: &pb::MarkReadRequest) -> Result<(RoomId, u64)> {
    Ok((RoomId::parse("room_id", &request.room_id)?, request.seq))
}

/// A page of a room's history, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    pub room_id: RoomId,
    /// Only messages with a smaller seq; 0 means from the newest.
    pub before_seq: u64,
    /// 1 to [`MAX_HISTORY_LIMIT`].
    pub limit: u32,
}

/// A limit of 0 means [`DEFAULT_HISTORY_LIMIT`]; larger ones are clamped to
/// [`MAX_HISTORY_LIMIT`].
///
/// # Errors
/// INVALID_ARGUMENT for a missing or malformed `room_id`.
pub fn history(request: &pb::HistoryRequest) -> Result<HistoryPage> {
    Ok(HistoryPage {
        room_id: RoomId::parse("room_id", &request.room_id)?,
        before_seq: request.before_seq,
        limit: page_limit(request.limit),
    })
}

/// The room whose online members to list; `None` for every online user.
///
/// # Errors
/// INVALID_ARGUMENT for a malformed `room_id`.
pub fn list_online_users(request: &pb::ListOnlineUsersRequest) -> Result<Option<RoomId>> {
    if request.room_id.is_empty() {
        return Ok(None);
    }
    Ok(RoomId::parse("room_id", &request.room_id).map(Some)?)
}

/// The syntax of resume cursors (Subscribe's, or a ChatStream's `resume`):
/// at most [`MAX_CURSORS`], each a room id, no room twice. Whether the
/// caller is a member of each is for the store to say.
///
/// # Errors
/// INVALID_ARGUMENT for too many cursors, else for the first bad one.
pub fn cursors(cursors: &[pb::RoomCursor]) -> Result<Vec<Cursor>> {
    if cursors.len() > MAX_CURSORS {
        return Err(Error::invalid(format!(
            "at most {MAX_CURSORS} cursors, got {}",
            cursors.len()
        )));
    }
    let mut checked: Vec<Cursor> = Vec::with_capacity(cursors.len());
    for cursor in cursors {
        let room_id = RoomId::parse("cursors.room_id", &cursor.room_id)?;
        if checked.iter().any(|(seen, _)| *seen == room_id) {
            return Err(Error::invalid(format!(
                "room {room_id} appears twice in cursors"
            )));
        }
        checked.push((room_id, cursor.after_seq));
    }
    Ok(checked)
}

/// A ChatStream client event after the first, checked. (A first event that
/// is a `resume` goes to [`cursors`] instead.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Send(SendMessage),
    Typing(RoomId),
    Ping { nonce: u64 },
}

/// A client event that failed its checks, as its `error` event reports it.
#[derive(Debug)]
pub struct RejectedEvent {
    /// The `client_msg_id` of the send that failed; empty for other events.
    pub client_msg_id: String,
    pub error: Error,
}

/// # Errors
/// INVALID_ARGUMENT for a bad send or typing event, a `resume` (valid only
/// first), or no event at all; a bad send carries its `client_msg_id`.
pub fn client_event(event: pb::ClientEvent) -> Result<ClientEvent, RejectedEvent> {
    let other = |error: Error| RejectedEvent {
        client_msg_id: String::new(),
        error,
    };
    match event.event {
        Some(Event::Send(send)) => {
            let client_msg_id = send.client_msg_id.clone();
            send_message(send)
                .map(ClientEvent::Send)
                .map_err(|error| RejectedEvent {
                    client_msg_id,
                    error,
                })
        }
        Some(Event::Typing(typing)) => RoomId::parse("room_id", &typing.room_id)
            .map(ClientEvent::Typing)
            .map_err(|error| other(error.into())),
        Some(Event::Ping(ping)) => Ok(ClientEvent::Ping { nonce: ping.nonce }),
        Some(Event::Resume(_)) => Err(other(Error::invalid(
            "resume is only valid as the first event of a stream",
        ))),
        None => Err(other(Error::invalid("event is required"))),
    }
}

/// Which request [`check_encoded`] decodes its bytes as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Register,
    Login,
    Refresh,
    RevokeSession,
    CreateRoom,
    JoinRoom,
    LeaveRoom,
    OpenDirectRoom,
    SendMessage,
    SendTyping,
    History,
    ListOnlineUsers,
    Subscribe,
    /// A ChatStream event, both as a first event and as a later one.
    ClientEvent,
    EditMessage,
    DeleteMessage,
    AddReaction,
    RemoveReaction,
    MarkRead,
    ListThread,
}

impl RequestKind {
    pub const ALL: [Self; 20] = [
        Self::Register,
        Self::Login,
        Self::Refresh,
        Self::RevokeSession,
        Self::CreateRoom,
        Self::JoinRoom,
        Self::LeaveRoom,
        Self::OpenDirectRoom,
        Self::SendMessage,
        Self::SendTyping,
        Self::History,
        Self::ListOnlineUsers,
        Self::Subscribe,
        Self::ClientEvent,
        Self::EditMessage,
        Self::DeleteMessage,
        Self::AddReaction,
        Self::RemoveReaction,
        Self::MarkRead,
        Self::ListThread,
    ];

    /// Every byte names a kind, so no fuzzer input is wasted.
    pub fn from_byte(byte: u8) -> Self {
        Self::ALL[usize::from(byte) % Self::ALL.len()]
    }
}

/// Decodes `bytes` as the request `kind` names, as tonic would, and runs
/// that request's validation: the fuzzer's entry point.
///
/// # Errors
/// INVALID_ARGUMENT when the bytes are not such a request; otherwise the
/// validation's own error.
pub fn check_encoded(kind: RequestKind, bytes: &[u8]) -> Result<()> {
    fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M> {
        M::decode(bytes).map_err(|e| Error::invalid(format!("undecodable request: {e}")))
    }
    match kind {
        RequestKind::Register => register(decode(bytes)?).map(drop),
        RequestKind::Login => login(decode(bytes)?).map(drop),
        RequestKind::Refresh => refresh(&decode(bytes)?).map(drop),
        RequestKind::RevokeSession => revoke_session(&decode(bytes)?).map(drop),
        RequestKind::CreateRoom => create_room(&decode(bytes)?).map(drop),
        RequestKind::JoinRoom => join_room(&decode(bytes)?).map(drop),
        RequestKind::LeaveRoom => leave_room(&decode(bytes)?).map(drop),
        RequestKind::OpenDirectRoom => open_direct_room(&decode(bytes)?).map(drop),
        RequestKind::SendMessage => send_message(decode(bytes)?).map(drop),
        RequestKind::SendTyping => send_typing(&decode(bytes)?).map(drop),
        RequestKind::History => history(&decode(bytes)?).map(drop),
        RequestKind::EditMessage => edit_message(decode(bytes)?).map(drop),
        RequestKind::DeleteMessage => delete_message(&decode(bytes)?).map(drop),
        RequestKind::AddReaction => {
            let r: pb::AddReactionRequest = decode(bytes)?;
            reaction(&r.room_id, &r.message_id, &r.emoji).map(drop)
        }
        RequestKind::RemoveReaction => {
            let r: pb::RemoveReactionRequest = decode(bytes)?;
            reaction(&r.room_id, &r.message_id, &r.emoji).map(drop)
        }
        RequestKind::MarkRead => mark_read(&decode(bytes)?).map(drop),
        RequestKind::ListThread => list_thread(&decode(bytes)?).map(drop),
        RequestKind::ListOnlineUsers => list_online_users(&decode(bytes)?).map(drop),
        RequestKind::Subscribe => {
            cursors(&decode::<pb::SubscribeRequest>(bytes)?.cursors).map(drop)
        }
        RequestKind::ClientEvent => {
            let event: pb::ClientEvent = decode(bytes)?;
            if let Some(Event::Resume(resume)) = &event.event {
                cursors(&resume.cursors)?;
            }
            client_event(event)
                .map(drop)
                .map_err(|rejected| rejected.error)
        }
    }
}

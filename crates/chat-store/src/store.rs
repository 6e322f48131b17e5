//! The store interface the server talks to.

use std::sync::Arc;

use async_trait::async_trait;

use chat_domain::{
    DisplayName, Message, MessageId, Room, RoomEvent, RoomId, Session, SessionId, Timestamp, User,
    UserId, Username,
};

use crate::error::Result;
use crate::model::{
    Appended, Changed, MemberCursor, MemberEntry, Membership, MembershipChange, MembershipChanged,
    MessageChange, NewMessage, NewRoom, NewSession, RoomPage, Rotation, Thread,
};
use crate::read_state::{ReadMarker, ReadPosition};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of a server setting, storing `default` first if it has none.
    async fn setting_or_init(&self, key: &str, default: &str) -> Result<String>;

    /// Removes a server setting, returning the value it had.
    async fn remove_setting(&self, key: &str) -> Result<Option<String>>;

    /// # Errors
    /// `Taken` when the username is taken (in any case, or by a
    /// deleted account), or looks like one that is (its skeleton).
    async fn create_user(
        &self,
        id: UserId,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<User>;

    /// The user and its password hash, by username (any case); none for a
    /// disabled account (`AdminStore::disabled_credentials`).
    async fn credentials(&self, username: &Username) -> Result<Option<(User, String)>>;

    async fn user_by_name(&self, username: &Username) -> Result<Option<User>>;

    /// Stores a new session and, in the same transaction, revokes the
    /// user's oldest live sessions beyond `session.max_sessions`; returns
    /// those, whose streams must end.
    async fn create_session(&self, session: NewSession) -> Result<Vec<SessionId>>;

    /// The session's user, if the session is live (not revoked, not expired,
    /// its account not disabled).
    async fn live_session(
        &self,
        session_id: SessionId,
        user_id: UserId,
        now: Timestamp,
    ) -> Result<Option<User>>;

    /// Spends a refresh token and stores its successor, detecting reuse.
    /// The session lives on until `expires_at`, but never beyond `max_age`
    /// after it was created.
    async fn rotate_refresh_token(
        &self,
        presented_hash: &[u8],
        next_hash: &[u8],
        expires_at: Timestamp,
        max_age: std::time::Duration,
        now: Timestamp,
    ) -> Result<Rotation>;

    /// Deletes refresh tokens past their expiry (spent or not), and the
    /// sessions that ended (revoked or expired) more than `keep_ended` ago.
    /// Returns how many rows went. Works in small batches, so that the
    /// writer is never held for long.
    async fn purge_sessions(&self, now: Timestamp, keep_ended: std::time::Duration) -> Result<u64>;

    async fn list_sessions(&self, user_id: UserId, now: Timestamp) -> Result<Vec<Session>>;

    /// Revokes one of the user's sessions; false if it has none by that id.
    async fn revoke_session(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<bool>;

    async fn touch_session(&self, session_id: SessionId, now: Timestamp) -> Result<()>;

    /// Revokes every live session of the user but `keep`, and returns them.
    async fn revoke_other_sessions(
        &self,
        user_id: UserId,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>>;

    /// Replaces the user's password hash and, in the same transaction,
    /// revokes every live session but `keep`; returns those sessions.
    async fn change_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        keep: SessionId,
        now: Timestamp,
    ) -> Result<Vec<SessionId>>;

    /// Deletes an account: its sessions are revoked, its refresh tokens and
    /// memberships removed, its username freed and shown as `[deleted]`.
    /// Its messages stay, so every room's history keeps its seqs. Returns
    /// the sessions that were live, whose streams must end.
    async fn delete_user(&self, user_id: UserId, now: Timestamp) -> Result<Vec<SessionId>>;

    /// Creates a group room with its creator as owner. Creating is not an
    /// event of the room's log: the room starts at seq 0, and the first
    /// event is whatever comes first (a message, a join).
    ///
    /// # Errors
    /// `Taken` when a group room has the name (in any case);
    /// `LimitReached` when the creator is in `max_rooms` group rooms.
    async fn create_room(&self, room: NewRoom) -> Result<Room>;

    /// Joins, leaves, invites, sets a role, removes, bans or unbans, or
    /// changes a room's settings, as the permission matrix allows the
    /// actor (`chat_domain::permit`), asked in the transaction that makes
    /// the change, which adds its events to the room's log.
    ///
    /// # Errors
    /// `NotFound` for no such room or user; `Forbidden` for what the
    /// actor's standing does not allow; `Refused` for what the room or the
    /// target does not allow (a direct room's roles, inviting a member);
    /// `Taken` for a name in use; `LimitReached` when joining would pass
    /// `max_rooms`.
    async fn change_membership(&self, change: &MembershipChange) -> Result<MembershipChanged>;

    /// A page of a room's members, for a member.
    ///
    /// # Errors
    /// `NotFound` for no such room; `Forbidden` for a non-member.
    async fn list_members(
        &self,
        room_id: RoomId,
        viewer: UserId,
        after: Option<MemberCursor>,
        limit: u32,
    ) -> Result<Vec<MemberEntry>>;

    /// Sets a user's display name (`None` keeps it), and returns the user
    /// as it is now with the rooms it is in (whose members hear of it).
    ///
    /// # Errors
    /// `NotFound` for a user without an account.
    async fn update_profile(
        &self,
        user_id: UserId,
        display_name: Option<&DisplayName>,
    ) -> Result<(User, Vec<RoomId>)>;

    /// At most `limit` users whose username or display name starts with
    /// `prefix` (lower-cased), by username, leaving out those who blocked
    /// `viewer`.
    async fn search_users(&self, viewer: UserId, prefix: &str, limit: u32) -> Result<Vec<User>>;

    /// `blocker` blocks `username` (again is no error), and the blocked
    /// user as they are.
    ///
    /// # Errors
    /// `NotFound` for an unknown user, `Invalid` for oneself,
    /// `LimitReached` past [`chat_domain::MAX_BLOCKED_USERS`].
    async fn block_user(
        &self,
        blocker: UserId,
        username: &Username,
        now: Timestamp,
    ) -> Result<User>;

    /// Lifts a block (none is no error); returns the user.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn unblock_user(&self, blocker: UserId, username: &Username) -> Result<User>;

    /// The users `blocker` blocks, by username.
    async fn blocked_users(&self, blocker: UserId) -> Result<Vec<User>>;

    /// Whether `blocker` blocks `blocked`.
    async fn blocks(&self, blocker: UserId, blocked: UserId) -> Result<bool>;

    /// A page of the rooms the user may see (every public group room, and
    /// the rooms the user is in or invited to; or only the rooms it is in),
    /// in id order, which
    /// is creation order: at most `page.limit` rooms with an id above
    /// `page.after`.
    async fn list_rooms(&self, user_id: UserId, page: RoomPage) -> Result<Vec<Room>>;

    /// The direct room of two users, created (with both as members) on first use.
    ///
    /// # Errors
    /// `Forbidden` when `other` blocks `me`.
    async fn open_direct_room(&self, me: &User, other: &User, now: Timestamp) -> Result<Room>;

    /// Every room the user is a member of, with its newest seq.
    async fn room_positions_of(&self, user_id: UserId) -> Result<Vec<(RoomId, u64)>>;

    /// The newest seq of each of these rooms that exists.
    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>>;

    async fn membership(&self, room_id: RoomId, user_id: UserId) -> Result<Membership>;

    /// The user's membership of a room, and the room's newest seq (0 when
    /// it has no messages or does not exist).
    async fn room_position(&self, room_id: RoomId, user_id: UserId) -> Result<(Membership, u64)>;

    /// Appends messages in one transaction, as `plan_appends` decides. One
    /// result per message: a client error (not a member, no such room, key
    /// reused elsewhere) fails only its own message; a database error fails
    /// the call, and nothing of the batch is stored. The batch is shared,
    /// not borrowed: a store may hand it to a thread of its own without
    /// copying it.
    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>>;

    /// Up to `limit` top-level messages (no thread replies) with seq below
    /// `before_seq` (0: from the newest), ascending, as `viewer` sees them,
    /// and whether older ones remain.
    async fn history(
        &self,
        room_id: RoomId,
        viewer: UserId,
        before_seq: u64,
        limit: u32,
    ) -> Result<(Vec<Message>, bool)>;

    /// A thread's root and up to `limit` of its replies with seq below
    /// `before_seq` (0: from the newest), ascending, as `viewer` sees them.
    ///
    /// # Errors
    /// `NotFound` when the root is not a message of the room; `Invalid`
    /// when it is a thread reply.
    async fn thread(
        &self,
        room_id: RoomId,
        root_id: MessageId,
        viewer: UserId,
        before_seq: u64,
        limit: u32,
    ) -> Result<Thread>;

    /// The newest `limit` events of the room's log with a seq above
    /// `after_seq` and at most `up_to_seq`, ascending, and whether more
    /// than `limit` were there. Each carries its message as it is now.
    async fn room_events(
        &self,
        room_id: RoomId,
        after_seq: u64,
        up_to_seq: u64,
        limit: u32,
    ) -> Result<(Vec<RoomEvent>, bool)>;

    /// Edits or deletes a message (by its sender), or adds or removes a
    /// member's reaction, in one transaction that adds the change to the
    /// room's log at the room's next seq. Returns the message as it is now
    /// (as the actor sees it), and the event; no event when nothing
    /// changed (the same text, a second deletion, a reaction added twice or
    /// removed when absent or from a tombstone). A deletion erases the
    /// text, the reactions and the mentions: the message stays as a
    /// tombstone.
    ///
    /// # Errors
    /// `NotFound` for no such room, or no such message in it; `Forbidden`
    /// for a non-member, or a member editing or deleting what they did not
    /// send; `Refused` for an edit of, or a reaction to, a deleted message;
    /// `LimitReached` for a reaction beyond `MAX_REACTIONS_PER_USER`.
    async fn change_message(&self, change: &MessageChange) -> Result<Changed>;

    /// Where the user stands in a room, for `MarkRead`: member or not, the
    /// room's newest seq, the user's stored read marker, and how many
    /// members the room has, counted up to `members_up_to` (a large room
    /// costs no more than that).
    async fn read_position(
        &self,
        room_id: RoomId,
        user_id: UserId,
        members_up_to: u32,
    ) -> Result<ReadPosition>;

    /// Moves read markers forward, all in one transaction: each stored
    /// marker becomes the larger of itself and the given seq, so that
    /// writers (several nodes, in any order) never take one back. A marker
    /// of a user who is not a member changes nothing.
    async fn store_read_markers(&self, markers: &[ReadMarker]) -> Result<()>;

    /// Closes the connections, after pending writes.
    async fn close(&self);
}

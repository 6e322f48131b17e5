//! Domain types: once you hold one, it is valid.
//!
//! Protobuf values are parsed into these at the service boundary; the store
//! and the hub only ever see domain types.

#![forbid(unsafe_code)]

mod emoji;
mod error;
mod mention;
mod names;
mod rooms;
mod username_chars;

pub use emoji::Emoji;
pub use error::ParseError;
pub use rooms::{
    permit, DisplayName, MemberChange, MemberRole, Refusal, RoomAction, RoomKind, RoomShape,
    RoomTopic, RoomVisibility, Standing,
};

use names::check_name_characters;

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use unicode_normalization::UnicodeNormalization as _;
use uuid::Uuid;

/// The most distinct names one message mentions; later ones are not
/// mentions (the message is still sent). Fifty covers any real roll-call
/// while bounding the rows one message adds to `message_mentions` and the
/// members one message can notify.
pub const MAX_MENTIONS: usize = 50;

/// The keys ([`Username::key`]) of the usernames `text` mentions, each
/// once, in the order of first appearance, at most [`MAX_MENTIONS`]; the
/// rule is in `mention`. A name that is not a valid username (too short or
/// too long) mentions no one: it is not cut to fit, since a prefix of it
/// would name someone else.
pub fn mentions(text: &MessageText) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for name in mention::names(text.as_str()) {
        let Ok(username) = Username::parse(name) else {
            continue;
        };
        let key = username.key();
        if !keys.contains(&key) {
            keys.push(key);
            if keys.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    keys
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id; UUIDv7, so ids sort by creation time.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }

            /// Parses an id a client sent.
            ///
            /// # Errors
            /// A [`ParseError`] naming the field when it is empty or not an id.
            pub fn parse(field: &str, value: &str) -> Result<Self, ParseError> {
                if value.is_empty() {
                    return Err(ParseError::new(format!("{field} is required")));
                }
                Uuid::try_parse(value)
                    .map(Self)
                    .map_err(|_| ParseError::new(format!("{field} is not a valid {}", $what)))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a user account.
    UserId,
    "user id"
);
id_type!(
    /// Identifies one login (one device) of a user.
    SessionId,
    "session id"
);
id_type!(
    /// Identifies a group or direct room.
    RoomId,
    "room id"
);
id_type!(
    /// Identifies a stored message.
    MessageId,
    "message id"
);

/// 3 to 32 of `[A-Za-z0-9_.-]`; compared case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    /// # Errors
    /// A [`ParseError`] saying which rule the name breaks.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let len = value.len();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(ParseError::new(format!(
                "username must be {} to {} characters long, got {len}",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        if let Some(bad) = value
            .chars()
            .find(|&c| !username_chars::is_username_char(c))
        {
            return Err(ParseError::new(format!(
                "username may only contain letters, digits, '_', '.' and '-', found {bad:?}"
            )));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes usernames unique regardless of case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The key that makes usernames unique regardless of look-alikes: the
    /// Unicode TR39 skeleton, taken again after lower-casing, so that
    /// `paypal`, `PayPaI` and `paypa1` (and `mary`, `Mary` and `rnary`)
    /// share one. The migration that filled it for existing accounts
    /// (`migrations/*/0003_security.sql`, `0002_security.sql`) spells out
    /// the same mapping for the characters a username may hold; a unit
    /// test keeps the two in step.
    pub fn skeleton(&self) -> String {
        let once: String = unicode_security::skeleton(&self.0).collect();
        unicode_security::skeleton(&once.to_lowercase()).collect()
    }
}

/// 8 to 1024 characters (Unicode scalar values, as people count them, not
/// bytes: eight characters of any script make a valid password). Never
/// printed: its `Debug` hides the value.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// At most 4 KiB of UTF-8 to hash.
    pub const MAX_CHARS: usize = 1024;

    /// # Errors
    /// A [`ParseError`] when too short or too long.
    pub fn parse(value: String) -> Result<Self, ParseError> {
        let chars = value.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(ParseError::new(format!(
                "password must be {} to {} characters long, got {chars}",
                Self::MIN_CHARS,
                Self::MAX_CHARS
            )));
        }
        Ok(Self(value))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// 1 to 64 characters after NFKC normalisation, trimmed, not only white
/// space, without control, invisible or bidirectional-control characters:
/// what people read as the same name is stored as the same text, and no
/// name can hide text or reorder what follows it on screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_CHARS: usize = 64;

    /// # Errors
    /// A [`ParseError`] when empty, blank, too long, or holding a control,
    /// invisible or bidirectional-control character.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let normalized: String = value.nfkc().collect();
        let trimmed = normalized.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("room name must not be empty"));
        }
        let chars = trimmed.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(ParseError::new(format!(
                "room name must be at most {} characters, got {chars}",
                Self::MAX_CHARS
            )));
        }
        check_name_characters("room name", trimmed)?;
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes group room names unique regardless of case.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// 1 to 4096 characters (Unicode scalar values, as a counter in a client
/// shows them; up to 16 KiB of UTF-8), not only white space, and no control
/// characters (C0, DEL, C1) but newline and tab: no terminal escape, bell,
/// NUL or bare carriage return reaches another user's screen. Kept as sent
/// (no trimming).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    pub const MAX_CHARS: usize = 4096;

    /// # Errors
    /// A [`ParseError`] when empty, blank, too long, or holding a control
    /// character other than newline and tab.
    pub fn parse(value: String) -> Result<Self, ParseError> {
        if let Some(bad) = value
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ParseError::new(format!(
                "message text must not contain control characters other than newline and tab, found U+{:04X}",
                u32::from(bad)
            )));
        }
        let chars = value.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(ParseError::new(format!(
                "message text must be at most {} characters, got {chars}",
                Self::MAX_CHARS
            )));
        }
        if value.trim().is_empty() {
            return Err(ParseError::new(
                "message text must not be empty or only white space",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A sender's idempotency key: empty (none) or up to 128 printable bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientMsgId(Option<String>);

impl ClientMsgId {
    pub const MAX_BYTES: usize = 128;

    /// # Errors
    /// A [`ParseError`] when too long or not printable.
    pub fn parse(value: String) -> Result<Self, ParseError> {
        if value.is_empty() {
            return Ok(Self(None));
        }
        if value.len() > Self::MAX_BYTES {
            return Err(ParseError::new(format!(
                "client_msg_id must be at most {} bytes, got {}",
                Self::MAX_BYTES,
                value.len()
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(ParseError::new(
                "client_msg_id must not contain control characters",
            ));
        }
        Ok(Self(Some(value)))
    }

    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Microseconds since the Unix epoch: how the server keeps time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        Self(i64::try_from(micros).unwrap_or(i64::MAX))
    }

    pub fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(1_000_000))
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: Self) -> std::time::Duration {
        let micros = self.0.saturating_sub(earlier.0).max(0);
        std::time::Duration::from_micros(micros.unsigned_abs())
    }

    pub fn plus(self, duration: std::time::Duration) -> Self {
        let micros = i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }
}

/// A user as others see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    /// Shown instead of the username where not empty ([`DisplayName`]).
    pub display_name: String,
}

impl User {
    /// A user without a display name.
    pub fn named(id: UserId, username: impl Into<String>) -> Self {
        Self {
            id,
            username: username.into(),
            display_name: String::new(),
        }
    }
}

/// A room as one user sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    /// For a direct room, the other member's username.
    pub name: String,
    pub kind: RoomKind,
    /// The room's settings and size, shared by every viewer.
    pub info: RoomInfo,
    pub joined: bool,
    /// The viewer's role, when a member.
    pub my_role: Option<MemberRole>,
    /// The viewer has a pending invitation.
    pub invited: bool,
    pub last_seq: u64,
    /// The viewer's read state, when a member.
    pub read: ReadState,
    /// The newest top-level message that is not deleted.
    pub last_message: Option<Message>,
}

/// What every viewer of a group room sees alike: what `room_updated`
/// events carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomInfo {
    pub topic: String,
    pub visibility: RoomVisibility,
    pub member_count: u32,
}

/// The most a room's unread or mention count says.
pub const MAX_UNREAD_COUNT: u32 = 9999;

/// A member's read state of a room.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadState {
    /// Every event up to this seq is read.
    pub last_read_seq: u64,
    /// Messages from others after the marker, not deleted (at most
    /// `MAX_UNREAD_COUNT`).
    pub unread_count: u32,
    /// Those of them that mention the member (same cap).
    pub mention_count: u32,
    /// In a direct room, the other member's marker (0 elsewhere).
    pub peer_last_read_seq: u64,
}

/// A stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: u64,
    pub sender: User,
    pub text: String,
    pub sent_at: Timestamp,
    pub client_msg_id: Option<String>,
    /// When the text was last edited; `None` if never, and on tombstones.
    pub edited_at: Option<Timestamp>,
    /// A tombstone: deleted, its text erased (empty).
    pub deleted: bool,
    /// The message this one quotes, as that message is now.
    pub reply_to: Option<ReplyPreview>,
    /// For a thread reply: the top-level message it replies to.
    pub thread_root_id: Option<MessageId>,
    /// For a thread root: its replies so far.
    pub thread: ThreadSummary,
    /// Each emoji's reactions, in order of first use. Empty on stream
    /// events, whose `reaction` events build them.
    pub reactions: Vec<ReactionSummary>,
    /// The room's members the text names.
    pub mentions: Vec<User>,
}

impl Message {
    /// The message as a stream event carries it: without the aggregates
    /// (reactions, thread counts) that later events build, so that a
    /// client applying a stream from any cursor counts each change once.
    pub fn without_aggregates(&self) -> Self {
        Self {
            thread: ThreadSummary::default(),
            reactions: Vec::new(),
            ..self.clone()
        }
    }
}

/// The most bytes of text a reply's preview of its quoted message holds.
pub const REPLY_PREVIEW_BYTES: usize = 200;

/// A quoted message, as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPreview {
    pub message_id: MessageId,
    pub sender: User,
    /// At most `REPLY_PREVIEW_BYTES` of the text, cut on a character
    /// boundary; empty if deleted.
    pub text: String,
    pub deleted: bool,
}

impl ReplyPreview {
    /// The preview of `text`: its first `REPLY_PREVIEW_BYTES` bytes at
    /// most, ending on a character boundary.
    pub fn cut(text: &str) -> String {
        if text.len() <= REPLY_PREVIEW_BYTES {
            return text.to_owned();
        }
        let mut end = REPLY_PREVIEW_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_owned()
    }
}

/// A thread root's replies: how many (tombstones included) and when the
/// newest was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadSummary {
    pub reply_count: u32,
    pub last_reply_at: Option<Timestamp>,
}

/// One emoji's reactions to a message, as one user sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionSummary {
    pub emoji: String,
    pub count: u32,
    pub reacted_by_me: bool,
}

/// The most different emoji one user may put on one message.
pub const MAX_REACTIONS_PER_USER: u32 = 20;

/// The most users one user may block: a blocker's streams hold the set,
/// so it is bounded like everything a client can make the server hold.
pub const MAX_BLOCKED_USERS: u32 = 1000;

/// One entry of a room's log: every change to a room's conversation takes
/// the room's next seq, in the transaction that makes it. A message's seq
/// is the seq of its own event, so the seqs of messages increase but may
/// skip those of other events (docs/design/room-log.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomEvent {
    pub room_id: RoomId,
    pub seq: u64,
    pub kind: RoomEventKind,
}

/// What happened at one seq of a room's log. Events that concern a message
/// carry the message as it is now, never as it was: a replay cannot show
/// what was since erased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomEventKind {
    /// A new message (its seq is the event's).
    Message(Message),
    /// A message's text was replaced; the message as it is now.
    Edited(Message),
    /// A message was deleted by `by`; it is a tombstone now.
    Deleted { message_id: MessageId, by: User },
    /// `user` added (or removed) a reaction to a message.
    Reaction {
        message_id: MessageId,
        emoji: String,
        user: User,
        added: bool,
    },
    /// A member joined, left, was invited, removed, banned, unbanned, or
    /// given a role, `by` someone (the user itself for a join or a leave).
    Member {
        user: User,
        change: MemberChange,
        /// The user's role after the change; `None` when not a member.
        role: Option<MemberRole>,
        by: User,
        /// A removal's or a ban's reason, as the remover gave it.
        reason: String,
    },
    /// A group room's name, topic or visibility changed; its settings as
    /// they are now.
    RoomUpdated {
        name: String,
        info: RoomInfo,
        by: User,
    },
}

impl RoomEvent {
    /// The event of a newly stored message.
    pub fn message(message: Message) -> Self {
        Self {
            room_id: message.room_id,
            seq: message.seq,
            kind: RoomEventKind::Message(message),
        }
    }

    /// The new message, if this is a message's own event.
    pub fn new_message(&self) -> Option<&Message> {
        match &self.kind {
            RoomEventKind::Message(message) => Some(message),
            RoomEventKind::Edited(_)
            | RoomEventKind::Deleted { .. }
            | RoomEventKind::Reaction { .. }
            | RoomEventKind::Member { .. }
            | RoomEventKind::RoomUpdated { .. } => None,
        }
    }
}

/// A login of a user, as listed to that user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub user_agent: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        for good in ["bob", "alice_1", "a.b-c", &"x".repeat(32)] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "bob smith",
            "bób",
            "a/b",
            "eve'--",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Username::parse("Alice").unwrap().key(), "alice");
    }

    #[test]
    fn passwords_are_bounded_and_never_printed() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
        assert!(Password::parse("🔑".repeat(1024)).is_ok());
        let shown = format!("{:?}", Password::parse("hunter22hunter".into()).unwrap());
        assert!(!shown.contains("hunter"), "{shown}");
    }

    #[test]
    fn room_names_are_trimmed_and_bounded() {
        assert_eq!(RoomName::parse("  general ").unwrap().as_str(), "general");
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        assert!(RoomName::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn room_names_are_normalised_and_hold_nothing_invisible() {
        assert_eq!(
            RoomName::parse("ｇｅｎｅｒａｌ").unwrap().as_str(),
            "general"
        );
        assert_eq!(RoomName::parse("Café ☕").unwrap().key(), "café ☕");
        assert_eq!(
            RoomName::parse("flag 🏳\u{FE0F}").unwrap().as_str(),
            "flag 🏳\u{FE0F}"
        );
        for (bad, what) in [
            ("gen\u{200B}eral", "invisible"),
            ("admin\u{202E}nimda", "bidirectional-control"),
            ("\u{2066}x\u{2069}", "bidirectional-control"),
            ("a\u{FEFF}b", "invisible"),
            ("tag\u{E0041}", "invisible"),
            ("bell\u{7}", "control"),
        ] {
            let error = RoomName::parse(bad).unwrap_err().to_string();
            assert!(error.contains(what), "{bad:?}: {error}");
        }
    }

    #[test]
    fn message_text_holds_no_control_characters_but_newline_and_tab() {
        assert!(MessageText::parse("line one\n\tline two".into()).is_ok());
        assert!(MessageText::parse("héllo 👋 \u{202E}".into()).is_ok());
        for bad in [
            "\u{1b}[2J",
            "ding\u{7}",
            "nul\u{0}",
            "cr\rlf",
            "del\u{7f}",
            "c1\u{9b}",
        ] {
            let error = MessageText::parse(bad.into()).unwrap_err();
            assert!(error.to_string().contains("control characters"), "{error}");
        }
    }

    #[test]
    fn look_alike_usernames_share_a_skeleton() {
        let key = |name: &str| Username::parse(name).unwrap().skeleton();
        assert_eq!(key("paypal"), key("paypaI"));
        assert_eq!(key("paypal"), key("paypa1"));
        assert_eq!(key("paypal"), key("PAYPAL"));
        assert_eq!(key("mary"), key("rnary"));
        assert_eq!(key("Mary"), key("rnary"));
        assert_eq!(key("b0b"), key("bOb"));
        assert_ne!(key("alice"), key("alicia"));
    }

    /// The migrations spell the skeleton out for the characters usernames
    /// may hold: `replace(lower(f(name)), 'm', 'rn')` where `f` maps `m` to
    /// `rn`, `0` to `O`, and `1` and `I` to `l`.
    #[test]
    fn the_migrations_skeleton_agrees_for_every_username_character() {
        let f = |name: &str| {
            name.replace('m', "rn")
                .replace('0', "O")
                .replace(['1', 'I'], "l")
        };
        let alphabet: String = ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .chain(['_', '.', '-'])
            .collect();
        for chunk in alphabet.as_bytes().chunks(3) {
            let name = std::str::from_utf8(chunk).unwrap();
            let name = format!("{name}x");
            let sql = f(&name).to_lowercase().replace('m', "rn");
            assert_eq!(Username::parse(&name).unwrap().skeleton(), sql, "{name}");
        }
    }

    #[test]
    fn message_text_must_have_content() {
        assert!(MessageText::parse(" \n\t".into()).is_err());
        assert!(MessageText::parse(String::new()).is_err());
        assert_eq!(MessageText::parse(" hi ".into()).unwrap().as_str(), " hi ");
    }

    #[test]
    fn message_text_is_counted_in_characters_not_bytes() {
        let emoji = "😀".repeat(4096);
        assert_eq!(emoji.len(), 16 * 1024, "four bytes each");
        assert_eq!(MessageText::parse(emoji.clone()).unwrap().as_str(), emoji);
        assert!(MessageText::parse("x".repeat(4096)).is_ok());
        assert_eq!(
            MessageText::parse("x".repeat(4097))
                .unwrap_err()
                .to_string(),
            "message text must be at most 4096 characters, got 4097"
        );
        assert_eq!(
            MessageText::parse("é".repeat(4097))
                .unwrap_err()
                .to_string(),
            "message text must be at most 4096 characters, got 4097"
        );
    }

    #[test]
    fn passwords_are_counted_in_characters_not_bytes() {
        assert!(Password::parse("пароль12".into()).is_ok());
        assert!(Password::parse("🔑🔑🔑🔑🔑🔑🔑🔑".into()).is_ok());
        assert_eq!(
            Password::parse("🔑🔑🔑🔑🔑🔑🔑".into())
                .unwrap_err()
                .to_string(),
            "password must be 8 to 1024 characters long, got 7"
        );
        assert_eq!(
            Password::parse("é".repeat(1025)).unwrap_err().to_string(),
            "password must be 8 to 1024 characters long, got 1025"
        );
    }

    #[test]
    fn ids_say_which_field_is_wrong() {
        let err = RoomId::parse("room_id", "nope").unwrap_err();
        assert_eq!(err.to_string(), "room_id is not a valid room id");
        let err = RoomId::parse("room_id", "").unwrap_err();
        assert_eq!(err.to_string(), "room_id is required");
        let id = RoomId::new();
        assert_eq!(RoomId::parse("room_id", &id.to_string()).unwrap(), id);
    }
}

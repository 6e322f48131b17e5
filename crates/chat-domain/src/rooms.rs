//! Who may do what in a room (issue 22; `docs/design/rooms-and-people.md`):
//! the room's settings people read (topic, visibility), members' roles,
//! and the one permission matrix every room call asks before it touches
//! the store.

use std::fmt;

use unicode_normalization::UnicodeNormalization as _;

use crate::{check_name_characters, ParseError, RoomKind};

/// Who may find and join a group room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoomVisibility {
    /// Listed to everyone; anyone not banned may join.
    #[default]
    Public,
    /// Listed to its members and invitees only; joined by invitation.
    Private,
}

/// A member's standing in a group room, weakest first (direct rooms have
/// no roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    Member,
    Admin,
    /// Exactly one per group room.
    Owner,
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        })
    }
}

/// What a user is to a room, as the permission matrix needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Standing {
    /// Neither a member nor invited nor banned.
    Stranger,
    /// Holds a pending invitation.
    Invited,
    Banned,
    /// A member; direct rooms' members have no role and count as
    /// `Member(MemberRole::Member)`.
    Member(MemberRole),
}

impl Standing {
    fn role(self) -> Option<MemberRole> {
        match self {
            Self::Member(role) => Some(role),
            _ => None,
        }
    }
}

/// A room as the permission matrix sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomShape {
    pub kind: RoomKind,
    pub visibility: RoomVisibility,
}

/// A room call whose permission depends on who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomAction {
    Join,
    UpdateRoom,
    Invite,
    ListMembers,
    /// Changing a member's role (`own`: the caller's); making another
    /// member the owner hands ownership over.
    SetRole {
        own: bool,
    },
    /// Removing (or banning) a member of role `target`.
    Remove {
        target: MemberRole,
        own: bool,
    },
    Unban,
    /// Deleting a message someone else sent.
    DeleteOthersMessage,
}

/// Why a call is refused: the server answers `Forbidden` with
/// PERMISSION_DENIED and `Precondition` with FAILED_PRECONDITION.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Forbidden(String),
    Precondition(String),
}

/// Whether `caller` may do `action` in `room`: the one matrix of issue 22.
///
/// Order of the checks: direct rooms have no roles, settings, invitations
/// or removals, and say so to their members (FAILED_PRECONDITION) but not
/// to others (PERMISSION_DENIED, like every call of a non-member); then a
/// call for members only refuses non-members; then the role.
///
/// # Errors
/// The [`Refusal`] to answer.
pub fn permit(action: RoomAction, caller: Standing, room: RoomShape) -> Result<(), Refusal> {
    let role = caller.role();
    if room.kind == RoomKind::Direct {
        return match (action, role) {
            (RoomAction::ListMembers, Some(_)) => Ok(()),
            (_, Some(_)) => Err(Refusal::Precondition(
                "a direct room has no roles, settings, invitations or removals".into(),
            )),
            (_, None) => Err(not_member()),
        };
    }
    match action {
        RoomAction::Join => match (caller, room.visibility) {
            (Standing::Banned, _) => {
                Err(Refusal::Forbidden("you are banned from this room".into()))
            }
            (Standing::Member(_) | Standing::Invited, _)
            | (Standing::Stranger, RoomVisibility::Public) => Ok(()),
            (Standing::Stranger, RoomVisibility::Private) => Err(Refusal::Forbidden(
                "this room is private: it is joined by invitation".into(),
            )),
        },
        RoomAction::ListMembers => role.map(|_| ()).ok_or_else(not_member),
        RoomAction::Invite => match (role, room.visibility) {
            (None, _) => Err(not_member()),
            (Some(_), RoomVisibility::Public) => Ok(()),
            (Some(role), RoomVisibility::Private) => {
                at_least(role, MemberRole::Admin, "invite to a private room")
            }
        },
        RoomAction::UpdateRoom => at_least(
            role.ok_or_else(not_member)?,
            MemberRole::Admin,
            "change the room",
        ),
        RoomAction::Unban => at_least(role.ok_or_else(not_member)?, MemberRole::Admin, "unban"),
        RoomAction::DeleteOthersMessage => at_least(
            role.ok_or_else(not_member)?,
            MemberRole::Admin,
            "delete someone else's message",
        ),
        RoomAction::SetRole { own } => {
            let role = role.ok_or_else(not_member)?;
            at_least(role, MemberRole::Owner, "change roles")?;
            if own {
                return Err(Refusal::Precondition(
                    "the owner's role changes only by making another member the owner".into(),
                ));
            }
            Ok(())
        }
        RoomAction::Remove { target, own } => {
            let role = role.ok_or_else(not_member)?;
            if own {
                return Err(Refusal::Precondition(
                    "to leave a room, use LeaveRoom".into(),
                ));
            }
            match target {
                MemberRole::Owner => Err(Refusal::Forbidden("nobody removes the owner".into())),
                MemberRole::Admin => at_least(role, MemberRole::Owner, "remove an admin"),
                MemberRole::Member => at_least(role, MemberRole::Admin, "remove a member"),
            }
        }
    }
}

fn not_member() -> Refusal {
    Refusal::Forbidden("you are not a member of this room".into())
}

/// `Forbidden` unless `role` is at least `needed`.
fn at_least(role: MemberRole, needed: MemberRole, what: &str) -> Result<(), Refusal> {
    if role >= needed {
        Ok(())
    } else {
        let who = match needed {
            MemberRole::Owner => "the room's owner",
            _ => "the room's admins and its owner",
        };
        let you = match role {
            MemberRole::Member => "a member",
            MemberRole::Admin => "an admin",
            MemberRole::Owner => "the owner",
        };
        Err(Refusal::Forbidden(format!(
            "only {who} may {what}; you are {you}"
        )))
    }
}

/// What a group room is about: 0 to 512 characters after NFKC, without
/// control, invisible or bidirectional-control characters (line breaks
/// included: a topic is one line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTopic(String);

impl RoomTopic {
    pub const MAX_CHARS: usize = 512;

    /// # Errors
    /// A [`ParseError`] when too long or holding a refused character.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        bounded_text("topic", value, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name shown instead of the username where set: 0 to 64 characters
/// after NFKC, trimmed, without control, invisible or
/// bidirectional-control characters. Empty means unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    /// # Errors
    /// A [`ParseError`] when too long or holding a refused character.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        bounded_text("display_name", value, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key prefix searches match: lowercase.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// `value` after NFKC, trimmed, at most `max` characters, with only the
/// characters a name people read may hold.
fn bounded_text(what: &str, value: &str, max: usize) -> Result<String, ParseError> {
    let normalized: String = value.nfkc().collect();
    let trimmed = normalized.trim();
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(ParseError::new(format!(
            "{what} must be at most {max} characters, got {chars}"
        )));
    }
    check_name_characters(what, trimmed)?;
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP_PUBLIC: RoomShape = RoomShape {
        kind: RoomKind::Group,
        visibility: RoomVisibility::Public,
    };
    const GROUP_PRIVATE: RoomShape = RoomShape {
        kind: RoomKind::Group,
        visibility: RoomVisibility::Private,
    };
    const DIRECT: RoomShape = RoomShape {
        kind: RoomKind::Direct,
        visibility: RoomVisibility::Private,
    };

    const OWNER: Standing = Standing::Member(MemberRole::Owner);
    const ADMIN: Standing = Standing::Member(MemberRole::Admin);
    const MEMBER: Standing = Standing::Member(MemberRole::Member);
    const CALLERS: [Standing; 6] = [
        OWNER,
        ADMIN,
        MEMBER,
        Standing::Invited,
        Standing::Banned,
        Standing::Stranger,
    ];

    /// The matrix as one table: a row per action and room, a letter per
    /// caller in the order of `CALLERS` (owner, admin, member, invited,
    /// banned, stranger): `y` allowed, `F` PERMISSION_DENIED, `P`
    /// FAILED_PRECONDITION.
    fn table() -> Vec<(RoomAction, RoomShape, &'static str)> {
        use RoomAction::*;
        let remove_member = Remove {
            target: MemberRole::Member,
            own: false,
        };
        let remove_admin = Remove {
            target: MemberRole::Admin,
            own: false,
        };
        let remove_owner = Remove {
            target: MemberRole::Owner,
            own: false,
        };
        let make_admin = SetRole { own: false };
        let mut rows = Vec::new();
        for (room, join, invite) in [
            (GROUP_PUBLIC, "yyyyFy", "yyyFFF"),
            (GROUP_PRIVATE, "yyyyFF", "yyFFFF"),
        ] {
            rows.extend([
                (Join, room, join),
                (Invite, room, invite),
                (UpdateRoom, room, "yyFFFF"),
                (ListMembers, room, "yyyFFF"),
                (make_admin, room, "yFFFFF"),
                (remove_member, room, "yyFFFF"),
                (remove_admin, room, "yFFFFF"),
                (remove_owner, room, "FFFFFF"),
                (Unban, room, "yyFFFF"),
                (DeleteOthersMessage, room, "yyFFFF"),
            ]);
        }
        // In a direct room both members are plain members.
        for action in [
            Join,
            Invite,
            UpdateRoom,
            make_admin,
            remove_member,
            Unban,
            DeleteOthersMessage,
        ] {
            rows.push((action, DIRECT, "PPPFFF"));
        }
        rows.push((ListMembers, DIRECT, "yyyFFF"));
        rows
    }

    #[test]
    fn the_matrix_is_the_table() {
        for (action, room, expected) in table() {
            let got: String = CALLERS
                .iter()
                .map(|&caller| match permit(action, caller, room) {
                    Ok(()) => 'y',
                    Err(Refusal::Forbidden(_)) => 'F',
                    Err(Refusal::Precondition(_)) => 'P',
                })
                .collect();
            assert_eq!(got, expected, "{action:?} in {room:?}");
        }
    }

    #[test]
    fn own_role_and_own_removal_are_preconditions() {
        let own_role = RoomAction::SetRole { own: true };
        assert!(matches!(
            permit(own_role, OWNER, GROUP_PUBLIC),
            Err(Refusal::Precondition(_))
        ));
        let own_removal = RoomAction::Remove {
            target: MemberRole::Admin,
            own: true,
        };
        assert!(matches!(
            permit(own_removal, ADMIN, GROUP_PUBLIC),
            Err(Refusal::Precondition(_))
        ));
    }

    #[test]
    fn refusals_say_who_may() {
        let Err(Refusal::Forbidden(message)) = permit(RoomAction::UpdateRoom, MEMBER, GROUP_PUBLIC)
        else {
            panic!("a member may not change the room");
        };
        assert_eq!(
            message,
            "only the room's admins and its owner may change the room; you are a member"
        );
        let Err(Refusal::Forbidden(message)) = permit(
            RoomAction::Remove {
                target: MemberRole::Admin,
                own: false,
            },
            ADMIN,
            GROUP_PRIVATE,
        ) else {
            panic!("an admin may not remove an admin");
        };
        assert_eq!(
            message,
            "only the room's owner may remove an admin; you are an admin"
        );
    }

    #[test]
    fn topics_and_display_names_are_bounded_one_line_text() {
        assert_eq!(
            RoomTopic::parse("  Release planning ").unwrap().as_str(),
            "Release planning"
        );
        assert_eq!(RoomTopic::parse("").unwrap().as_str(), "");
        assert!(RoomTopic::parse(&"t".repeat(512)).is_ok());
        assert_eq!(
            RoomTopic::parse(&"t".repeat(513)).unwrap_err().to_string(),
            "topic must be at most 512 characters, got 513"
        );
        assert!(RoomTopic::parse("two\nlines").is_err());
        assert_eq!(
            DisplayName::parse("Ｂｏｂ").unwrap().as_str(),
            "Bob",
            "NFKC"
        );
        assert_eq!(DisplayName::parse("Bob").unwrap().key(), "bob");
        assert!(DisplayName::parse(&"n".repeat(65)).is_err());
        assert!(DisplayName::parse("bo\u{200B}b").is_err(), "invisible");
        assert!(
            DisplayName::parse("\u{202E}bob").is_err(),
            "bidirectional control"
        );
    }
}

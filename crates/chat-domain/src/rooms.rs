//! Rooms as people run them: kinds and visibility, members' roles, topics,
//! display names, and the one permission matrix every room operation asks
//! (docs/design/rooms-and-people.md).

use unicode_normalization::UnicodeNormalization as _;

use crate::error::ParseError;
use crate::names::check_name_characters;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomKind {
    Group,
    Direct,
}

/// Who sees a group room: public rooms are listed and anyone may join
/// them; private ones are seen by their members and invitees only, and
/// joined only by invitation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoomVisibility {
    #[default]
    Public,
    Private,
}

/// A member's role in a group room, in rank order: every role may do
/// what the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberRole {
    Member,
    Admin,
    Owner,
}

/// What happened to a member, as a room event says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberChange {
    Joined,
    Left,
    Invited,
    Removed,
    Banned,
    Unbanned,
    RoleChanged,
}

impl MemberChange {
    /// Whether the user is no longer a member after it: its streams get
    /// this event and then nothing more of the room.
    pub fn ends_membership(self) -> bool {
        matches!(self, Self::Left | Self::Removed | Self::Banned)
    }
}

/// A room's topic: 0 to 512 characters after NFKC normalisation, trimmed,
/// without control, invisible or bidirectional-control characters (one
/// line, shown under the room's name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomTopic(String);

impl RoomTopic {
    pub const MAX_CHARS: usize = 512;

    /// # Errors
    /// A [`ParseError`] when too long or holding a refused character.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        Self::parse_field("topic", value)
    }

    /// The same rules for another field of the same shape (a removal's
    /// reason), named `field` in the error.
    ///
    /// # Errors
    /// A [`ParseError`] when too long or holding a refused character.
    pub fn parse_field(field: &str, value: &str) -> Result<Self, ParseError> {
        normalized_line(field, value, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name shown instead of a username where set: 0 to 64 characters
/// after NFKC normalisation, trimmed, without control, invisible or
/// bidirectional-control characters. Empty means none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 64;

    /// # Errors
    /// A [`ParseError`] when too long or holding a refused character.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        normalized_line("display_name", value, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key a search by prefix compares with: lower-cased.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// NFKC, trimmed, at most `max_chars`, and nothing a name must not hold.
fn normalized_line(field: &str, value: &str, max_chars: usize) -> Result<String, ParseError> {
    let normalized: String = value.nfkc().collect();
    let trimmed = normalized.trim();
    let chars = trimmed.chars().count();
    if chars > max_chars {
        return Err(ParseError::new(format!(
            "{field} must be at most {max_chars} characters, got {chars}"
        )));
    }
    check_name_characters(field, trimmed)?;
    Ok(trimmed.to_owned())
}

/// Where a user stands in a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Neither member, invitee nor banned.
    Stranger,
    /// Has a pending invitation.
    Invited,
    Banned,
    Member(MemberRole),
}

/// What about a room decides who may do what in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomShape {
    Group(RoomVisibility),
    Direct,
}

/// A room operation, as the permission matrix knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomAction {
    /// Read its history, send, react, type, list its members.
    Take,
    Join,
    Invite,
    Update,
    SetRole,
    /// Remove (or ban) a user holding this role; `None`: a user who is not
    /// a member (only a ban means anything then).
    Remove(Option<MemberRole>),
    Unban,
    /// Delete a message someone else sent.
    DeleteOthers,
}

/// Why the matrix refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller lacks the standing (PERMISSION_DENIED).
    Denied(&'static str),
    /// The room is not the kind that allows it (FAILED_PRECONDITION).
    Precondition(&'static str),
}

/// Whether a user of this standing may do this in this room: the one
/// matrix of issue 22 (docs/design/rooms-and-people.md). It decides from
/// the caller's standing alone; what a target allows (a member to invite,
/// a role to give) the store checks with the rows it changes.
///
/// # Errors
/// The [`Refusal`], with a message for the caller.
pub fn permit(action: RoomAction, caller: Standing, room: RoomShape) -> Result<(), Refusal> {
    use Refusal::{Denied, Precondition};
    use RoomAction::{DeleteOthers, Invite, Join, Remove, SetRole, Take, Unban, Update};
    use Standing::{Banned, Invited, Member, Stranger};
    const NOT_A_MEMBER: &str = "you are not a member of this room";
    let visibility = match room {
        RoomShape::Direct => {
            return match (caller, action) {
                (Member(_), Take | Join) => Ok(()),
                (Member(_), DeleteOthers) => Err(Denied("only its sender may delete a message")),
                (Member(_), Invite | Update | SetRole | Remove(_) | Unban) => Err(Precondition(
                    "a direct room has no roles, invitations, removals or settings",
                )),
                (_, Join) => Err(Denied("a direct room: nobody else can join it")),
                _ => Err(Denied(NOT_A_MEMBER)),
            }
        }
        RoomShape::Group(visibility) => visibility,
    };
    let role = match (caller, action) {
        (Member(role), _) => role,
        (Invited, Join) => return Ok(()),
        (Stranger, Join) if visibility == RoomVisibility::Public => return Ok(()),
        (Stranger, Join) => return Err(Denied("a private room: it is joined by invitation only")),
        (Banned, Join) => return Err(Denied("you are banned from this room")),
        (Stranger | Invited | Banned, _) => return Err(Denied(NOT_A_MEMBER)),
    };
    let allowed = match action {
        Take | Join => Ok(()),
        Invite if visibility == RoomVisibility::Public || role >= MemberRole::Admin => Ok(()),
        Invite => Err("only admins and the owner invite to a private room"),
        Update | Unban | DeleteOthers if role >= MemberRole::Admin => Ok(()),
        Update => Err("only admins and the owner change a room's settings"),
        Unban => Err("only admins and the owner lift bans"),
        DeleteOthers => Err("only its sender, an admin or the owner may delete a message"),
        SetRole if role == MemberRole::Owner => Ok(()),
        SetRole => Err("only the owner gives and takes roles"),
        Remove(Some(MemberRole::Owner)) => Err("nobody removes the owner"),
        Remove(target) if role >= MemberRole::Admin && target.is_none_or(|t| role > t) => Ok(()),
        Remove(_) if role >= MemberRole::Admin => Err("only the owner removes an admin"),
        Remove(_) => Err("only admins and the owner remove members"),
    };
    allowed.map_err(Denied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole matrix as one table: a change to `permit` shows as a
    /// changed letter. `y` allowed, `D` denied, `P` failed precondition.
    #[test]
    fn the_permission_matrix() {
        use MemberRole::{Admin, Member as M, Owner};
        use RoomAction::*;
        let standings = [
            ("owner", Standing::Member(Owner)),
            ("admin", Standing::Member(Admin)),
            ("member", Standing::Member(M)),
            ("invited", Standing::Invited),
            ("banned", Standing::Banned),
            ("stranger", Standing::Stranger),
        ];
        let rooms = [
            ("public", RoomShape::Group(RoomVisibility::Public)),
            ("private", RoomShape::Group(RoomVisibility::Private)),
            ("direct", RoomShape::Direct),
        ];
        // Per action: one string per room, a letter per standing in the
        // order above.
        let expected: &[(&str, RoomAction, [&str; 3])] = &[
            ("take", Take, ["yyyDDD", "yyyDDD", "yyyDDD"]),
            ("join", Join, ["yyyyDy", "yyyyDD", "yyyDDD"]),
            ("invite", Invite, ["yyyDDD", "yyDDDD", "PPPDDD"]),
            ("update", Update, ["yyDDDD", "yyDDDD", "PPPDDD"]),
            ("set role", SetRole, ["yDDDDD", "yDDDDD", "PPPDDD"]),
            (
                "remove owner",
                Remove(Some(Owner)),
                ["DDDDDD", "DDDDDD", "PPPDDD"],
            ),
            (
                "remove admin",
                Remove(Some(Admin)),
                ["yDDDDD", "yDDDDD", "PPPDDD"],
            ),
            (
                "remove member",
                Remove(Some(M)),
                ["yyDDDD", "yyDDDD", "PPPDDD"],
            ),
            ("ban outsider", Remove(None), ["yyDDDD", "yyDDDD", "PPPDDD"]),
            ("unban", Unban, ["yyDDDD", "yyDDDD", "PPPDDD"]),
            (
                "delete other's",
                DeleteOthers,
                ["yyDDDD", "yyDDDD", "DDDDDD"],
            ),
        ];
        let mut wrong = Vec::new();
        for (name, action, by_room) in expected {
            for ((room_name, room), letters) in rooms.iter().zip(by_room) {
                let got: String = standings
                    .iter()
                    .map(|(_, standing)| match permit(*action, *standing, *room) {
                        Ok(()) => 'y',
                        Err(Refusal::Denied(_)) => 'D',
                        Err(Refusal::Precondition(_)) => 'P',
                    })
                    .collect();
                if got != *letters {
                    wrong.push(format!("{name} in {room_name}: {got}, expected {letters}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn topics_and_display_names_are_normalised_and_bounded() {
        assert_eq!(RoomTopic::parse("  ｔｏｐｉｃ ").unwrap().as_str(), "topic");
        assert_eq!(RoomTopic::parse("").unwrap().as_str(), "");
        assert!(RoomTopic::parse(&"x".repeat(512)).is_ok());
        assert!(RoomTopic::parse(&"x".repeat(513)).is_err());
        assert!(RoomTopic::parse("a\nb").is_err());
        assert_eq!(DisplayName::parse("Ａlice").unwrap().as_str(), "Alice");
        assert_eq!(DisplayName::parse("Alice").unwrap().key(), "alice");
        assert!(DisplayName::parse(&"é".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(65)).is_err());
        let hidden = DisplayName::parse("ad\u{200B}min").unwrap_err();
        assert!(hidden.to_string().contains("invisible"), "{hidden}");
        assert!(DisplayName::parse("evil\u{202E}txt").is_err());
    }
}

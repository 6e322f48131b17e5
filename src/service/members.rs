//! The room RPCs of issue 22: settings, invitations, members, roles,
//! removals and bans (docs/design/rooms-and-people.md). Each request is
//! checked here, then handed to the writer as a `MembershipChange`, so
//! that its events take their seqs in the room's order with the sends; the
//! store asks the permission matrix in the transaction that changes the
//! rows.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::auth::Principal;
use crate::domain::{
    DisplayName, MemberRole, RoomId, RoomName, RoomTopic, RoomVisibility, Timestamp, UserId,
    Username,
};
use crate::error::{Error, Result};
use crate::pb;
use crate::state::AppState;
use crate::store::{MemberCursor, MembershipChange, MembershipChanged, MembershipKind};

/// Members per ListMembers page when the request says 0.
pub const DEFAULT_MEMBER_PAGE: u32 = 100;
/// The largest ListMembers page: bounds one response's size and query time.
pub const MAX_MEMBER_PAGE: u32 = 1000;

/// A visibility a client sent: unspecified means public.
///
/// # Errors
/// INVALID_ARGUMENT for a value the enum does not have.
pub fn visibility(value: i32) -> Result<RoomVisibility> {
    match pb::RoomVisibility::try_from(value) {
        Ok(pb::RoomVisibility::Unspecified | pb::RoomVisibility::Public) => {
            Ok(RoomVisibility::Public)
        }
        Ok(pb::RoomVisibility::Private) => Ok(RoomVisibility::Private),
        Err(_) => Err(Error::invalid(format!(
            "visibility {value} is not a RoomVisibility"
        ))),
    }
}

fn role(value: i32) -> Result<MemberRole> {
    match pb::MemberRole::try_from(value) {
        Ok(pb::MemberRole::Member) => Ok(MemberRole::Member),
        Ok(pb::MemberRole::Admin) => Ok(MemberRole::Admin),
        Ok(pb::MemberRole::Owner) => Ok(MemberRole::Owner),
        Ok(pb::MemberRole::Unspecified) => Err(Error::invalid("role is required")),
        Err(_) => Err(Error::invalid(format!("role {value} is not a MemberRole"))),
    }
}

/// The room and user ids of a request about a member.
fn member_ids(room_id: &str, user_id: &str) -> Result<(RoomId, UserId)> {
    Ok((
        RoomId::parse("room_id", room_id)?,
        UserId::parse("user_id", user_id)?,
    ))
}

/// Runs a change through the writer, as the caller. Every change but a
/// join (limited on its own) and a leave (which follows a join) is an event
/// for everyone in the room, so it draws on the caller's room-change rate.
async fn change(
    state: &AppState,
    principal: &Principal,
    room_id: RoomId,
    kind: MembershipKind,
) -> Result<MembershipChanged> {
    if !matches!(kind, MembershipKind::Join { .. } | MembershipKind::Leave) {
        state.room_change.check(principal.user.id, &state.metrics)?;
    }
    state
        .writer
        .membership(MembershipChange {
            room_id,
            actor: principal.user.clone(),
            at: Timestamp::now(),
            kind,
        })
        .await
}

/// Takes a user out of a room's streams on every node, after the event
/// that says so was delivered (the hub cut them off already as it
/// delivered it; this tells the other nodes' bookkeeping).
async fn left(state: &AppState, changed: &MembershipChanged) {
    for event in &changed.events {
        if let crate::domain::RoomEventKind::Member { user, change, .. } = &event.kind {
            if change.ends_membership() {
                state.router.left(user.id, event.room_id).await;
            }
        }
    }
}

pub async fn join(state: &AppState, principal: &Principal, room_id: RoomId) -> Result<pb::Room> {
    let changed = change(
        state,
        principal,
        room_id,
        MembershipKind::Join {
            max_rooms: state.config.limits.max_rooms_per_user,
        },
    )
    .await?;
    state
        .router
        .joined(principal.user.id, room_id, changed.room.last_seq)
        .await;
    Ok(pb::Room::from(&changed.room))
}

pub async fn leave(state: &AppState, principal: &Principal, room_id: RoomId) -> Result<()> {
    let changed = change(state, principal, room_id, MembershipKind::Leave).await?;
    left(state, &changed).await;
    // Whatever the events said, the caller is out (a declined invitation
    // says nothing).
    state.router.left(principal.user.id, room_id).await;
    Ok(())
}

pub async fn update_room(
    state: &AppState,
    principal: &Principal,
    request: &pb::UpdateRoomRequest,
) -> Result<pb::UpdateRoomResponse> {
    let room_id = RoomId::parse("room_id", &request.room_id)?;
    let kind = MembershipKind::Update {
        name: request.name.as_deref().map(RoomName::parse).transpose()?,
        topic: request.topic.as_deref().map(RoomTopic::parse).transpose()?,
        visibility: request.visibility.map(visibility).transpose()?,
    };
    let changed = change(state, principal, room_id, kind).await?;
    Ok(pb::UpdateRoomResponse {
        room: Some(pb::Room::from(&changed.room)),
    })
}

pub async fn invite(
    state: &AppState,
    principal: &Principal,
    request: &pb::InviteToRoomRequest,
) -> Result<()> {
    let room_id = RoomId::parse("room_id", &request.room_id)?;
    let username = Username::parse(&request.username)?;
    let changed = change(
        state,
        principal,
        room_id,
        MembershipKind::Invite { username },
    )
    .await?;
    if let Some((invitee, room)) = &changed.invited {
        state.router.invited(*invitee, room, &principal.user).await;
    }
    Ok(())
}

pub async fn list_members(
    state: &AppState,
    principal: &Principal,
    request: &pb::ListMembersRequest,
) -> Result<pb::ListMembersResponse> {
    let room_id = RoomId::parse("room_id", &request.room_id)?;
    let limit = match request.page_size {
        0 => DEFAULT_MEMBER_PAGE,
        n => n.min(MAX_MEMBER_PAGE),
    };
    let after = if request.page_token.is_empty() {
        None
    } else {
        Some(parse_member_token(&request.page_token)?)
    };
    // One more than asked: whether it comes says whether a page follows.
    let mut members = state
        .store
        .list_members(room_id, principal.user.id, after, limit + 1)
        .await?;
    let next_page_token = if members.len() > limit as usize {
        members.truncate(limit as usize);
        members.last().map(member_token).unwrap_or_default()
    } else {
        String::new()
    };
    let online: std::collections::HashSet<UserId> = state
        .hub
        .online_users(principal.user.id, &[room_id])
        .iter()
        .map(|user| user.id)
        .collect();
    Ok(pb::ListMembersResponse {
        members: members
            .iter()
            .map(|member| pb::Member {
                user: Some(pb::User::from(&member.user)),
                role: pb::MemberRole::from(member.role) as i32,
                online: online.contains(&member.user.id),
                joined_at: Some(pb::timestamp(member.joined_at)),
            })
            .collect(),
        next_page_token,
    })
}

/// The token that goes on after `last`: its role (as the API numbers
/// it), when it joined and its id, URL-safe base64.
fn member_token(last: &crate::store::MemberEntry) -> String {
    let mut bytes = Vec::with_capacity(25);
    let role = pb::MemberRole::from(last.role) as i32;
    bytes.push(u8::try_from(role).expect("MemberRole numbers are small"));
    bytes.extend_from_slice(&last.joined_at.0.to_be_bytes());
    bytes.extend_from_slice(last.user.id.uuid().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn parse_member_token(token: &str) -> Result<MemberCursor> {
    let invalid = || Error::invalid("page_token is not one this server issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let [role, rest @ ..] = bytes.as_slice() else {
        return Err(invalid());
    };
    let role = self::role(i32::from(*role)).map_err(|_| invalid())?;
    if rest.len() != 24 {
        return Err(invalid());
    }
    let (joined_at, id) = rest.split_at(8);
    Ok(MemberCursor {
        role,
        joined_at: Timestamp(i64::from_be_bytes(
            joined_at.try_into().map_err(|_| invalid())?,
        )),
        user_id: UserId::from_uuid(uuid::Uuid::from_slice(id).map_err(|_| invalid())?),
    })
}

pub async fn set_role(
    state: &AppState,
    principal: &Principal,
    request: &pb::SetMemberRoleRequest,
) -> Result<()> {
    let (room_id, target) = member_ids(&request.room_id, &request.user_id)?;
    let role = role(request.role)?;
    change(
        state,
        principal,
        room_id,
        MembershipKind::SetRole { target, role },
    )
    .await?;
    Ok(())
}

pub async fn remove(
    state: &AppState,
    principal: &Principal,
    request: &pb::RemoveMemberRequest,
) -> Result<()> {
    let (room_id, target) = member_ids(&request.room_id, &request.user_id)?;
    let reason = RoomTopic::parse_field("reason", &request.reason)?;
    let changed = change(
        state,
        principal,
        room_id,
        MembershipKind::Remove {
            target,
            ban: request.ban,
            reason,
        },
    )
    .await?;
    left(state, &changed).await;
    Ok(())
}

pub async fn unban(
    state: &AppState,
    principal: &Principal,
    request: &pb::UnbanMemberRequest,
) -> Result<()> {
    let (room_id, target) = member_ids(&request.room_id, &request.user_id)?;
    change(state, principal, room_id, MembershipKind::Unban { target }).await?;
    Ok(())
}

/// The most users one SearchUsers answers (and its default).
pub const MAX_SEARCH_RESULTS: u32 = 20;

/// Sets the caller's display name, and tells everyone who shares a room
/// with the caller (and the caller's own streams), on every node.
pub async fn update_profile(
    state: &AppState,
    principal: &Principal,
    request: &pb::UpdateProfileRequest,
) -> Result<pb::UpdateProfileResponse> {
    let display_name = request
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?;
    if display_name.is_some() {
        // Told to everyone who shares a room: limited like a message.
        state.send_limiter.check(principal.user.id)?;
    }
    let (user, rooms) = state
        .store
        .update_profile(principal.user.id, display_name.as_ref())
        .await?;
    if display_name.is_some() {
        state.router.profile(&user, &rooms).await;
    }
    Ok(pb::UpdateProfileResponse {
        user: Some(pb::User::from(&user)),
    })
}

/// Users by the start of their username or display name.
///
/// # Errors
/// INVALID_ARGUMENT for a prefix that is empty or longer than 32
/// characters.
pub async fn search_users(
    state: &AppState,
    principal: &Principal,
    request: &pb::SearchUsersRequest,
) -> Result<pb::SearchUsersResponse> {
    // Compared as the keys are kept: NFKC, lower case.
    let prefix = RoomTopic::parse_field("prefix", &request.prefix)?
        .as_str()
        .to_lowercase();
    let chars = prefix.chars().count();
    if !(1..=32).contains(&chars) {
        return Err(Error::invalid(format!(
            "prefix must be 1 to 32 characters, got {chars}"
        )));
    }
    let limit = match request.limit {
        0 => MAX_SEARCH_RESULTS,
        n => n.min(MAX_SEARCH_RESULTS),
    };
    let users = state
        .store
        .search_users(principal.user.id, &prefix, limit)
        .await?;
    Ok(pb::SearchUsersResponse {
        users: users.iter().map(pb::User::from).collect(),
    })
}

/// Blocks a user, as of the next event: the caller's streams on every node
/// hear no more typing or presence of theirs.
///
/// # Errors
/// INVALID_ARGUMENT for a malformed username or the caller's own,
/// NOT_FOUND for an unknown one, RESOURCE_EXHAUSTED past
/// `MAX_BLOCKED_USERS` or the send rate.
pub async fn block(
    state: &AppState,
    principal: &Principal,
    request: &pb::BlockUserRequest,
) -> Result<()> {
    let username = Username::parse(&request.username)?;
    state.send_limiter.check(principal.user.id)?;
    let blocked = state
        .store
        .block_user(principal.user.id, &username, Timestamp::now())
        .await?;
    state
        .router
        .blocked(principal.user.id, blocked.id, true)
        .await;
    Ok(())
}

/// Lifts a block.
///
/// # Errors
/// INVALID_ARGUMENT for a malformed username, NOT_FOUND for an unknown one.
pub async fn unblock(
    state: &AppState,
    principal: &Principal,
    request: &pb::UnblockUserRequest,
) -> Result<()> {
    let username = Username::parse(&request.username)?;
    state.send_limiter.check(principal.user.id)?;
    let unblocked = state
        .store
        .unblock_user(principal.user.id, &username)
        .await?;
    state
        .router
        .blocked(principal.user.id, unblocked.id, false)
        .await;
    Ok(())
}

/// The users the caller blocks.
pub async fn blocked_users(
    state: &AppState,
    principal: &Principal,
) -> Result<pb::ListBlockedUsersResponse> {
    let users = state.store.blocked_users(principal.user.id).await?;
    Ok(pb::ListBlockedUsersResponse {
        users: users.iter().map(pb::User::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_page_token_goes_round_and_a_forged_one_is_refused() {
        let entry = crate::store::MemberEntry {
            user: crate::domain::User::named(UserId::new(), "alice"),
            role: MemberRole::Admin,
            joined_at: Timestamp(1_234_567),
        };
        let cursor = parse_member_token(&member_token(&entry)).unwrap();
        assert_eq!(
            (cursor.role, cursor.joined_at, cursor.user_id),
            (entry.role, entry.joined_at, entry.user.id)
        );
        for forged in ["", "!!", "AAAA", &URL_SAFE_NO_PAD.encode([9u8; 25])] {
            let error = parse_member_token(forged).unwrap_err();
            assert_eq!(
                tonic::Status::from(error).code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}

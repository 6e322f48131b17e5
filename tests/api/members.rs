//! Private rooms, invitations, roles, removals and bans (issue 22): the
//! permission matrix, the member events in the room log, and cutting a
//! removed member off.

use std::time::Duration;

use chat_client::pb::{self, server_event, MemberChange, MemberRole, RoomVisibility};
use tonic::Code;

use crate::helpers::{spawn_app, EventStream, TestApp, TestUser};

async fn create(user: &TestUser, name: &str, visibility: RoomVisibility) -> pb::Room {
    user.chat
        .clone()
        .create_room(pb::CreateRoomRequest {
            name: name.into(),
            topic: String::new(),
            visibility: visibility as i32,
        })
        .await
        .expect("create room")
        .into_inner()
        .room
        .unwrap()
}

async fn invite(by: &TestUser, room: &pb::Room, username: &str) -> Result<(), tonic::Status> {
    by.chat
        .clone()
        .invite_to_room(pb::InviteToRoomRequest {
            room_id: room.id.clone(),
            username: username.into(),
        })
        .await
        .map(|_| ())
}

async fn set_role(
    by: &TestUser,
    room: &pb::Room,
    who: &pb::User,
    role: MemberRole,
) -> Result<(), tonic::Status> {
    by.chat
        .clone()
        .set_member_role(pb::SetMemberRoleRequest {
            room_id: room.id.clone(),
            user_id: who.id.clone(),
            role: role as i32,
        })
        .await
        .map(|_| ())
}

async fn remove(
    by: &TestUser,
    room: &pb::Room,
    who: &pb::User,
    ban: bool,
) -> Result<(), tonic::Status> {
    by.chat
        .clone()
        .remove_member(pb::RemoveMemberRequest {
            room_id: room.id.clone(),
            user_id: who.id.clone(),
            ban,
            reason: "spam".into(),
        })
        .await
        .map(|_| ())
}

async fn join(user: &TestUser, room: &pb::Room) -> Result<pb::Room, tonic::Status> {
    user.chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .map(|r| r.into_inner().room.unwrap())
}

async fn members(user: &TestUser, room: &pb::Room) -> Vec<(String, MemberRole)> {
    user.chat
        .clone()
        .list_members(pb::ListMembersRequest {
            room_id: room.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list members")
        .into_inner()
        .members
        .into_iter()
        .map(|m| (m.user.clone().unwrap().username, m.role()))
        .collect()
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A room with one user of each standing: owner, admin, member, invited,
/// banned, and a stranger.
struct Cast {
    room: pb::Room,
    people: Vec<(&'static str, TestUser)>,
}

async fn cast(app: &TestApp, tag: &str, visibility: RoomVisibility) -> Cast {
    let owner = app.user(&format!("{tag}owner")).await;
    let room = create(&owner, &format!("{tag} room"), visibility).await;
    let admin = app.user(&format!("{tag}admin")).await;
    let member = app.user(&format!("{tag}member")).await;
    let invited = app.user(&format!("{tag}invited")).await;
    let banned = app.user(&format!("{tag}banned")).await;
    let stranger = app.user(&format!("{tag}stranger")).await;
    for user in [&admin, &member] {
        invite(&owner, &room, &user.user.username).await.unwrap();
        join(user, &room).await.unwrap();
    }
    set_role(&owner, &room, &admin.user, MemberRole::Admin)
        .await
        .unwrap();
    invite(&owner, &room, &invited.user.username).await.unwrap();
    remove(&owner, &room, &banned.user, true).await.unwrap();
    Cast {
        room,
        people: vec![
            ("owner", owner),
            ("admin", admin),
            ("member", member),
            ("invited", invited),
            ("banned", banned),
            ("stranger", stranger),
        ],
    }
}

/// Every room RPC of issue 22, by each standing, in a public, a private and
/// a direct room, with the exact code each gets. Targets are fresh for each
/// call, so that one call's effect never decides another's answer.
#[tokio::test]
async fn the_permission_matrix() {
    let app = spawn_app().await;
    let mut wrong = Vec::new();
    let mut fresh = 0;
    for (tag, visibility) in [
        ("pub", RoomVisibility::Public),
        ("prv", RoomVisibility::Private),
    ] {
        let Cast { room, people } = cast(&app, tag, visibility).await;
        let owner = &people[0].1;
        let private = visibility == RoomVisibility::Private;
        // Expected, per call, for owner, admin, member, invited, banned,
        // stranger.
        use Code::{FailedPrecondition as _P, Ok as Y, PermissionDenied as D};
        let _ = _P;
        let table: [(&str, [Code; 6]); 7] = [
            ("UpdateRoom", [Y, Y, D, D, D, D]),
            (
                "InviteToRoom",
                if private {
                    [Y, Y, D, D, D, D]
                } else {
                    [Y, Y, Y, D, D, D]
                },
            ),
            ("ListMembers", [Y, Y, Y, D, D, D]),
            ("SetMemberRole", [Y, D, D, D, D, D]),
            ("RemoveMember", [Y, Y, D, D, D, D]),
            ("UnbanMember", [Y, Y, D, D, D, D]),
            ("DeleteMessage", [Y, Y, D, D, D, D]),
        ];
        for (call, expected) in table {
            for ((who, user), expected) in people.iter().zip(expected) {
                fresh += 1;
                let got = match call {
                    "UpdateRoom" => code(
                        user.chat
                            .clone()
                            .update_room(pb::UpdateRoomRequest {
                                room_id: room.id.clone(),
                                topic: Some(format!("topic {fresh}")),
                                ..Default::default()
                            })
                            .await,
                    ),
                    "InviteToRoom" => {
                        let target = app.user(&format!("target{fresh}")).await;
                        code(invite(user, &room, &target.user.username).await)
                    }
                    "ListMembers" => code(
                        user.chat
                            .clone()
                            .list_members(pb::ListMembersRequest {
                                room_id: room.id.clone(),
                                ..Default::default()
                            })
                            .await,
                    ),
                    "SetMemberRole" | "RemoveMember" | "DeleteMessage" => {
                        let target = app.user(&format!("target{fresh}")).await;
                        invite(owner, &room, &target.user.username).await.unwrap();
                        join(&target, &room).await.unwrap();
                        match call {
                            "SetMemberRole" => {
                                code(set_role(user, &room, &target.user, MemberRole::Admin).await)
                            }
                            "RemoveMember" => code(remove(user, &room, &target.user, false).await),
                            _ => {
                                let message = target.send(&room, "mine").await;
                                code(
                                    user.chat
                                        .clone()
                                        .delete_message(pb::DeleteMessageRequest {
                                            room_id: room.id.clone(),
                                            message_id: message.id,
                                        })
                                        .await,
                                )
                            }
                        }
                    }
                    "UnbanMember" => {
                        let target = app.user(&format!("target{fresh}")).await;
                        remove(owner, &room, &target.user, true).await.unwrap();
                        code(
                            user.chat
                                .clone()
                                .unban_member(pb::UnbanMemberRequest {
                                    room_id: room.id.clone(),
                                    user_id: target.user.id.clone(),
                                })
                                .await,
                        )
                    }
                    _ => unreachable!(),
                };
                if got != expected {
                    wrong.push(format!(
                        "{call} by {who} in {tag}: {got:?}, expected {expected:?}"
                    ));
                }
            }
        }
        // Joining last: it changes who is who.
        let expected = if private {
            [
                Code::Ok,
                Code::Ok,
                Code::Ok,
                Code::Ok,
                Code::PermissionDenied,
                Code::PermissionDenied,
            ]
        } else {
            [
                Code::Ok,
                Code::Ok,
                Code::Ok,
                Code::Ok,
                Code::PermissionDenied,
                Code::Ok,
            ]
        };
        for ((who, user), expected) in people.iter().zip(expected) {
            let got = code(join(user, &room).await);
            if got != expected {
                wrong.push(format!(
                    "JoinRoom by {who} in {tag}: {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    // A direct room: its members get FAILED_PRECONDITION for what a direct
    // room does not have; a stranger PERMISSION_DENIED for everything.
    let dana = app.user("dana").await;
    let erin = app.user("erin").await;
    let stranger = app.user("frank").await;
    let direct = dana.open_direct_room("erin").await;
    let erin_says = erin.send(&direct, "hi").await;
    for (who, user, member) in [("member", &dana, true), ("stranger", &stranger, false)] {
        let denied = if member {
            Code::FailedPrecondition
        } else {
            Code::PermissionDenied
        };
        let checks = [
            (
                "UpdateRoom",
                code(
                    user.chat
                        .clone()
                        .update_room(pb::UpdateRoomRequest {
                            room_id: direct.id.clone(),
                            topic: Some("no".into()),
                            ..Default::default()
                        })
                        .await,
                ),
                denied,
            ),
            (
                "InviteToRoom",
                code(invite(user, &direct, "frank").await),
                denied,
            ),
            (
                "ListMembers",
                code(
                    user.chat
                        .clone()
                        .list_members(pb::ListMembersRequest {
                            room_id: direct.id.clone(),
                            ..Default::default()
                        })
                        .await,
                ),
                if member {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                },
            ),
            (
                "SetMemberRole",
                code(set_role(user, &direct, &erin.user, MemberRole::Admin).await),
                denied,
            ),
            (
                "RemoveMember",
                code(remove(user, &direct, &erin.user, false).await),
                denied,
            ),
            (
                "UnbanMember",
                code(
                    user.chat
                        .clone()
                        .unban_member(pb::UnbanMemberRequest {
                            room_id: direct.id.clone(),
                            user_id: erin.user.id.clone(),
                        })
                        .await,
                ),
                denied,
            ),
            (
                "DeleteMessage",
                code(
                    user.chat
                        .clone()
                        .delete_message(pb::DeleteMessageRequest {
                            room_id: direct.id.clone(),
                            message_id: erin_says.id.clone(),
                        })
                        .await,
                ),
                Code::PermissionDenied,
            ),
            (
                "JoinRoom",
                code(join(user, &direct).await),
                if member {
                    Code::Ok
                } else {
                    Code::PermissionDenied
                },
            ),
        ];
        for (call, got, expected) in checks {
            if got != expected {
                wrong.push(format!(
                    "{call} by {who} in direct: {got:?}, expected {expected:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The next member event on a stream, skipping presence and typing.
async fn next_member(stream: &mut EventStream) -> server_event::MemberEvent {
    loop {
        match stream.next().await {
            server_event::Event::Member(member) => return member,
            server_event::Event::Presence(_) | server_event::Event::Typing(_) => {}
            other => panic!("expected a member event, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn private_rooms_are_seen_by_their_members_and_invitees_only() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let room = create(&alice, "secret", RoomVisibility::Private).await;
    assert_eq!(room.visibility(), RoomVisibility::Private);
    assert_eq!(room.my_role(), MemberRole::Owner);
    assert_eq!(room.member_count, 1);
    let listed = |user: &TestUser| {
        let mut chat = user.chat.clone();
        async move {
            chat.list_rooms(pb::ListRoomsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .rooms
                .into_iter()
                .map(|r| (r.name, r.joined, r.invited))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&bob).await, []);
    let (mut bob_events, _) = bob.subscribe().await;
    let (mut alice_events, _) = alice.subscribe().await;

    invite(&alice, &room, "bob").await.unwrap();

    match bob_events.next().await {
        server_event::Event::Invited(invited) => {
            assert_eq!(invited.room.unwrap().id, room.id);
            assert_eq!(invited.by.unwrap().username, "alice");
        }
        other => panic!("expected invited, got {other:?}"),
    }
    let seen = next_member(&mut alice_events).await;
    assert_eq!(
        (seen.change(), seen.user.unwrap().username),
        (MemberChange::Invited, "bob".to_owned())
    );
    assert_eq!(listed(&bob).await, [("secret".to_owned(), false, true)]);
    assert_eq!(listed(&carol).await, []);
    assert_eq!(code(join(&carol, &room).await), Code::PermissionDenied);
    let status = invite(&alice, &room, "alice").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    let joined = join(&bob, &room).await.unwrap();
    assert_eq!((joined.joined, joined.invited), (true, false));
    assert_eq!(joined.member_count, 2);
    assert_eq!(joined.my_role(), MemberRole::Member);
    let seen = next_member(&mut alice_events).await;
    assert_eq!(seen.change(), MemberChange::Joined);
    assert_eq!(listed(&bob).await, [("secret".to_owned(), true, false)]);
}

#[tokio::test]
async fn a_removed_member_hears_it_and_then_nothing_more_of_the_room() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("general").await;
    let other = alice.create_room("other").await;
    bob.join(&room).await;
    bob.join(&other).await;
    let (mut bob_events, _) = bob.subscribe().await;
    let before = alice.send(&room, "before").await;
    assert_eq!(bob_events.next_message().await.id, before.id);

    remove(&alice, &room, &bob.user, true).await.unwrap();

    let removed = next_member(&mut bob_events).await;
    assert_eq!(removed.change(), MemberChange::Banned);
    assert_eq!(removed.user.unwrap().username, "bob");
    assert_eq!(removed.by.unwrap().username, "alice");
    assert_eq!(removed.reason, "spam");
    alice.send(&room, "after").await;
    let elsewhere = alice.send(&other, "elsewhere").await;
    assert_eq!(
        bob_events.next_message().await.id,
        elsewhere.id,
        "nothing more of the room, the others go on"
    );
    let history = bob
        .chat
        .clone()
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(history), Code::PermissionDenied);
    let send = bob
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "let me back".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(send), Code::PermissionDenied);
    assert_eq!(code(join(&bob, &room).await), Code::PermissionDenied);
    assert_eq!(
        invite(&alice, &room, "bob").await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // A resume with a cursor for the room: an error for it, the rest goes on.
    let (mut resumed, _) = bob
        .subscribe_from(&[(&room, before.seq), (&other, 0)])
        .await;
    let mut refused = None;
    let mut got_elsewhere = false;
    while refused.is_none() || !got_elsewhere {
        match resumed.next().await {
            server_event::Event::Error(error) => refused = Some(error),
            server_event::Event::Message(m) if m.id == elsewhere.id => got_elsewhere = true,
            server_event::Event::Message(m) => assert_ne!(m.room_id, room.id),
            _ => {}
        }
    }
    let refused = refused.unwrap();
    assert_eq!(refused.room_id, room.id);
    assert_eq!(refused.code, Code::PermissionDenied as i32);

    // Unbanned, bob may come back.
    alice
        .chat
        .clone()
        .unban_member(pb::UnbanMemberRequest {
            room_id: room.id.clone(),
            user_id: bob.user.id.clone(),
        })
        .await
        .unwrap();
    join(&bob, &room).await.unwrap();
}

/// Every membership and settings change takes the room's next seq and
/// replays on resume with the messages, in seq order, exactly once.
#[tokio::test]
async fn membership_events_replay_in_seq_order_with_messages() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let room = alice.create_room("general").await;
    assert_eq!(room.last_seq, 0, "creating a room is not an event");
    bob.join(&room).await;
    alice.send(&room, "welcome").await;
    alice
        .chat
        .clone()
        .update_room(pb::UpdateRoomRequest {
            room_id: room.id.clone(),
            name: Some("lobby".into()),
            topic: Some("say hi".into()),
            visibility: None,
        })
        .await
        .unwrap();
    set_role(&alice, &room, &bob.user, MemberRole::Admin)
        .await
        .unwrap();
    carol.join(&room).await;
    remove(&bob, &room, &carol.user, false).await.unwrap();
    let last = alice.send(&room, "bye").await;
    assert_eq!(last.seq, 7);

    let (mut stream, _) = alice.subscribe_from(&[(&room, 0)]).await;
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let (seq, what) = match stream.next().await {
            server_event::Event::Member(m) => (
                m.seq,
                format!(
                    "{:?} {} as {:?} by {}",
                    m.change(),
                    m.user.clone().unwrap().username,
                    m.role(),
                    m.by.clone().unwrap().username
                ),
            ),
            server_event::Event::Message(m) => (m.seq, format!("message {}", m.text)),
            server_event::Event::RoomUpdated(u) => {
                let room = u.room.unwrap();
                (u.seq, format!("updated {} {:?}", room.name, room.topic))
            }
            server_event::Event::Presence(_) => continue,
            other => panic!("unexpected {other:?}"),
        };
        seen.push((seq, what));
    }
    let expected: Vec<(u64, String)> = [
        "Joined bob as Member by bob",
        "message welcome",
        "updated lobby \"say hi\"",
        "RoleChanged bob as Admin by alice",
        "Joined carol as Member by carol",
        "Removed carol as Unspecified by bob",
        "message bye",
    ]
    .iter()
    .enumerate()
    .map(|(i, what)| (i as u64 + 1, (*what).to_owned()))
    .collect();
    assert_eq!(seen, expected);
    stream.expect_silence(Duration::from_millis(300)).await;
    // History leaves them out.
    let history = alice.history(&room, 0, 50).await;
    assert_eq!(
        history
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        ["welcome", "bye"]
    );
}

#[tokio::test]
async fn roles_pass_on_and_the_owner_leaving_hands_the_room_over() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let room = alice.create_room("general").await;
    for user in [&bob, &carol, &dave] {
        user.join(&room).await;
    }
    set_role(&alice, &room, &carol.user, MemberRole::Admin)
        .await
        .unwrap();
    assert_eq!(
        members(&alice, &room).await,
        [
            ("alice".to_owned(), MemberRole::Owner),
            ("carol".to_owned(), MemberRole::Admin),
            ("bob".to_owned(), MemberRole::Member),
            ("dave".to_owned(), MemberRole::Member),
        ]
    );
    // An admin removes members, not admins; nobody removes the owner.
    assert_eq!(
        code(remove(&carol, &room, &alice.user, false).await),
        Code::PermissionDenied
    );
    set_role(&alice, &room, &bob.user, MemberRole::Admin)
        .await
        .unwrap();
    assert_eq!(
        code(remove(&carol, &room, &bob.user, false).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(set_role(&alice, &room, &alice.user, MemberRole::Member).await),
        Code::FailedPrecondition
    );
    assert_eq!(
        code(set_role(&alice, &room, &dave.user, MemberRole::Unspecified).await),
        Code::InvalidArgument
    );

    // Ownership moves: the old owner becomes an admin.
    set_role(&alice, &room, &bob.user, MemberRole::Owner)
        .await
        .unwrap();
    assert_eq!(
        members(&alice, &room).await[..3],
        [
            ("bob".to_owned(), MemberRole::Owner),
            ("alice".to_owned(), MemberRole::Admin),
            ("carol".to_owned(), MemberRole::Admin),
        ]
    );
    // The owner leaves: the longest-standing admin takes over.
    bob.chat
        .clone()
        .leave_room(pb::LeaveRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        members(&alice, &room).await,
        [
            ("alice".to_owned(), MemberRole::Owner),
            ("carol".to_owned(), MemberRole::Admin),
            ("dave".to_owned(), MemberRole::Member),
        ]
    );
}

#[tokio::test]
async fn members_are_listed_a_page_at_a_time_with_who_is_online() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;
    let mut names = vec!["alice".to_owned()];
    for i in 0..4 {
        let user = app.user(&format!("user{i}")).await;
        user.join(&room).await;
        names.push(format!("user{i}"));
    }
    let (_alice_events, _) = alice.subscribe().await;
    let mut token = String::new();
    let mut seen = Vec::new();
    loop {
        let page = alice
            .chat
            .clone()
            .list_members(pb::ListMembersRequest {
                room_id: room.id.clone(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.members.len() <= 2);
        for member in page.members {
            let user = member.user.unwrap();
            assert_eq!(member.online, user.username == "alice", "{}", user.username);
            assert!(member.joined_at.is_some());
            seen.push(user.username);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, names);
    let forged = alice
        .chat
        .clone()
        .list_members(pb::ListMembersRequest {
            room_id: room.id.clone(),
            page_size: 2,
            page_token: "not a token".into(),
        })
        .await;
    assert_eq!(code(forged), Code::InvalidArgument);
    let capped = alice
        .chat
        .clone()
        .list_members(pb::ListMembersRequest {
            room_id: room.id.clone(),
            page_size: 1_000_000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.members.len(), 5);
}

#[tokio::test]
async fn a_room_update_reaches_its_members_and_is_checked() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("general").await;
    bob.join(&room).await;
    let (mut bob_events, _) = bob.subscribe().await;
    let updated = alice
        .chat
        .clone()
        .update_room(pb::UpdateRoomRequest {
            room_id: room.id.clone(),
            topic: Some("  ｔｏｐｉｃ  ".into()),
            visibility: Some(RoomVisibility::Private as i32),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    assert_eq!(updated.topic, "topic");
    assert_eq!(updated.visibility(), RoomVisibility::Private);
    loop {
        match bob_events.next().await {
            server_event::Event::RoomUpdated(event) => {
                let shared = event.room.unwrap();
                assert_eq!(
                    (
                        shared.topic.as_str(),
                        shared.visibility(),
                        shared.member_count
                    ),
                    ("topic", RoomVisibility::Private, 2)
                );
                assert_eq!(
                    shared.my_role(),
                    MemberRole::Unspecified,
                    "per-viewer fields unset"
                );
                assert_eq!(event.by.unwrap().username, "alice");
                break;
            }
            server_event::Event::Member(_) | server_event::Event::Presence(_) => {}
            other => panic!("expected room_updated, got {other:?}"),
        }
    }
    let too_long = alice
        .chat
        .clone()
        .update_room(pb::UpdateRoomRequest {
            room_id: room.id.clone(),
            topic: Some("x".repeat(513)),
            ..Default::default()
        })
        .await;
    assert_eq!(code(too_long), Code::InvalidArgument);
    let taken = alice.create_room("random").await;
    let clash = alice
        .chat
        .clone()
        .update_room(pb::UpdateRoomRequest {
            room_id: room.id.clone(),
            name: Some(taken.name.to_uppercase()),
            ..Default::default()
        })
        .await;
    assert_eq!(code(clash), Code::AlreadyExists);
    let unknown = alice
        .chat
        .clone()
        .update_room(pb::UpdateRoomRequest {
            room_id: uuid::Uuid::now_v7().to_string(),
            topic: Some("x".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(code(unknown), Code::NotFound);
    assert_eq!(code(invite(&alice, &room, "nobody").await), Code::NotFound);
}

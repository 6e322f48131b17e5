//! Display names and finding people (issue 22).

use chat_client::pb::{self, server_event};
use tonic::Code;

use crate::helpers::{assert_status, spawn_app, TestUser};

async fn set_name(user: &TestUser, name: Option<&str>) -> Result<pb::User, tonic::Status> {
    user.chat
        .clone()
        .update_profile(pb::UpdateProfileRequest {
            display_name: name.map(str::to_owned),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

async fn search(user: &TestUser, prefix: &str, limit: u32) -> Result<Vec<String>, tonic::Status> {
    user.chat
        .clone()
        .search_users(pb::SearchUsersRequest {
            prefix: prefix.into(),
            limit,
        })
        .await
        .map(|r| {
            r.into_inner()
                .users
                .into_iter()
                .map(|u| u.username)
                .collect()
        })
}

#[tokio::test]
async fn a_display_name_is_normalised_checked_and_told_to_who_shares_a_room() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let carol = app.user("carol").await;
    let (mut bob_events, _) = bob.subscribe().await;
    let (mut carol_events, _) = carol.subscribe().await;

    let user = set_name(&alice, Some("  Ａlice Liddell ")).await.unwrap();
    assert_eq!(
        (user.username.as_str(), user.display_name.as_str()),
        ("alice", "Alice Liddell")
    );
    loop {
        match bob_events.next().await {
            server_event::Event::Profile(changed) => {
                let changed = changed.user.unwrap();
                assert_eq!(
                    (changed.id.as_str(), changed.display_name.as_str()),
                    (alice.user.id.as_str(), "Alice Liddell")
                );
                break;
            }
            server_event::Event::Presence(_) => {}
            other => panic!("expected profile, got {other:?}"),
        }
    }
    carol_events
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
    // Messages show it, live and in History.
    let sent = alice.send(&room, "hello").await;
    assert_eq!(sent.sender.unwrap().display_name, "Alice Liddell");
    let history = bob.history(&room, 0, 10).await.messages;
    assert_eq!(
        history[0].sender.as_ref().unwrap().display_name,
        "Alice Liddell"
    );
    // Unset keeps it; empty clears it.
    assert_eq!(
        set_name(&alice, None).await.unwrap().display_name,
        "Alice Liddell"
    );
    assert_eq!(set_name(&alice, Some("")).await.unwrap().display_name, "");

    for (bad, why) in [
        (
            "x".repeat(65),
            "display_name must be at most 64 characters, got 65",
        ),
        (
            "ad\u{200B}min".to_owned(),
            "display_name must not contain invisible characters, found U+200B",
        ),
        (
            "bell\u{7}".to_owned(),
            "display_name must not contain control characters, found U+0007",
        ),
    ] {
        let status = set_name(&alice, Some(&bad)).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, why)
        );
    }
}

#[tokio::test]
async fn users_are_found_by_the_start_of_their_name_or_display_name() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    app.user("Alex_9").await;
    let bob = app.user("bob").await;
    set_name(&bob, Some("Albert Bob")).await.unwrap();
    for i in 0..25 {
        app.user(&format!("zed{i:02}")).await;
    }

    assert_eq!(
        search(&alice, "AL", 0).await.unwrap(),
        // By username: bob by his display name.
        ["Alex_9", "alice", "bob"]
    );
    assert_eq!(search(&alice, "albert", 0).await.unwrap(), ["bob"]);
    assert_eq!(
        search(&alice, "nobody", 0).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        search(&alice, "zed", 0).await.unwrap().len(),
        20,
        "at most 20"
    );
    assert_eq!(
        search(&alice, "zed", 1000).await.unwrap().len(),
        20,
        "capped"
    );
    assert_eq!(search(&alice, "zed", 3).await.unwrap().len(), 3);

    for (prefix, why) in [
        ("", "prefix must be 1 to 32 characters, got 0"),
        (
            &"z".repeat(33)[..],
            "prefix must be 1 to 32 characters, got 33",
        ),
    ] {
        let status = search(&alice, prefix, 0).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, why)
        );
    }
}

async fn block(by: &TestUser, username: &str) -> Result<(), tonic::Status> {
    by.chat
        .clone()
        .block_user(pb::BlockUserRequest {
            username: username.into(),
        })
        .await
        .map(|_| ())
}

async fn unblock(by: &TestUser, username: &str) -> Result<(), tonic::Status> {
    by.chat
        .clone()
        .unblock_user(pb::UnblockUserRequest {
            username: username.into(),
        })
        .await
        .map(|_| ())
}

async fn blocked(user: &TestUser) -> Vec<String> {
    let users = user
        .chat
        .clone()
        .list_blocked_users(pb::ListBlockedUsersRequest {})
        .await
        .unwrap()
        .into_inner()
        .users;
    users.into_iter().map(|u| u.username).collect()
}

async fn send(
    by: &TestUser,
    room: &pb::Room,
    text: &str,
    reply_to_id: &str,
) -> Result<pb::Message, tonic::Status> {
    by.chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: text.into(),
            reply_to_id: reply_to_id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().message.unwrap())
}

const CANNOT_MESSAGE: &str = "you cannot message this user";

#[tokio::test]
async fn a_blocked_user_cannot_message_or_invite_the_blocker() {
    let app = spawn_app().await;
    let (alice, bob, group) = app.alice_and_bob_in_a_room().await;
    let direct = bob.open_direct_room("alice").await;
    let first = send(&bob, &direct, "hi alice", "").await.unwrap();
    let (mut bob_stream, _) = bob.chat_stream().await;

    block(&alice, "bob").await.unwrap();
    block(&alice, "BOB").await.unwrap();
    assert_eq!(blocked(&alice).await, ["bob"]);
    assert!(blocked(&bob).await.is_empty());

    let opened = bob
        .chat
        .clone()
        .open_direct_room(pb::OpenDirectRoomRequest {
            username: "alice".into(),
        })
        .await;
    assert_status(opened, Code::PermissionDenied, CANNOT_MESSAGE);
    assert_status(
        send(&bob, &direct, "hello?", "").await,
        Code::PermissionDenied,
        CANNOT_MESSAGE,
    );
    assert_status(
        send(&bob, &direct, "a reply", &first.id).await,
        Code::PermissionDenied,
        CANNOT_MESSAGE,
    );
    bob_stream.send_text(&direct, "on the stream", "k1").await;
    match bob_stream.next().await {
        server_event::Event::Error(error) => {
            assert_eq!(
                (
                    error.code,
                    error.message.as_str(),
                    error.client_msg_id.as_str()
                ),
                (Code::PermissionDenied as i32, CANNOT_MESSAGE, "k1")
            );
        }
        other => panic!("expected the send's error, got {other:?}"),
    }
    let own = bob.create_room("bobs").await;
    let invited = bob
        .chat
        .clone()
        .invite_to_room(pb::InviteToRoomRequest {
            room_id: own.id.clone(),
            username: "alice".into(),
        })
        .await;
    assert_status(invited, Code::PermissionDenied, CANNOT_MESSAGE);
    assert!(search(&bob, "ali", 0).await.unwrap().is_empty());

    // One way: the blocker still writes, and group rooms still carry the
    // blocked user's messages (the clients collapse them).
    send(&alice, &direct, "I can still write", "")
        .await
        .unwrap();
    send(&bob, &group, "in the group", "").await.unwrap();
    let history = alice.history(&group, 0, 10).await.messages;
    assert_eq!(history.last().unwrap().text, "in the group");

    unblock(&alice, "bob").await.unwrap();
    unblock(&alice, "bob").await.unwrap();
    assert!(blocked(&alice).await.is_empty());
    send(&bob, &direct, "thanks", "").await.unwrap();
    assert_eq!(search(&bob, "ali", 0).await.unwrap(), ["alice"]);
}

#[tokio::test]
async fn blocks_name_someone_else_who_exists() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    for (username, code, why) in [
        (
            "alice",
            Code::InvalidArgument,
            "username: you cannot block yourself",
        ),
        ("nobody", Code::NotFound, "user \"nobody\" does not exist"),
    ] {
        assert_status(block(&alice, username).await, code, why);
    }
    assert_eq!(
        block(&alice, "no spaces").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        unblock(&alice, "nobody").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_blocker_hears_no_typing_or_presence_of_the_blocked() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let carol = app.user("carol").await;
    carol.join(&room).await;
    block(&alice, "bob").await.unwrap();
    let (mut alices, ready) = alice.subscribe().await;
    assert!(ready.online_users.iter().all(|u| u.username != "bob"));

    let (_bobs, _) = bob.subscribe().await;
    let typing = |user: &TestUser| {
        let mut chat = user.chat.clone();
        let room_id = room.id.clone();
        async move {
            chat.send_typing(pb::SendTypingRequest { room_id })
                .await
                .unwrap();
        }
    };
    typing(&bob).await;
    typing(&carol).await;
    // Carol's typing is the first thing alice hears: nothing of bob's
    // presence or typing came before it.
    match alices.next().await {
        server_event::Event::Typing(typing) => {
            assert_eq!(typing.user.unwrap().username, "carol");
        }
        other => panic!("expected carol typing, got {other:?}"),
    }
    let online = alice
        .chat
        .clone()
        .list_online_users(pb::ListOnlineUsersRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(online.iter().all(|u| u.username != "bob"), "{online:?}");
    alices
        .expect_silence(std::time::Duration::from_millis(300))
        .await;

    // Unblocked, the same open stream hears bob again.
    unblock(&alice, "bob").await.unwrap();
    let other = bob.create_room("other").await;
    alice.join(&other).await;
    let mut chat = bob.chat.clone();
    chat.send_typing(pb::SendTypingRequest {
        room_id: other.id.clone(),
    })
    .await
    .unwrap();
    loop {
        match alices.next().await {
            server_event::Event::Typing(typing) => {
                assert_eq!(typing.user.unwrap().username, "bob");
                break;
            }
            server_event::Event::Member(_) | server_event::Event::Presence(_) => {}
            other => panic!("expected bob typing, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stream_opened_before_a_rename_sends_as_the_new_name() {
    let app = spawn_app().await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut stream, _) = alice.chat_stream().await;
    set_name(&alice, Some("Alice L")).await.unwrap();
    stream.send_text(&room, "renamed", "k1").await;
    loop {
        match stream.next().await {
            server_event::Event::Sent(sent) => {
                let message = sent.message.unwrap();
                assert_eq!(message.sender.unwrap().display_name, "Alice L");
                break;
            }
            server_event::Event::Profile(_) | server_event::Event::Presence(_) => {}
            other => panic!("expected the acknowledgement, got {other:?}"),
        }
    }
}

//! Rooms, direct rooms, history, and who may see what.

use chat_client::pb::{self, RoomKind};
use tonic::Code;

use crate::helpers::{assert_status, spawn_app, TestUser};

#[tokio::test]
async fn the_creator_of_a_room_is_a_member() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;

    let room = alice.create_room("  general ").await;

    assert_eq!(room.name, "general");
    assert_eq!(room.kind, RoomKind::Group as i32);
    assert!(room.joined);
    assert_eq!(room.last_seq, 0);
}

#[tokio::test]
async fn rooms_are_listed_with_membership_and_last_seq() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let general = alice.create_room("general").await;
    let random = alice.create_room("random").await;
    alice.send(&general, "hello").await;
    let direct = alice.open_direct_room("bob").await;
    let carol = app.user("carol").await;

    let list = |user: &crate::helpers::TestUser| {
        let mut chat = user.chat.clone();
        async move {
            chat.list_rooms(pb::ListRoomsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .rooms
                .into_iter()
                .map(|r| (r.name, r.joined, r.last_seq))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(&bob).await,
        [
            ("general".to_owned(), false, 1),
            ("random".to_owned(), false, 0),
            ("alice".to_owned(), true, 0),
        ]
    );
    // Carol sees the group rooms, but not alice and bob's direct room.
    assert_eq!(list(&carol).await.len(), 2);
    assert_eq!(direct.name, "bob");
    let _ = random;
}

#[tokio::test]
async fn joining_and_leaving_change_membership() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("general").await;

    let joined = bob
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    assert!(joined.joined);
    bob.send(&room, "hi").await;

    bob.chat
        .clone()
        .leave_room(pb::LeaveRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
    let result = bob
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "still here?".into(),
            client_msg_id: String::new(),
            ..Default::default()
        })
        .await;
    assert_status(
        result,
        Code::PermissionDenied,
        &format!("you are not a member of room {}", room.id),
    );
}

#[tokio::test]
async fn a_direct_room_is_shared_by_its_two_users_only() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let open = |user: &crate::helpers::TestUser, with: &str| {
        let mut chat = user.chat.clone();
        let username = with.to_owned();
        async move {
            chat.open_direct_room(pb::OpenDirectRoomRequest { username })
                .await
                .map(|r| r.into_inner().room.unwrap())
        }
    };

    let from_alice = open(&alice, "bob").await.unwrap();
    let from_bob = open(&bob, "ALICE").await.unwrap();

    assert_eq!(from_alice.id, from_bob.id);
    assert_eq!(from_alice.kind, RoomKind::Direct as i32);
    assert_eq!(
        (from_alice.name.as_str(), from_bob.name.as_str()),
        ("bob", "alice")
    );
    let result = mallory
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: from_alice.id.clone(),
        })
        .await;
    assert_status(
        result,
        Code::PermissionDenied,
        &format!(
            "room {} is a direct room: nobody else can join it",
            from_alice.id
        ),
    );
    assert_status(
        open(&alice, "alice").await,
        Code::InvalidArgument,
        "cannot open a direct room with yourself",
    );
    assert_status(
        open(&alice, "nobody").await,
        Code::NotFound,
        "user \"nobody\" does not exist",
    );
}

#[tokio::test]
async fn history_pages_backwards_in_ascending_order() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;
    for i in 1..=7 {
        alice.send(&room, &format!("message {i}")).await;
    }
    let page = |before_seq: u64, limit: u32| {
        let (alice, room) = (&alice, &room);
        async move {
            let page = alice.history(room, before_seq, limit).await;
            let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
            (seqs, page.has_more)
        }
    };

    assert_eq!(page(0, 3).await, (vec![5, 6, 7], true));
    assert_eq!(page(5, 3).await, (vec![2, 3, 4], true));
    assert_eq!(page(2, 3).await, (vec![1], false));
    assert_eq!(page(0, 0).await, ((1..=7).collect(), false));

    let newest = alice.history(&room, 0, 1).await.messages.remove(0);
    assert_eq!(newest.text, "message 7");
    assert_eq!(newest.sender.unwrap().username, "alice");
    assert!(newest.sent_at.is_some());
}

#[tokio::test]
async fn history_is_clamped_to_200_messages() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;
    alice.flood(&room, 5, 41, 0).await;

    let page = alice.history(&room, 0, 1000).await;

    assert_eq!(page.messages.len(), 200);
    assert!(page.has_more);
    let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (6..=205).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_non_member_cannot_read_or_write_a_room() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let eve = app.user("eve").await;
    let room = alice.create_room("private-ish").await;
    let denied = format!("you are not a member of room {}", room.id);
    let mut chat = eve.chat.clone();

    let history = chat
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            before_seq: 0,
            limit: 0,
        })
        .await;
    assert_status(history, Code::PermissionDenied, &denied);
    let send = chat
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "let me in".into(),
            client_msg_id: String::new(),
            ..Default::default()
        })
        .await;
    assert_status(send, Code::PermissionDenied, &denied);
    let typing = chat
        .send_typing(pb::SendTypingRequest {
            room_id: room.id.clone(),
        })
        .await;
    assert_status(typing, Code::PermissionDenied, &denied);
    let online = chat
        .list_online_users(pb::ListOnlineUsersRequest {
            room_id: room.id.clone(),
        })
        .await;
    assert_status(online, Code::PermissionDenied, &denied);
}

#[tokio::test]
async fn unknown_and_malformed_rooms_are_told_apart() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let missing = "0190d7a6-0000-7000-8000-000000000000";
    let send = |room_id: &str| {
        let mut chat = alice.chat.clone();
        let room_id = room_id.to_owned();
        async move {
            chat.send_message(pb::SendMessageRequest {
                room_id,
                text: "hello".into(),
                client_msg_id: String::new(),
                ..Default::default()
            })
            .await
        }
    };

    assert_status(
        send(missing).await,
        Code::NotFound,
        &format!("room {missing} does not exist"),
    );
    assert_status(
        send("nope").await,
        Code::InvalidArgument,
        "room_id is not a valid room id",
    );
    assert_status(send("").await, Code::InvalidArgument, "room_id is required");
    let join = alice
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: missing.into(),
        })
        .await;
    assert_status(
        join,
        Code::NotFound,
        &format!("room {missing} does not exist"),
    );
}

#[tokio::test]
async fn bad_room_names_and_texts_say_what_is_wrong() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;

    let create = |name: String| {
        let mut chat = alice.chat.clone();
        async move {
            chat.create_room(pb::CreateRoomRequest {
                name,
                ..Default::default()
            })
            .await
        }
    };
    assert_status(
        create("   ".into()).await,
        Code::InvalidArgument,
        "room name must not be empty",
    );
    assert_status(
        create("x".repeat(65)).await,
        Code::InvalidArgument,
        "room name must be at most 64 characters, got 65",
    );
    let send = |text: String| {
        let mut chat = alice.chat.clone();
        let room_id = room.id.clone();
        async move {
            chat.send_message(pb::SendMessageRequest {
                room_id,
                text,
                client_msg_id: String::new(),
                ..Default::default()
            })
            .await
        }
    };
    assert_status(
        send(" \n ".into()).await,
        Code::InvalidArgument,
        "message text must not be empty or only white space",
    );
    assert_status(
        send("x".repeat(4097)).await,
        Code::InvalidArgument,
        "message text must be at most 4096 characters, got 4097",
    );
}

#[tokio::test]
async fn sql_in_names_and_texts_is_just_text() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let name = "x'); DROP TABLE rooms; --";

    let room = alice.create_room(name).await;
    let message = alice.send(&room, "'; DELETE FROM messages; --").await;

    assert_eq!(room.name, name);
    assert_eq!(alice.history(&room, 0, 0).await.messages, [message]);
}

#[tokio::test]
async fn texts_are_limited_in_characters_so_4096_emoji_go_through_whole() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut bob_stream, _) = bob.subscribe().await;
    // 4096 characters of four bytes each: 16 KiB of UTF-8.
    let longest = "🎉".repeat(4096);
    assert_eq!(longest.len(), 16 * 1024);

    let sent = send(&alice, &room, longest.clone()).await.unwrap();
    let too_long = send(&alice, &room, "x".repeat(4097)).await;

    assert_eq!(sent.text, longest);
    assert_eq!(bob_stream.next_message().await, sent);
    assert_eq!(bob.history(&room, 0, 0).await.messages, [sent]);
    assert_status(
        too_long,
        Code::InvalidArgument,
        "message text must be at most 4096 characters, got 4097",
    );
}

#[tokio::test]
async fn a_full_history_page_of_the_longest_texts_fits_in_one_answer() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;
    // 200 texts (a full page) of 16 KiB: 3.2 MiB, under the 4 MiB a
    // response may take.
    let texts: Vec<String> = (0..200)
        .map(|i| format!("{i:03}{}", "😀".repeat(4093)))
        .collect();
    for text in &texts {
        send(&alice, &room, text.clone()).await.unwrap();
    }

    let page = alice.history(&room, 0, 200).await;

    let read: Vec<&str> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(read, texts);
    assert!(!page.has_more);
}

async fn send(
    user: &TestUser,
    room: &pb::Room,
    text: String,
) -> Result<pb::Message, tonic::Status> {
    user.chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text,
            client_msg_id: String::new(),
            ..Default::default()
        })
        .await
        .map(|response| response.into_inner().message.unwrap())
}

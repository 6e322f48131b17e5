//! Editing and deleting messages (issue 21): who may, what each refusal
//! is, and how edits and deletions reach streams, live and on resume, as
//! events of the room's log carrying the message as it is now.

use std::time::{Duration, Instant};

use tonic::Code;

use chat_client::pb::{self, server_event::Event};

use crate::helpers::{assert_status, spawn_app, spawn_app_with, TestApp, TestUser, PATIENCE};

async fn edit(
    user: &TestUser,
    message: &pb::Message,
    text: &str,
) -> Result<pb::Message, tonic::Status> {
    user.chat
        .clone()
        .edit_message(pb::EditMessageRequest {
            room_id: message.room_id.clone(),
            message_id: message.id.clone(),
            text: text.into(),
        })
        .await
        .map(|answer| answer.into_inner().message.expect("the message"))
}

async fn delete(user: &TestUser, message: &pb::Message) -> Result<(), tonic::Status> {
    user.chat
        .clone()
        .delete_message(pb::DeleteMessageRequest {
            room_id: message.room_id.clone(),
            message_id: message.id.clone(),
        })
        .await
        .map(drop)
}

async fn last_seq(user: &TestUser, room: &pb::Room) -> u64 {
    let rooms = user
        .chat
        .clone()
        .list_rooms(pb::ListRoomsRequest {
            joined_only: true,
            ..Default::default()
        })
        .await
        .expect("list rooms")
        .into_inner()
        .rooms;
    rooms
        .iter()
        .find(|r| r.id == room.id)
        .expect("the room is listed")
        .last_seq
}

/// A room event as a test names it: `message:<seq>:<text>` (`deleted` for
/// a tombstone, `*` after an edited text), `edited:<seq>:<text>`,
/// `deleted:<seq>:<by>`.
fn named(event: &Event) -> Option<String> {
    let show = |m: &pb::Message| {
        if m.deleted {
            format!("{}:deleted", m.seq)
        } else if m.edited_at.is_some() {
            format!("{}:{}*", m.seq, m.text)
        } else {
            format!("{}:{}", m.seq, m.text)
        }
    };
    match event {
        Event::Message(m) => Some(format!("message:{}", show(m))),
        Event::Edited(e) => Some(format!("edited:{}:{}", e.seq, show(e.message.as_ref()?))),
        Event::Deleted(d) => Some(format!("deleted:{}:{}", d.seq, d.by.as_ref()?.username)),
        _ => None,
    }
}

/// The next `count` room events of a stream, by name, skipping the rest.
async fn room_events(events: &mut tonic::Streaming<pb::ServerEvent>, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        let next = tokio::time::timeout(PATIENCE, events.message())
            .await
            .expect("an event in time")
            .expect("the stream is fine")
            .expect("the stream is open");
        if let Some(name) = next.event.as_ref().and_then(named) {
            got.push(name);
        }
    }
    got
}

#[tokio::test]
async fn only_the_sender_may_edit_or_delete_a_message() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "mine").await;

    assert_status(
        edit(&bob, &message, "hijacked").await,
        Code::PermissionDenied,
        &format!("only its sender may edit message {}", message.id),
    );
    assert_status(
        delete(&bob, &message).await,
        Code::PermissionDenied,
        &format!(
            "only its sender, an admin or the owner may delete message {}",
            message.id
        ),
    );
    let history = alice.history(&room, 0, 10).await.messages;
    assert_eq!(
        (
            history[0].text.as_str(),
            history[0].deleted,
            last_seq(&alice, &room).await
        ),
        // Seq 1 is bob's join, 2 the message.
        ("mine", false, 2),
        "nothing changed"
    );
}

#[tokio::test]
async fn a_non_member_may_not_edit_or_delete() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("lobby").await;
    let message = alice.send(&room, "hello").await;
    alice
        .chat
        .clone()
        .leave_room(pb::LeaveRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();

    let refusal = format!("you are not a member of room {}", room.id);
    assert_status(
        edit(&alice, &message, "again").await,
        Code::PermissionDenied,
        &refusal,
    );
    assert_status(
        delete(&alice, &message).await,
        Code::PermissionDenied,
        &refusal,
    );
}

#[tokio::test]
async fn unknown_rooms_and_messages_are_not_found() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("lobby").await;
    let other = alice.create_room("other").await;
    let message = alice.send(&room, "hello").await;
    let elsewhere = alice.send(&other, "there").await;
    let no_room = pb::Message {
        room_id: uuid::Uuid::now_v7().to_string(),
        ..message.clone()
    };
    let no_message = pb::Message {
        id: uuid::Uuid::now_v7().to_string(),
        ..message.clone()
    };
    let in_another_room = pb::Message {
        room_id: room.id.clone(),
        ..elsewhere.clone()
    };

    let no_such_room = format!("room {} does not exist", no_room.room_id);
    assert_status(
        edit(&alice, &no_room, "x").await,
        Code::NotFound,
        &no_such_room,
    );
    assert_status(
        delete(&alice, &no_room).await,
        Code::NotFound,
        &no_such_room,
    );
    for missing in [no_message, in_another_room] {
        let not_there = format!("message {} does not exist in room {}", missing.id, room.id);
        assert_status(
            edit(&alice, &missing, "x").await,
            Code::NotFound,
            &not_there,
        );
        assert_status(delete(&alice, &missing).await, Code::NotFound, &not_there);
    }
}

#[tokio::test]
async fn a_deleted_message_cannot_be_edited_and_deleting_again_changes_nothing() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "soon gone").await;
    delete(&alice, &message).await.unwrap();
    let (mut watching, _) = bob.subscribe().await;

    assert_status(
        edit(&alice, &message, "back?").await,
        Code::FailedPrecondition,
        &format!("message {} was deleted: it cannot be edited", message.id),
    );
    delete(&alice, &message)
        .await
        .expect("deleting again succeeds");

    assert_eq!(
        last_seq(&alice, &room).await,
        3,
        "no event after the first deletion (seq 1 is bob's join)"
    );
    watching.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_edit_follows_the_rules_of_sending_and_the_same_text_makes_no_event() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "hello").await;
    let (mut watching, _) = bob.subscribe().await;

    assert_status(
        edit(&alice, &message, " \n ").await,
        Code::InvalidArgument,
        "message text must not be empty or only white space",
    );
    assert_status(
        edit(&alice, &message, &"x".repeat(4097)).await,
        Code::InvalidArgument,
        "message text must be at most 4096 characters, got 4097",
    );
    let same = edit(&alice, &message, "hello")
        .await
        .expect("the same text is accepted");

    assert_eq!((same.text.as_str(), same.edited_at), ("hello", None));
    assert_eq!(
        last_seq(&alice, &room).await,
        2,
        "no event (seq 1 is bob's join)"
    );
    watching.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn edits_and_deletions_count_against_the_send_rate() {
    let app = spawn_app_with(|config| {
        config.limits.send_rate = 1;
        config.limits.send_burst = 2;
    })
    .await;
    let alice = app.user("alice").await;
    let room = alice.create_room("lobby").await;
    let message = alice.send(&room, "one").await;
    edit(&alice, &message, "two")
        .await
        .expect("within the burst");

    let refused = delete(&alice, &message).await.expect_err("over the rate");

    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

#[tokio::test]
async fn edits_and_deletions_reach_other_members_live_on_both_kinds_of_stream() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut subscribed, _) = bob.subscribe().await;
    let (mut chatting, _) = bob.chat_stream().await;
    // Any first event starts a ChatStream live at once.
    chatting
        .send(pb::client_event::Event::Ping(pb::client_event::Ping {
            nonce: 1,
        }))
        .await;
    assert!(matches!(chatting.next().await, Event::Pong(_)));
    let message = alice.send(&room, "helo").await;

    let edited = edit(&alice, &message, "hello").await.unwrap();
    delete(&alice, &message).await.unwrap();

    // Seq 1 is bob's join.
    assert_eq!((edited.seq, edited.text.as_str()), (2, "hello"));
    assert!(edited.edited_at.is_some());
    for stream in [&mut subscribed, &mut chatting] {
        let mut got = Vec::new();
        while got.len() < 3 {
            if let Some(name) = named(&stream.next().await) {
                got.push(name);
            }
        }
        assert_eq!(
            got,
            ["message:2:helo", "edited:3:2:hello*", "deleted:4:alice"]
        );
    }
}

#[tokio::test]
async fn a_resume_from_before_an_edit_and_a_deletion_replays_them_once_in_order_as_they_are_now() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let first = alice.send(&room, "first").await;
    let second = alice.send(&room, "second, a secret").await;
    edit(&alice, &first, "first, edited").await.unwrap();
    delete(&alice, &second).await.unwrap();
    alice.send(&room, "third").await;
    let cursors = vec![pb::RoomCursor {
        room_id: room.id.clone(),
        after_seq: 0,
    }];

    let mut resumed = bob
        .chat
        .clone()
        .subscribe(pb::SubscribeRequest { cursors })
        .await
        .unwrap()
        .into_inner();
    let missed = room_events(&mut resumed, 5).await;
    alice.send(&room, "fourth").await;
    let live = room_events(&mut resumed, 1).await;

    assert_eq!(
        missed,
        [
            // Seq 1 is bob's join (not a message event).
            "message:2:first, edited*",
            "message:3:deleted",
            "edited:4:2:first, edited*",
            "deleted:5:alice",
            "message:6:third",
        ],
        "every event once, in seq order, each message as it is now"
    );
    assert_eq!(
        live,
        ["message:7:fourth"],
        "then the live ones, no duplicate"
    );
}

#[tokio::test]
async fn a_chat_stream_resuming_from_between_gets_only_the_later_events() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "typo").await;
    edit(&alice, &message, "fixed").await.unwrap();
    delete(&alice, &message).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::ClientEvent {
        event: Some(pb::client_event::Event::Resume(pb::client_event::Resume {
            cursors: vec![pb::RoomCursor {
                room_id: room.id.clone(),
                // Bob's join (1) and the message (2).
                after_seq: 2,
            }],
        })),
    })
    .await
    .unwrap();

    let mut resumed = bob
        .chat
        .clone()
        .chat_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(
        room_events(&mut resumed, 2).await,
        ["edited:3:2:deleted", "deleted:4:alice"],
        "the edit replayed with the message as it is now: no old text"
    );
}

#[tokio::test]
async fn history_shows_each_message_as_it_is_now() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let kept = alice.send(&room, "kept").await;
    let edited = alice.send(&room, "before").await;
    let deleted = alice.send(&room, "gone").await;
    edit(&alice, &edited, "after").await.unwrap();
    delete(&alice, &deleted).await.unwrap();

    let page = bob.history(&room, 0, 10).await.messages;

    let shown: Vec<_> = page
        .iter()
        .map(|m| {
            (
                m.id.clone(),
                m.seq,
                m.text.clone(),
                m.edited_at.is_some(),
                m.deleted,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            // Seq 1 is bob's join.
            (kept.id, 2, "kept".to_owned(), false, false),
            (edited.id, 3, "after".to_owned(), true, false),
            (deleted.id, 4, String::new(), false, true),
        ]
    );
    assert_eq!(last_seq(&bob, &room).await, 6, "the room's newest event");
}

/// Every file of the app's database folder (the database, its WAL, any
/// journal) that holds `needle`.
fn files_holding(app: &TestApp, needle: &[u8]) -> Vec<String> {
    let url = &app.state.config.database_url;
    let file = std::path::Path::new(url.trim_start_matches("sqlite://"));
    let dir = file.parent().expect("the database's folder");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            std::fs::read(path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .map(|path| path.display().to_string())
        .collect()
}

#[tokio::test]
async fn ten_seconds_after_a_deletion_no_file_of_the_database_holds_its_text() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("lobby").await;
    let secret = format!("the secret {}", uuid::Uuid::now_v7());
    let before = alice.send(&room, "padding before").await;
    let message = alice.send(&room, &secret).await;
    alice.send(&room, "padding after").await;
    edit(&alice, &before, "an edit after it").await.unwrap();
    assert!(
        !files_holding(&app, secret.as_bytes()).is_empty(),
        "the test looks where the text is"
    );

    delete(&alice, &message).await.unwrap();
    let deleted = Instant::now();
    let mut holding = files_holding(&app, secret.as_bytes());
    while !holding.is_empty() && deleted.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        holding = files_holding(&app, secret.as_bytes());
    }

    assert_eq!(
        holding,
        Vec::<String>::new(),
        "the text is erased from every file"
    );
}

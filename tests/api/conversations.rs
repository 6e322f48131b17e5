//! Reactions, replies, threads and mentions (issue 21): every refusal with
//! its status, what History and ListThread return, and how the changes
//! travel on streams, live and on resume.

use tonic::Code;

use chat_client::pb::{self, server_event::Event};

use crate::helpers::{assert_status, spawn_app, TestUser, PATIENCE};

async fn react(user: &TestUser, message: &pb::Message, emoji: &str) -> Result<(), tonic::Status> {
    user.chat
        .clone()
        .add_reaction(pb::AddReactionRequest {
            room_id: message.room_id.clone(),
            message_id: message.id.clone(),
            emoji: emoji.into(),
        })
        .await
        .map(drop)
}

async fn unreact(user: &TestUser, message: &pb::Message, emoji: &str) -> Result<(), tonic::Status> {
    user.chat
        .clone()
        .remove_reaction(pb::RemoveReactionRequest {
            room_id: message.room_id.clone(),
            message_id: message.id.clone(),
            emoji: emoji.into(),
        })
        .await
        .map(drop)
}

async fn send_with(
    user: &TestUser,
    room: &pb::Room,
    text: &str,
    reply_to_id: &str,
    thread_root_id: &str,
    client_msg_id: &str,
) -> Result<pb::Message, tonic::Status> {
    user.chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: text.into(),
            client_msg_id: client_msg_id.into(),
            reply_to_id: reply_to_id.into(),
            thread_root_id: thread_root_id.into(),
        })
        .await
        .map(|answer| answer.into_inner().message.expect("the message"))
}

async fn thread(
    user: &TestUser,
    room: &pb::Room,
    root_id: &str,
    before_seq: u64,
    limit: u32,
) -> Result<pb::ListThreadResponse, tonic::Status> {
    user.chat
        .clone()
        .list_thread(pb::ListThreadRequest {
            room_id: room.id.clone(),
            thread_root_id: root_id.into(),
            before_seq,
            limit,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn last_seq(user: &TestUser, room: &pb::Room) -> u64 {
    user.chat
        .clone()
        .list_rooms(pb::ListRoomsRequest {
            joined_only: true,
            ..Default::default()
        })
        .await
        .expect("list rooms")
        .into_inner()
        .rooms
        .into_iter()
        .find(|r| r.id == room.id)
        .expect("the room is listed")
        .last_seq
}

/// A message's reactions as `emoji count` (`*` when reacted by the
/// reader), in their order.
fn reactions(message: &pb::Message) -> Vec<String> {
    message
        .reactions
        .iter()
        .map(|r| {
            let mine = if r.reacted_by_me { "*" } else { "" };
            format!("{} {}{mine}", r.emoji, r.count)
        })
        .collect()
}

async fn newest(user: &TestUser, room: &pb::Room) -> pb::Message {
    user.history(room, 0, 1)
        .await
        .messages
        .pop()
        .expect("a message")
}

#[tokio::test]
async fn reactions_count_in_order_of_first_use_as_each_reader_sees_them() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "react to me").await;

    react(&alice, &message, "👍").await.unwrap();
    react(&bob, &message, "❤").await.unwrap(); // unqualified: stored as ❤️
    react(&bob, &message, "👍").await.unwrap();
    assert_eq!(reactions(&newest(&alice, &room).await), ["👍 2*", "❤️ 1"]);
    assert_eq!(reactions(&newest(&bob, &room).await), ["👍 2*", "❤️ 1*"]);

    // Twice, or removing what is absent: accepted, no event.
    let seq = last_seq(&alice, &room).await;
    react(&bob, &message, "❤️").await.unwrap();
    unreact(&alice, &message, "❤️").await.unwrap();
    assert_eq!(last_seq(&alice, &room).await, seq, "no event");

    // A count back at zero drops the emoji: added again, it goes last.
    unreact(&alice, &message, "👍").await.unwrap();
    unreact(&bob, &message, "👍").await.unwrap();
    assert_eq!(reactions(&newest(&alice, &room).await), ["❤️ 1"]);
    react(&alice, &message, "👍").await.unwrap();
    assert_eq!(reactions(&newest(&alice, &room).await), ["❤️ 1", "👍 1*"]);
    assert_eq!(last_seq(&alice, &room).await, seq + 3);
}

#[tokio::test]
async fn every_refusal_of_a_reaction_has_its_status() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let eve = app.user("eve").await;
    let message = alice.send(&room, "hello").await;
    let other_room = bob.create_room("other").await;
    let elsewhere = bob.send(&other_room, "elsewhere").await;

    for bad in ["", "a", "👍👍", "1", "🏳️‍🌈x"] {
        let error = react(&alice, &message, bad).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{bad:?}: {error:?}");
        assert!(error.message().contains("emoji"), "{error:?}");
    }
    react(&alice, &message, "🏳️‍🌈").await.unwrap();
    assert_status(
        react(&eve, &message, "👍").await,
        Code::PermissionDenied,
        &format!("you are not a member of room {}", room.id),
    );
    assert_status(
        unreact(&eve, &message, "👍").await,
        Code::PermissionDenied,
        &format!("you are not a member of room {}", room.id),
    );
    let moved = pb::Message {
        room_id: room.id.clone(),
        ..elsewhere.clone()
    };
    assert_status(
        react(&alice, &moved, "👍").await,
        Code::NotFound,
        &format!(
            "message {} does not exist in room {}",
            elsewhere.id, room.id
        ),
    );
    let no_room = pb::Message {
        room_id: "01936b4c-0000-7000-8000-000000000000".into(),
        ..message.clone()
    };
    assert_eq!(
        react(&alice, &no_room, "👍").await.unwrap_err().code(),
        Code::NotFound
    );

    // Twenty different emoji per user and message, no more.
    let twenty = [
        "😀", "😃", "😄", "😁", "😆", "😅", "😂", "🤣", "😊", "😇", "🙂", "🙃", "😉", "😌", "😍",
        "🥰", "😘", "😗", "😙",
    ];
    for emoji in twenty {
        react(&bob, &message, emoji).await.unwrap();
    }
    react(&bob, &message, "😚").await.unwrap();
    let error = react(&bob, &message, "😋").await.unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(error.message().contains("20"), "{error:?}");
    react(&bob, &message, "😚")
        .await
        .expect("one already there");
    react(&alice, &message, "😋")
        .await
        .expect("alice has her own 20");

    // A tombstone takes none, and has none to remove.
    let deleted = alice.send(&room, "going").await;
    react(&bob, &deleted, "👍").await.unwrap();
    alice
        .chat
        .clone()
        .delete_message(pb::DeleteMessageRequest {
            room_id: room.id.clone(),
            message_id: deleted.id.clone(),
        })
        .await
        .unwrap();
    assert_status(
        react(&bob, &deleted, "👍").await,
        Code::FailedPrecondition,
        &format!(
            "message {} was deleted: it cannot be reacted to",
            deleted.id
        ),
    );
    let seq = last_seq(&alice, &room).await;
    unreact(&bob, &deleted, "👍")
        .await
        .expect("nothing to remove");
    assert_eq!(last_seq(&alice, &room).await, seq, "no event");
    let tombstone = newest(&bob, &room).await;
    assert!(tombstone.deleted && tombstone.reactions.is_empty());
}

#[tokio::test]
async fn reactions_travel_as_events_live_and_on_resume_once() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "hi").await;
    let (mut live, _) = bob.subscribe().await;

    react(&alice, &message, "🎉").await.unwrap();
    unreact(&alice, &message, "🎉").await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        if let Event::Reaction(r) = live.next().await {
            seen.push(r);
        }
    }
    let user = alice.user.username.clone();
    let shape = |r: &pb::server_event::Reaction| {
        (
            r.seq,
            r.room_id.clone(),
            r.message_id.clone(),
            r.emoji.clone(),
            r.user.as_ref().map(|u| u.username.clone()),
            r.added,
        )
    };
    assert_eq!(
        seen.iter().map(shape).collect::<Vec<_>>(),
        [
            // Seq 1 is bob's join, 2 the message.
            (
                3,
                room.id.clone(),
                message.id.clone(),
                "🎉".into(),
                Some(user.clone()),
                true
            ),
            (
                4,
                room.id.clone(),
                message.id.clone(),
                "🎉".into(),
                Some(user.clone()),
                false
            ),
        ]
    );

    // A resume from seq 3 brings the removal alone; the message's own
    // event (from 0, after bob's join) carries no reactions, which the
    // events build.
    react(&bob, &message, "👍").await.unwrap();
    for (after, expected) in [
        (3, vec!["4 -🎉", "5 +👍"]),
        (0, vec!["2 message", "3 +🎉", "4 -🎉", "5 +👍"]),
    ] {
        let mut stream = bob
            .chat
            .clone()
            .subscribe(pb::SubscribeRequest {
                cursors: vec![pb::RoomCursor {
                    room_id: room.id.clone(),
                    after_seq: after,
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            let event = tokio::time::timeout(PATIENCE, stream.message())
                .await
                .expect("in time")
                .unwrap()
                .unwrap()
                .event
                .unwrap();
            match event {
                Event::Message(m) => {
                    assert!(m.reactions.is_empty(), "stream messages carry none");
                    got.push(format!("{} message", m.seq));
                }
                Event::Reaction(r) => got.push(format!(
                    "{} {}{}",
                    r.seq,
                    if r.added { "+" } else { "-" },
                    r.emoji
                )),
                _ => {}
            }
        }
        assert_eq!(got, expected, "resumed after {after}");
    }
}

#[tokio::test]
async fn a_reply_quotes_its_message_as_it_is_now() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    // 150 two-byte characters: 300 bytes, cut to 200 on a boundary.
    let long = "é".repeat(150);
    let quoted = alice.send(&room, &long).await;
    let reply = send_with(&bob, &room, "indeed", &quoted.id, "", "r1")
        .await
        .unwrap();
    let preview = reply.reply_to.clone().expect("a preview");
    assert_eq!(
        (
            preview.message_id.as_str(),
            preview.sender.unwrap().username.as_str(),
            preview.text.as_str(),
            preview.deleted
        ),
        (quoted.id.as_str(), "alice", "é".repeat(100).as_str(), false)
    );
    // A retry with the same key returns the original.
    let again = send_with(&bob, &room, "indeed", &quoted.id, "", "r1")
        .await
        .unwrap();
    assert_eq!(again.id, reply.id);

    alice
        .chat
        .clone()
        .delete_message(pb::DeleteMessageRequest {
            room_id: room.id.clone(),
            message_id: quoted.id.clone(),
        })
        .await
        .unwrap();
    let page = bob.history(&room, 0, 10).await.messages;
    let preview = page.last().unwrap().reply_to.clone().unwrap();
    assert!(preview.deleted && preview.text.is_empty(), "{preview:?}");

    let other_room = bob.create_room("other").await;
    let elsewhere = bob.send(&other_room, "elsewhere").await;
    assert_status(
        send_with(&bob, &room, "x", &elsewhere.id, "", "").await,
        Code::NotFound,
        &format!(
            "reply_to_id: message {} does not exist in room {}",
            elsewhere.id, room.id
        ),
    );
    assert_eq!(
        send_with(&bob, &room, "x", "not-an-id", "", "")
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test]
async fn thread_replies_are_listed_by_list_thread_and_counted_on_their_root() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let eve = app.user("eve").await;
    let root = alice.send(&room, "a topic").await;
    let (mut live, _) = alice.subscribe().await;
    let mut replies = Vec::new();
    for i in 0..5 {
        let reply = send_with(&bob, &room, &format!("reply {i}"), "", &root.id, "")
            .await
            .unwrap();
        assert_eq!(reply.thread_root_id, root.id);
        replies.push(reply);
    }
    let live_reply = live.next_message().await;
    assert_eq!(
        (live_reply.text.as_str(), live_reply.thread_root_id.as_str()),
        ("reply 0", root.id.as_str())
    );
    let after = alice.send(&room, "top level again").await;

    // History: top-level only; the root carries its counts.
    let page = alice.history(&room, 0, 50).await.messages;
    let texts: Vec<_> = page.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["a topic", "top level again"]);
    assert_eq!(page[0].thread_reply_count, 5);
    assert_eq!(
        page[0].thread_last_reply_at,
        replies.last().unwrap().sent_at
    );

    // ListThread pages the replies like History.
    let newest = thread(&alice, &room, &root.id, 0, 2).await.unwrap();
    assert_eq!(newest.root.as_ref().unwrap().id, root.id);
    assert_eq!(newest.root.unwrap().thread_reply_count, 5);
    let texts: Vec<_> = newest.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((texts, newest.has_more), (vec!["reply 3", "reply 4"], true));
    let older = thread(&alice, &room, &root.id, newest.messages[0].seq, 50)
        .await
        .unwrap();
    let texts: Vec<_> = older.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(
        (texts, older.has_more),
        (vec!["reply 0", "reply 1", "reply 2"], false)
    );

    // A reply is no root; a root of another room is not found.
    assert_status(
        send_with(&alice, &room, "nested", "", &replies[0].id, "").await,
        Code::InvalidArgument,
        &format!(
            "thread_root_id: message {} is a thread reply; a thread's root must be a top-level message",
            replies[0].id
        ),
    );
    assert_eq!(
        thread(&alice, &room, &replies[0].id, 0, 0)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let other_room = bob.create_room("other").await;
    let elsewhere = bob.send(&other_room, "elsewhere").await;
    assert_status(
        send_with(&bob, &room, "x", "", &elsewhere.id, "").await,
        Code::NotFound,
        &format!(
            "thread_root_id: message {} does not exist in room {}",
            elsewhere.id, room.id
        ),
    );
    assert_eq!(
        thread(&bob, &room, &elsewhere.id, 0, 0)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_status(
        thread(&eve, &room, &root.id, 0, 0).await,
        Code::PermissionDenied,
        &format!("you are not a member of room {}", room.id),
    );
    // A reply may quote the root, and a thread reply may quote anything of
    // the room.
    let quoting = send_with(&bob, &room, "quoting", &after.id, &root.id, "")
        .await
        .unwrap();
    assert_eq!(quoting.reply_to.unwrap().message_id, after.id);
}

#[tokio::test]
async fn mentions_name_current_members_once_and_follow_edits() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    app.user("carol").await; // not a member
    let dave = app.user("dave.k").await;
    dave.join(&room).await;

    let message = alice
        .send(
            &room,
            "@BOB, see @bob. and @carol; ask @dave.k. or @nobody, not x@dave.k but @alice!",
        )
        .await;
    let names = |m: &pb::Message| -> Vec<String> {
        let mut names: Vec<_> = m.mentions.iter().map(|u| u.username.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&message), ["alice", "bob", "dave.k"]);
    assert_eq!(
        names(&newest(&bob, &room).await),
        ["alice", "bob", "dave.k"]
    );

    let edited = alice
        .chat
        .clone()
        .edit_message(pb::EditMessageRequest {
            room_id: room.id.clone(),
            message_id: message.id.clone(),
            text: "only @dave.k-".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(names(&edited), ["dave.k"]);
    assert_eq!(names(&newest(&bob, &room).await), ["dave.k"]);

    alice
        .chat
        .clone()
        .delete_message(pb::DeleteMessageRequest {
            room_id: room.id.clone(),
            message_id: message.id.clone(),
        })
        .await
        .unwrap();
    assert!(newest(&bob, &room).await.mentions.is_empty());
}

#[tokio::test]
async fn stream_messages_carry_no_aggregates_but_unary_answers_do() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let root = alice.send(&room, "root").await;
    react(&bob, &root, "👍").await.unwrap();
    send_with(&bob, &room, "in thread", "", &root.id, "")
        .await
        .unwrap();
    let (mut live, _) = bob.subscribe().await;

    let edited = alice
        .chat
        .clone()
        .edit_message(pb::EditMessageRequest {
            room_id: room.id.clone(),
            message_id: root.id.clone(),
            text: "root, edited".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();
    assert_eq!(reactions(&edited), ["👍 1"], "the answer has them");
    assert_eq!(edited.thread_reply_count, 1);
    let Event::Edited(event) = live.next().await else {
        panic!("expected the edit");
    };
    let message = event.message.unwrap();
    assert_eq!(message.text, "root, edited");
    assert!(message.reactions.is_empty() && message.thread_reply_count == 0);
}

#[tokio::test]
async fn a_reaction_flood_is_refused_by_the_send_rate_and_stores_nothing_beyond_it() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.limits.send_rate = 1;
        config.limits.send_burst = 5;
    })
    .await;
    let (alice, mallory, room) = app.alice_and_bob_in_a_room().await;
    let message = alice.send(&room, "a target").await;
    let seq = last_seq(&alice, &room).await;

    let (mut stored, mut refused) = (0, 0);
    // Adding and removing alternately: each one that passes makes an event.
    for i in 0..40 {
        let result = if i % 2 == 0 {
            react(&mallory, &message, "👍").await
        } else {
            unreact(&mallory, &message, "👍").await
        };
        match result {
            Ok(()) => stored += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status.message().starts_with(
                        "sending too fast: at most 1 messages per second (bursts of 5)"
                    ),
                    "{status:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused >= 30, "{stored} stored, {refused} refused");
    assert!(
        last_seq(&alice, &room).await - seq <= stored,
        "no event beyond the calls that passed"
    );
}

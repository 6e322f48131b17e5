//! Live streams: chatting, presence, typing, heartbeats, slow consumers.

use std::time::{Duration, Instant};

use chat_client::pb::{self, client_event, server_event};
use tonic::Code;

use crate::helpers::{spawn_app, spawn_app_with, EventStream, TestUser};

fn usernames(users: &[pb::User]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

#[tokio::test]
async fn two_users_chat_both_ways_in_a_group_room() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut alice_stream, alice_ready) = alice.chat_stream().await;
    let (mut bob_stream, bob_ready) = bob.chat_stream().await;
    assert_eq!(alice_ready.user.as_ref(), Some(&alice.user));
    assert_eq!(alice_ready.session_id, alice.login.session_id);
    assert!(alice_ready.online_users.is_empty());
    assert_eq!(usernames(&bob_ready.online_users), ["alice"]);
    assert_eq!(
        alice_stream.next_presence().await.user.unwrap().username,
        "bob"
    );

    alice_stream.send_text(&room, "hi bob", "a-1").await;
    let server_event::Event::Sent(sent) = alice_stream.next().await else {
        panic!("alice should get her send acknowledged");
    };
    let received = bob_stream.next_message().await;

    assert_eq!(sent.client_msg_id, "a-1");
    assert_eq!(sent.message.as_ref(), Some(&received));
    // Seq 1 is bob's join.
    assert_eq!((received.text.as_str(), received.seq), ("hi bob", 2));
    assert_eq!(received.sender.as_ref(), Some(&alice.user));
    assert_eq!(received.room_id, room.id);

    bob_stream.send_text(&room, "hi alice", "").await;
    let reply = alice_stream.next_message().await;
    assert_eq!((reply.text.as_str(), reply.seq), ("hi alice", 3));
    assert_eq!(reply.sender.unwrap().username, "bob");
    let server_event::Event::Sent(sent) = bob_stream.next().await else {
        panic!("bob should get his send acknowledged");
    };
    assert_eq!(sent.message.unwrap().seq, 3);
}

#[tokio::test]
async fn two_users_chat_in_their_direct_room() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let general = carol.create_room("general").await;
    carol.join(&general).await;
    let (mut bob_stream, _) = bob.chat_stream().await;
    let (mut carol_stream, _) = carol.chat_stream().await;
    let (mut alice_stream, _) = alice.chat_stream().await;

    // Opening the room makes each online member see the other.
    let direct = alice.open_direct_room("bob").await;
    assert_eq!(
        bob_stream.next_presence().await.user.unwrap().username,
        "alice"
    );
    assert_eq!(
        alice_stream.next_presence().await.user.unwrap().username,
        "bob"
    );

    alice_stream.send_text(&direct, "psst", "").await;
    assert_eq!(bob_stream.next_message().await.text, "psst");
    bob_stream.send_text(&direct, "what?", "").await;
    assert!(matches!(
        alice_stream.next().await,
        server_event::Event::Sent(_)
    ));
    assert_eq!(alice_stream.next_message().await.text, "what?");
    // Carol, in no room with them, hears nothing.
    carol_stream
        .expect_silence(Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn a_senders_other_sessions_receive_its_messages() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let laptop = app.login("alice").await;
    let (mut phone_stream, _) = alice.chat_stream().await;
    let (mut laptop_stream, _) = laptop.subscribe().await;
    let (mut bob_stream, _) = bob.subscribe().await;
    for stream in [&mut phone_stream, &mut laptop_stream] {
        assert_eq!(stream.next_presence().await.user.unwrap().username, "bob");
    }

    phone_stream.send_text(&room, "from my phone", "p-1").await;
    assert!(matches!(
        phone_stream.next().await,
        server_event::Event::Sent(_)
    ));
    assert_eq!(laptop_stream.next_message().await.text, "from my phone");
    assert_eq!(bob_stream.next_message().await.text, "from my phone");

    // A unary send reaches every stream, the sender's own included.
    laptop.send(&room, "from my laptop").await;
    assert_eq!(phone_stream.next_message().await.text, "from my laptop");
    assert_eq!(laptop_stream.next_message().await.text, "from my laptop");
    assert_eq!(bob_stream.next_message().await.text, "from my laptop");
}

#[tokio::test]
async fn presence_follows_the_first_and_last_stream() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut alice_stream, _) = alice.subscribe().await;
    let online = |user: &TestUser, room_id: &str| {
        let mut chat = user.chat.clone();
        let room_id = room_id.to_owned();
        async move {
            let users = chat
                .list_online_users(pb::ListOnlineUsersRequest { room_id })
                .await
                .unwrap()
                .into_inner()
                .users;
            users.into_iter().map(|u| u.username).collect::<Vec<_>>()
        }
    };

    let (first, _) = bob.chat_stream().await;
    let presence = alice_stream.next_presence().await;
    assert_eq!(
        (presence.user.unwrap().username.as_str(), presence.online),
        ("bob", true)
    );
    assert_eq!(online(&alice, &room.id).await, ["alice", "bob"]);
    assert_eq!(online(&alice, "").await, ["alice", "bob"]);

    let (second, _) = bob.subscribe().await;
    drop(first);
    alice_stream
        .expect_silence(Duration::from_millis(300))
        .await;
    drop(second);
    let presence = alice_stream.next_presence().await;
    assert_eq!(
        (presence.user.unwrap().username.as_str(), presence.online),
        ("bob", false)
    );
    assert_eq!(online(&alice, &room.id).await, ["alice"]);
}

#[tokio::test]
async fn typing_reaches_the_other_members_only() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut alice_stream, _) = alice.chat_stream().await;
    let (mut bob_stream, _) = bob.subscribe().await;
    let _ = alice_stream.next_presence().await;

    alice_stream
        .send(client_event::Event::Typing(client_event::Typing {
            room_id: room.id.clone(),
        }))
        .await;
    let server_event::Event::Typing(typing) = bob_stream.next().await else {
        panic!("bob should see alice typing");
    };
    assert_eq!(typing.room_id, room.id);
    assert_eq!(typing.user.as_ref(), Some(&alice.user));

    // The unary twin, for browsers.
    bob.chat
        .clone()
        .send_typing(pb::SendTypingRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
    let server_event::Event::Typing(typing) = alice_stream.next().await else {
        panic!("alice should see bob typing");
    };
    assert_eq!(typing.user.as_ref(), Some(&bob.user));
    bob_stream.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_failed_stream_request_is_reported_and_the_stream_goes_on() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let eve = app.user("eve").await;
    let room = alice.create_room("general").await;
    let (mut eve_stream, _) = eve.chat_stream().await;

    eve_stream.send_text(&room, "let me in", "e-1").await;
    let server_event::Event::Error(error) = eve_stream.next().await else {
        panic!("expected an error event");
    };
    assert_eq!(error.client_msg_id, "e-1");
    assert_eq!(error.code, Code::PermissionDenied as i32);
    assert_eq!(
        error.message,
        format!("you are not a member of room {}", room.id)
    );

    eve_stream.send_text(&room, "   ", "e-2").await;
    let server_event::Event::Error(error) = eve_stream.next().await else {
        panic!("expected an error event");
    };
    assert_eq!(
        (
            error.client_msg_id.as_str(),
            error.code,
            error.message.as_str()
        ),
        (
            "e-2",
            Code::InvalidArgument as i32,
            "message text must not be empty or only white space"
        )
    );

    eve_stream
        .send(client_event::Event::Ping(client_event::Ping { nonce: 42 }))
        .await;
    assert_eq!(
        eve_stream.next().await,
        server_event::Event::Pong(server_event::Pong { nonce: 42 })
    );
}

#[tokio::test]
async fn a_retried_send_is_stored_and_delivered_once() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut alice_stream, _) = alice.chat_stream().await;
    let (mut bob_stream, _) = bob.subscribe().await;
    let _ = alice_stream.next_presence().await;

    alice_stream.send_text(&room, "once", "same-key").await;
    alice_stream.send_text(&room, "once", "same-key").await;
    let unary = alice
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "once".into(),
            client_msg_id: "same-key".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();

    let mut acks = Vec::new();
    for _ in 0..2 {
        let server_event::Event::Sent(sent) = alice_stream.next().await else {
            panic!("expected an acknowledgement");
        };
        acks.push(sent.message.unwrap());
    }
    assert_eq!(acks, [unary.clone(), unary.clone()]);
    assert_eq!(bob_stream.next_message().await, unary);
    bob_stream.expect_silence(Duration::from_millis(300)).await;
    // Seq 1 is bob's join.
    assert_eq!(unary.seq, 2);
}

/// What a heartbeat may come late by on a busy machine (CI runs this beside
/// every other test): well above a timer's jitter, and the sum with the
/// interval still far below the 15 s default.
const BEAT_SLACK: Duration = Duration::from_millis(700);

#[tokio::test]
async fn ready_tells_each_stream_the_heartbeat_interval_and_an_idle_stream_hears_one_within_it() {
    // Not the default (15 s), so the test tells a configured interval from
    // a constant.
    let interval = Duration::from_millis(700);
    let app = spawn_app_with(|config| config.heartbeat_interval = interval).await;
    let alice = app.user("alice").await;

    let (mut subscribe, subscribe_ready) = alice.subscribe().await;
    let subscribed = Instant::now();
    let (mut chat_stream, chat_ready) = alice.chat_stream().await;
    let chatting = Instant::now();
    let (subscribe_beats, chat_stream_beats) = tokio::join!(
        heartbeat_gaps(&mut subscribe, subscribed),
        heartbeat_gaps(&mut chat_stream, chatting),
    );

    for ready in [&subscribe_ready, &chat_ready] {
        let told = ready
            .heartbeat_interval
            .expect("ready carries the interval");
        assert_eq!((told.seconds, told.nanos), (0, 700_000_000));
    }
    for gaps in [subscribe_beats, chat_stream_beats] {
        assert!(
            gaps.iter().all(|&gap| gap <= interval + BEAT_SLACK),
            "a heartbeat came later than the {interval:?} interval: {gaps:?}"
        );
    }
}

/// Reads two events from an idle stream, which must both be heartbeats
/// (`pong` with nonce 0): how long each took, from `since` on.
async fn heartbeat_gaps(stream: &mut EventStream, mut since: Instant) -> Vec<Duration> {
    let mut gaps = Vec::new();
    for _ in 0..2 {
        let event = stream.next().await;
        gaps.push(since.elapsed());
        since = Instant::now();
        assert_eq!(
            event,
            server_event::Event::Pong(server_event::Pong { nonce: 0 })
        );
    }
    gaps
}

#[tokio::test]
async fn a_stream_that_cannot_keep_up_is_ended_without_slowing_the_others() {
    let app = spawn_app_with(|config| config.stream_queue = 16).await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let carol = app.user("carol").await;
    carol.join(&room).await;
    let (mut slow, _) = bob.subscribe().await;
    let (mut fast, _) = carol.subscribe().await;
    // Large texts fill the HTTP/2 window quickly, so the server-side queue
    // of the stream that never reads overflows.
    let text = "x".repeat(4000);
    let count = 600u64;
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        while seqs.len() < count as usize {
            if let server_event::Event::Message(m) = fast.next().await {
                seqs.push(m.seq);
            }
        }
        seqs
    });

    for _ in 0..count {
        alice.send(&room, &text).await;
    }

    // Seqs 1 and 2 are bob's and carol's joins.
    assert_eq!(reader.await.unwrap(), (3..=count + 2).collect::<Vec<_>>());
    slow.assert_ends_with(
        Code::ResourceExhausted,
        "stream too slow: more than 16 events were waiting; reconnect and resume",
    )
    .await;
}

#[tokio::test]
async fn revoking_a_session_ends_its_open_streams_within_a_second() {
    let app = spawn_app().await;
    let phone = app.user("alice").await;
    let laptop = app.login("alice").await;
    let (mut chat, _) = phone.chat_stream().await;
    let (mut subscribe, _) = phone.subscribe().await;
    let (mut survivor, _) = laptop.subscribe().await;

    let started = Instant::now();
    laptop
        .auth
        .clone()
        .revoke_session(pb::RevokeSessionRequest {
            session_id: phone.login.session_id.clone(),
        })
        .await
        .unwrap();

    for stream in [&mut chat, &mut subscribe] {
        stream
            .assert_ends_with(Code::Unauthenticated, "session revoked")
            .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    survivor.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn shutting_down_ends_open_streams_cleanly() {
    let mut app = spawn_app().await;
    let alice = app.user("alice").await;
    let (mut stream, _) = alice.chat_stream().await;

    let stop = tokio::time::timeout(Duration::from_secs(5), app.stop());
    let (stopped, ended) = tokio::join!(stop, stream.ended_with());

    assert!(stopped.is_ok(), "the server did not stop in time");
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::Unavailable, "server is shutting down")
    );
}

#[tokio::test]
async fn a_chat_stream_keeps_receiving_after_its_client_stops_sending() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut bob_stream, _) = bob.chat_stream().await;

    bob_stream.close_sending();
    alice.send(&room, "still there?").await;

    assert_eq!(bob_stream.next_message().await.text, "still there?");
}

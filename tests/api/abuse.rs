//! Abuse: floods, too many streams, clients that never read, login storms
//! and password guessing, each refused as specified while a well-behaved
//! client on the same server keeps chatting with normal latency.

use std::time::Duration;

use chat_client::pb::{self, client_event, server_event};
use tonic::Code;

use crate::helpers::{assert_status, spawn_app_with, Bystanders, PASSWORD, PATIENCE};

#[tokio::test]
async fn a_send_flood_is_refused_beyond_the_rate_while_others_keep_chatting() {
    let app = spawn_app_with(|config| {
        config.limits.send_rate = 10;
        config.limits.send_burst = 20;
    })
    .await;
    let mut bystanders = Bystanders::join(&app).await;
    let mallory = app.user("mallory").await;
    let room = mallory.create_room("flood").await;

    let mut refused = 0;
    for i in 0..60 {
        let result = mallory
            .chat
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.id.clone(),
                text: format!("spam {i}"),
                client_msg_id: String::new(),
                ..Default::default()
            })
            .await;
        if let Err(status) = result {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert!(
                status.message().starts_with(
                    "sending too fast: at most 10 messages per second (bursts of 20); retry in "
                ),
                "{status:?}"
            );
            refused += 1;
        }
    }

    // A burst of 20 passes, and a few more refill while the calls run.
    assert!((30..=40).contains(&refused), "{refused} of 60 refused");
    assert!(app.metric("chat_rejections_total{limit=\"send\"}").await >= 30.0);
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn a_stream_send_over_the_rate_gets_an_error_event_and_the_stream_lives_on() {
    let app = spawn_app_with(|config| {
        config.limits.send_rate = 1;
        config.limits.send_burst = 2;
    })
    .await;
    let mallory = app.user("mallory").await;
    let room = mallory.create_room("flood").await;
    let (mut stream, _) = mallory.chat_stream().await;

    for i in 0..3 {
        stream
            .send_text(&room, &format!("spam {i}"), &format!("k{i}"))
            .await;
    }

    // The refusal is immediate; the acknowledgements wait for the commit.
    let (mut sent, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        match stream.next().await {
            server_event::Event::Sent(ack) => sent.push(ack.client_msg_id),
            server_event::Event::Error(error) => refused.push(error),
            other => panic!("expected sent or error, got {other:?}"),
        }
    }
    assert_eq!(sent, ["k0", "k1"]);
    let [error] = refused.as_slice() else {
        panic!("expected one refusal, got {refused:?}");
    };
    assert_eq!(error.client_msg_id, "k2");
    assert_eq!(error.code, Code::ResourceExhausted as i32);
    assert!(
        error.message.starts_with(
            "sending too fast: at most 1 messages per second (bursts of 2); retry in "
        ),
        "{error:?}"
    );
    stream
        .send(client_event::Event::Ping(client_event::Ping { nonce: 9 }))
        .await;
    match stream.next().await {
        server_event::Event::Pong(pong) => assert_eq!(pong.nonce, 9),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[tokio::test]
async fn streams_beyond_the_per_session_limit_are_refused() {
    let app = spawn_app_with(|config| config.limits.max_streams_per_session = 3).await;
    let mut bystanders = Bystanders::join(&app).await;
    let mallory = app.user("mallory").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(mallory.subscribe().await);
    }

    let refused = mallory
        .chat
        .clone()
        .subscribe(pb::SubscribeRequest::default())
        .await;

    assert_status(
        refused,
        Code::ResourceExhausted,
        "too many open streams for this session: at most 3; close one first",
    );
    // Another session of the same user may still open its own.
    let (_other, _) = app.login("mallory").await.subscribe().await;
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_again, _) = mallory.subscribe().await;
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn streams_beyond_the_per_user_limit_are_refused() {
    let app = spawn_app_with(|config| config.limits.max_streams_per_user = 4).await;
    let mallory = app.user("mallory").await;
    let laptop = app.login("mallory").await;
    let mut open = Vec::new();
    for session in [&mallory, &laptop, &mallory, &laptop] {
        open.push(session.subscribe().await);
    }

    let refused = laptop
        .chat
        .clone()
        .chat_stream(tokio_stream::iter(Vec::<pb::ClientEvent>::new()))
        .await;

    assert_status(
        refused,
        Code::ResourceExhausted,
        "too many open streams for this user: at most 4 over all sessions; close one first",
    );
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"streams_per_user\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("chat_streams_open").await, 4.0);
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_while_others_keep_chatting() {
    let app = spawn_app_with(|config| config.stream_queue = 32).await;
    let mut bystanders = Bystanders::join(&app).await;
    let (mallory, sender, room) = app.alice_and_bob_in_a_room().await;
    // On its own connection, as a real device: once its HTTP/2 windows
    // are full, the server's queue for the stream fills.
    let mut stalled = app
        .chat_on_new_connection(&mallory)
        .await
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();

    sender.flood(&room, 4, 200, 3900).await;

    bystanders.assert_chat_is_normal().await;
    let ended = loop {
        let next = tokio::time::timeout(PATIENCE, stalled.message()).await;
        match next.expect("the stalled stream neither ended nor sent") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stalled stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::ResourceExhausted);
    assert_eq!(
        ended.message(),
        "stream too slow: more than 32 events were waiting; reconnect and resume"
    );
    assert_eq!(
        app.metric("chat_slow_consumer_disconnects_total").await,
        1.0
    );
}

#[tokio::test]
async fn failed_logins_back_off_alike_for_known_and_unknown_names() {
    let app = spawn_app_with(|config| {
        config.limits.login_free_attempts = 2;
        config.limits.login_max_backoff = Duration::from_secs(2);
    })
    .await;
    app.register("alice").await;
    let login = |username: &str, password: &str| {
        let mut auth = app.auth();
        let request = pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        };
        async move { auth.login(request).await }
    };

    for name in ["alice", "nobody"] {
        for _ in 0..3 {
            assert_status(
                login(name, "wrong password").await,
                Code::Unauthenticated,
                "invalid username or password",
            );
        }
        // Backing off: refused before the password is even checked.
        assert_status(
            login(name, PASSWORD).await,
            Code::ResourceExhausted,
            "too many failed logins for this username: retry in 1 s",
        );
    }
    assert_eq!(app.metric("chat_login_failures_total").await, 6.0);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    login("alice", PASSWORD)
        .await
        .expect("the back-off is over");
    // A success forgets the failures.
    assert_status(
        login("alice", "wrong password").await,
        Code::Unauthenticated,
        "invalid username or password",
    );
    login("alice", PASSWORD).await.expect("no back-off");
}

#[tokio::test]
async fn a_login_storm_queues_on_the_hashers_and_overflow_is_refused() {
    let app = spawn_app_with(|config| {
        config.limits.password_hashers = 1;
        config.limits.password_queue = 4;
        // Logins in flight count against an account's free attempts: room
        // for the whole storm, so that the hashers' queue is what refuses.
        config.limits.login_free_attempts = 100;
    })
    .await;
    let mut bystanders = Bystanders::join(&app).await;

    let storm: Vec<_> = (0..30)
        .map(|_| {
            let mut auth = app.auth();
            tokio::spawn(async move {
                auth.login(pb::LoginRequest {
                    username: "carol".into(),
                    password: PASSWORD.into(),
                })
                .await
            })
        })
        .collect();
    bystanders.assert_chat_is_normal().await;

    let (mut ok, mut refused) = (0, 0);
    for login in storm {
        match login.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => {
                assert_eq!(
                    (status.code(), status.message()),
                    (
                        Code::ResourceExhausted,
                        "too many logins and registrations in progress: retry in a few seconds"
                    )
                );
                refused += 1;
            }
        }
    }
    assert!(ok >= 5, "{ok} logins went through");
    assert!(refused >= 1, "none refused");
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"password_queue\"}")
            .await,
        f64::from(refused)
    );
}

/// Every call that tells others something is limited: room settings,
/// invitations, roles and removals draw on the room-change rate, profiles
/// and blocks on the send rate. A flood of them is refused like a flood of
/// messages.
#[tokio::test]
async fn a_flood_of_moderation_profile_and_block_calls_is_refused_beyond_its_rate() {
    let app = spawn_app_with(|config| {
        config.limits.send_rate = 1;
        config.limits.send_burst = 5;
        config.limits.room_change_rate = 60;
        config.limits.room_change_burst = 5;
    })
    .await;
    let mut bystanders = Bystanders::join(&app).await;
    let mallory = app.user("mallory").await;
    app.user("victim").await;
    let room = mallory.create_room("noise").await;
    let mut chat = mallory.chat.clone();

    let mut refused = 0;
    for i in 0..10 {
        let results = [
            chat.update_room(pb::UpdateRoomRequest {
                room_id: room.id.clone(),
                topic: Some(format!("topic {i}")),
                ..Default::default()
            })
            .await
            .map(drop),
            chat.invite_to_room(pb::InviteToRoomRequest {
                room_id: room.id.clone(),
                username: "victim".into(),
            })
            .await
            .map(drop),
            chat.update_profile(pb::UpdateProfileRequest {
                display_name: Some(format!("M{i}")),
            })
            .await
            .map(drop),
            chat.block_user(pb::BlockUserRequest {
                username: "victim".into(),
            })
            .await
            .map(drop),
        ];
        for result in results {
            match result {
                Err(status) if status.code() == Code::ResourceExhausted => {
                    let message = status.message();
                    assert!(
                        message.starts_with("sending too fast")
                            || message.starts_with(
                                "changing rooms too fast: at most 60 a minute (bursts of 5, \
                                 --room-change-rate); retry in "
                            ),
                        "{status:?}"
                    );
                    refused += 1;
                }
                // A repeated invitation is refused on its merits.
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
                Ok(()) => {}
            }
        }
    }
    // Each bucket's burst of 5 passes, and a few more refill while the
    // calls run.
    assert!((25..=35).contains(&refused), "{refused} of 40 refused");
    assert!(
        app.metric("chat_rejections_total{limit=\"room_change\"}")
            .await
            >= 10.0
    );
    bystanders.assert_chat_is_normal().await;
}

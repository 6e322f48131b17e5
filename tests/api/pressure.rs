//! Clients that press on the server's edges: a revocation racing a stream's
//! opening, typing floods, and resumes that are never read.

use std::time::{Duration, Instant};

use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, client_event, server_event};
use chat_client::BearerToken;
use chat_server::service::stream;
use tokio_stream::StreamExt as _;
use tonic::metadata::MetadataMap;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::child::ChildServer;
use crate::helpers::{spawn_app_with, TestUser, PASSWORD, PATIENCE};

/// How soon a revoked session's streams must end.
const REVOCATION_REACH: Duration = Duration::from_secs(1);

/// The statuses a stream of a revoked session may end with: refused at
/// once (its token checked after the revocation), or ended once open.
fn is_revoked(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && ["session revoked", "session revoked or expired"].contains(&status.message())
}

/// How a session is revoked while its stream opens.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    /// The session logs itself out.
    Logout,
    /// Another session of the same user revokes it.
    RevokeSession,
}

async fn revoke(how: Revocation, victim: &TestUser, other: &TestUser) {
    match how {
        Revocation::Logout => {
            victim
                .auth
                .clone()
                .logout(pb::LogoutRequest {})
                .await
                .expect("logout");
        }
        Revocation::RevokeSession => {
            other
                .auth
                .clone()
                .revoke_session(pb::RevokeSessionRequest {
                    session_id: victim.login.session_id.clone(),
                })
                .await
                .expect("revoke session");
        }
    }
}

/// Waits for an opened stream's end; fails the test unless it ends as
/// revoked by `deadline`.
async fn assert_revoked_by(
    mut events: tonic::Streaming<pb::ServerEvent>,
    deadline: tokio::time::Instant,
    what: &str,
) {
    loop {
        match tokio::time::timeout_at(deadline, events.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("{what}: the stream ended without a status"),
            Ok(Err(status)) => {
                assert!(is_revoked(&status), "{what}: {status:?}");
                return;
            }
            Err(_) => panic!("{what}: the stream outlived its revoked session"),
        }
    }
}

#[tokio::test]
async fn a_revocation_while_a_stream_checks_a_thousand_cursors_still_ends_it() {
    const ROOMS: usize = 1000;
    // Spread over the time the cursors take to check, and beyond.
    const DELAYS_MS: [u64; 10] = [0, 1, 2, 4, 6, 8, 11, 14, 18, 24];
    let app = spawn_app_with(|config| config.limits.room_create_rate = 0).await;
    let alice = app.user("alice").await;
    let cursors: Vec<pb::RoomCursor> = create_rooms(&alice, ROOMS)
        .await
        .into_iter()
        .map(|room| pb::RoomCursor {
            room_id: room.id,
            after_seq: 0,
        })
        .collect();

    for (attempt, delay) in DELAYS_MS.into_iter().enumerate() {
        for kind in ["Subscribe", "ChatStream"] {
            let how = if attempt % 2 == 0 {
                Revocation::Logout
            } else {
                Revocation::RevokeSession
            };
            let what = format!("{kind} {how:?} after {delay} ms");
            let victim = app.login("alice").await;
            let mut chat = victim.chat.clone();
            let request_cursors = cursors.clone();
            let opening = tokio::spawn(async move {
                if kind == "Subscribe" {
                    chat.subscribe(pb::SubscribeRequest {
                        cursors: request_cursors,
                    })
                    .await
                } else {
                    let resume = pb::ClientEvent {
                        event: Some(client_event::Event::Resume(client_event::Resume {
                            cursors: request_cursors,
                        })),
                    };
                    chat.chat_stream(tokio_stream::iter([resume]).chain(tokio_stream::pending()))
                        .await
                }
            });
            tokio::time::sleep(Duration::from_millis(delay)).await;
            revoke(how, &victim, &alice).await;
            let deadline = tokio::time::Instant::now() + REVOCATION_REACH;

            match opening.await.unwrap() {
                Err(status) => assert!(is_revoked(&status), "{what}: {status:?}"),
                Ok(response) => assert_revoked_by(response.into_inner(), deadline, &what).await,
            }
        }
    }
}

#[tokio::test]
async fn a_session_revoked_between_its_check_and_its_streams_registration_gets_no_stream() {
    let app = spawn_app_with(|_| {}).await;
    let alice = app.user("alice").await;
    for hold in [false, true] {
        let victim = app.login("alice").await;
        let mut metadata = MetadataMap::new();
        let bearer = format!("Bearer {}", victim.login.access_token);
        metadata.insert("authorization", bearer.parse().unwrap());
        let principal = app.state.authenticate(&metadata).await.expect("live");

        revoke(Revocation::RevokeSession, &victim, &alice).await;
        let started = Instant::now();
        let opened = stream::open(&app.state, &principal, hold).await;

        let status = match opened {
            Err(error) => Status::from(error),
            Ok(opened) => {
                let mut outbound = opened.outbound;
                loop {
                    match tokio::time::timeout(REVOCATION_REACH, outbound.next()).await {
                        Ok(Some(Ok(_))) => continue,
                        Ok(Some(Err(status))) => break status,
                        Ok(None) => panic!("the stream ended without a status"),
                        Err(_) => panic!("hold {hold}: the stream outlived its revoked session"),
                    }
                }
            }
        };
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, "session revoked"),
            "hold {hold}"
        );
        assert!(started.elapsed() < REVOCATION_REACH);
    }
}

/// Creates `count` rooms owned by `owner`, a few at a time.
async fn create_rooms(owner: &TestUser, count: usize) -> Vec<pb::Room> {
    const WORKERS: usize = 8;
    let tasks: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let mut chat = owner.chat.clone();
            tokio::spawn(async move {
                let mut rooms = Vec::new();
                for i in (worker..count).step_by(WORKERS) {
                    let room = chat
                        .create_room(pb::CreateRoomRequest {
                            name: format!("room {i}"),
                            ..Default::default()
                        })
                        .await
                        .expect("create room")
                        .into_inner()
                        .room
                        .unwrap();
                    rooms.push(room);
                }
                rooms
            })
        })
        .collect();
    let mut rooms = Vec::new();
    for task in tasks {
        rooms.extend(task.await.unwrap());
    }
    rooms
}

/// Typing events `user` may relay in `elapsed`: one at once, then one more
/// every two seconds.
fn typing_allowance(elapsed: Duration) -> usize {
    1 + (elapsed.as_millis() / 2000) as usize
}

#[tokio::test]
async fn a_flood_of_typing_reaches_another_member_as_one_event_every_two_seconds() {
    const TYPING: usize = 5000;
    const WORKERS: usize = 16;
    let app = spawn_app_with(|_| {}).await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut bob_stream, _) = bob.subscribe().await;

    let started = Instant::now();
    let flood: Vec<_> = (0..WORKERS)
        .map(|_| {
            let mut chat = alice.chat.clone();
            let room_id = room.id.clone();
            tokio::spawn(async move {
                for _ in 0..TYPING / WORKERS {
                    chat.send_typing(pb::SendTypingRequest {
                        room_id: room_id.clone(),
                    })
                    .await
                    .expect("send typing");
                }
            })
        })
        .collect();
    for worker in flood {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let sent = alice.send(&room, "done typing").await;

    let mut typing = 0;
    loop {
        match bob_stream.next().await {
            server_event::Event::Typing(event) => {
                assert_eq!(event.user.as_ref(), Some(&alice.user));
                typing += 1;
            }
            server_event::Event::Message(message) => {
                assert_eq!(message.id, sent.id);
                break;
            }
            server_event::Event::Presence(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(
        (1..=typing_allowance(elapsed)).contains(&typing),
        "{typing} typing events for {TYPING} sent in {elapsed:?}"
    );
}

#[tokio::test]
async fn a_member_who_reads_slowly_is_not_evicted_by_typing_and_gets_every_message() {
    const ROOMS: usize = 100;
    const TYPING: usize = 5000;
    const MESSAGES: u64 = 20;
    let app = spawn_app_with(|config| {
        config.stream_queue = 16;
        config.limits.room_create_rate = 0;
        config.limits.room_join_rate = 0;
    })
    .await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let rooms = create_rooms(&alice, ROOMS).await;
    for other in &rooms {
        bob.join(other).await;
    }
    // Bob's connection takes 1 KiB at a time: what he has not read waits
    // in his queue on the server.
    let narrow = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut bob_events = ChatServiceClient::with_interceptor(
        narrow,
        BearerToken::new(&bob.login.access_token).unwrap(),
    )
    .subscribe(pb::SubscribeRequest::default())
    .await
    .unwrap()
    .into_inner();
    let room_id = room.id.clone();
    let reader = tokio::spawn(async move {
        let (mut seqs, mut typing) = (Vec::new(), 0);
        while seqs.len() < MESSAGES as usize {
            let event = tokio::time::timeout(PATIENCE, bob_events.message()).await;
            match event
                .expect("events keep coming")
                .map(|e| e.and_then(|e| e.event))
            {
                Ok(Some(server_event::Event::Message(m))) if m.room_id == room_id => {
                    seqs.push(m.seq);
                }
                Ok(Some(server_event::Event::Typing(_))) => typing += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stream ended"),
                Err(status) => return Err(status),
            }
            // A slow reader.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((seqs, typing))
    });
    let (alice_stream, _) = alice.chat_stream().await;

    for i in 0..TYPING {
        alice_stream
            .send(client_event::Event::Typing(client_event::Typing {
                room_id: rooms[i % ROOMS].id.clone(),
            }))
            .await;
    }
    for i in 0..MESSAGES {
        alice.send(&room, &format!("m{i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (seqs, typing) = reader.await.unwrap().expect("bob's stream goes on");
    // Seq 1 of the room is bob's join.
    assert_eq!(seqs, (2..=MESSAGES + 1).collect::<Vec<_>>());
    assert!(typing <= ROOMS, "{typing} typing events");
    assert!(app.metric("chat_ephemeral_dropped_total").await > 0.0);
}

/// The resident memory of a process, in MiB.
fn resident_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// A user of the child server, registered and logged in: a client, and
/// its access token.
async fn child_user(channel: &Channel, username: &str) -> (Chat, String) {
    let mut auth = AuthServiceClient::new(channel.clone());
    auth.register(pb::RegisterRequest {
        username: username.into(),
        password: PASSWORD.into(),
    })
    .await
    .expect("register");
    let login = auth
        .login(pb::LoginRequest {
            username: username.into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner();
    let chat = ChatServiceClient::with_interceptor(
        channel.clone(),
        BearerToken::new(&login.access_token).unwrap(),
    );
    (chat, login.access_token)
}

type Chat =
    ChatServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>>;

#[tokio::test]
async fn resumes_that_are_never_read_hold_little_memory_and_give_it_back() {
    const READERS: usize = 20;
    const MESSAGES: usize = 1000;
    const TEXT_BYTES: usize = 4000;
    /// What 20 catch-ups of 4 MB each may add at most: a fraction of the
    /// 80 MB they would hold if read all at once.
    const HELD_MIB: u64 = 60;
    /// How close to where it started the server must come back.
    const RETURNED_MIB: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start(&dir.path().join("chat.db")).await;
    let pid = server.child.id().expect("a running server");
    let channel = server.channel().await;
    let (sender, _) = child_user(&channel, "sender").await;
    let room = sender
        .clone()
        .create_room(pb::CreateRoomRequest {
            name: "archive".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    let mut readers = Vec::new();
    for i in 0..READERS {
        let (mut reader, token) = child_user(&channel, &format!("reader{i}")).await;
        reader
            .join_room(pb::JoinRoomRequest {
                room_id: room.id.clone(),
            })
            .await
            .unwrap();
        readers.push(token);
    }
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let mut sender = sender.clone();
            let room_id = room.id.clone();
            tokio::spawn(async move {
                for i in (worker..MESSAGES).step_by(8) {
                    sender
                        .send_message(pb::SendMessageRequest {
                            room_id: room_id.clone(),
                            text: format!("{i} {}", "x".repeat(TEXT_BYTES)),
                            client_msg_id: String::new(),
                            ..Default::default()
                        })
                        .await
                        .expect("send");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = resident_mib(pid);

    // Each resumes from the start on a connection of its own that takes
    // 64 KiB and then nothing: the rest waits on the server.
    let mut held = Vec::new();
    for token in &readers {
        let narrow = Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let events = ChatServiceClient::with_interceptor(narrow, BearerToken::new(token).unwrap())
            .subscribe(pb::SubscribeRequest {
                cursors: vec![pb::RoomCursor {
                    room_id: room.id.clone(),
                    after_seq: 0,
                }],
            })
            .await
            .expect("subscribe")
            .into_inner();
        held.push(events);
    }
    let mut peak = start;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(resident_mib(pid));
    }
    drop(held);
    let mut end = resident_mib(pid);
    for _ in 0..50 {
        if end <= start + RETURNED_MIB {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        end = resident_mib(pid);
    }
    eprintln!("resident: {start} MiB before, {peak} MiB at most while held, {end} MiB after");

    assert!(
        peak - start < HELD_MIB,
        "{READERS} unread resumes grew the server from {start} to {peak} MiB"
    );
    assert!(
        end <= start + RETURNED_MIB,
        "the server stayed at {end} MiB after the resumes ended (from {start} MiB)"
    );
}

//! Clients that press on the server's edges: a revocation racing a stream's
//! opening, typing floods, and resumes that are never read.

use std::time::{Duration, Instant};

use chat_client::pb::{self, client_event};
use chat_server::stream;
use tokio_stream::StreamExt as _;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::helpers::{spawn_app_with, TestUser};

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

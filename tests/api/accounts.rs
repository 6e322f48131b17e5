//! Registering, logging in, refreshing and managing sessions.

use chat_client::pb;
use tonic::Code;

use crate::helpers::{assert_status, spawn_app, PASSWORD};

#[tokio::test]
async fn a_registered_user_can_log_in() {
    let app = spawn_app().await;

    let user = app.register("alice").await;
    let login = app
        .auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(user.username, "alice");
    assert_eq!(login.user, Some(user));
    assert!(!login.access_token.is_empty());
    assert!(!login.refresh_token.is_empty());
    assert!(!login.session_id.is_empty());
    let expires = login.access_token_expires_at.unwrap().seconds;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 14 * 60..=now + 15 * 60 + 1).contains(&expires),
        "{expires} vs {now}"
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    app.register("alice").await;

    for (username, password) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let result = app
            .auth()
            .login(pb::LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .await;
        assert_status(
            result,
            Code::Unauthenticated,
            "invalid username or password",
        );
    }
}

#[tokio::test]
async fn usernames_are_unique_regardless_of_case() {
    let app = spawn_app().await;
    app.register("Alice").await;

    let result = app
        .auth()
        .register(pb::RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;

    assert_status(
        result,
        Code::AlreadyExists,
        "username \"alice\" is already taken",
    );
}

#[tokio::test]
async fn bad_registrations_say_what_is_wrong() {
    let app = spawn_app().await;
    let cases = [
        (
            "al",
            PASSWORD,
            "username must be 3 to 32 characters long, got 2",
        ),
        (
            "al ice",
            PASSWORD,
            "username may only contain letters, digits, '_', '.' and '-', found ' '",
        ),
        (
            "alice",
            "short",
            "password must be 8 to 1024 characters long, got 5",
        ),
    ];
    for (username, password, message) in cases {
        let result = app
            .auth()
            .register(pb::RegisterRequest {
                username: username.into(),
                password: password.into(),
            })
            .await;
        assert_status(result, Code::InvalidArgument, message);
    }
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;

    let refreshed = app
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: alice.login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_ne!(refreshed.refresh_token, alice.login.refresh_token);
    let bearer = format!("Bearer {}", refreshed.access_token);
    let rooms = app
        .chat_with_authorization(Some(&bearer))
        .list_rooms(pb::ListRoomsRequest::default())
        .await;
    assert!(rooms.is_ok(), "{rooms:?}");
    // The new refresh token works once more.
    let again = app
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: refreshed.refresh_token,
        })
        .await;
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let refresh = |token: String| {
        let mut auth = app.auth();
        async move {
            auth.refresh(pb::RefreshRequest {
                refresh_token: token,
            })
            .await
        }
    };
    let rotated = refresh(alice.login.refresh_token.clone())
        .await
        .unwrap()
        .into_inner();
    let (mut stream, _) = alice.subscribe().await;

    let reuse = refresh(alice.login.refresh_token.clone()).await;

    assert_status(
        reuse,
        Code::Unauthenticated,
        "refresh token already used: the session has been revoked",
    );
    // The thief's and the owner's tokens are both dead now.
    assert_status(
        refresh(rotated.refresh_token).await,
        Code::Unauthenticated,
        "invalid or expired refresh token",
    );
    assert_status(
        alice
            .chat
            .clone()
            .list_rooms(pb::ListRoomsRequest::default())
            .await,
        Code::Unauthenticated,
        "session revoked or expired",
    );
    stream
        .assert_ends_with(Code::Unauthenticated, "session revoked")
        .await;
}

#[tokio::test]
async fn an_unknown_refresh_token_is_rejected() {
    let app = spawn_app().await;
    let result = app
        .auth()
        .refresh(pb::RefreshRequest {
            refresh_token: "made-up".into(),
        })
        .await;
    assert_status(
        result,
        Code::Unauthenticated,
        "invalid or expired refresh token",
    );
}

#[tokio::test]
async fn sessions_are_listed_and_the_current_one_marked() {
    let app = spawn_app().await;
    let phone = app.user("alice").await;
    let laptop = app.login("alice").await;

    let sessions = laptop
        .auth
        .clone()
        .list_sessions(pb::ListSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sessions;

    let ids: Vec<(&str, bool)> = sessions
        .iter()
        .map(|s| (s.id.as_str(), s.current))
        .collect();
    assert_eq!(
        ids,
        [
            (phone.login.session_id.as_str(), false),
            (laptop.login.session_id.as_str(), true)
        ]
    );
    assert!(
        sessions[0].user_agent.starts_with("tonic/"),
        "{:?}",
        sessions[0].user_agent
    );
    assert!(sessions[0].created_at.is_some() && sessions[0].last_seen_at.is_some());
}

#[tokio::test]
async fn a_revoked_session_can_no_longer_call() {
    let app = spawn_app().await;
    let phone = app.user("alice").await;
    let laptop = app.login("alice").await;
    // The server now remembers the phone's session as live.
    phone
        .chat
        .clone()
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap();

    laptop
        .auth
        .clone()
        .revoke_session(pb::RevokeSessionRequest {
            session_id: phone.login.session_id.clone(),
        })
        .await
        .unwrap();

    assert_status(
        phone
            .chat
            .clone()
            .list_rooms(pb::ListRoomsRequest::default())
            .await,
        Code::Unauthenticated,
        "session revoked or expired",
    );
    let left = laptop
        .auth
        .clone()
        .list_sessions(pb::ListSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, laptop.login.session_id);
}

#[tokio::test]
async fn nobody_can_revoke_another_users_session() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;

    let result = mallory
        .auth
        .clone()
        .revoke_session(pb::RevokeSessionRequest {
            session_id: alice.login.session_id.clone(),
        })
        .await;

    assert_status(
        result,
        Code::NotFound,
        &format!("session {} not found", alice.login.session_id),
    );
    assert!(alice
        .chat
        .clone()
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .is_ok());
}

#[tokio::test]
async fn logout_ends_the_session_and_its_streams() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let (mut stream, _) = alice.chat_stream().await;

    alice
        .auth
        .clone()
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();

    stream
        .assert_ends_with(Code::Unauthenticated, "session revoked")
        .await;
    assert_status(
        alice.auth.clone().logout(pb::LogoutRequest {}).await,
        Code::Unauthenticated,
        "session revoked or expired",
    );
    assert_status(
        app.auth()
            .refresh(pb::RefreshRequest {
                refresh_token: alice.login.refresh_token.clone(),
            })
            .await,
        Code::Unauthenticated,
        "invalid or expired refresh token",
    );
}

#[tokio::test]
async fn tokens_survive_a_restart() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let token = alice.login.access_token.clone();

    let app = app.restart().await;

    let result = app
        .chat_with_authorization(Some(&format!("Bearer {token}")))
        .list_rooms(pb::ListRoomsRequest::default())
        .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn deleting_an_account_needs_its_password() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;

    let wrong = alice
        .auth
        .clone()
        .delete_account(pb::DeleteAccountRequest {
            password: "not the password".into(),
        })
        .await;

    assert_status(wrong, Code::PermissionDenied, "wrong password");
    alice.create_room("still here").await;
}

#[tokio::test]
async fn a_deleted_account_ends_its_streams_keeps_its_name_and_its_messages() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    alice.send(&room, "hello before I go").await;
    let (mut alice_stream, _) = alice.chat_stream().await;
    let (mut bob_stream, _) = bob.subscribe().await;

    alice
        .auth
        .clone()
        .delete_account(pb::DeleteAccountRequest {
            password: PASSWORD.into(),
        })
        .await
        .expect("delete account");

    alice_stream
        .assert_ends_with(Code::Unauthenticated, "session revoked")
        .await;
    let gone = bob_stream.next_presence().await;
    assert_eq!(
        (gone.user.unwrap().id, gone.online),
        (alice.user.id.clone(), false)
    );
    let history = bob.history(&room, 0, 10).await;
    assert_eq!(history.messages.len(), 1);
    assert_eq!(history.messages[0].text, "hello before I go");
    assert_eq!(
        history.messages[0].sender.as_ref().unwrap().username,
        "[deleted]"
    );
    let login = app
        .auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;
    assert_status(login, Code::Unauthenticated, "invalid username or password");
    let again = app
        .auth()
        .register(pb::RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;
    assert_eq!(
        again.unwrap_err().code(),
        Code::AlreadyExists,
        "the name is never given to anyone else"
    );
}

#[tokio::test]
async fn passwords_are_counted_in_characters_not_bytes() {
    let app = spawn_app().await;
    // Eight characters, twenty bytes; seven characters, sixteen bytes.
    let eight = "пароль😀😀";
    let seven = "пароль😀";
    let register = |username: &str, password: &str| {
        let mut auth = app.auth();
        let request = pb::RegisterRequest {
            username: username.into(),
            password: password.into(),
        };
        async move { auth.register(request).await }
    };

    register("alice", eight)
        .await
        .expect("eight characters are enough");
    let refused = register("bob", seven).await;

    let login = app
        .auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: eight.into(),
        })
        .await
        .expect("the password logs in");
    assert_eq!(login.into_inner().user.unwrap().username, "alice");
    assert_status(
        refused,
        Code::InvalidArgument,
        "password must be 8 to 1024 characters long, got 7",
    );
}

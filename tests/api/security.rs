//! The attacks of the security review, replayed against the server: logins
//! raced and sprayed, lock-outs, names that fool people, floods of rooms,
//! and the account controls that end an intruder's sessions.

use std::time::Duration;

use chat_client::pb;
use chat_client::pb::auth_service_client::AuthServiceClient;
use tonic::{Code, Request};

use crate::helpers::{assert_status, spawn_app, spawn_app_with, TestApp, PASSWORD};

/// A login as sent by a client behind the trusted proxy at 127.0.0.1,
/// which names it in `x-forwarded-for`.
async fn login_from(
    app: &TestApp,
    client: &str,
    username: &str,
    password: &str,
) -> Result<pb::LoginResponse, tonic::Status> {
    let mut auth = AuthServiceClient::new(app.channel().await);
    let mut request = Request::new(pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    auth.login(request).await.map(tonic::Response::into_inner)
}

fn behind_a_proxy(config: &mut chat_server::config::Config) {
    config.limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
}

#[tokio::test]
async fn thirty_simultaneous_wrong_passwords_reach_the_hash_check_only_five_times() {
    let app = spawn_app().await;
    app.register("alice").await;

    let attempts: Vec<_> = (0..30)
        .map(|_| {
            let mut auth = app.auth();
            tokio::spawn(async move {
                auth.login(pb::LoginRequest {
                    username: "alice".into(),
                    password: "wrong password".into(),
                })
                .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for attempt in attempts {
        codes.push(attempt.await.unwrap().unwrap_err());
    }

    let checked = codes
        .iter()
        .filter(|s| s.code() == Code::Unauthenticated)
        .count();
    assert!(
        checked <= 5,
        "{checked} of 30 were checked against the hash"
    );
    for refused in codes.iter().filter(|s| s.code() != Code::Unauthenticated) {
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("retry in"),
            "the wait is in the message: {refused:?}"
        );
    }
    assert_eq!(
        app.metric("chat_login_failures_total").await,
        checked as f64
    );
}

/// Fails logins from `client` (to the names `name` gives, one per try)
/// until one is refused before its password is checked; returns that
/// refusal. Each check takes a hash's time, so windows are not raced.
async fn fail_until_refused(
    app: &TestApp,
    client: impl Fn(usize) -> String,
    name: impl Fn(usize) -> String,
) -> tonic::Status {
    for attempt in 0..30 {
        let status = login_from(app, &client(attempt), &name(attempt), "a wrong guess")
            .await
            .unwrap_err();
        match status.code() {
            Code::Unauthenticated => continue,
            Code::ResourceExhausted => return status,
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    panic!("30 failed logins and never refused");
}

#[tokio::test]
async fn an_attacker_failing_on_purpose_does_not_lock_the_owner_out() {
    let app = spawn_app_with(|config| {
        behind_a_proxy(config);
        config.limits.login_free_attempts = 2;
        config.limits.login_max_backoff = Duration::from_secs(30);
    })
    .await;
    app.register("alice").await;

    let refused = fail_until_refused(&app, |_| "203.0.113.66".into(), |_| "alice".into()).await;
    assert!(
        refused
            .message()
            .starts_with("too many failed logins for this username: retry in "),
        "{refused:?}"
    );

    login_from(&app, "198.51.100.1", "alice", PASSWORD)
        .await
        .expect("the owner, from their own address, logs in");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address_with_a_header() {
    let app = spawn_app_with(|config| {
        config.limits.login_free_attempts = 2;
        config.limits.login_max_backoff = Duration::from_secs(30);
    })
    .await;
    app.register("alice").await;
    // A new address each time: were the header trusted, no back-off.
    let refused = fail_until_refused(
        &app,
        |attempt| format!("203.0.113.{attempt}"),
        |_| "alice".into(),
    )
    .await;
    assert!(
        refused
            .message()
            .starts_with("too many failed logins for this username"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn one_address_failing_across_many_accounts_is_refused_while_others_log_in() {
    let app = spawn_app_with(|config| {
        behind_a_proxy(config);
        config.limits.max_login_failures_per_ip = 10;
    })
    .await;
    app.register("alice").await;

    let refused = fail_until_refused(
        &app,
        |_| "203.0.113.9".into(),
        |attempt| format!("user{attempt}"),
    )
    .await;
    assert!(
        refused
            .message()
            .starts_with("too many failed logins from this address: at most 10 a minute"),
        "{refused:?}"
    );
    login_from(&app, "198.51.100.1", "alice", PASSWORD)
        .await
        .expect("another address is not refused");
}

#[tokio::test]
async fn failed_logins_are_audited_with_the_client_address_and_never_the_password() {
    let app = spawn_app_with(behind_a_proxy).await;
    app.register("alice").await;
    let _ = login_from(&app, "203.0.113.77", "alice", "hunter2hunter2").await;
    login_from(&app, "203.0.113.78", "alice", PASSWORD)
        .await
        .unwrap();

    assert_eq!(
        app.metric("chat_audit_events_total{event=\"login_failed\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.metric("chat_audit_events_total{event=\"login\"}").await,
        1.0
    );
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_its_stream() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let phone = app.login("alice").await;
    let (mut phone_stream, _) = phone.subscribe().await;

    assert_status(
        alice
            .auth
            .clone()
            .change_password(pb::ChangePasswordRequest {
                current_password: "not my password".into(),
                new_password: "a brand new password".into(),
            })
            .await,
        Code::PermissionDenied,
        "wrong password",
    );
    alice
        .auth
        .clone()
        .change_password(pb::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "a brand new password".into(),
        })
        .await
        .expect("the current password is right");

    let ended = tokio::time::timeout(Duration::from_secs(1), phone_stream.ended_with())
        .await
        .expect("the other session's stream ends within a second");
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert_eq!(
        phone
            .chat
            .clone()
            .list_rooms(pb::ListRoomsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    alice
        .chat
        .clone()
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("the calling session stays");
    let old = app
        .auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await;
    assert_eq!(old.unwrap_err().code(), Code::Unauthenticated);
    app.auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: "a brand new password".into(),
        })
        .await
        .expect("the new password works");
    assert_status(
        alice
            .auth
            .clone()
            .change_password(pb::ChangePasswordRequest {
                current_password: "a brand new password".into(),
                new_password: "short".into(),
            })
            .await,
        Code::InvalidArgument,
        "new_password: password must be 8 to 1024 characters long, got 5",
    );
}

#[tokio::test]
async fn logging_out_other_devices_says_how_many_and_keeps_this_one() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let phone = app.login("alice").await;
    let _laptop = app.login("alice").await;
    let (mut phone_stream, _) = phone.subscribe().await;

    let revoked = alice
        .auth
        .clone()
        .revoke_other_sessions(pb::RevokeOtherSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .revoked;

    assert_eq!(revoked, 2);
    assert_eq!(
        phone_stream.ended_with().await.code(),
        Code::Unauthenticated
    );
    let sessions = alice
        .auth
        .clone()
        .list_sessions(pb::ListSessionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].current);
}

#[tokio::test]
async fn a_login_beyond_the_sessions_per_user_ends_the_oldest_session() {
    let app = spawn_app_with(|config| config.max_sessions_per_user = 2).await;
    let oldest = app.user("alice").await;
    let (mut oldest_stream, _) = oldest.subscribe().await;
    let _second = app.login("alice").await;
    let _third = app.login("alice").await;

    assert_eq!(
        oldest_stream.ended_with().await.code(),
        Code::Unauthenticated
    );
    assert_eq!(
        oldest
            .chat
            .clone()
            .list_rooms(pb::ListRoomsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn rooms_are_listed_a_page_at_a_time() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(alice.create_room(&format!("room {n}")).await.id);
    }
    bob.join(&pb::Room {
        id: created[5].clone(),
        ..pb::Room::default()
    })
    .await;

    let mut listed = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = bob
            .chat
            .clone()
            .list_rooms(pb::ListRoomsRequest {
                page_size: 3,
                page_token,
                joined_only: false,
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.rooms.len() <= 3);
        listed.extend(page.rooms.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(listed, created, "every room once, in creation order");
    assert_eq!(pages, 3);

    let joined = bob
        .chat
        .clone()
        .list_rooms(pb::ListRoomsRequest {
            joined_only: true,
            ..pb::ListRoomsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let joined: Vec<String> = joined.rooms.into_iter().map(|r| r.id).collect();
    assert_eq!(joined, [created[5].clone()]);

    assert_status(
        bob.chat
            .clone()
            .list_rooms(pb::ListRoomsRequest {
                page_token: "not a token".into(),
                ..pb::ListRoomsRequest::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token is not one this server issued",
    );
}

#[tokio::test]
async fn creating_and_joining_rooms_is_rate_limited_and_capped() {
    let app = spawn_app_with(|config| {
        config.limits.room_create_rate = 10;
        config.limits.room_create_burst = 3;
        config.limits.room_join_rate = 60;
        config.limits.room_join_burst = 2;
        config.limits.max_rooms_per_user = 4;
    })
    .await;
    let mallory = app.user("mallory").await;
    let alice = app.user("alice").await;
    for n in 0..3 {
        mallory.create_room(&format!("mine {n}")).await;
    }
    let refused = mallory
        .chat
        .clone()
        .create_room(pb::CreateRoomRequest {
            name: "one more".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().starts_with(
            "creating rooms too fast: at most 10 a minute (bursts of 3, --room-create-rate)"
        ),
        "{refused:?}"
    );

    let mut theirs = Vec::new();
    for n in 0..3 {
        theirs.push(alice.create_room(&format!("theirs {n}")).await);
    }
    mallory.join(&theirs[0]).await;
    let capped = mallory
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: theirs[1].id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(capped.code(), Code::ResourceExhausted);
    assert!(
        capped.message().contains("--max-rooms-per-user"),
        "{capped:?}"
    );
    let fast = mallory
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: theirs[2].id.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        fast.message().starts_with("joining rooms too fast"),
        "{fast:?}"
    );
    assert!(
        app.metric("chat_rejections_total{limit=\"room_create\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn text_and_names_that_would_fool_people_are_refused() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let room = alice.create_room("General").await;

    for text in ["\u{1b}[2Jgotcha", "ding\u{7}", "nul\u{0}", "over\rwrite"] {
        let refused = alice
            .chat
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.id.clone(),
                text: text.into(),
                client_msg_id: String::new(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{text:?}");
    }
    alice.send(&room, "two lines\n\tand a tab").await;

    for name in ["gen\u{200B}eral", "evil\u{202E}lave"] {
        let refused = alice
            .chat
            .clone()
            .create_room(pb::CreateRoomRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name:?}");
    }
    assert_eq!(
        alice
            .chat
            .clone()
            .create_room(pb::CreateRoomRequest {
                name: "GENERAL".into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    let wide = alice.create_room("ｗｉｄｅ").await;
    assert_eq!(wide.name, "wide", "names are NFKC");

    app.register("paypal").await;
    for look_alike in ["paypaI", "paypa1"] {
        assert_status(
            app.auth()
                .register(pb::RegisterRequest {
                    username: look_alike.into(),
                    password: PASSWORD.into(),
                })
                .await,
            Code::AlreadyExists,
            &format!("username {look_alike:?} is too similar to an existing name"),
        );
    }
}

#[tokio::test]
async fn a_deleted_accounts_name_is_never_given_to_anyone_else() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    alice
        .auth
        .clone()
        .delete_account(pb::DeleteAccountRequest {
            password: PASSWORD.into(),
        })
        .await
        .unwrap();

    assert_eq!(
        app.auth()
            .register(pb::RegisterRequest {
                username: "Alice".into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    assert_eq!(
        app.auth()
            .login(pb::LoginRequest {
                username: "alice".into(),
                password: PASSWORD.into(),
            })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn online_users_without_a_room_are_only_those_who_share_one() {
    let app = spawn_app().await;
    let (alice, bob, _room) = app.alice_and_bob_in_a_room().await;
    let stranger = app.user("stranger").await;
    let (_bob_stream, _) = bob.subscribe().await;
    let (_stranger_stream, _) = stranger.subscribe().await;

    let online = alice
        .chat
        .clone()
        .list_online_users(pb::ListOnlineUsersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .users;

    let names: Vec<String> = online.into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["bob"]);
}

/// What a token signed elsewhere gets from `app`: a token whose signature
/// checks out is refused for its session (unknown here), any other for
/// its signature.
async fn verdict_on(app: &TestApp, token: &str) -> String {
    app.chat_with_authorization(Some(&format!("Bearer {token}")))
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap_err()
        .message()
        .to_owned()
}

#[tokio::test]
async fn a_key_file_rotates_keys_without_logging_anyone_out() {
    let keys = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = keys.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let old_only = file("old", "the old key, long enough\n");
    let rotated = file(
        "rotated",
        "# new first\nthe new key, long enough\nthe old key, long enough\n",
    );
    let new_only = file("new", "the new key, long enough\n");

    let before = spawn_app_with(|config| config.jwt_secret_file = Some(old_only)).await;
    let token = before.user("alice").await.login.access_token;
    let during = spawn_app_with(|config| config.jwt_secret_file = Some(rotated)).await;
    let after = spawn_app_with(|config| config.jwt_secret_file = Some(new_only)).await;

    assert_eq!(
        verdict_on(&during, &token).await,
        "session revoked or expired"
    );
    assert_eq!(verdict_on(&after, &token).await, "invalid access token");
    let fresh = during.user("bob").await.login.access_token;
    assert_eq!(
        verdict_on(&after, &fresh).await,
        "session revoked or expired"
    );
    let header = fresh.split('.').next().unwrap();
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    assert!(
        String::from_utf8(header).unwrap().contains("\"kid\""),
        "tokens name their key"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_generated_key_lives_in_a_private_file_beside_the_database_not_in_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = spawn_app().await;
    let database = chat_server::store::sqlite_file(&app.state.config.database_url).unwrap();
    let key_file = database.parent().unwrap().join("jwt-secret");

    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        app.state.store.remove_setting("jwt_secret").await.unwrap(),
        None,
        "no key in the database"
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    let bytes = std::fs::read(&database).unwrap();
    assert!(
        !bytes
            .windows(key.trim().len())
            .any(|w| w == key.trim().as_bytes()),
        "nor in its file"
    );
}

/// A channel to `app` whose connections leave from `source`, another
/// loopback address (all of 127.0.0.0/8 is this machine on Linux).
async fn channel_from(app: &TestApp, source: &str) -> tonic::transport::Channel {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_local_address(Some(source.parse().unwrap()));
    connector.enforce_http(false);
    tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .expect("connecting from another loopback address")
}

#[tokio::test]
async fn the_back_off_is_keyed_on_the_peer_address_without_any_proxy() {
    let app = spawn_app_with(|config| {
        config.limits.login_free_attempts = 2;
        config.limits.login_max_backoff = Duration::from_secs(30);
    })
    .await;
    app.register("alice").await;
    let login = |channel: tonic::transport::Channel, password: &'static str| async move {
        AuthServiceClient::new(channel)
            .login(pb::LoginRequest {
                username: "alice".into(),
                password: password.into(),
            })
            .await
    };

    let attacker = channel_from(&app, "127.0.0.2").await;
    let mut refused = None;
    for _ in 0..10 {
        match login(attacker.clone(), "a wrong guess").await {
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused = Some(status);
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated),
            Ok(_) => panic!("a wrong password logged in"),
        }
    }
    assert!(refused.is_some(), "the attacker's address backs off");

    login(channel_from(&app, "127.0.0.3").await, PASSWORD)
        .await
        .expect("the owner's address does not");
}

#[tokio::test]
async fn a_short_signing_key_stops_the_start_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::config::Config::defaults();
    config.database_url = format!("sqlite://{}/chat.db", dir.path().display());
    config.jwt_secret = Some(chat_server::config::Secret::unchecked("tooshort").unwrap());

    let error = match chat_server::state::AppState::build(config).await {
        Ok(_) => panic!("a server started with an 8-byte key"),
        Err(error) => format!("{error:#}"),
    };

    assert!(error.contains("at least 16 bytes"), "{error}");
    assert!(!error.contains("tooshort"), "{error}");
}

//! Operations: what the metrics say, and what the logs never say.

use chat_client::pb::{self, auth_service_client::AuthServiceClient};
use chat_client::BearerToken;

use crate::child::ChildServer;
use crate::helpers::{spawn_app, PASSWORD};

#[tokio::test]
async fn metrics_count_streams_users_messages_and_latencies() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut alice_stream, _) = alice.subscribe().await;
    let (mut bob_stream, _) = bob.chat_stream().await;
    alice_stream.next_presence().await;

    assert_eq!(app.metric("chat_streams_open").await, 2.0);
    assert_eq!(app.metric("chat_users_online").await, 2.0);
    for i in 0..3 {
        bob.send(&room, &format!("hello {i}")).await;
        alice_stream.next_message().await;
        bob_stream.next_message().await;
    }

    assert_eq!(app.metric("chat_messages_received_total").await, 3.0);
    assert_eq!(app.metric("chat_messages_delivered_total").await, 6.0);
    assert_eq!(app.metric("chat_delivery_latency_seconds_count").await, 6.0);
    assert!(app.metric("chat_db_commit_seconds_count").await >= 1.0);
    let wrong = app
        .auth()
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: "not the password".into(),
        })
        .await;
    assert!(wrong.is_err());
    assert_eq!(app.metric("chat_login_failures_total").await, 1.0);

    drop(alice_stream);
    drop(bob_stream);
    let deadline = tokio::time::Instant::now() + crate::helpers::PATIENCE;
    while app.metric("chat_streams_open").await > 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "streams stay open");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.metric("chat_users_online").await, 0.0);
}

#[tokio::test]
async fn logs_never_contain_a_password_or_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "the jwt secret that must stay hidden";
    let server = ChildServer::start_with(
        &dir.path().join("chat.db"),
        &["--log-format", "json", "--jwt-secret", secret],
        // As talkative as the server itself gets, and its libraries too.
        "debug",
    )
    .await;
    let channel = server.channel().await;
    let mut auth = AuthServiceClient::new(channel.clone());
    auth.register(pb::RegisterRequest {
        username: "alice".into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap();
    let wrong_password = "a wrong password, also secret";
    let _ = auth
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: wrong_password.into(),
        })
        .await
        .unwrap_err();
    let login = auth
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let refreshed = auth
        .refresh(pb::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut chat = pb::chat_service_client::ChatServiceClient::with_interceptor(
        channel,
        BearerToken::new(&refreshed.access_token).unwrap(),
    );
    chat.list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap();

    let logs = server.stop_and_read_logs().await;

    assert!(
        logs.iter()
            .any(|line| line.contains("\"target\":\"audit\"")
                && line.contains("\"event\":\"login\"")),
        "the login was logged: {logs:#?}"
    );
    for line in &logs {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    let secrets = [
        PASSWORD,
        wrong_password,
        secret,
        &login.access_token,
        &login.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
    ];
    for line in &logs {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the logs: {line}");
        }
    }
}

//! Operations: what the metrics say, what the logs never say, and a
//! configuration refused at startup.

use std::time::Duration;

use chat_client::pb::{self, auth_service_client::AuthServiceClient};
use chat_client::BearerToken;
use chat_server::config::Config;
use chat_server::state::AppState;

use crate::child::ChildServer;
use crate::helpers::{spawn_app, PASSWORD, PATIENCE};

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

#[tokio::test]
async fn a_zero_heartbeat_interval_is_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let refused_by = |flag: Option<&str>, variable: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"));
        command
            .args(["--listen", "127.0.0.1:0", "--database-url", &database_url])
            .env("CHAT_METRICS_LISTEN", "off")
            .env_remove("CHAT_HEARTBEAT_INTERVAL")
            .kill_on_drop(true);
        if let Some(flag) = flag {
            command.args(["--heartbeat-interval", flag]);
        }
        if let Some(variable) = variable {
            command.env("CHAT_HEARTBEAT_INTERVAL", variable);
        }
        async move {
            let output = tokio::time::timeout(PATIENCE, command.output())
                .await
                .expect("the server exits at once")
                .expect("running chat-server");
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };

    let by_flag = refused_by(Some("0s"), None).await;
    let by_variable = refused_by(None, Some("0ms")).await;
    let mut config = Config::defaults();
    config.database_url = database_url.clone();
    config.heartbeat_interval = Duration::ZERO;
    let built = AppState::build(config).await;

    assert_eq!(by_flag.0, Some(2), "{}", by_flag.1);
    assert!(
        by_flag.1.contains(
            "invalid value '0s' for '--heartbeat-interval <HEARTBEAT_INTERVAL>': \
             the heartbeat interval must be above zero (e.g. 15s)"
        ),
        "{}",
        by_flag.1
    );
    assert_eq!(by_variable.0, Some(2), "{}", by_variable.1);
    assert!(
        by_variable
            .1
            .contains("the heartbeat interval must be above zero (e.g. 15s)"),
        "{}",
        by_variable.1
    );
    let error = built.err().expect("a Config built in code is checked too");
    assert_eq!(
        error.to_string(),
        "the heartbeat interval must be above zero (e.g. 15s)"
    );
}

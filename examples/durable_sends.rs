//! Measures acknowledged sends per second: an in-process server on a fresh
//! SQLite database, and many concurrent unary `SendMessage` calls over
//! several HTTP/2 connections. Each acknowledgement means the message is
//! committed (group commit batches concurrent sends into one transaction).
//!
//! ```sh
//! cargo run --release --example durable_sends -- [messages] [senders] [full|normal]
//! ```

use std::time::Instant;

use chat_client::pb;
use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::BearerToken;
use chat_server::config::{Config, Synchronous};
use chat_server::startup;
use chat_server::state::AppState;
use tonic::transport::Channel;

/// Concurrent calls share this many connections.
const CONNECTIONS: usize = 8;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map_or(Ok(50_000), |a| a.parse())?;
    let senders: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let synchronous = match args.next().as_deref() {
        Some("normal") => Synchronous::Normal,
        _ => Synchronous::Full,
    };

    let dir = tempfile::tempdir()?;
    let mut config = Config::defaults();
    config.database_url = format!("sqlite://{}/chat.db", dir.path().display());
    config.sqlite_synchronous = synchronous;
    // One user sends everything: the per-user rate limit is not measured here.
    config.limits.send_rate = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = AppState::build(config).await?;
    tokio::spawn(startup::run(listener, state, std::future::pending()));

    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let mut auth = AuthServiceClient::new(channels[0].clone());
    let credentials = pb::RegisterRequest {
        username: "bench".into(),
        password: "bench password".into(),
    };
    auth.register(credentials.clone()).await?;
    let login = auth
        .login(pb::LoginRequest {
            username: credentials.username,
            password: credentials.password,
        })
        .await?
        .into_inner();
    let token = BearerToken::new(&login.access_token)?;
    let mut chat = ChatServiceClient::with_interceptor(channels[0].clone(), token.clone());
    let room = chat
        .create_room(pb::CreateRoomRequest {
            name: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .room
        .unwrap();

    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|sender| {
            let mut chat = ChatServiceClient::with_interceptor(
                channels[sender % CONNECTIONS].clone(),
                token.clone(),
            );
            let room_id = room.id.clone();
            let count = messages / senders + usize::from(sender < messages % senders);
            tokio::spawn(async move {
                for i in 0..count {
                    chat.send_message(pb::SendMessageRequest {
                        room_id: room_id.clone(),
                        text: format!("{sender}-{i} {}", "x".repeat(90)),
                        client_msg_id: format!("{sender}-{i}"),
                        ..Default::default()
                    })
                    .await
                    .expect("send");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    println!(
        "{messages} acknowledged sends, {senders} concurrent senders, synchronous={synchronous:?}: \
         {:.2} s, {:.0} messages/s",
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

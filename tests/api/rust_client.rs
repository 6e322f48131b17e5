//! The Rust client crate (`clients/rust`) and its `chat` command line,
//! against the real server.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_client::cli::{self, Cli};
use chat_client::pb::{self, server_event};
use chat_client::{Client, Cursors};
use clap::Parser as _;
use tokio::io::{AsyncWriteExt as _, BufReader};

use crate::helpers::{spawn_app, spawn_app_with, TestApp, PASSWORD, PATIENCE};

/// What a command printed, shared with the test while it runs.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{needle:?} never appeared in:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn command(app: &TestApp, user: &str, args: &[&str]) -> Cli {
    let server = format!("http://{}", app.addr);
    let mut argv = vec![
        "chat",
        "--server",
        &server,
        "--user",
        user,
        "--password",
        PASSWORD,
    ];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap()
}

/// Runs a command with no input; returns what it printed.
async fn chat(app: &TestApp, user: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Output::default();
    cli::run(
        command(app, user, args),
        BufReader::new(tokio::io::empty()),
        out.clone(),
    )
    .await?;
    Ok(out.text())
}

#[tokio::test]
async fn the_command_line_registers_creates_sends_and_reads_history() {
    let app = spawn_app().await;

    let registered = chat(&app, "alice", &["register"]).await.unwrap();
    let created = chat(&app, "alice", &["create-room", "general"])
        .await
        .unwrap();
    let sent = chat(&app, "alice", &["send", "general", "hello", "world"])
        .await
        .unwrap();
    let history = chat(&app, "alice", &["history", "general"]).await.unwrap();
    let rooms = chat(&app, "alice", &["rooms"]).await.unwrap();

    assert!(registered.starts_with("registered alice ("), "{registered}");
    assert!(created.starts_with("created room general ("), "{created}");
    assert_eq!(sent, "sent #1 to general\n");
    assert!(history.ends_with("] alice: hello world\n"), "{history}");
    assert!(
        rooms.starts_with("general\tgroup\tjoined\t1 messages\t"),
        "{rooms}"
    );
    let refused = chat(&app, "alice", &["send", "nowhere", "hi"])
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "no room named \"nowhere\"");
    let wrong = cli::run(
        Cli::try_parse_from([
            "chat",
            "--server",
            &format!("http://{}", app.addr),
            "--user",
            "alice",
            "--password",
            "not the password",
            "rooms",
        ])
        .unwrap(),
        BufReader::new(tokio::io::empty()),
        Output::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "Unauthenticated: invalid username or password"
    );
}

#[tokio::test]
async fn two_people_chat_live_on_the_command_line() {
    let app = spawn_app().await;
    chat(&app, "alice", &["register"]).await.unwrap();
    chat(&app, "bob", &["register"]).await.unwrap();
    chat(&app, "alice", &["create-room", "general"])
        .await
        .unwrap();
    let (mut typed, input) = tokio::io::duplex(1024);
    let out = Output::default();
    let live = tokio::spawn(cli::run(
        command(&app, "bob", &["live", "general"]),
        BufReader::new(input),
        out.clone(),
    ));
    out.wait_for("* connected as bob").await;

    chat(&app, "alice", &["send", "general", "hi", "bob"])
        .await
        .unwrap();
    out.wait_for("] alice: hi bob").await;
    typed.write_all(b"hello alice\n").await.unwrap();
    out.wait_for("] bob: hello alice").await;
    drop(typed);

    live.await.unwrap().unwrap();
    let history = chat(&app, "alice", &["history", "general"]).await.unwrap();
    assert!(history.contains("] alice: hi bob\n"), "{history}");
    assert!(history.ends_with("] bob: hello alice\n"), "{history}");
}

#[tokio::test]
async fn the_client_refreshes_its_token_and_resumes_its_stream() {
    let app = spawn_app_with(|config| config.access_token_ttl = Duration::from_secs(30)).await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let client = Client::connect(&app.addr.to_string()).await.unwrap();
    client.login("bob", PASSWORD).await.unwrap();
    let before = client.session().unwrap();

    // The token expires within a minute, so using it refreshes it first.
    let mut chat = client.chat().await.unwrap();
    let after = client.session().unwrap();
    assert_ne!(after.refresh_token, before.refresh_token);
    chat.list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap();

    let mut cursors = Cursors::default();
    cursors.track(&room.id, 0);
    let mut subscription = client.subscribe(cursors).await.unwrap();
    alice.send(&room, "one").await;
    let mut texts = Vec::new();
    while texts.is_empty() {
        if let server_event::Event::Message(m) = subscription.next().await.unwrap() {
            texts.push(m.text);
        }
    }
    subscription.disconnect();
    alice.send(&room, "two").await;
    while texts.len() < 2 {
        if let server_event::Event::Message(m) = subscription.next().await.unwrap() {
            texts.push(m.text);
        }
    }
    assert_eq!(texts, ["one", "two"]);
    // Seq 1 is bob's join.
    assert_eq!(subscription.cursors().get(&room.id), Some(3));
}

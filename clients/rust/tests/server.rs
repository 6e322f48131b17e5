//! The client library and the `chat` command line against the real server
//! binary (`CHAT_SERVER_BIN`, by default `target/debug/chat-server`: run
//! `cargo build --bin chat-server` first; `cargo test --workspace` builds
//! it), started on a free port with a fresh database per test.

use std::io::{BufRead as _, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use chat_client::cli::{self, Cli};
use chat_client::pb::{self, server_event};
use chat_client::{Client, ListRooms};
use clap::Parser as _;
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new secret";
/// How long the server may take to start and log its address.
const STARTUP: Duration = Duration::from_secs(30);

/// One chat-server process with its own database; killed on drop.
struct Server {
    address: String,
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with these flags besides its address and database.
    fn start_with(flags: &[&str]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let binary = std::env::var_os("CHAT_SERVER_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/chat-server"),
            PathBuf::from,
        );
        assert!(
            binary.is_file(),
            "no server binary at {}: run `cargo build --bin chat-server`, or set CHAT_SERVER_BIN",
            binary.display()
        );
        let dir = std::env::temp_dir().join(format!(
            "chat-rs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite://{}/chat.db", dir.display()))
            .args(flags)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("CHAT_METRICS_LISTEN", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, address) = mpsc::channel();
        // Drains the log for the server's whole life, so it never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(at) = line.find("address=") {
                    let rest = &line[at + "address=".len()..];
                    let end = rest
                        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                        .unwrap_or(rest.len());
                    let _ = found.send(rest[..end].to_owned());
                }
            }
        });
        let address = address
            .recv_timeout(STARTUP)
            .expect("the server did not log its address");
        Self {
            address,
            child,
            dir,
        }
    }

    /// Sends the server process a signal (`STOP` freezes it: its sockets
    /// stay open and say nothing, as a hung server's or a dead network's
    /// would; `CONT` thaws it).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    async fn user(&self, name: &str) -> Client {
        let client = self.client().await;
        client.register(name, PASSWORD).await.unwrap();
        client.login(name, PASSWORD).await.unwrap();
        client
    }

    async fn client(&self) -> Client {
        Client::connect(&self.address).await.unwrap()
    }

    /// Runs a `chat` command as `user`; returns what it printed.
    async fn chat(&self, user: &str, password: &str, args: &[&str]) -> anyhow::Result<String> {
        let server = format!("http://{}", self.address);
        let mut argv = vec![
            "chat",
            "--server",
            &server,
            "--user",
            user,
            "--password",
            password,
        ];
        argv.extend_from_slice(args);
        let out = Output::default();
        cli::run(
            Cli::try_parse_from(argv)?,
            tokio::io::BufReader::new(tokio::io::empty()),
            out.clone(),
        )
        .await?;
        Ok(out.text())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a command printed.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
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

async fn create_room(client: &Client, name: &str) -> pb::Room {
    client
        .chat()
        .await
        .unwrap()
        .create_room(pb::CreateRoomRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap()
}

fn ids(rooms: &[pb::Room]) -> Vec<&str> {
    rooms.iter().map(|r| r.id.as_str()).collect()
}

#[tokio::test]
async fn list_rooms_follows_every_page_and_returns_each_room_once() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(create_room(&alice, &format!("room-{i}")).await);
    }
    let mut bob_chat = bob.chat().await.unwrap();
    for room in created.iter().skip(1).step_by(2) {
        bob_chat
            .join_room(pb::JoinRoomRequest {
                room_id: room.id.clone(),
            })
            .await
            .unwrap();
    }

    let pages_of_three = ListRooms {
        page_size: 3,
        joined_only: false,
    };
    let listed = alice.list_rooms(pages_of_three).await.unwrap();
    let bob_joined = bob
        .list_rooms(ListRooms {
            page_size: 2,
            joined_only: true,
        })
        .await
        .unwrap();
    let cursors = bob.cursors_at_newest().await.unwrap();

    assert_eq!(ids(&listed), ids(&created), "every room once, in order");
    let default_pages = alice.list_rooms(ListRooms::default()).await.unwrap();
    assert_eq!(ids(&default_pages), ids(&created));
    let joined: Vec<_> = created.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(ids(&bob_joined), ids(&joined));
    assert!(bob_joined.iter().all(|r| r.joined));
    assert_eq!(
        cursors.to_pb().len(),
        3,
        "cursors only for the rooms bob is in"
    );
    assert!(joined.iter().all(|r| cursors.get(&r.id) == Some(0)));
}

#[tokio::test]
async fn the_rooms_command_lists_every_page() {
    let server = Server::start();
    server.chat("alice", PASSWORD, &["register"]).await.unwrap();
    server.chat("bob", PASSWORD, &["register"]).await.unwrap();
    for i in 0..5 {
        let name = format!("room-{i}");
        server
            .chat("alice", PASSWORD, &["create-room", &name])
            .await
            .unwrap();
    }
    server
        .chat("bob", PASSWORD, &["join", "room-3"])
        .await
        .unwrap();
    server
        .chat("bob", PASSWORD, &["dm", "alice"])
        .await
        .unwrap();

    let all = server
        .chat("bob", PASSWORD, &["rooms", "--page-size", "2"])
        .await
        .unwrap();
    let joined = server
        .chat("bob", PASSWORD, &["rooms", "--joined", "--page-size", "1"])
        .await
        .unwrap();

    let names = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .map(|line| line.split('\t').take(3).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        names(&all),
        [
            "room-0 group -",
            "room-1 group -",
            "room-2 group -",
            "room-3 group joined",
            "room-4 group -",
            "alice direct joined",
        ]
    );
    assert_eq!(
        names(&joined),
        ["room-3 group joined", "alice direct joined"]
    );
}

#[tokio::test]
async fn a_changed_password_ends_the_other_sessions() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let phone = server.client().await;
    phone.login("alice", PASSWORD).await.unwrap();
    let every = ListRooms::default();
    phone.list_rooms(every).await.unwrap();

    let wrong = alice
        .change_password("not the password", NEW_PASSWORD)
        .await
        .unwrap_err();
    alice.change_password(PASSWORD, NEW_PASSWORD).await.unwrap();

    assert_eq!(
        (wrong.code(), wrong.message()),
        (Code::PermissionDenied, "wrong password")
    );
    create_room(&alice, "still-mine").await;
    let refused = phone.list_rooms(every).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let old = server
        .client()
        .await
        .login("alice", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        (old.code(), old.message()),
        (Code::Unauthenticated, "invalid username or password")
    );
    let fresh = server.client().await;
    fresh.login("alice", NEW_PASSWORD).await.unwrap();
    let rooms = fresh.list_rooms(every).await.unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].name, "still-mine");
}

#[tokio::test]
async fn revoking_the_other_sessions_says_how_many_and_keeps_this_one() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let others = [server.client().await, server.client().await];
    for other in &others {
        other.login("alice", PASSWORD).await.unwrap();
    }
    let mut stream = others[0]
        .subscribe(others[0].cursors_at_newest().await.unwrap())
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await.unwrap(),
        pb::server_event::Event::Ready(_)
    ));

    let revoked = alice.revoke_other_sessions().await.unwrap();

    assert_eq!(revoked, 2);
    let ended = tokio::time::timeout(STARTUP, stream.next())
        .await
        .expect("the revoked session's stream ends")
        .unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated);
    for other in &others {
        let refused = other.list_rooms(ListRooms::default()).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    create_room(&alice, "general").await;
    assert_eq!(alice.revoke_other_sessions().await.unwrap(), 0);
}

#[tokio::test]
async fn passwd_and_logout_others_on_the_command_line() {
    let server = Server::start();
    server.chat("alice", PASSWORD, &["register"]).await.unwrap();
    let phone = server.client().await;
    phone.login("alice", PASSWORD).await.unwrap();

    let wrong = server
        .chat(
            "alice",
            "not the password",
            &["passwd", "--new-password", NEW_PASSWORD],
        )
        .await
        .unwrap_err();
    let changed = server
        .chat(
            "alice",
            PASSWORD,
            &["passwd", "--new-password", NEW_PASSWORD],
        )
        .await
        .unwrap();

    // A wrong current password does not even log in.
    assert_eq!(
        wrong.to_string(),
        "Unauthenticated: invalid username or password"
    );
    assert_eq!(
        changed,
        "password changed for alice; your other sessions ended\n"
    );
    let refused = phone.list_rooms(ListRooms::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let old = server
        .chat("alice", PASSWORD, &["rooms"])
        .await
        .unwrap_err();
    assert_eq!(
        old.to_string(),
        "Unauthenticated: invalid username or password"
    );

    // Each command logs in anew and leaves its session: three others are
    // live when `logout-others` runs (passwd's, phone's new login, rooms').
    phone.login("alice", NEW_PASSWORD).await.unwrap();
    server
        .chat("alice", NEW_PASSWORD, &["rooms"])
        .await
        .unwrap();
    let ended = server
        .chat("alice", NEW_PASSWORD, &["logout-others"])
        .await
        .unwrap();
    assert_eq!(ended, "ended 3 other sessions\n");
    let refused = phone.list_rooms(ListRooms::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn send(client: &Client, room: &pb::Room, text: &str) -> pb::Message {
    client
        .chat()
        .await
        .unwrap()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: text.into(),
            client_msg_id: format!("key-{text}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

#[tokio::test]
async fn a_silent_stream_is_given_up_and_resumed_with_nothing_lost_or_twice() {
    let server = Server::start_with(&["--heartbeat-interval", "1s"]);
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = create_room(&alice, "general").await;
    bob.chat()
        .await
        .unwrap()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
    let mut events = bob
        .subscribe(bob.cursors_at_newest().await.unwrap())
        .await
        .unwrap();
    assert!(matches!(
        events.next().await.unwrap(),
        server_event::Event::Ready(_)
    ));
    assert_eq!(events.heartbeat_interval(), Some(Duration::from_secs(1)));
    let before = send(&alice, &room, "before").await;
    let mut messages = Vec::new();
    while messages.is_empty() {
        if let server_event::Event::Message(m) = events.next().await.unwrap() {
            messages.push(m);
        }
    }

    // Frozen for longer than the watchdog's two intervals and a second;
    // alice's send waits for the thaw.
    server.signal("STOP");
    let sending = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move { send(&alice, &room, "while frozen").await })
    };
    let frozen = tokio::time::timeout(Duration::from_millis(4_500), events.next()).await;
    let stalls_while_frozen = events.stalls();
    server.signal("CONT");
    let during = tokio::time::timeout(STARTUP, sending)
        .await
        .expect("the send goes through after the thaw")
        .unwrap();
    let after = send(&alice, &room, "after").await;
    let mut resumed = false;
    while messages.last() != Some(&after) {
        match tokio::time::timeout(STARTUP, events.next())
            .await
            .expect("the subscription is live again")
            .unwrap()
        {
            server_event::Event::Message(m) => messages.push(m),
            server_event::Event::Ready(_) => resumed = true,
            _ => {}
        }
    }

    assert!(
        frozen.is_err(),
        "nothing came from a frozen server: {frozen:?}"
    );
    assert!(
        stalls_while_frozen >= 1,
        "the watchdog gave the silent stream up while the server was frozen"
    );
    assert!(resumed, "a new stream (its own ready) after the thaw");
    assert_eq!(
        messages,
        [before, during, after],
        "each message once, in order"
    );
    assert_eq!(events.cursors().get(&room.id), Some(3));
}

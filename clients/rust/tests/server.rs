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
        .create_room(pb::CreateRoomRequest {
            name: name.into(),
            ..Default::default()
        })
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
    // Each room's newest event is bob's own join, seq 1.
    assert!(joined.iter().all(|r| cursors.get(&r.id) == Some(1)));
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
    join(&bob, &room).await;
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
    // Seq 1 is bob's join.
    assert_eq!(events.cursors().get(&room.id), Some(4));
}

// Conversations (issue 21): reactions, replies, threads, edits, deletions
// and read markers, through the resume helper, `RoomView` and the CLI.

async fn join(client: &Client, room: &pb::Room) {
    client
        .chat()
        .await
        .unwrap()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
}

async fn send_with(
    client: &Client,
    room: &pb::Room,
    request: pb::SendMessageRequest,
) -> pb::Message {
    client
        .chat()
        .await
        .unwrap()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            client_msg_id: uuid_like(&request.text),
            ..request
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

/// A distinct idempotency key per text.
fn uuid_like(text: &str) -> String {
    format!("key-{text}")
}

async fn react(client: &Client, message: &pb::Message, emoji: &str, added: bool) {
    let mut chat = client.chat().await.unwrap();
    let (room_id, message_id, emoji) = (
        message.room_id.clone(),
        message.id.clone(),
        emoji.to_owned(),
    );
    if added {
        chat.add_reaction(pb::AddReactionRequest {
            room_id,
            message_id,
            emoji,
        })
        .await
        .unwrap();
    } else {
        chat.remove_reaction(pb::RemoveReactionRequest {
            room_id,
            message_id,
            emoji,
        })
        .await
        .unwrap();
    }
}

/// The next event of a room's log (skipping everything else), as (kind, seq).
async fn next_in_log(events: &mut chat_client::ResumingSubscription) -> (&'static str, u64) {
    loop {
        let event = tokio::time::timeout(STARTUP, events.next())
            .await
            .expect("an event in time")
            .unwrap();
        let kind = match &event {
            server_event::Event::Message(_) => "message",
            server_event::Event::Edited(_) => "edited",
            server_event::Event::Deleted(_) => "deleted",
            server_event::Event::Reaction(_) => "reaction",
            _ => continue,
        };
        let (_, seq) = chat_client::log_position(&event).unwrap();
        return (kind, seq);
    }
}

#[tokio::test]
async fn a_resumed_subscription_brings_each_reaction_once() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = create_room(&alice, "general").await;
    join(&bob, &room).await;
    let vote = send(&alice, &room, "vote here").await;
    let mut cursors = chat_client::Cursors::default();
    cursors.track(&room.id, vote.seq);
    let mut events = bob.subscribe(cursors).await.unwrap();

    react(&alice, &vote, "👍", true).await;
    let first = next_in_log(&mut events).await;
    let cursor_after_reaction = events.cursors().get(&room.id);
    // Dropped; the next call resumes from the reaction's seq.
    events.disconnect();
    react(&alice, &vote, "👍", false).await;
    let after = send(&alice, &room, "results tomorrow").await;
    let resumed = [
        next_in_log(&mut events).await,
        next_in_log(&mut events).await,
    ];

    assert_eq!(first, ("reaction", vote.seq + 1));
    assert_eq!(cursor_after_reaction, Some(vote.seq + 1));
    assert_eq!(
        resumed,
        [("reaction", vote.seq + 2), ("message", after.seq)],
        "the first reaction not again"
    );
    assert_eq!(events.cursors().get(&room.id), Some(after.seq));
}

#[tokio::test]
async fn read_markers_reach_the_readers_streams_and_move_no_cursor() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = create_room(&alice, "general").await;
    join(&bob, &room).await;
    let mut events = bob
        .subscribe(bob.cursors_at_newest().await.unwrap())
        .await
        .unwrap();
    let last = send(&alice, &room, "read me").await;
    assert_eq!(next_in_log(&mut events).await, ("message", last.seq));

    let marker = bob
        .chat()
        .await
        .unwrap()
        .mark_read(pb::MarkReadRequest {
            room_id: room.id.clone(),
            seq: last.seq + 100,
        })
        .await
        .unwrap()
        .into_inner()
        .last_read_seq;
    let read = loop {
        let event = tokio::time::timeout(STARTUP, events.next())
            .await
            .expect("the read marker in time")
            .unwrap();
        if let server_event::Event::Read(read) = event {
            break read;
        }
    };

    assert_eq!(marker, last.seq, "clamped to the room's last seq");
    assert_eq!(
        (
            read.room_id.as_str(),
            read.user.unwrap().username.as_str(),
            read.last_read_seq
        ),
        (room.id.as_str(), "bob", last.seq)
    );
    assert_eq!(events.cursors().get(&room.id), Some(last.seq));
}

/// What a view and the unary answers must agree on about one message.
fn essentials(message: &pb::Message) -> String {
    let reactions: Vec<_> = message
        .reactions
        .iter()
        .map(|r| {
            format!(
                "{}x{}{}",
                r.emoji,
                r.count,
                if r.reacted_by_me { "+me" } else { "" }
            )
        })
        .collect();
    let quote = message
        .reply_to
        .as_ref()
        .map(|q| format!("{}:{:?}:{}", q.message_id, q.text, q.deleted));
    format!(
        "#{} {} {:?} deleted={} edited={} thread={:?} replies={} last_reply={:?} quote={:?} reactions={:?}",
        message.seq,
        message.id,
        message.text,
        message.deleted,
        message.edited_at.is_some(),
        message.thread_root_id,
        message.thread_reply_count,
        message.thread_last_reply_at,
        quote,
        reactions,
    )
}

#[tokio::test]
async fn a_room_view_fed_by_a_resuming_subscription_holds_what_history_and_list_thread_return() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bob_id = bob.session().unwrap().user.id;
    let room = create_room(&alice, "general").await;
    join(&bob, &room).await;
    let mut events = bob
        .subscribe(bob.cursors_at_newest().await.unwrap())
        .await
        .unwrap();
    let mut view = chat_client::RoomView::new(&room.id, &bob_id);

    let root = send(&alice, &room, "who is in for friday?").await;
    react(&bob, &root, "👍", true).await;
    react(&alice, &root, "🎉", true).await;
    let quote = send_with(
        &bob,
        &room,
        pb::SendMessageRequest {
            text: "me!".into(),
            reply_to_id: root.id.clone(),
            ..Default::default()
        },
    )
    .await;
    while view.seq() < quote.seq {
        view.apply(&events.next().await.unwrap());
    }
    events.disconnect(); // resumes from the view's cursor below
    let reply = send_with(
        &bob,
        &room,
        pb::SendMessageRequest {
            text: "me too".into(),
            thread_root_id: root.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let late = send_with(
        &alice,
        &room,
        pb::SendMessageRequest {
            text: "great".into(),
            thread_root_id: root.id.clone(),
            reply_to_id: reply.id.clone(),
            ..Default::default()
        },
    )
    .await;
    let mut chat = alice.chat().await.unwrap();
    chat.edit_message(pb::EditMessageRequest {
        room_id: room.id.clone(),
        message_id: root.id.clone(),
        text: "who is in for saturday?".into(),
    })
    .await
    .unwrap();
    react(&bob, &root, "👍", false).await;
    react(&alice, &root, "👍", true).await;
    react(&bob, &reply, "❤️", true).await;
    bob.chat()
        .await
        .unwrap()
        .delete_message(pb::DeleteMessageRequest {
            room_id: room.id.clone(),
            message_id: reply.id.clone(),
        })
        .await
        .unwrap();
    react(&bob, &quote, "😂", true).await;
    let last_seq = bob
        .list_rooms(ListRooms {
            page_size: 0,
            joined_only: true,
        })
        .await
        .unwrap()[0]
        .last_seq;
    let mut dropped_again = false;
    while view.seq() < last_seq {
        let event = tokio::time::timeout(STARTUP, events.next())
            .await
            .expect("every event in time")
            .unwrap();
        view.apply(&event);
        if !dropped_again && view.seq() >= last_seq - 3 {
            events.disconnect();
            dropped_again = true;
        }
    }

    let mut bob_chat = bob.chat().await.unwrap();
    let history = bob_chat
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            before_seq: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let thread = bob_chat
        .list_thread(pb::ListThreadRequest {
            room_id: room.id.clone(),
            thread_root_id: root.id.clone(),
            before_seq: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let held =
        |messages: Vec<&pb::Message>| messages.into_iter().map(essentials).collect::<Vec<_>>();
    let answered = |messages: &[pb::Message]| messages.iter().map(essentials).collect::<Vec<_>>();

    assert_eq!(late.thread_root_id, root.id);
    assert_eq!(
        held(view.top_level().collect()),
        answered(&history.messages),
        "the view's top level is History's"
    );
    assert_eq!(
        held(view.thread(&root.id).collect()),
        answered(&thread.messages),
        "the view's thread is ListThread's"
    );
    assert_eq!(
        essentials(view.message(&root.id).unwrap()),
        essentials(thread.root.as_ref().unwrap())
    );
    assert_eq!(view.seq(), last_seq);
}

#[tokio::test]
async fn conversation_commands_on_the_command_line() {
    let server = Server::start();
    for user in ["alice", "bob"] {
        server.chat(user, PASSWORD, &["register"]).await.unwrap();
    }
    server
        .chat("alice", PASSWORD, &["create-room", "general"])
        .await
        .unwrap();
    server
        .chat("bob", PASSWORD, &["join", "general"])
        .await
        .unwrap();
    server
        .chat("alice", PASSWORD, &["send", "general", "lunch?"])
        .await
        .unwrap();
    let listed = server
        .chat("alice", PASSWORD, &["history", "general", "--ids"])
        .await
        .unwrap();
    let id = listed.split(' ').next().unwrap().to_owned();

    let reacted = server
        .chat("bob", PASSWORD, &["react", "general", &id, "👍"])
        .await
        .unwrap();
    let edited = server
        .chat(
            "alice",
            PASSWORD,
            &["edit", "general", &id, "lunch", "at", "noon?"],
        )
        .await
        .unwrap();
    let quoted = server
        .chat("bob", PASSWORD, &["reply", "general", &id, "yes!"])
        .await
        .unwrap();
    let threaded = server
        .chat(
            "bob",
            PASSWORD,
            &["reply", "--thread", "general", &id, "me", "too"],
        )
        .await
        .unwrap();
    let history = server
        .chat("bob", PASSWORD, &["history", "general"])
        .await
        .unwrap();
    let thread = server
        .chat("bob", PASSWORD, &["thread", "general", &id])
        .await
        .unwrap();
    let unreacted = server
        .chat("bob", PASSWORD, &["unreact", "general", &id, "👍"])
        .await
        .unwrap();
    let bad_emoji = server
        .chat("bob", PASSWORD, &["react", "general", &id, "yes"])
        .await
        .unwrap_err();
    let refused = server
        .chat("bob", PASSWORD, &["delete", "general", &id])
        .await
        .unwrap_err();
    let deleted = server
        .chat("alice", PASSWORD, &["delete", "general", &id])
        .await
        .unwrap();
    let after = server
        .chat("alice", PASSWORD, &["history", "general"])
        .await
        .unwrap();
    let marked = server
        .chat("bob", PASSWORD, &["mark-read", "general"])
        .await;

    // Seq 1 is bob's join.
    assert!(
        listed.contains(" #2 [") && listed.ends_with("] alice: lunch?\n"),
        "{listed}"
    );
    assert_eq!(reacted, format!("reacted 👍 to {id}\n"));
    assert_eq!(edited, "edited #2 in general\n");
    assert_eq!(quoted, "sent #5 to general\n");
    assert_eq!(threaded, "sent #6 to the thread in general\n");
    let lines: Vec<_> = history.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "the thread reply is not in History: {history}"
    );
    assert!(
        lines[0].ends_with("] alice: lunch at noon? (edited) [1 reply] [👍 1]"),
        "{history}"
    );
    assert!(
        lines[1].ends_with("] bob: (replying to alice) yes!"),
        "{history}"
    );
    assert!(
        thread.lines().nth(1).unwrap().ends_with("] bob: me too"),
        "{thread}"
    );
    assert_eq!(unreacted, format!("took back 👍 from {id}\n"));
    assert!(
        refused.to_string().starts_with("PermissionDenied: "),
        "{refused}"
    );
    assert_eq!(deleted, format!("deleted {id} in general\n"));
    assert!(
        after
            .lines()
            .next()
            .unwrap()
            .ends_with("] alice: (message deleted) [1 reply]"),
        "{after}"
    );
    assert!(
        bad_emoji.to_string().starts_with("InvalidArgument: "),
        "{bad_emoji}"
    );
    assert_eq!(marked.unwrap(), "read up to #8 in general\n");
}

/// A small deterministic generator (xorshift64*), so a failing run can be
/// repeated from the seed it prints.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Drains `events` into `view` up to the room's `last_seq`, dropping the
/// stream at random along the way.
async fn catch_up(
    events: &mut chat_client::ResumingSubscription,
    view: &mut chat_client::RoomView,
    last_seq: u64,
    dice: &mut Dice,
) {
    while view.seq() < last_seq {
        let event = tokio::time::timeout(STARTUP, events.next())
            .await
            .expect("every event in time")
            .unwrap();
        if view.apply(&event) == chat_client::Applied::Applied && dice.below(8) == 0 {
            events.disconnect();
        }
    }
}

#[tokio::test]
async fn room_views_fed_live_with_drops_or_replayed_whole_converge_on_history_and_list_thread() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut dice = Dice(seed);
    let server = Server::start_with(&["--send-rate", "100000", "--send-burst", "100000"]);
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bob_id = bob.session().unwrap().user.id;
    let room = create_room(&alice, "general").await;
    join(&bob, &room).await;
    let mut events = bob
        .subscribe(bob.cursors_at_newest().await.unwrap())
        .await
        .unwrap();
    let mut live = chat_client::RoomView::new(&room.id, &bob_id);
    let users = [&alice, &bob];
    let emoji = ["👍", "❤️", "🎉", "😂"];
    // (message, sender index, deleted)
    let mut sent: Vec<(pb::Message, usize, bool)> = Vec::new();

    for step in 0..120 {
        let who = dice.below(2);
        let mut chat = users[who].chat().await.unwrap();
        let alive: Vec<usize> = (0..sent.len()).filter(|&i| !sent[i].2).collect();
        let pick = |dice: &mut Dice, from: &[usize]| from[dice.below(from.len())];
        match (dice.below(7), alive.is_empty()) {
            (0 | 1, _) | (_, true) => {
                let mut request = pb::SendMessageRequest {
                    room_id: room.id.clone(),
                    text: format!("step {step}"),
                    client_msg_id: format!("step-{step}"),
                    ..Default::default()
                };
                if !alive.is_empty() && dice.below(3) == 0 {
                    request.reply_to_id = sent[pick(&mut dice, &alive)].0.id.clone();
                }
                let roots: Vec<usize> = alive
                    .iter()
                    .copied()
                    .filter(|&i| sent[i].0.thread_root_id.is_empty())
                    .collect();
                if !roots.is_empty() && dice.below(2) == 0 {
                    request.thread_root_id = sent[pick(&mut dice, &roots)].0.id.clone();
                }
                let message = chat.send_message(request).await.unwrap().into_inner();
                sent.push((message.message.unwrap(), who, false));
            }
            (2, false) => {
                let mine: Vec<usize> = alive
                    .iter()
                    .copied()
                    .filter(|&i| sent[i].1 == who)
                    .collect();
                if let Some(&i) = mine.get(dice.below(mine.len().max(1))) {
                    chat.edit_message(pb::EditMessageRequest {
                        room_id: room.id.clone(),
                        message_id: sent[i].0.id.clone(),
                        text: format!("edited at step {step}"),
                    })
                    .await
                    .unwrap();
                }
            }
            (3, false) => {
                let mine: Vec<usize> = alive
                    .iter()
                    .copied()
                    .filter(|&i| sent[i].1 == who)
                    .collect();
                if let Some(&i) = mine.get(dice.below(mine.len().max(1))) {
                    chat.delete_message(pb::DeleteMessageRequest {
                        room_id: room.id.clone(),
                        message_id: sent[i].0.id.clone(),
                    })
                    .await
                    .unwrap();
                    sent[i].2 = true;
                }
            }
            (4, false) => {
                // Removing a reaction that is not there succeeds, no event.
                let i = pick(&mut dice, &alive);
                react(
                    users[who],
                    &sent[i].0,
                    emoji[dice.below(emoji.len())],
                    false,
                )
                .await;
            }
            _ => {
                let i = pick(&mut dice, &alive);
                react(users[who], &sent[i].0, emoji[dice.below(emoji.len())], true).await;
            }
        }
        if dice.below(15) == 0 {
            let last_seq = bob.list_rooms(ListRooms::default()).await.unwrap()[0].last_seq;
            catch_up(&mut events, &mut live, last_seq, &mut dice).await;
        }
    }
    let last_seq = bob.list_rooms(ListRooms::default()).await.unwrap()[0].last_seq;
    catch_up(&mut events, &mut live, last_seq, &mut dice).await;
    // Another device of bob's, replaying the room whole from its start:
    // every message as it is now (tombstones, edited texts), then the rest.
    let mut replay = bob
        .subscribe({
            let mut cursors = chat_client::Cursors::default();
            cursors.track(&room.id, 0);
            cursors
        })
        .await
        .unwrap();
    let mut replayed = chat_client::RoomView::new(&room.id, &bob_id);
    catch_up(&mut replay, &mut replayed, last_seq, &mut dice).await;

    let mut chat = bob.chat().await.unwrap();
    let history = chat
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            before_seq: 0,
            limit: 200,
        })
        .await
        .unwrap()
        .into_inner();
    let answered = |messages: &[pb::Message]| messages.iter().map(essentials).collect::<Vec<_>>();
    assert!(last_seq > 60, "most steps made an event: {last_seq}");
    for (name, view) in [("live", &live), ("replayed", &replayed)] {
        let held: Vec<_> = view.top_level().map(essentials).collect();
        assert_eq!(
            held,
            answered(&history.messages),
            "{name} top level, seed {seed}"
        );
        for root in &history.messages {
            let thread = chat
                .list_thread(pb::ListThreadRequest {
                    room_id: room.id.clone(),
                    thread_root_id: root.id.clone(),
                    before_seq: 0,
                    limit: 200,
                })
                .await
                .unwrap()
                .into_inner();
            let held: Vec<_> = view.thread(&root.id).map(essentials).collect();
            assert_eq!(
                held,
                answered(&thread.messages),
                "{name} thread, seed {seed}"
            );
        }
    }
}

#[tokio::test]
async fn members_names_search_and_blocks_from_the_library_and_the_command_line() {
    let server = Server::start();
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = create_room(&alice, "general").await;

    // Invite, accept, list with roles; a display name shows in place of
    // the username.
    let said = server
        .chat("alice", PASSWORD, &["invite", "general", "bob"])
        .await
        .unwrap();
    assert_eq!(said, "invited bob to general\n");
    join(&bob, &room).await;
    let user = bob.update_profile(Some("Bobby")).await.unwrap();
    assert_eq!(user.display_name, "Bobby");
    assert_eq!(
        bob.update_profile(None).await.unwrap().display_name,
        "Bobby"
    );
    let members = alice.list_members(&room.id).await.unwrap();
    let roles: Vec<_> = members
        .iter()
        .map(|m| (m.user.clone().unwrap().username, m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("alice".to_owned(), pb::MemberRole::Owner as i32),
            ("bob".to_owned(), pb::MemberRole::Member as i32)
        ]
    );
    let listed = server
        .chat("alice", PASSWORD, &["members", "general"])
        .await
        .unwrap();
    assert!(listed.starts_with("alice\towner\t"), "{listed}");
    assert!(listed.contains("Bobby\tmember\t"), "{listed}");
    let found = server
        .chat("alice", PASSWORD, &["search", "BOB"])
        .await
        .unwrap();
    assert_eq!(found, "bob\tBobby\n");
    let named = server
        .chat("alice", PASSWORD, &["name", "Alice L"])
        .await
        .unwrap();
    assert_eq!(named, "you are shown as Alice L\n");

    // Remove with a ban: bob cannot come back.
    let said = server
        .chat(
            "alice",
            PASSWORD,
            &["remove", "general", "bob", "--ban", "--reason", "spam"],
        )
        .await
        .unwrap();
    assert_eq!(said, "banned bob from general\n");
    let refused = bob
        .chat()
        .await
        .unwrap()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Blocks: bob can no longer open a direct room with alice.
    let said = server
        .chat("alice", PASSWORD, &["block", "bob"])
        .await
        .unwrap();
    assert_eq!(said, "blocked bob\n");
    assert_eq!(
        server.chat("alice", PASSWORD, &["blocked"]).await.unwrap(),
        "bob\n"
    );
    let refused = server
        .chat("bob", PASSWORD, &["dm", "alice"])
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "PermissionDenied: you cannot message this user"
    );
    assert!(bob.search_users("ali", 0).await.unwrap().is_empty());
    let refused = alice.block_user("alice").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    alice.unblock_user("bob").await.unwrap();
    assert!(alice.blocked_users().await.unwrap().is_empty());
    server
        .chat("bob", PASSWORD, &["dm", "alice"])
        .await
        .unwrap();
}

//! The operator's tool, `chat-server admin`: the real binary, run as the
//! CLI against a live server (the same binary, as a child process) on the
//! same database, SQLite and PostgreSQL alike. Each scenario runs on both.
//!
//! PostgreSQL comes from `CHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), a fresh database per
//! test; where it is unreachable the PostgreSQL half says so loudly and
//! skips, except under `CI=true`, where it fails.

#[allow(dead_code)]
#[path = "api/child.rs"]
mod child;

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, server_event::Event};
use chat_client::{AuthorizedChat, BearerToken};
use serde_json::Value;
use sqlx::{Connection as _, Executor as _, PgConnection};
use tokio::io::AsyncWriteExt as _;
use tokio::time::{timeout, Instant};
use tonic::{Code, Status, Streaming};

use child::ChildServer;

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PASSWORD: &str = "correct horse battery";
/// How long an event that should come may take.
const PATIENCE: Duration = Duration::from_secs(10);
/// What the tool promises: a change reaches every stream within this.
const WITHIN: Duration = Duration::from_secs(1);

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Where the test's data lives, dropped at its end.
enum Data {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Drop for Data {
    fn drop(&mut self) {
        let Self::Postgres { admin_url, name } = self else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        let shown = name.clone();
        // Drop runs inside the test's runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {shown}");
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

/// A live server, and the database URL the tool is given.
struct Setup {
    server: ChildServer,
    database_url: String,
    _data: Data,
}

/// What one run of the tool did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    #[track_caller]
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{self:?}");
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Setup {
    /// Starts a server on a fresh database, or `None` (having said why)
    /// when PostgreSQL is unreachable outside CI.
    async fn start(db: Db) -> Option<Self> {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary folder");
                let file = dir.path().join("chat.db");
                let database_url = format!("sqlite://{}", file.display());
                let server = ChildServer::start(&file).await;
                Some(Self {
                    server,
                    database_url,
                    _data: Data::Sqlite(dir),
                })
            }
            Db::Postgres => {
                let admin_url = std::env::var("CHAT_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
                let mut admin = match PgConnection::connect(&admin_url).await {
                    Ok(admin) => admin,
                    Err(e) => {
                        let why = format!("PostgreSQL at {admin_url} is unreachable ({e})");
                        assert!(!under_ci(), "{why}: under CI=true this is a failure");
                        let _ = writeln!(
                            std::io::stderr(),
                            "\n!!!!!!!! admin test on PostgreSQL SKIPPED: {why}.\n"
                        );
                        return None;
                    }
                };
                let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("creating the test database");
                let data = Data::Postgres {
                    admin_url: admin_url.clone(),
                    name: name.clone(),
                };
                let database_url = with_database(&admin_url, &name);
                let server = ChildServer::start_with_args(
                    &[
                        "--database-url",
                        &database_url,
                        "--jwt-secret",
                        "the admin tests' signing secret",
                        "--database-pool-size",
                        "4",
                    ],
                    "info",
                )
                .await;
                Some(Self {
                    server,
                    database_url,
                    _data: data,
                })
            }
        }
    }

    /// Runs `chat-server --database-url URL admin ARGS`.
    async fn admin(&self, args: &[&str]) -> Ran {
        self.admin_with_stdin(args, None).await
    }

    async fn admin_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        admin(&self.database_url, args, stdin).await
    }

    async fn auth(&self) -> AuthServiceClient<tonic::transport::Channel> {
        AuthServiceClient::new(self.server.channel().await)
    }

    async fn register(&self, name: &str) -> User {
        self.auth()
            .await
            .register(pb::RegisterRequest {
                username: name.into(),
                password: PASSWORD.into(),
            })
            .await
            .expect("register");
        self.login(name, PASSWORD).await.expect("login")
    }

    async fn login(&self, name: &str, password: &str) -> Result<User, Status> {
        let login = self
            .auth()
            .await
            .login(pb::LoginRequest {
                username: name.into(),
                password: password.into(),
            })
            .await?
            .into_inner();
        Ok(User {
            token: login.access_token,
            refresh_token: login.refresh_token,
        })
    }

    async fn chat(&self, user: &User) -> AuthorizedChat {
        ChatServiceClient::with_interceptor(self.server.channel().await, user.bearer())
    }

    /// Opens a Subscribe stream and returns it after `ready`.
    async fn subscribe(&self, user: &User) -> Events {
        subscribe(self.chat(user).await).await
    }
}

/// Runs the binary as the admin tool on a database.
async fn admin(database_url: &str, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--database-url", database_url, "admin"])
        .args(args)
        .env_remove("CHAT_DATABASE_URL")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running chat-server admin");
    if let Some(text) = stdin {
        let mut input = child.stdin.take().unwrap();
        input.write_all(text.as_bytes()).await.unwrap();
        drop(input);
    }
    let output = timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the tool finishes")
        .expect("the tool's output");
    Ran {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The admin URL with another database name.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let url = format!("{}/{name}", &base[..authority_end]);
    match query {
        Some(query) => format!("{url}?{query}"),
        None => url,
    }
}

struct User {
    token: String,
    refresh_token: String,
}

impl User {
    fn bearer(&self) -> BearerToken {
        BearerToken::new(&self.token).unwrap()
    }
}

struct Events(Streaming<pb::ServerEvent>);

async fn subscribe(mut chat: AuthorizedChat) -> Events {
    let stream = chat
        .subscribe(pb::SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let mut events = Events(stream);
    events
        .wait_for(|event| matches!(event, Event::Ready(_)))
        .await;
    events
}

impl Events {
    /// Skips events until `pick` takes one; fails after `PATIENCE`.
    async fn wait_for(&mut self, mut pick: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.0.message()).await {
                Ok(Ok(Some(pb::ServerEvent { event: Some(event) }))) if pick(&event) => {
                    return event
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(status)) => panic!("the stream failed: {status:?}"),
                Err(_) => panic!("nothing expected came within {PATIENCE:?}"),
            }
        }
    }

    /// How the stream ends, skipping its events.
    async fn end(&mut self) -> Status {
        timeout(PATIENCE, async {
            loop {
                match self.0.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the stream ended without a status"),
                    Err(status) => return status,
                }
            }
        })
        .await
        .expect("the stream ends")
    }
}

async fn create_room(chat: &mut AuthorizedChat, name: &str) -> pb::Room {
    chat.create_room(pb::CreateRoomRequest {
        name: name.into(),
        ..Default::default()
    })
    .await
    .expect("create room")
    .into_inner()
    .room
    .unwrap()
}

/// Each scenario, once on SQLite and once on PostgreSQL.
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Db::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Db::Postgres).await;
                }
            )*
        }
    };
}

on_both_databases!(
    disabling_a_user_ends_its_stream_within_a_second_and_refuses_its_logins,
    a_password_reset_ends_every_session_and_the_printed_password_logs_in,
    the_lists_show_what_was_created_as_tables_and_as_json,
    unknown_users_and_rooms_exit_non_zero_with_a_clear_message,
    deleting_a_room_ends_it_for_a_subscribed_member,
    setting_the_owner_moves_ownership_and_the_members_hear_it,
);

async fn disabling_a_user_ends_its_stream_within_a_second_and_refuses_its_logins(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    let alice = setup.register("alice").await;
    let bob = setup.register("bob").await;
    let mut alices = setup.subscribe(&alice).await;
    let _bobs = setup.subscribe(&bob).await;

    let ran = setup.admin(&["users", "disable", "Alice"]).await;
    let disabled = Instant::now();
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("disabled"), "{ran:?}");
    assert!(ran.stdout.contains("sessions ended  1"), "{ran:?}");

    let status = alices.end().await;
    let took = disabled.elapsed();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "session revoked")
    );
    eprintln!("{db:?}: the disabled user's stream ended {took:?} after the tool");
    assert!(took < WITHIN, "took {took:?}");

    let refused = setup.login("alice", PASSWORD).await.err().expect("refused");
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::PermissionDenied, "this account is disabled")
    );
    // Only the right password learns why.
    let wrong = setup
        .login("alice", "not the password")
        .await
        .err()
        .unwrap();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let refreshed = setup
        .auth()
        .await
        .refresh(pb::RefreshRequest {
            refresh_token: alice.refresh_token.clone(),
        })
        .await
        .expect_err("a disabled user's refresh");
    assert_eq!(refreshed.code(), Code::Unauthenticated);
    let call = setup
        .chat(&alice)
        .await
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect_err("a disabled user's call");
    assert_eq!(call.code(), Code::Unauthenticated);

    let shown = setup
        .admin(&["users", "show", "alice", "--json"])
        .await
        .json();
    assert_eq!(shown["disabled"], true);
    assert_eq!(shown["live_sessions"], 0);
    // Bob goes on.
    setup
        .chat(&bob)
        .await
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("bob is not disabled");

    let again = setup
        .admin(&["users", "disable", "alice", "--json"])
        .await
        .json();
    assert_eq!(again["changed"], false);

    let enabled = setup
        .admin(&["users", "enable", "alice", "--json"])
        .await
        .json();
    assert_eq!(enabled["changed"], true);
    assert_eq!(enabled["user"]["disabled"], false);
    let back = setup.login("alice", PASSWORD).await.expect("enabled again");
    setup
        .chat(&back)
        .await
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("a call after enabling");
}

async fn a_password_reset_ends_every_session_and_the_printed_password_logs_in(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    let alice = setup.register("alice").await;
    let _laptop = setup.login("alice", PASSWORD).await.unwrap();
    let mut stream = setup.subscribe(&alice).await;

    let reset = setup
        .admin(&["users", "reset-password", "alice", "--json"])
        .await
        .json();
    let done = Instant::now();
    assert_eq!(reset["sessions_ended"], 2);
    let password = reset["password"].as_str().expect("a printed password");
    assert_eq!(password.len(), 20);

    let status = stream.end().await;
    assert!(done.elapsed() < WITHIN, "took {:?}", done.elapsed());
    assert_eq!(status.code(), Code::Unauthenticated);
    let old = setup.login("alice", PASSWORD).await.err().unwrap();
    assert_eq!(old.code(), Code::Unauthenticated);
    let new = setup
        .login("alice", password)
        .await
        .expect("the new password");
    setup
        .chat(&new)
        .await
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .expect("a call with the new password's session");

    // As a table, the password is printed too, and only to stdout.
    let table = setup.admin(&["users", "reset-password", "alice"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    let printed = table
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("new password"))
        .expect("the password's line")
        .trim();
    assert_eq!(printed.len(), 20);
    assert!(!table.stderr.contains(printed));
    setup
        .login("alice", printed)
        .await
        .expect("the printed password");

    // From stdin.
    let chosen = "a password of my own";
    let ran = setup
        .admin_with_stdin(
            &["users", "reset-password", "alice", "--stdin", "--json"],
            Some(&format!("{chosen}\n")),
        )
        .await;
    assert_eq!(ran.json()["password"], Value::Null);
    assert!(!ran.stdout.contains(chosen));
    setup
        .login("alice", chosen)
        .await
        .expect("the password from stdin");
    let short = setup
        .admin_with_stdin(
            &["users", "reset-password", "alice", "--stdin"],
            Some("short\n"),
        )
        .await;
    assert_eq!(short.code, 1, "{short:?}");
    assert_eq!(
        short.stderr,
        "error: the password read from stdin: password must be 8 to 1024 characters long, got 5\n"
    );
    setup.login("alice", chosen).await.expect("unchanged");
}

async fn the_lists_show_what_was_created_as_tables_and_as_json(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    let alice = setup.register("alice").await;
    let bob = setup.register("bob").await;
    let mut alices = setup.chat(&alice).await;
    let room = create_room(&mut alices, "general").await;
    setup
        .chat(&bob)
        .await
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .expect("join");
    alices
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "hello".into(),
            ..Default::default()
        })
        .await
        .expect("send");

    let users = setup.admin(&["users", "list", "--json"]).await.json();
    let users = users.as_array().unwrap();
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(users[0]["live_sessions"], 1);
    assert_eq!(users[0]["disabled"], false);

    let table = setup.admin(&["users", "list"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{table:?}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("USERNAME"),
        "{lines:?}"
    );
    let column = lines[0].find("USERNAME").unwrap();
    assert_eq!(&lines[1][column..column + 5], "alice");
    assert_eq!(&lines[2][column..column + 3], "bob");

    let shown = setup
        .admin(&["users", "show", "bob", "--json"])
        .await
        .json();
    assert_eq!(shown["username"], "bob");
    assert_eq!(shown["rooms"][0]["id"], room.id.as_str());
    assert_eq!(shown["rooms"][0]["name"], "general");
    assert_eq!(shown["rooms"][0]["kind"], "group");
    let shown = setup.admin(&["users", "show", "bob"]).await;
    assert!(shown.stdout.contains("general"), "{shown:?}");

    let rooms = setup.admin(&["rooms", "list", "--json"]).await.json();
    let found = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room.id.as_str())
        .expect("the room is listed");
    assert_eq!(found["name"], "general");
    assert_eq!(found["members"], 2);
    assert_eq!(found["kind"], "group");
    assert!(found["last_seq"].as_u64().unwrap() >= 1);
    let table = setup.admin(&["rooms", "list"]).await;
    assert!(table.stdout.starts_with("ID"), "{table:?}");
    assert!(table.stdout.contains(&room.id), "{table:?}");
}

async fn unknown_users_and_rooms_exit_non_zero_with_a_clear_message(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    for args in [
        &["users", "show", "nobody"][..],
        &["users", "disable", "nobody"],
        &["users", "enable", "nobody"],
        &["users", "reset-password", "nobody"],
    ] {
        let ran = setup.admin(args).await;
        assert_eq!(ran.code, 1, "{ran:?}");
        assert_eq!(ran.stderr, "error: no user named \"nobody\"\n");
        assert_eq!(ran.stdout, "");
    }
    let room = uuid::Uuid::now_v7().to_string();
    let ran = setup.admin(&["rooms", "delete", &room]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.stderr, format!("error: no room with id {room}\n"));

    let ran = setup.admin(&["rooms", "delete", "not-an-id"]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(
        ran.stderr,
        "error: the room id is not a valid room id: \"not-an-id\"\n"
    );
    let ran = setup.admin(&["users", "show", "a b"]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(
        ran.stderr.starts_with("error: invalid username \"a b\": "),
        "{ran:?}"
    );
    // A usage error is clap's, exit code 2 like every clap program.
    let ran = setup.admin(&["users", "frobnicate"]).await;
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("frobnicate"), "{ran:?}");

    if let Db::Sqlite = db {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sqlite://{}/none.db", dir.path().display());
        let ran = admin(&missing, &["users", "list"], None).await;
        assert_eq!(ran.code, 2, "{ran:?}");
        assert!(ran.stderr.starts_with("error: no database at "), "{ran:?}");
        assert!(!dir.path().join("none.db").exists());
    }
}

async fn deleting_a_room_ends_it_for_a_subscribed_member(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    let alice = setup.register("alice").await;
    let bob = setup.register("bob").await;
    let mut alices = setup.chat(&alice).await;
    let doomed = create_room(&mut alices, "doomed").await;
    let kept = create_room(&mut alices, "kept").await;
    let mut bobs = setup.chat(&bob).await;
    for room in [&doomed, &kept] {
        bobs.join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .expect("join");
    }
    let mut stream = setup.subscribe(&bob).await;

    let ran = setup
        .admin(&["rooms", "delete", &doomed.id, "--json"])
        .await;
    let deleted = Instant::now();
    let room = ran.json();
    assert_eq!(room["id"], doomed.id.as_str());
    assert_eq!(room["members"], 2);

    let event = stream
        .wait_for(|event| matches!(event, Event::Error(_)))
        .await;
    let took = deleted.elapsed();
    let Event::Error(error) = event else {
        unreachable!()
    };
    assert_eq!(
        (error.code, error.message.as_str(), error.room_id.as_str()),
        (
            Code::NotFound as i32,
            format!("room {} was deleted", doomed.id).as_str(),
            doomed.id.as_str()
        )
    );
    eprintln!("{db:?}: the deleted room's member heard {took:?} after the tool");
    assert!(took < WITHIN, "took {took:?}");

    // The stream goes on for the other rooms.
    alices
        .send_message(pb::SendMessageRequest {
            room_id: kept.id.clone(),
            text: "still here".into(),
            ..Default::default()
        })
        .await
        .expect("send in the kept room");
    let event = stream
        .wait_for(|event| matches!(event, Event::Message(_)))
        .await;
    let Event::Message(message) = event else {
        unreachable!()
    };
    assert_eq!(message.room_id, kept.id);

    let refused = alices
        .send_message(pb::SendMessageRequest {
            room_id: doomed.id.clone(),
            text: "anyone?".into(),
            ..Default::default()
        })
        .await
        .expect_err("a deleted room");
    assert_eq!(refused.code(), Code::NotFound);
    let rooms = setup.admin(&["rooms", "list", "--json"]).await.json();
    assert!(rooms
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["id"] != doomed.id.as_str()));
}

async fn setting_the_owner_moves_ownership_and_the_members_hear_it(db: Db) {
    let Some(setup) = Setup::start(db).await else {
        return;
    };
    let alice = setup.register("alice").await;
    let bob = setup.register("bob").await;
    setup.register("carol").await;
    let mut alices = setup.chat(&alice).await;
    let room = create_room(&mut alices, "general").await;
    setup
        .chat(&bob)
        .await
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .expect("join");
    let mut stream = setup.subscribe(&bob).await;

    let set = setup
        .admin(&["rooms", "set-owner", &room.id, "BOB", "--json"])
        .await
        .json();
    let done = Instant::now();
    assert_eq!(
        (&set["owner"], &set["previous_owner"], &set["changed"]),
        (
            &Value::from("bob"),
            &Value::from("alice"),
            &Value::from(true)
        )
    );
    let event = stream
        .wait_for(|event| {
            matches!(event, Event::Member(member)
                if member.change == pb::MemberChange::RoleChanged as i32
                    && member.role == pb::MemberRole::Owner as i32)
        })
        .await;
    let took = done.elapsed();
    let Event::Member(member) = event else {
        unreachable!()
    };
    assert_eq!(member.user.unwrap().username, "bob");
    eprintln!("{db:?}: the new owner's event came {took:?} after the tool");
    assert!(took < WITHIN, "took {took:?}");

    let members = alices
        .list_members(pb::ListMembersRequest {
            room_id: room.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list members")
        .into_inner()
        .members;
    let roles: Vec<(String, i32)> = members
        .iter()
        .map(|m| (m.user.clone().unwrap().username, m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("bob".to_owned(), pb::MemberRole::Owner as i32),
            ("alice".to_owned(), pb::MemberRole::Admin as i32)
        ]
    );

    let again = setup
        .admin(&["rooms", "set-owner", &room.id, "bob", "--json"])
        .await
        .json();
    assert_eq!(again["changed"], false);
    let stranger = setup
        .admin(&["rooms", "set-owner", &room.id, "carol"])
        .await;
    assert_eq!(stranger.code, 1, "{stranger:?}");
    assert!(stranger.stderr.starts_with("error: "), "{stranger:?}");
    assert_eq!(stranger.stderr.lines().count(), 1, "{stranger:?}");
    let nobody = setup
        .admin(&["rooms", "set-owner", &room.id, "nobody"])
        .await;
    assert_eq!(nobody.code, 1, "{nobody:?}");
    assert_eq!(nobody.stderr, "error: no user named \"nobody\"\n");
    let missing = uuid::Uuid::now_v7().to_string();
    let ran = setup.admin(&["rooms", "set-owner", &missing, "bob"]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert_eq!(ran.stderr, format!("error: no room with id {missing}\n"));
}

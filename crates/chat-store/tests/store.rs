//! The store's contract, checked against every implementation: each test
//! below runs once on a fresh SQLite file and once on a fresh PostgreSQL
//! database, so both stores keep one behaviour.
//!
//! PostgreSQL comes from `CHAT_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates a
//! `chat_test_<random>` database there and drops it at the end. Without a
//! reachable server the PostgreSQL half is skipped with a loud notice, except
//! under `CI=true`, where it fails.

use std::collections::HashSet;
use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::{
    ClientMsgId, Emoji, MessageId, MessageText, Room, RoomEvent, RoomEventKind, RoomId, RoomKind,
    RoomName, RoomTopic, RoomVisibility, SessionId, Timestamp, User, UserId, Username,
};
use chat_store::{
    self as store, Appended, ChangeKind, Membership, MembershipChange, MembershipKind,
    MessageChange, NewMessage, NewRoom, NewSession, RoomPage, Rotation, Store, Synchronous,
    DELETED_USERNAME,
};
use sqlx::{Connection as _, Executor as _, PgConnection};

/// What kind of refusal a store error is, as the checks below name it.
#[derive(Debug, PartialEq, Eq)]
enum Code {
    AlreadyExists,
    NotFound,
    PermissionDenied,
    FailedPrecondition,
    ResourceExhausted,
    InvalidArgument,
    Other,
}

trait Refusal {
    fn code(&self) -> Code;
}

impl Refusal for store::Error {
    fn code(&self) -> Code {
        match self {
            Self::Taken(_) => Code::AlreadyExists,
            Self::NotFound(_) => Code::NotFound,
            Self::Forbidden(_) => Code::PermissionDenied,
            Self::Refused(_) => Code::FailedPrecondition,
            Self::LimitReached(_) => Code::ResourceExhausted,
            Self::Invalid(_) => Code::InvalidArgument,
            _ => Code::Other,
        }
    }
}

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Defines each listed check as a test on both stores.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )*
        }
    };
}

store_tests!(
    a_setting_keeps_its_first_value,
    usernames_are_unique_regardless_of_case,
    a_session_is_live_until_revoked_or_expired,
    a_reused_refresh_token_revokes_its_session,
    a_login_beyond_the_cap_revokes_the_oldest_sessions,
    a_session_lives_no_longer_than_its_maximum_age,
    changing_the_password_revokes_every_other_session,
    expired_tokens_and_long_ended_sessions_are_purged,
    a_removed_setting_is_gone,
    deleting_a_user_keeps_the_name_taken_and_the_messages,
    group_rooms_can_be_joined_listed_and_left,
    rooms_are_listed_in_pages_in_creation_order,
    look_alike_usernames_and_room_names_are_refused,
    a_user_is_in_at_most_the_cap_of_group_rooms,
    a_pair_of_users_has_one_direct_room,
    a_batch_gets_consecutive_seqs_per_room,
    a_client_msg_id_is_stored_once_within_and_across_batches,
    a_client_msg_id_reused_in_another_room_is_already_exists,
    non_members_and_missing_rooms_fail_only_their_own_message,
    history_pages_backwards_and_room_events_read_forwards,
    concurrent_appends_to_one_room_get_gapless_seqs,
    a_key_sent_at_once_from_many_tasks_is_stored_once,
    batches_larger_than_one_statement_keep_every_room_counter,
    edits_and_deletions_take_seqs_of_the_log_and_replay_as_the_message_is_now,
    reactions_replies_threads_and_mentions_keep_one_behaviour,
    only_a_member_who_sent_a_message_may_change_it,
    a_block_refuses_the_blocked_users_direct_sends_and_is_bounded,
);

async fn on_sqlite<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}/chat.db", dir.path().display());
    let store = store::connect(&url, Synchronous::Full, 10)
        .await
        .expect("opening SQLite");
    let outcome = tokio::spawn(check(store.clone())).await;
    store.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn on_postgres<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url =
        std::env::var("CHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(admin) => admin,
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("PostgreSQL at {admin_url} is unreachable under CI: {e}")
        }
        Err(e) => {
            // Straight to stderr: the test harness swallows `eprintln!` of
            // passing tests, and a skipped half must not go unnoticed.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! PostgreSQL store test SKIPPED: {admin_url} is unreachable ({e}).\n\
                 !!!!!!!! Set CHAT_TEST_POSTGRES_URL or start PostgreSQL; CI=true fails here.\n"
            );
            return;
        }
    };
    let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("creating the test database");
    let store = store::connect(&with_database(&admin_url, &name), Synchronous::Full, 10).await;
    let outcome = match store {
        Ok(store) => {
            let outcome = tokio::spawn(check(store.clone())).await;
            store.close().await;
            outcome.map_err(|e| e.into_panic())
        }
        Err(e) => Err(Box::new(format!("opening PostgreSQL: {e:?}")) as _),
    };
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .expect("dropping the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The URL with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{database}{query}")
}

// ---- helpers ----------------------------------------------------------

fn now() -> Timestamp {
    Timestamp::from_secs(1_700_000_000)
}

fn later(secs: u64) -> Timestamp {
    now().plus(std::time::Duration::from_secs(secs))
}

async fn user(store: &Arc<dyn Store>, name: &str) -> User {
    store
        .create_user(
            UserId::new(),
            &Username::parse(name).unwrap(),
            "hash",
            now(),
        )
        .await
        .expect("creating a user")
}

/// A join through `change_membership`, as the server's JoinRoom makes it.
async fn join_room(
    store: &Arc<dyn Store>,
    room_id: RoomId,
    user_id: UserId,
    max_rooms: u32,
    at: Timestamp,
) -> chat_store::Result<chat_domain::Room> {
    let change = MembershipChange {
        room_id,
        actor: User::named(user_id, ""),
        at,
        kind: MembershipKind::Join { max_rooms },
    };
    Ok(store.change_membership(&change).await?.room)
}

/// A leave through `change_membership`, as the server's LeaveRoom makes it.
async fn leave_room(
    store: &Arc<dyn Store>,
    room_id: RoomId,
    user_id: UserId,
) -> chat_store::Result<()> {
    let change = MembershipChange {
        room_id,
        actor: User::named(user_id, ""),
        at: now(),
        kind: MembershipKind::Leave,
    };
    store.change_membership(&change).await.map(|_| ())
}

/// A public group room with no topic, created by `creator`.
async fn create_room(
    store: &Arc<dyn Store>,
    id: RoomId,
    name: &RoomName,
    creator: UserId,
    max_rooms: u32,
    at: Timestamp,
) -> chat_store::Result<chat_domain::Room> {
    store
        .create_room(NewRoom {
            id,
            name: name.clone(),
            topic: RoomTopic::default(),
            visibility: RoomVisibility::Public,
            creator: User::named(creator, ""),
            max_rooms,
            now: at,
        })
        .await
}

async fn room(store: &Arc<dyn Store>, name: &str, creator: &User) -> RoomId {
    let id = RoomId::new();
    create_room(
        store,
        id,
        &RoomName::parse(name).unwrap(),
        creator.id,
        MAX_ROOMS,
        now(),
    )
    .await
    .expect("creating a room");
    id
}

fn send(room_id: RoomId, sender: &User, key: &str, text: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        room_id,
        sender: sender.clone(),
        text: MessageText::parse(text.into()).unwrap(),
        sent_at: now(),
        client_msg_id: ClientMsgId::parse(key.into()).unwrap(),
        reply_to_id: None,
        thread_root_id: None,
    }
}

/// Each outcome as (seq, fresh) or the error's code.
fn outcomes(results: &[store::Result<Appended>]) -> Vec<Result<(u64, bool), Code>> {
    results
        .iter()
        .map(|r| match r {
            Ok(a) => Ok((a.message.seq, a.fresh)),
            Err(e) => Err(e.code()),
        })
        .collect()
}

async fn texts(store: &Arc<dyn Store>, room_id: RoomId) -> Vec<(u64, String)> {
    let (messages, _) = store
        .history(room_id, UserId::new(), 0, 1000)
        .await
        .unwrap();
    messages.into_iter().map(|m| (m.seq, m.text)).collect()
}

async fn new_session(store: &Arc<dyn Store>, user: &User, refresh: &[u8]) -> SessionId {
    let id = SessionId::new();
    store
        .create_session(NewSession {
            id,
            user_id: user.id,
            user_agent: "test".into(),
            refresh_hash: refresh.to_vec(),
            expires_at: later(3600),
            max_sessions: 100,
            now: now(),
        })
        .await
        .expect("creating a session");
    id
}

/// Group rooms a user may be in, beyond what a test reaches.
const MAX_ROOMS: u32 = 1000;

/// A session's longest life, far beyond any test's clock.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

// ---- the contract -----------------------------------------------------

async fn a_setting_keeps_its_first_value(store: Arc<dyn Store>) {
    assert_eq!(store.setting_or_init("k", "one").await.unwrap(), "one");
    assert_eq!(store.setting_or_init("k", "two").await.unwrap(), "one");
}

async fn usernames_are_unique_regardless_of_case(store: Arc<dyn Store>) {
    let alice = user(&store, "Alice").await;

    let taken = store
        .create_user(
            UserId::new(),
            &Username::parse("aLICE").unwrap(),
            "h",
            now(),
        )
        .await
        .unwrap_err();

    assert_eq!(taken.code(), Code::AlreadyExists);
    let (found, hash) = store
        .credentials(&Username::parse("ALICE").unwrap())
        .await
        .unwrap()
        .expect("credentials by any case");
    assert_eq!((found, hash.as_str()), (alice.clone(), "hash"));
    assert_eq!(
        store
            .user_by_name(&Username::parse("alice").unwrap())
            .await
            .unwrap(),
        Some(alice)
    );
    assert_eq!(
        store
            .user_by_name(&Username::parse("bob").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn a_session_is_live_until_revoked_or_expired(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let session = new_session(&store, &alice, b"r1").await;

    assert_eq!(
        store.live_session(session, alice.id, now()).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .live_session(session, alice.id, later(3600))
            .await
            .unwrap(),
        None,
        "expired"
    );
    store.touch_session(session, later(5)).await.unwrap();
    let sessions = store.list_sessions(alice.id, now()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id, session);
    assert_eq!(sessions[0].last_seen_at, later(5));

    assert!(store
        .revoke_session(alice.id, session, now())
        .await
        .unwrap());
    assert!(!store
        .revoke_session(alice.id, session, now())
        .await
        .unwrap());
    assert_eq!(
        store.live_session(session, alice.id, now()).await.unwrap(),
        None
    );
    assert!(store
        .list_sessions(alice.id, now())
        .await
        .unwrap()
        .is_empty());
}

async fn a_reused_refresh_token_revokes_its_session(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let session = new_session(&store, &alice, b"r1").await;

    let first = store
        .rotate_refresh_token(b"r1", b"r2", later(7200), FOREVER, later(10))
        .await
        .unwrap();
    let reuse = store
        .rotate_refresh_token(b"r1", b"r3", later(7200), FOREVER, later(20))
        .await
        .unwrap();
    let successor = store
        .rotate_refresh_token(b"r2", b"r4", later(7200), FOREVER, later(30))
        .await
        .unwrap();

    assert_eq!(
        first,
        Rotation::Rotated {
            user_id: alice.id,
            session_id: session
        }
    );
    assert_eq!(
        reuse,
        Rotation::Reused {
            session_id: session
        }
    );
    assert_eq!(successor, Rotation::Invalid, "the session is revoked");
    assert_eq!(
        store.live_session(session, alice.id, now()).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"unknown", b"r5", later(7200), FOREVER, now())
            .await
            .unwrap(),
        Rotation::Invalid
    );
}

async fn a_login_beyond_the_cap_revokes_the_oldest_sessions(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let bobs = new_session(&store, &bob, b"b").await;
    let mut sessions = Vec::new();
    for (n, refresh) in [b"1", b"2", b"3"].iter().enumerate() {
        let id = SessionId::new();
        let evicted = store
            .create_session(NewSession {
                id,
                user_id: alice.id,
                user_agent: "test".into(),
                refresh_hash: refresh.to_vec(),
                expires_at: later(3600),
                max_sessions: 2,
                now: later(n as u64),
            })
            .await
            .unwrap();
        sessions.push((id, evicted));
    }
    assert!(sessions[0].1.is_empty() && sessions[1].1.is_empty());
    assert_eq!(sessions[2].1, [sessions[0].0], "the oldest goes");
    let live: Vec<SessionId> = store
        .list_sessions(alice.id, later(5))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, [sessions[1].0, sessions[2].0]);
    assert!(store
        .live_session(bobs, bob.id, now())
        .await
        .unwrap()
        .is_some());
}

async fn a_session_lives_no_longer_than_its_maximum_age(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let session = new_session(&store, &alice, b"r1").await;
    let max_age = Duration::from_secs(100);

    let early = store
        .rotate_refresh_token(b"r1", b"r2", later(3600), max_age, later(10))
        .await
        .unwrap();
    assert!(matches!(early, Rotation::Rotated { .. }));
    assert!(store
        .live_session(session, alice.id, later(99))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .live_session(session, alice.id, later(101))
            .await
            .unwrap(),
        None,
        "refreshing does not carry a session past its maximum age"
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"r2", b"r3", later(7200), max_age, later(101))
            .await
            .unwrap(),
        Rotation::Invalid
    );
}

async fn changing_the_password_revokes_every_other_session(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let (here, phone, laptop) = (
        new_session(&store, &alice, b"h").await,
        new_session(&store, &alice, b"p").await,
        new_session(&store, &alice, b"l").await,
    );

    let mut revoked = store
        .change_password(alice.id, "new hash", here, now())
        .await
        .unwrap();
    revoked.sort();
    let mut expected = vec![phone, laptop];
    expected.sort();
    assert_eq!(revoked, expected);
    let (_, hash) = store
        .credentials(&Username::parse("alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hash, "new hash");
    assert!(store
        .live_session(here, alice.id, now())
        .await
        .unwrap()
        .is_some());
    assert!(store
        .live_session(phone, alice.id, now())
        .await
        .unwrap()
        .is_none());

    let tablet = new_session(&store, &alice, b"t").await;
    assert_eq!(
        store
            .revoke_other_sessions(alice.id, here, now())
            .await
            .unwrap(),
        [tablet]
    );
    assert!(store
        .revoke_other_sessions(alice.id, here, now())
        .await
        .unwrap()
        .is_empty());
}

async fn expired_tokens_and_long_ended_sessions_are_purged(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let ended = new_session(&store, &alice, b"e1").await;
    let live = new_session(&store, &alice, b"l1").await;
    store.revoke_session(alice.id, ended, now()).await.unwrap();
    store
        .rotate_refresh_token(b"l1", b"l2", later(200_000), FOREVER, now())
        .await
        .unwrap();

    // An hour on, every token issued above has expired; a day on, the
    // revoked session is a day old.
    let purged = store
        .purge_sessions(later(86_400), Duration::from_secs(3600))
        .await
        .unwrap();

    assert_eq!(purged, 3, "two expired tokens and the ended session");
    assert_eq!(
        store
            .rotate_refresh_token(b"e1", b"x", later(90_000), FOREVER, later(86_400))
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert!(store
        .live_session(live, alice.id, later(86_400))
        .await
        .unwrap()
        .is_some());
    let kept = store
        .purge_sessions(now(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept, 0, "nothing live is purged");
}

async fn a_removed_setting_is_gone(store: Arc<dyn Store>) {
    store.setting_or_init("k", "one").await.unwrap();
    assert_eq!(
        store.remove_setting("k").await.unwrap().as_deref(),
        Some("one")
    );
    assert_eq!(store.remove_setting("k").await.unwrap(), None);
    assert_eq!(store.setting_or_init("k", "two").await.unwrap(), "two");
}

async fn deleting_a_user_keeps_the_name_taken_and_the_messages(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let lobby = room(&store, "lobby", &bob).await;
    join_room(&store, lobby, alice.id, MAX_ROOMS, now())
        .await
        .unwrap();
    store
        .append_messages(Arc::new([send(lobby, &alice, "", "hello")]))
        .await
        .unwrap();
    let live = new_session(&store, &alice, b"a1").await;
    let revoked = new_session(&store, &alice, b"a2").await;
    store
        .revoke_session(alice.id, revoked, now())
        .await
        .unwrap();

    let ended = store.delete_user(alice.id, now()).await.unwrap();

    assert_eq!(ended, [live]);
    assert_eq!(
        store.live_session(live, alice.id, now()).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .rotate_refresh_token(b"a1", b"a3", later(60), FOREVER, now())
            .await
            .unwrap(),
        Rotation::Invalid
    );
    assert_eq!(
        store.membership(lobby, alice.id).await.unwrap(),
        Membership::NotMember
    );
    let (history, _) = store.history(lobby, UserId::new(), 0, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].sender.username, DELETED_USERNAME);
    assert_eq!(history[0].sender.id, alice.id);
    let taken = store
        .create_user(
            UserId::new(),
            &Username::parse("ALICE").unwrap(),
            "hash",
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "a name is never reused");
    assert!(store
        .credentials(&Username::parse("alice").unwrap())
        .await
        .unwrap()
        .is_none());
}

/// The first page of the rooms `user_id` may see, as large as pages go.
async fn every_room(store: &Arc<dyn Store>, user_id: UserId) -> Vec<Room> {
    let page = RoomPage {
        after: None,
        limit: 1000,
        joined_only: false,
    };
    store.list_rooms(user_id, page).await.unwrap()
}

async fn rooms_are_listed_in_pages_in_creation_order(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let mut created: Vec<RoomId> = Vec::new();
    for name in ["a", "b", "c", "d", "e"] {
        created.push(room(&store, name, &alice).await);
    }
    join_room(&store, created[3], bob.id, MAX_ROOMS, now())
        .await
        .unwrap();
    let direct = store.open_direct_room(&alice, &bob, now()).await.unwrap();

    let page = |after, limit, joined_only| RoomPage {
        after,
        limit,
        joined_only,
    };
    let first = store
        .list_rooms(bob.id, page(None, 2, false))
        .await
        .unwrap();
    let second = store
        .list_rooms(bob.id, page(Some(first[1].id), 10, false))
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let ids: Vec<RoomId> = first.iter().chain(&second).map(|r| r.id).collect();
    let mut expected = created.clone();
    expected.push(direct.id);
    assert_eq!(ids, expected, "every room once, in creation order");

    let joined = store
        .list_rooms(bob.id, page(None, 10, true))
        .await
        .unwrap();
    let joined: Vec<RoomId> = joined.iter().map(|r| r.id).collect();
    assert_eq!(joined, [created[3], direct.id]);
}

async fn look_alike_usernames_and_room_names_are_refused(store: Arc<dyn Store>) {
    user(&store, "paypal").await;
    let alice = user(&store, "alice").await;
    for look_alike in ["paypaI", "paypa1", "PayPal"] {
        let refused = store
            .create_user(
                UserId::new(),
                &Username::parse(look_alike).unwrap(),
                "hash",
                now(),
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::AlreadyExists, "{look_alike}");
    }
    let similar = store
        .create_user(
            UserId::new(),
            &Username::parse("paypa1").unwrap(),
            "hash",
            now(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        similar.to_string(),
        "username \"paypa1\" is too similar to an existing name"
    );

    room(&store, "General", &alice).await;
    let duplicate = create_room(
        &store,
        RoomId::new(),
        &RoomName::parse("gEnErAl").unwrap(),
        alice.id,
        MAX_ROOMS,
        now(),
    )
    .await
    .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
}

async fn a_user_is_in_at_most_the_cap_of_group_rooms(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let a = room(&store, "a", &bob).await;
    create_room(
        &store,
        RoomId::new(),
        &RoomName::parse("b").unwrap(),
        alice.id,
        2,
        now(),
    )
    .await
    .unwrap();
    join_room(&store, a, alice.id, 2, now()).await.unwrap();
    join_room(&store, a, alice.id, 2, now())
        .await
        .expect("joining a room one is in is no new membership");
    let refused = create_room(
        &store,
        RoomId::new(),
        &RoomName::parse("c").unwrap(),
        alice.id,
        2,
        now(),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    store
        .open_direct_room(&alice, &bob, now())
        .await
        .expect("direct rooms are not group rooms");
}

async fn group_rooms_can_be_joined_listed_and_left(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let lobby = room(&store, "lobby", &alice).await;

    assert_eq!(
        store.membership(lobby, bob.id).await.unwrap(),
        Membership::NotMember
    );
    let listed = every_room(&store, bob.id).await;
    assert_eq!(listed.len(), 1, "group rooms are listed to everyone");
    assert!(!listed[0].joined);

    let joined = join_room(&store, lobby, bob.id, MAX_ROOMS, now())
        .await
        .unwrap();
    let again = join_room(&store, lobby, bob.id, MAX_ROOMS, now())
        .await
        .unwrap();

    assert_eq!(
        (joined.id, joined.joined, joined.kind),
        (lobby, true, RoomKind::Group)
    );
    assert_eq!(joined.name, "lobby");
    assert!(again.joined);
    // Bob's join is the room's first event; joining again writes none.
    assert_eq!(store.room_positions_of(bob.id).await.unwrap(), [(lobby, 1)]);
    assert_eq!(
        store.room_position(lobby, bob.id).await.unwrap(),
        (Membership::Member, 1)
    );

    leave_room(&store, lobby, bob.id).await.unwrap();

    assert_eq!(
        store.membership(lobby, bob.id).await.unwrap(),
        Membership::NotMember
    );
    assert!(store.room_positions_of(bob.id).await.unwrap().is_empty());
    let missing = RoomId::new();
    assert_eq!(
        store.membership(missing, bob.id).await.unwrap(),
        Membership::NoSuchRoom
    );
    assert_eq!(
        join_room(&store, missing, bob.id, MAX_ROOMS, now())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        leave_room(&store, missing, bob.id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

async fn a_pair_of_users_has_one_direct_room(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;

    let opens: Vec<_> = (0..8)
        .map(|i| {
            let (store, alice, bob) = (store.clone(), alice.clone(), bob.clone());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    store.open_direct_room(&alice, &bob, now()).await
                } else {
                    store.open_direct_room(&bob, &alice, now()).await
                }
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for open in opens {
        ids.insert(open.await.unwrap().expect("opening the direct room").id);
    }

    assert_eq!(ids.len(), 1, "one room per pair, however many open it");
    let direct = *ids.iter().next().unwrap();
    let seen_by_alice = store.open_direct_room(&alice, &bob, now()).await.unwrap();
    assert_eq!(
        (
            seen_by_alice.id,
            seen_by_alice.kind,
            seen_by_alice.name.as_str()
        ),
        (direct, RoomKind::Direct, "bob")
    );
    assert!(seen_by_alice.joined);
    assert_eq!(
        store.membership(direct, bob.id).await.unwrap(),
        Membership::Member
    );
    assert_eq!(
        join_room(&store, direct, carol.id, MAX_ROOMS, now())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        leave_room(&store, direct, alice.id)
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    assert!(every_room(&store, carol.id).await.is_empty());
    let bobs = every_room(&store, bob.id).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].name, "alice");
}

async fn a_batch_gets_consecutive_seqs_per_room(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let a = room(&store, "a", &alice).await;
    let b = room(&store, "b", &alice).await;

    let first = store
        .append_messages(Arc::new([
            send(a, &alice, "", "a1"),
            send(b, &alice, "", "b1"),
            send(a, &alice, "", "a2"),
        ]))
        .await
        .unwrap();
    let second = store
        .append_messages(Arc::new([send(a, &alice, "", "a3")]))
        .await
        .unwrap();

    assert_eq!(
        outcomes(&first),
        [Ok((1, true)), Ok((1, true)), Ok((2, true))]
    );
    assert_eq!(outcomes(&second), [Ok((3, true))]);
    assert_eq!(
        texts(&store, a).await,
        [(1, "a1".into()), (2, "a2".into()), (3, "a3".into())]
    );
    assert_eq!(
        store.room_position(a, alice.id).await.unwrap(),
        (Membership::Member, 3)
    );
    assert_eq!(
        store.room_position(b, alice.id).await.unwrap(),
        (Membership::Member, 1)
    );
    let mut positions = store.room_positions_of(alice.id).await.unwrap();
    positions.sort();
    let mut expected = vec![(a, 3), (b, 1)];
    expected.sort();
    assert_eq!(positions, expected);
    let mut newest = store.last_seqs(&[a, b, RoomId::new()]).await.unwrap();
    newest.sort();
    assert_eq!(newest, expected, "a room that does not exist is left out");
}

async fn a_client_msg_id_is_stored_once_within_and_across_batches(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let lobby = room(&store, "lobby", &alice).await;
    join_room(&store, lobby, bob.id, MAX_ROOMS, now())
        .await
        .unwrap();

    let first = store
        .append_messages(Arc::new([
            send(lobby, &alice, "k1", "first"),
            send(lobby, &alice, "k1", "retry"),
            send(lobby, &bob, "k1", "bob's own k1"),
        ]))
        .await
        .unwrap();
    let retry = store
        .append_messages(Arc::new([send(lobby, &alice, "k1", "late retry")]))
        .await
        .unwrap();

    assert_eq!(
        outcomes(&first),
        // Seq 1 is bob's join.
        [Ok((2, true)), Ok((2, false)), Ok((3, true))]
    );
    assert_eq!(outcomes(&retry), [Ok((2, false))]);
    let original = first[0].as_ref().unwrap().message.id;
    assert_eq!(retry[0].as_ref().unwrap().message.id, original);
    assert_eq!(retry[0].as_ref().unwrap().message.text, "first");
    assert_eq!(
        texts(&store, lobby).await,
        [(2, "first".into()), (3, "bob's own k1".into())]
    );
}

async fn a_client_msg_id_reused_in_another_room_is_already_exists(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let a = room(&store, "a", &alice).await;
    let b = room(&store, "b", &alice).await;
    store
        .append_messages(Arc::new([send(a, &alice, "k1", "in a")]))
        .await
        .unwrap();

    let elsewhere = store
        .append_messages(Arc::new([
            send(b, &alice, "k1", "in b"),
            send(b, &alice, "k2", "ok"),
        ]))
        .await
        .unwrap();

    assert_eq!(
        outcomes(&elsewhere),
        [Err(Code::AlreadyExists), Ok((1, true))]
    );
    assert_eq!(texts(&store, b).await, [(1, "ok".into())]);
}

async fn non_members_and_missing_rooms_fail_only_their_own_message(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let eve = user(&store, "eve").await;
    let lobby = room(&store, "lobby", &alice).await;

    let results = store
        .append_messages(Arc::new([
            send(lobby, &eve, "", "intruder"),
            send(RoomId::new(), &alice, "", "nowhere"),
            send(lobby, &alice, "", "hello"),
        ]))
        .await
        .unwrap();

    assert_eq!(
        outcomes(&results),
        [
            Err(Code::PermissionDenied),
            Err(Code::NotFound),
            Ok((1, true))
        ]
    );
    assert_eq!(texts(&store, lobby).await, [(1, "hello".into())]);
}

async fn history_pages_backwards_and_room_events_read_forwards(store: Arc<dyn Store>) {
    let alice = user(&store, "alice").await;
    let lobby = room(&store, "lobby", &alice).await;
    let batch: Vec<_> = (1..=10)
        .map(|i| send(lobby, &alice, "", &format!("m{i}")))
        .collect();
    store.append_messages(batch.into()).await.unwrap();
    let seqs = |page: &(Vec<chat_domain::Message>, bool)| {
        (page.0.iter().map(|m| m.seq).collect::<Vec<_>>(), page.1)
    };

    let newest = store.history(lobby, UserId::new(), 0, 4).await.unwrap();
    let middle = store.history(lobby, UserId::new(), 7, 4).await.unwrap();
    let oldest = store.history(lobby, UserId::new(), 3, 4).await.unwrap();
    let after = store.room_events(lobby, 5, u64::MAX, 3).await.unwrap();
    let tail = store.room_events(lobby, 8, u64::MAX, 10).await.unwrap();
    let none = store.room_events(lobby, 10, u64::MAX, 10).await.unwrap();
    let bounded = store.room_events(lobby, 2, 5, 10).await.unwrap();
    let event_seqs =
        |page: &(Vec<RoomEvent>, bool)| (page.0.iter().map(|e| e.seq).collect::<Vec<_>>(), page.1);

    assert_eq!(seqs(&newest), (vec![7, 8, 9, 10], true));
    assert_eq!(seqs(&middle), (vec![3, 4, 5, 6], true));
    assert_eq!(seqs(&oldest), (vec![1, 2], false));
    assert_eq!(
        event_seqs(&after),
        (vec![8, 9, 10], true),
        "the newest of those after"
    );
    assert_eq!(event_seqs(&tail), (vec![9, 10], false));
    assert_eq!(event_seqs(&none), (vec![], false));
    assert_eq!(event_seqs(&bounded), (vec![3, 4, 5], false), "up to a seq");
    let message = after.0[0].new_message().expect("a message's event");
    assert_eq!(
        (message.seq, message.text.as_str(), after.0[0].room_id),
        (8, "m8", lobby),
        "a message's own event carries the message at the message's seq"
    );
    let m = &newest.0[0];
    assert_eq!(
        (m.text.as_str(), m.sender.clone(), m.sent_at, m.room_id),
        ("m7", alice.clone(), now(), lobby)
    );
}

async fn concurrent_appends_to_one_room_get_gapless_seqs(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 5;
    let alice = user(&store, "alice").await;
    let lobby = room(&store, "lobby", &alice).await;
    let other = room(&store, "other", &alice).await;

    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, alice) = (store.clone(), alice.clone());
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    let mut batch: Vec<_> = (0..PER_BATCH)
                        .map(|i| send(lobby, &alice, &format!("{t}-{b}-{i}"), "x"))
                        .collect();
                    // A second room in every batch: locks taken in two
                    // rooms at once must not deadlock.
                    batch.push(send(other, &alice, "", "y"));
                    for result in store.append_messages(batch.into()).await.unwrap() {
                        assert!(result.unwrap().fresh);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let total = (TASKS * BATCHES * PER_BATCH) as u64;
    let (messages, more) = store
        .history(lobby, UserId::new(), 0, 10_000)
        .await
        .unwrap();
    assert!(!more);
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert_eq!(store.room_position(lobby, alice.id).await.unwrap().1, total);
    assert_eq!(
        store.room_position(other, alice.id).await.unwrap().1,
        (TASKS * BATCHES) as u64
    );
}

/// Batches split into several INSERTs and counter UPDATEs (500 rows or
/// rooms each): one that ends on a split, one that does not.
async fn batches_larger_than_one_statement_keep_every_room_counter(store: Arc<dyn Store>) {
    const ROOMS: usize = 600;
    let alice = user(&store, "alice").await;
    let mut rooms = Vec::with_capacity(ROOMS);
    for i in 0..ROOMS {
        rooms.push(room(&store, &format!("room-{i}"), &alice).await);
    }
    let batch = |len: usize, tag: &str| -> Vec<NewMessage> {
        (0..len)
            .map(|i| send(rooms[i % ROOMS], &alice, &format!("{tag}-{i}"), "x"))
            .collect()
    };

    for (len, tag) in [(1000, "a"), (1001, "b")] {
        let results = store.append_messages(batch(len, tag).into()).await.unwrap();
        assert_eq!(results.len(), len);
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|a| a.fresh)));
    }

    // Counted the way they were sent: round-robin over the rooms.
    let mut expected = vec![0u64; ROOMS];
    for len in [1000, 1001] {
        for i in 0..len {
            expected[i % ROOMS] += 1;
        }
    }
    for (room, count) in rooms.iter().zip(expected) {
        assert_eq!(store.room_position(*room, alice.id).await.unwrap().1, count);
        let (messages, more) = store.history(*room, UserId::new(), 0, 10).await.unwrap();
        assert!(!more);
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
    }
}

async fn a_key_sent_at_once_from_many_tasks_is_stored_once(store: Arc<dyn Store>) {
    const TASKS: usize = 8;
    let alice = user(&store, "alice").await;
    let mut rooms = Vec::new();
    for i in 0..TASKS {
        rooms.push(room(&store, &format!("room{i}"), &alice).await);
    }

    // Half the tasks resend into the first room, half into rooms of their own.
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, alice) = (store.clone(), alice.clone());
            let target = if t % 2 == 0 { rooms[0] } else { rooms[t] };
            tokio::spawn(async move {
                let mut results = store
                    .append_messages(Arc::new([send(target, &alice, "same", "x")]))
                    .await
                    .unwrap();
                (target, results.remove(0))
            })
        })
        .collect();
    let mut fresh = Vec::new();
    let mut outcomes = Vec::new();
    for task in tasks {
        let (target, result) = task.await.unwrap();
        match result {
            Ok(appended) => {
                if appended.fresh {
                    fresh.push(appended.message.clone());
                }
                outcomes.push((target, Ok(appended.message.id)));
            }
            Err(e) => outcomes.push((target, Err(e.code()))),
        }
    }

    assert_eq!(fresh.len(), 1, "exactly one send stores the key");
    let winner = &fresh[0];
    for (target, outcome) in outcomes {
        if target == winner.room_id {
            assert_eq!(outcome, Ok(winner.id));
        } else {
            assert_eq!(outcome, Err(Code::AlreadyExists));
        }
    }
    let mut stored = 0;
    for room_id in rooms {
        stored += texts(&store, room_id).await.len();
    }
    assert_eq!(stored, 1);
}

fn change(room_id: RoomId, message_id: MessageId, actor: &User, kind: ChangeKind) -> MessageChange {
    MessageChange {
        room_id,
        message_id,
        actor: actor.clone(),
        at: later(60),
        kind,
    }
}

fn edit_to(text: &str) -> ChangeKind {
    ChangeKind::Edit(MessageText::parse(text.into()).unwrap())
}

/// A room event as the checks name it.
fn event_name(event: &RoomEvent) -> String {
    match &event.kind {
        RoomEventKind::Message(m) => {
            format!("{} message {:?} deleted={}", event.seq, m.text, m.deleted)
        }
        RoomEventKind::Edited(m) => format!("{} edited {}: {:?}", event.seq, m.seq, m.text),
        RoomEventKind::Deleted { by, .. } => format!("{} deleted by {}", event.seq, by.username),
        RoomEventKind::Reaction {
            emoji, user, added, ..
        } => format!(
            "{} reaction {emoji} {} by {}",
            event.seq,
            if *added { "added" } else { "removed" },
            user.username
        ),
        RoomEventKind::Member {
            user,
            change,
            role,
            by,
            reason,
        } => format!(
            "{} {change:?} {} as {role:?} by {} {reason:?}",
            event.seq, user.username, by.username
        ),
        RoomEventKind::RoomUpdated { name, info, by } => format!(
            "{} room {name:?} {:?} {:?} by {}",
            event.seq, info.topic, info.visibility, by.username
        ),
    }
}

async fn edits_and_deletions_take_seqs_of_the_log_and_replay_as_the_message_is_now(
    store: Arc<dyn Store>,
) {
    let alice = user(&store, "alice").await;
    let lobby = room(&store, "lobby", &alice).await;
    let batch = vec![
        send(lobby, &alice, "", "one"),
        send(lobby, &alice, "", "two"),
    ];
    let sent = store.append_messages(batch.into()).await.unwrap();
    let (one, two) = (
        sent[0].as_ref().unwrap().message.clone(),
        sent[1].as_ref().unwrap().message.clone(),
    );

    let edited = store
        .change_message(&change(lobby, one.id, &alice, edit_to("one, edited")))
        .await
        .unwrap();
    let same = store
        .change_message(&change(lobby, one.id, &alice, edit_to("one, edited")))
        .await
        .unwrap();
    let deleted = store
        .change_message(&change(lobby, two.id, &alice, ChangeKind::Delete))
        .await
        .unwrap();
    let again = store
        .change_message(&change(lobby, two.id, &alice, ChangeKind::Delete))
        .await
        .unwrap();
    let refused = store
        .change_message(&change(lobby, two.id, &alice, edit_to("back")))
        .await
        .unwrap_err();
    store
        .append_messages(vec![send(lobby, &alice, "", "three")].into())
        .await
        .unwrap();

    assert_eq!(
        (
            edited.message.text.as_str(),
            edited.message.edited_at,
            edited.message.seq
        ),
        ("one, edited", Some(later(60)), 1)
    );
    assert_eq!(edited.event.as_ref().map(|e| e.seq), Some(3));
    assert!(same.event.is_none(), "the same text makes no event");
    assert_eq!(
        (
            deleted.message.text.as_str(),
            deleted.message.deleted,
            deleted.event.map(|e| e.seq)
        ),
        ("", true, Some(4))
    );
    assert!(again.event.is_none(), "a second deletion makes no event");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(store.last_seqs(&[lobby]).await.unwrap(), [(lobby, 5)]);
    let (log, more) = store.room_events(lobby, 0, u64::MAX, 100).await.unwrap();
    let log: Vec<_> = log.iter().map(event_name).collect();
    assert_eq!(
        (log, more),
        (
            vec![
                "1 message \"one, edited\" deleted=false".to_owned(),
                "2 message \"\" deleted=true".to_owned(),
                "3 edited 1: \"one, edited\"".to_owned(),
                "4 deleted by alice".to_owned(),
                "5 message \"three\" deleted=false".to_owned(),
            ],
            false
        ),
        "every event once, each with its message as it is now"
    );
    let (history, _) = store.history(lobby, UserId::new(), 0, 10).await.unwrap();
    let history: Vec<_> = history
        .iter()
        .map(|m| (m.seq, m.text.as_str(), m.edited_at.is_some(), m.deleted))
        .collect();
    assert_eq!(
        history,
        [
            (1, "one, edited", true, false),
            (2, "", false, true),
            (5, "three", false, false)
        ]
    );
}

async fn only_a_member_who_sent_a_message_may_change_it(store: Arc<dyn Store>) {
    let (alice, bob, eve) = (
        user(&store, "alice").await,
        user(&store, "bob").await,
        user(&store, "eve").await,
    );
    let lobby = room(&store, "lobby", &alice).await;
    let other = room(&store, "other", &alice).await;
    join_room(&store, lobby, bob.id, MAX_ROOMS, now())
        .await
        .unwrap();
    let sent = store
        .append_messages(
            vec![
                send(lobby, &alice, "", "mine"),
                send(other, &alice, "", "there"),
            ]
            .into(),
        )
        .await
        .unwrap();
    let (mine, there) = (
        sent[0].as_ref().unwrap().message.id,
        sent[1].as_ref().unwrap().message.id,
    );

    let mut codes = Vec::new();
    for (room_id, message_id, actor, kind) in [
        (lobby, mine, &bob, edit_to("bob's")),
        (lobby, mine, &bob, ChangeKind::Delete),
        (lobby, mine, &eve, edit_to("eve's")),
        (lobby, mine, &eve, ChangeKind::Delete),
        (RoomId::new(), mine, &alice, ChangeKind::Delete),
        (lobby, MessageId::new(), &alice, ChangeKind::Delete),
        (lobby, there, &alice, edit_to("moved")),
    ] {
        let outcome = store
            .change_message(&change(room_id, message_id, actor, kind))
            .await;
        codes.push(outcome.map(|_| ()).map_err(|e| e.code()));
    }

    assert_eq!(
        codes,
        [
            Err(Code::PermissionDenied),
            Err(Code::PermissionDenied),
            Err(Code::PermissionDenied),
            Err(Code::PermissionDenied),
            Err(Code::NotFound),
            Err(Code::NotFound),
            Err(Code::NotFound),
        ]
    );
    // Seq 1 is bob's join.
    assert_eq!(texts(&store, lobby).await, [(2, "mine".into())]);
    assert_eq!(store.last_seqs(&[lobby]).await.unwrap(), [(lobby, 2)]);
}

/// A send that quotes `reply_to` and replies in the thread of `root`.
fn send_in(
    room_id: RoomId,
    sender: &User,
    text: &str,
    reply_to: Option<MessageId>,
    root: Option<MessageId>,
) -> NewMessage {
    NewMessage {
        reply_to_id: reply_to,
        thread_root_id: root,
        ..send(room_id, sender, "", text)
    }
}

fn react_with(emoji: &str) -> ChangeKind {
    ChangeKind::React(Emoji::parse(emoji.into()).unwrap())
}

fn unreact_with(emoji: &str) -> ChangeKind {
    ChangeKind::Unreact(Emoji::parse(emoji.into()).unwrap())
}

async fn reactions_replies_threads_and_mentions_keep_one_behaviour(store: Arc<dyn Store>) {
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let lobby = room(&store, "lobby", &alice).await;
    let other = room(&store, "other", &alice).await;
    join_room(&store, lobby, bob.id, MAX_ROOMS, now())
        .await
        .unwrap();
    let appended = |results: Vec<store::Result<Appended>>| {
        results
            .into_iter()
            .map(|r| r.map(|a| a.message))
            .collect::<Vec<_>>()
    };
    let root = appended(
        store
            .append_messages(vec![send(lobby, &alice, "", "root")].into())
            .await
            .unwrap(),
    )
    .remove(0)
    .unwrap();
    let elsewhere = appended(
        store
            .append_messages(vec![send(other, &alice, "", "elsewhere")].into())
            .await
            .unwrap(),
    )
    .remove(0)
    .unwrap();

    // One batch: a thread reply naming bob (any case) and quoting the root,
    // then refusals, each failing only its own send.
    let results = appended(
        store
            .append_messages(
                vec![
                    send_in(
                        lobby,
                        &bob,
                        "@ALICE and @bob.",
                        Some(root.id),
                        Some(root.id),
                    ),
                    send_in(lobby, &bob, "x", Some(elsewhere.id), None),
                    send_in(lobby, &bob, "x", None, Some(elsewhere.id)),
                    send_in(lobby, &bob, "second", None, Some(root.id)),
                ]
                .into(),
            )
            .await
            .unwrap(),
    );
    let reply = results[0].as_ref().unwrap().clone();
    // Seq 1 is bob's join, 2 the root.
    assert_eq!(reply.seq, 3);
    let mut named: Vec<_> = reply.mentions.iter().map(|u| u.username.clone()).collect();
    named.sort();
    assert_eq!(named, ["alice", "bob"]);
    assert_eq!(reply.reply_to.as_ref().unwrap().text, "root");
    assert_eq!(results[1].as_ref().unwrap_err().code(), Code::NotFound);
    assert_eq!(results[2].as_ref().unwrap_err().code(), Code::NotFound);
    assert_eq!(results[3].as_ref().unwrap().seq, 4);
    let nested = appended(
        store
            .append_messages(vec![send_in(lobby, &bob, "x", None, Some(reply.id))].into())
            .await
            .unwrap(),
    );
    assert_eq!(
        nested[0].as_ref().unwrap_err().code(),
        Code::InvalidArgument
    );

    // Reactions: order of first use, per-reader flags, no event when
    // nothing changes.
    for (who, kind, event) in [
        (&alice, react_with("👍"), true),
        (&bob, react_with("❤"), true),
        (&bob, react_with("👍"), true),
        (&bob, react_with("👍"), false),
        (&alice, unreact_with("❤️"), false),
        (&alice, unreact_with("👍"), true),
        (&bob, unreact_with("👍"), true),
        (&alice, react_with("👍"), true),
    ] {
        let changed = store
            .change_message(&change(lobby, root.id, who, kind))
            .await
            .unwrap();
        assert_eq!(changed.event.is_some(), event, "{:?}", changed.event);
    }
    let (page, _) = store.history(lobby, bob.id, 0, 10).await.unwrap();
    assert_eq!(page.len(), 1, "thread replies are not in History");
    let shown: Vec<_> = page[0]
        .reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.count, r.reacted_by_me))
        .collect();
    assert_eq!(shown, [("❤️", 1, true), ("👍", 1, false)]);
    assert_eq!(page[0].thread.reply_count, 2);

    let thread = store.thread(lobby, root.id, alice.id, 0, 1).await.unwrap();
    assert_eq!(
        (
            thread.replies.len(),
            thread.replies[0].text.as_str(),
            thread.has_more
        ),
        (1, "second", true)
    );
    assert!(thread.root.reactions[1].reacted_by_me);
    assert_eq!(
        store
            .thread(lobby, reply.id, alice.id, 0, 10)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        store
            .thread(lobby, elsewhere.id, alice.id, 0, 10)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // The log names each reaction; a deletion takes reactions and mentions.
    // (Seq 1 is bob's join, 2 to 4 the messages.)
    let (log, _) = store.room_events(lobby, 4, u64::MAX, 100).await.unwrap();
    let log: Vec<_> = log.iter().map(event_name).collect();
    assert_eq!(
        log,
        [
            "5 reaction 👍 added by alice",
            "6 reaction ❤️ added by bob",
            "7 reaction 👍 added by bob",
            "8 reaction 👍 removed by alice",
            "9 reaction 👍 removed by bob",
            "10 reaction 👍 added by alice",
        ]
    );
    store
        .change_message(&change(lobby, reply.id, &bob, ChangeKind::Delete))
        .await
        .unwrap();
    store
        .change_message(&change(lobby, root.id, &alice, ChangeKind::Delete))
        .await
        .unwrap();
    let refused = store
        .change_message(&change(lobby, root.id, &bob, react_with("🎉")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let thread = store.thread(lobby, root.id, alice.id, 0, 10).await.unwrap();
    assert!(thread.root.deleted && thread.root.reactions.is_empty());
    assert_eq!(
        thread.root.thread.reply_count, 2,
        "tombstones keep their place"
    );
    assert!(thread.replies[0].deleted && thread.replies[0].mentions.is_empty());
    assert!(thread.replies[0].reply_to.as_ref().unwrap().deleted);
}

// ---- read state ----------------------------------------------------------

/// Read markers and what rooms show from them, on both stores (a module of
/// their own, so that their list stays apart from the one above).
mod read_state {
    use super::*;
    use chat_store::{ReadMarker, ReadPosition};

    store_tests!(
        a_marker_starts_at_the_last_seq_on_joining_and_only_moves_forward,
        markers_of_non_members_and_unknown_rooms_change_nothing,
        rooms_show_their_member_unread_counts_and_the_last_message,
        unread_counts_stop_at_the_cap,
        unread_counts_agree_with_a_recount_through_every_path,
    );

    fn marker(room_id: RoomId, user: &User, seq: u64) -> ReadMarker {
        ReadMarker {
            room_id,
            user_id: user.id,
            seq,
        }
    }

    async fn sent(store: &Arc<dyn Store>, messages: Vec<NewMessage>) -> Vec<chat_domain::Message> {
        store
            .append_messages(messages.into())
            .await
            .unwrap()
            .into_iter()
            .map(|appended| appended.unwrap().message)
            .collect()
    }

    async fn position(store: &Arc<dyn Store>, room_id: RoomId, user: &User) -> ReadPosition {
        store.read_position(room_id, user.id, 101).await.unwrap()
    }

    /// The room as `user` sees it in its list.
    async fn listed(store: &Arc<dyn Store>, room_id: RoomId, user: &User) -> Room {
        every_room(store, user.id)
            .await
            .into_iter()
            .find(|room| room.id == room_id)
            .expect("the room is listed")
    }

    async fn a_marker_starts_at_the_last_seq_on_joining_and_only_moves_forward(
        store: Arc<dyn Store>,
    ) {
        let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
        let lobby = room(&store, "lobby", &alice).await;
        sent(
            &store,
            (0..3)
                .map(|i| send(lobby, &alice, "", &format!("m{i}")))
                .collect(),
        )
        .await;

        let joined = join_room(&store, lobby, bob.id, MAX_ROOMS, now())
            .await
            .unwrap();
        assert_eq!(
            (joined.read.last_read_seq, joined.read.unread_count),
            (4, 0),
            "what was said before the join (and the join itself, seq 4) is not unread"
        );
        assert_eq!(
            position(&store, lobby, &bob).await,
            ReadPosition {
                membership: Membership::Member,
                last_seq: 4,
                last_read_seq: 4,
                members: 2,
            }
        );
        assert_eq!(position(&store, lobby, &alice).await.last_read_seq, 0);

        store
            .store_read_markers(&[marker(lobby, &alice, 2), marker(lobby, &bob, 1)])
            .await
            .unwrap();
        store
            .store_read_markers(&[marker(lobby, &alice, 1)])
            .await
            .unwrap();
        assert_eq!(
            (
                position(&store, lobby, &alice).await.last_read_seq,
                position(&store, lobby, &bob).await.last_read_seq
            ),
            (2, 4),
            "a marker never moves back"
        );

        // Leaving and joining again starts over from the room's last seq.
        leave_room(&store, lobby, bob.id).await.unwrap();
        sent(&store, vec![send(lobby, &alice, "", "while away")]).await;
        join_room(&store, lobby, bob.id, MAX_ROOMS, now())
            .await
            .unwrap();
        // Seq 5 is bob's leaving, 6 the message, 7 his join.
        assert_eq!(position(&store, lobby, &bob).await.last_read_seq, 7);

        let direct = store.open_direct_room(&alice, &bob, now()).await.unwrap();
        sent(&store, vec![send(direct.id, &alice, "", "psst")]).await;
        let carol = user(&store, "carol").await;
        let other = store.open_direct_room(&carol, &bob, now()).await.unwrap();
        assert_eq!(
            (
                direct.read.last_read_seq,
                position(&store, direct.id, &bob).await.last_read_seq,
                other.read.last_read_seq
            ),
            (0, 0, 0)
        );
        assert_eq!(position(&store, direct.id, &bob).await.members, 2);
    }

    async fn markers_of_non_members_and_unknown_rooms_change_nothing(store: Arc<dyn Store>) {
        let (alice, eve) = (user(&store, "alice").await, user(&store, "eve").await);
        let lobby = room(&store, "lobby", &alice).await;
        sent(&store, vec![send(lobby, &alice, "", "hello")]).await;
        // More markers than one statement takes, nearly all for rooms that
        // do not exist: the one that counts is in the last statement.
        let mut markers: Vec<ReadMarker> = (0..5000)
            .map(|_| marker(RoomId::new(), &alice, 1))
            .collect();
        markers.push(marker(lobby, &eve, 1));
        markers.push(marker(lobby, &alice, 1));

        store.store_read_markers(&markers).await.unwrap();
        store.store_read_markers(&[]).await.unwrap();

        assert_eq!(
            position(&store, lobby, &eve).await,
            ReadPosition {
                membership: Membership::NotMember,
                last_seq: 1,
                last_read_seq: 0,
                members: 1,
            },
            "a marker does not make a member"
        );
        assert_eq!(position(&store, lobby, &alice).await.last_read_seq, 1);
        assert_eq!(
            position(&store, RoomId::new(), &alice).await.membership,
            Membership::NoSuchRoom
        );
        assert_eq!(
            store
                .read_position(lobby, alice.id, 0)
                .await
                .unwrap()
                .members,
            0,
            "members are counted up to the bound asked for"
        );
    }

    async fn rooms_show_their_member_unread_counts_and_the_last_message(store: Arc<dyn Store>) {
        let (alice, bob, carol) = (
            user(&store, "alice").await,
            user(&store, "bob").await,
            user(&store, "carol").await,
        );
        let lobby = room(&store, "lobby", &alice).await;
        join_room(&store, lobby, bob.id, MAX_ROOMS, now())
            .await
            .unwrap();
        let messages = sent(
            &store,
            vec![
                send(lobby, &alice, "", "one"),
                send(lobby, &bob, "", "two"),
                send(lobby, &alice, "", "three"),
                send(lobby, &alice, "", "four"),
            ],
        )
        .await;
        store
            .change_message(&change(lobby, messages[3].id, &alice, ChangeKind::Delete))
            .await
            .unwrap();

        let bobs = listed(&store, lobby, &bob).await;
        assert_eq!(
            (
                bobs.last_seq,
                bobs.read.last_read_seq,
                bobs.read.unread_count,
                bobs.read.mention_count
            ),
            // Seq 1 is bob's join, where his marker starts.
            (6, 1, 2, 0),
            "alice's one and three: not bob's own, not the deleted four"
        );
        let last = bobs.last_message.expect("a last message");
        assert_eq!((last.seq, last.text.as_str()), (4, "three"));
        assert_eq!(listed(&store, lobby, &alice).await.read.unread_count, 1);

        store
            .store_read_markers(&[marker(lobby, &bob, 2)])
            .await
            .unwrap();
        let bobs = listed(&store, lobby, &bob).await;
        assert_eq!((bobs.read.last_read_seq, bobs.read.unread_count), (2, 1));

        let carols = listed(&store, lobby, &carol).await;
        assert_eq!(
            (
                carols.joined,
                carols.read.last_read_seq,
                carols.read.unread_count,
                carols.last_message.is_none()
            ),
            (false, 0, 0, true),
            "a non-member sees no read state and no message"
        );

        let empty = room(&store, "empty", &alice).await;
        let empty = listed(&store, empty, &alice).await;
        assert_eq!((empty.read.unread_count, empty.last_message), (0, None));
    }

    async fn unread_counts_stop_at_the_cap(store: Arc<dyn Store>) {
        let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
        let lobby = room(&store, "lobby", &alice).await;
        join_room(&store, lobby, bob.id, MAX_ROOMS, now())
            .await
            .unwrap();
        let total = u64::from(chat_domain::MAX_UNREAD_COUNT) + 6;
        for start in (0..total).step_by(4000) {
            let batch = (start..total.min(start + 4000))
                .map(|i| send(lobby, &alice, "", &format!("m{i}")))
                .collect();
            sent(&store, batch).await;
        }

        assert_eq!(
            listed(&store, lobby, &bob).await.read.unread_count,
            chat_domain::MAX_UNREAD_COUNT
        );
        store
            .store_read_markers(&[marker(lobby, &bob, 11)])
            .await
            .unwrap();
        // Seq 1 is bob's join: the marker at 11 has read ten messages.
        assert_eq!(
            listed(&store, lobby, &bob).await.read.unread_count,
            u32::try_from(total - 10).unwrap()
        );
    }

    /// A message as the recount needs it.
    struct Counted {
        seq: u64,
        sender: usize,
        deleted: bool,
        mentions: Vec<usize>,
        id: MessageId,
        top_level: bool,
    }

    /// The counts kept with the marker (`read_ord`, `read_sent`) against a
    /// plain recount, through every way a count can move: batched plain
    /// sends and one-by-one rich ones (thread replies, mentions), own and
    /// others' deletions on both sides of the marker, edits that add and
    /// drop names, markers set anywhere, leaving and joining again, and
    /// other events taking seqs.
    async fn unread_counts_agree_with_a_recount_through_every_path(store: Arc<dyn Store>) {
        let names = ["ann", "ben", "cat"];
        let mut users = Vec::new();
        for name in names {
            users.push(user(&store, name).await);
        }
        let lobby = room(&store, "lobby", &users[0]).await;
        for member in &users[1..] {
            join_room(&store, lobby, member.id, MAX_ROOMS, now())
                .await
                .unwrap();
        }
        let mut members = [true; 3];
        // Each joiner's marker starts at its own join's seq.
        let mut markers = [0_u64; 3];
        for (i, member) in users.iter().enumerate() {
            markers[i] = listed(&store, lobby, member).await.read.last_read_seq;
        }
        let mut log: Vec<Counted> = Vec::new();
        let mut dice = 0x2545_f491_4f6c_dd1d_u64;
        let mut roll = |n: u64| {
            dice ^= dice << 13;
            dice ^= dice >> 7;
            dice ^= dice << 17;
            dice % n
        };
        for step in 0..240 {
            let who = roll(3) as usize;
            if !members[who] {
                join_room(&store, lobby, users[who].id, MAX_ROOMS, now())
                    .await
                    .unwrap();
                members[who] = true;
                markers[who] = listed(&store, lobby, &users[who]).await.last_seq;
                continue;
            }
            match roll(12) {
                0 => {
                    let mine: Vec<usize> = (0..log.len())
                        .filter(|&i| log[i].sender == who && !log[i].deleted)
                        .collect();
                    if let Some(&i) = mine.iter().rev().nth(roll(4) as usize) {
                        store
                            .change_message(&change(
                                lobby,
                                log[i].id,
                                &users[who],
                                ChangeKind::Delete,
                            ))
                            .await
                            .unwrap();
                        log[i].deleted = true;
                        log[i].mentions.clear();
                    }
                }
                1 | 2 => {
                    let last = listed(&store, lobby, &users[who]).await.last_seq;
                    let seq = roll(last + 1);
                    store
                        .store_read_markers(&[marker(lobby, &users[who], seq)])
                        .await
                        .unwrap();
                    markers[who] = markers[who].max(seq);
                }
                3 if who != 0 => {
                    leave_room(&store, lobby, users[who].id).await.unwrap();
                    members[who] = false;
                }
                6 => {
                    // An edit that names someone else (or no one).
                    let mine: Vec<usize> = (0..log.len())
                        .filter(|&i| log[i].sender == who && !log[i].deleted)
                        .collect();
                    if let Some(&i) = mine.iter().rev().nth(roll(4) as usize) {
                        let named = roll(4) as usize;
                        let text = match names.get(named) {
                            Some(name) => format!("@{name} e{step}"),
                            None => format!("nobody e{step}"),
                        };
                        store
                            .change_message(&change(lobby, log[i].id, &users[who], edit_to(&text)))
                            .await
                            .unwrap();
                        log[i].mentions = match named {
                            n if n < 3 && members[n] => vec![n],
                            _ => vec![],
                        };
                    }
                }
                4 | 5 => {
                    // One by one: a mention, sometimes in a thread.
                    let named = roll(3) as usize;
                    let root = log
                        .iter()
                        .rev()
                        .find(|m| !m.deleted && m.top_level)
                        .filter(|_| roll(2) == 0)
                        .map(|m| m.id);
                    let new = NewMessage {
                        thread_root_id: root,
                        ..send(
                            lobby,
                            &users[who],
                            "",
                            &format!("@{} s{step}", names[named]),
                        )
                    };
                    let message = sent(&store, vec![new]).await.remove(0);
                    let mentions = if members[named] { vec![named] } else { vec![] };
                    log.push(Counted {
                        seq: message.seq,
                        sender: who,
                        deleted: false,
                        mentions,
                        id: message.id,
                        top_level: root.is_none(),
                    });
                }
                _ => {
                    // A batch of plain sends from everyone still there.
                    let batch: Vec<NewMessage> = (0..1 + roll(4))
                        .map(|i| (who + i as usize) % 3)
                        .filter(|&sender| members[sender])
                        .map(|sender| send(lobby, &users[sender], "", &format!("p{step}")))
                        .collect();
                    for message in sent(&store, batch).await {
                        let sender = users.iter().position(|u| u.id == message.sender.id);
                        log.push(Counted {
                            seq: message.seq,
                            sender: sender.unwrap(),
                            deleted: false,
                            mentions: vec![],
                            id: message.id,
                            top_level: true,
                        });
                    }
                }
            }
            for (i, member) in users.iter().enumerate() {
                if !members[i] {
                    continue;
                }
                let shown = listed(&store, lobby, member).await;
                let after: Vec<&Counted> = log
                    .iter()
                    .filter(|m| m.seq > markers[i] && !m.deleted && m.sender != i)
                    .collect();
                let mentions = after.iter().filter(|m| m.mentions.contains(&i)).count();
                let newest = log.iter().rev().find(|m| m.top_level && !m.deleted);
                assert_eq!(
                    shown.last_message.map(|m| m.id),
                    newest.map(|m| m.id),
                    "the newest message {} sees after step {step}",
                    names[i]
                );
                assert_eq!(
                    (
                        shown.read.last_read_seq,
                        shown.read.unread_count as usize,
                        shown.read.mention_count as usize
                    ),
                    (markers[i], after.len(), mentions),
                    "{} after step {step}",
                    names[i]
                );
            }
        }
    }
}

// ---- membership ----------------------------------------------------------

/// Roles, invitations, removals, bans and settings, in the room log, on
/// both stores.
mod membership {
    use super::*;
    use chat_domain::MemberRole;
    use chat_store::MembershipChanged;

    store_tests!(membership_changes_are_checked_and_replay_from_the_log,);

    async fn by(
        store: &Arc<dyn Store>,
        room_id: RoomId,
        actor: &User,
        kind: MembershipKind,
    ) -> chat_store::Result<MembershipChanged> {
        store
            .change_membership(&MembershipChange {
                room_id,
                actor: actor.clone(),
                at: now(),
                kind,
            })
            .await
    }

    async fn membership_changes_are_checked_and_replay_from_the_log(store: Arc<dyn Store>) {
        let (alice, bob, carol) = (
            user(&store, "alice").await,
            user(&store, "bob").await,
            user(&store, "carol").await,
        );
        let private = store
            .create_room(NewRoom {
                id: RoomId::new(),
                name: RoomName::parse("secret").unwrap(),
                topic: RoomTopic::parse("plans").unwrap(),
                visibility: RoomVisibility::Private,
                creator: alice.clone(),
                max_rooms: MAX_ROOMS,
                now: now(),
            })
            .await
            .unwrap();
        let room = private.id;
        assert_eq!(
            (private.last_seq, private.my_role, private.info.member_count),
            (0, Some(MemberRole::Owner), 1)
        );
        let join = || MembershipKind::Join {
            max_rooms: MAX_ROOMS,
        };
        assert_eq!(
            by(&store, room, &bob, join()).await.unwrap_err().code(),
            Code::PermissionDenied,
            "a private room is joined by invitation only"
        );
        let invited = by(
            &store,
            room,
            &alice,
            MembershipKind::Invite {
                username: Username::parse("BOB").unwrap(),
            },
        )
        .await
        .unwrap();
        let (invitee, seen) = invited.invited.expect("the invitee and its view");
        assert_eq!((invitee, seen.invited, seen.joined), (bob.id, true, false));
        let joined = by(&store, room, &bob, join()).await.unwrap();
        assert_eq!(
            (
                joined.room.joined,
                joined.room.invited,
                joined.room.info.member_count
            ),
            (true, false, 2)
        );
        assert_eq!(
            by(
                &store,
                room,
                &bob,
                MembershipKind::Remove {
                    target: alice.id,
                    ban: false,
                    reason: RoomTopic::default(),
                },
            )
            .await
            .unwrap_err()
            .code(),
            Code::PermissionDenied,
            "a member removes nobody; nobody removes the owner"
        );
        by(
            &store,
            room,
            &alice,
            MembershipKind::SetRole {
                target: bob.id,
                role: MemberRole::Admin,
            },
        )
        .await
        .unwrap();
        by(
            &store,
            room,
            &bob,
            MembershipKind::Update {
                name: None,
                topic: Some(RoomTopic::parse("new plans").unwrap()),
                visibility: Some(RoomVisibility::Public),
            },
        )
        .await
        .unwrap();
        by(&store, room, &carol, join()).await.unwrap();
        by(
            &store,
            room,
            &bob,
            MembershipKind::Remove {
                target: carol.id,
                ban: true,
                reason: RoomTopic::parse_field("reason", "spam").unwrap(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            by(&store, room, &carol, join()).await.unwrap_err().code(),
            Code::PermissionDenied,
            "banned"
        );
        // The owner leaves: the admin takes over.
        let left = by(&store, room, &alice, MembershipKind::Leave)
            .await
            .unwrap();
        assert_eq!(left.events.len(), 2, "the hand-over, then the leaving");
        assert_eq!(
            store.list_members(room, bob.id, None, 10).await.unwrap()[0].role,
            MemberRole::Owner
        );

        let (log, more) = store.room_events(room, 0, u64::MAX, 100).await.unwrap();
        assert!(!more);
        assert_eq!(
            log.iter().map(event_name).collect::<Vec<_>>(),
            [
                "1 Invited bob as None by alice \"\"",
                "2 Joined bob as Some(Member) by bob \"\"",
                "3 RoleChanged bob as Some(Admin) by alice \"\"",
                "4 room \"secret\" \"new plans\" Public by bob",
                "5 Joined carol as Some(Member) by carol \"\"",
                "6 Banned carol as None by bob \"spam\"",
                "7 RoleChanged bob as Some(Owner) by alice \"\"",
                "8 Left alice as None by alice \"\"",
            ]
        );
        assert!(log.iter().all(|e| e.room_id == room));
    }
}

async fn a_block_refuses_the_blocked_users_direct_sends_and_is_bounded(store: Arc<dyn Store>) {
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let name = |n: &str| Username::parse(n).unwrap();
    let direct = store.open_direct_room(&bob, &alice, now()).await.unwrap();
    let first = store
        .append_messages(vec![send(direct.id, &bob, "", "hi")].into())
        .await
        .unwrap()
        .remove(0)
        .unwrap();

    let blocked = store
        .block_user(alice.id, &name("BOB"), now())
        .await
        .unwrap();
    assert_eq!(blocked.id, bob.id);
    store
        .block_user(alice.id, &name("bob"), now())
        .await
        .unwrap();
    assert!(store.blocks(alice.id, bob.id).await.unwrap());
    assert!(!store.blocks(bob.id, alice.id).await.unwrap());
    let listed: Vec<UserId> = store
        .blocked_users(alice.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(listed, [bob.id]);

    // Plain sends and replies (the store's two append paths), and opening.
    let mut reply = send(direct.id, &bob, "", "a reply");
    reply.reply_to_id = Some(first.message.id);
    let results = store
        .append_messages(vec![send(direct.id, &bob, "", "hello?")].into())
        .await
        .unwrap();
    assert_eq!(outcomes(&results), [Err(Code::PermissionDenied)]);
    let results = store.append_messages(vec![reply].into()).await.unwrap();
    assert_eq!(outcomes(&results), [Err(Code::PermissionDenied)]);
    assert_eq!(
        store
            .open_direct_room(&bob, &alice, now())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // One way: the blocker still writes.
    store.open_direct_room(&alice, &bob, now()).await.unwrap();
    let results = store
        .append_messages(vec![send(direct.id, &alice, "", "still here")].into())
        .await
        .unwrap();
    assert!(results[0].is_ok());

    let refused = |result: store::Result<User>| result.unwrap_err().code();
    assert_eq!(
        refused(store.block_user(alice.id, &name("alice"), now()).await),
        Code::InvalidArgument
    );
    assert_eq!(
        refused(store.block_user(alice.id, &name("nobody"), now()).await),
        Code::NotFound
    );
    assert_eq!(
        refused(store.unblock_user(alice.id, &name("nobody")).await),
        Code::NotFound
    );

    // Bob is one of the most alice may block.
    for i in 1..chat_domain::MAX_BLOCKED_USERS {
        let other = user(&store, &format!("u{i:04}")).await;
        store
            .block_user(alice.id, &name(&other.username), now())
            .await
            .unwrap();
    }
    user(&store, "one_more").await;
    assert_eq!(
        refused(store.block_user(alice.id, &name("one_more"), now()).await),
        Code::ResourceExhausted
    );
    store
        .block_user(alice.id, &name("bob"), now())
        .await
        .unwrap();

    store.unblock_user(alice.id, &name("bob")).await.unwrap();
    store.unblock_user(alice.id, &name("bob")).await.unwrap();
    assert!(!store.blocks(alice.id, bob.id).await.unwrap());
    let results = store
        .append_messages(vec![send(direct.id, &bob, "", "thanks")].into())
        .await
        .unwrap();
    assert!(results[0].is_ok());
}

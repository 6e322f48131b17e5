//! The operator's view of the store (`AdminStore`), checked on both
//! databases like the store's contract (`tests/store.rs`): each test runs
//! once on a fresh SQLite file and once on a fresh PostgreSQL database
//! (`CHAT_TEST_POSTGRES_URL`; skipped with a notice where unreachable,
//! except under `CI=true`).

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::{
    RoomId, RoomKind, RoomName, RoomTopic, RoomVisibility, SessionId, Timestamp, User, UserId,
    Username,
};
use chat_store::{
    self as store, AdminStore, ControlKind, MembershipChange, MembershipKind, NewRoom, NewSession,
    Store, Synchronous,
};
use sqlx::{Connection as _, Executor as _, PgConnection};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The store and its operator's view, on the same connections.
#[derive(Clone)]
struct Both {
    store: Arc<dyn Store>,
    admin: Arc<dyn AdminStore>,
}

macro_rules! admin_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )*
        }
    };
}

admin_tests!(
    a_disabled_account_has_no_live_session_and_no_credentials_until_enabled,
    a_password_reset_revokes_every_session_and_keeps_the_new_hash,
    deleting_a_room_takes_its_members_and_messages,
    control_events_are_read_in_id_order_after_a_point_and_purged_by_age,
    unknown_names_and_rooms_are_not_found,
);

async fn on_sqlite<F, Fut>(check: F)
where
    F: FnOnce(Both) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}/chat.db", dir.path().display());
    let (store, admin) = store::connect_with_admin(&url, Synchronous::Full, 4)
        .await
        .expect("opening SQLite");
    let outcome = tokio::spawn(check(Both {
        store: store.clone(),
        admin,
    }))
    .await;
    store.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn on_postgres<F, Fut>(check: F)
where
    F: FnOnce(Both) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_url =
        std::env::var("CHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let mut server = match PgConnection::connect(&admin_url).await {
        Ok(server) => server,
        Err(e) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("PostgreSQL at {admin_url} is unreachable under CI: {e}")
        }
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! PostgreSQL admin store test SKIPPED: {admin_url} is unreachable ({e}).\n"
            );
            return;
        }
    };
    let name = format!("chat_test_{}", uuid::Uuid::new_v4().simple());
    server
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("creating the test database");
    let url = format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base)
    );
    let outcome = match store::connect_with_admin(&url, Synchronous::Full, 4).await {
        Ok((store, admin)) => {
            let outcome = tokio::spawn(check(Both {
                store: store.clone(),
                admin,
            }))
            .await;
            store.close().await;
            outcome.map_err(|e| e.into_panic())
        }
        Err(e) => Err(Box::new(format!("opening PostgreSQL: {e:?}")) as Box<_>),
    };
    server
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .expect("dropping the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn name(text: &str) -> Username {
    Username::parse(text).unwrap()
}

async fn user(store: &Arc<dyn Store>, text: &str) -> User {
    store
        .create_user(UserId::new(), &name(text), "hash", now())
        .await
        .expect("creating a user")
}

async fn session(store: &Arc<dyn Store>, user: &User) -> SessionId {
    let id = SessionId::new();
    store
        .create_session(NewSession {
            id,
            user_id: user.id,
            user_agent: "test".into(),
            refresh_hash: id.uuid().as_bytes().to_vec(),
            expires_at: now().plus(Duration::from_secs(3600)),
            max_sessions: 100,
            now: now(),
        })
        .await
        .expect("creating a session");
    id
}

async fn a_disabled_account_has_no_live_session_and_no_credentials_until_enabled(both: Both) {
    let Both { store, admin } = both;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let sessions = [session(&store, &alice).await, session(&store, &alice).await];
    let bobs = session(&store, &bob).await;
    let before = admin.newest_control_event().await.unwrap();

    let change = admin.disable_user(&name("ALICE"), now()).await.unwrap();
    assert!(change.changed);
    assert_eq!(change.sessions_ended, 2);
    assert!(change.user.disabled_at.is_some());
    assert_eq!(change.user.live_sessions, 0);
    for id in sessions {
        assert!(store
            .live_session(id, alice.id, now())
            .await
            .unwrap()
            .is_none());
    }
    assert!(store.credentials(&name("alice")).await.unwrap().is_none());
    assert_eq!(
        admin.disabled_credentials(&name("alice")).await.unwrap(),
        Some("hash".to_owned())
    );
    assert!(store
        .live_session(bobs, bob.id, now())
        .await
        .unwrap()
        .is_some());
    assert!(admin
        .disabled_credentials(&name("bob"))
        .await
        .unwrap()
        .is_none());
    let events = admin.control_events_after(before, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].kind, events[0].user_id, events[0].room_id),
        (Some(ControlKind::UserDisabled), Some(alice.id), None)
    );
    // A session created in a race with the disabling is not live either.
    let late = session(&store, &alice).await;
    assert!(store
        .live_session(late, alice.id, now())
        .await
        .unwrap()
        .is_none());

    let again = admin.disable_user(&name("alice"), now()).await.unwrap();
    assert!(!again.changed);
    // Disabling again ends what a race left behind.
    assert_eq!(again.sessions_ended, 1);

    let enabled = admin.enable_user(&name("alice"), now()).await.unwrap();
    assert!(enabled.changed);
    assert_eq!(enabled.user.disabled_at, None);
    assert!(store.credentials(&name("alice")).await.unwrap().is_some());
    let fresh = session(&store, &alice).await;
    assert!(store
        .live_session(fresh, alice.id, now())
        .await
        .unwrap()
        .is_some());

    let users = admin.list_users(10, now()).await.unwrap();
    let listed: Vec<(&str, bool, u64)> = users
        .iter()
        .map(|u| {
            (
                u.username.as_str(),
                u.disabled_at.is_some(),
                u.live_sessions,
            )
        })
        .collect();
    assert_eq!(listed, [("alice", false, 1), ("bob", false, 1)]);
    assert_eq!(admin.list_users(1, now()).await.unwrap().len(), 1);
}

async fn a_password_reset_revokes_every_session_and_keeps_the_new_hash(both: Both) {
    let Both { store, admin } = both;
    let alice = user(&store, "alice").await;
    let id = session(&store, &alice).await;
    let change = admin
        .reset_password(&name("alice"), "new hash", now())
        .await
        .unwrap();
    assert_eq!(change.sessions_ended, 1);
    assert!(store
        .live_session(id, alice.id, now())
        .await
        .unwrap()
        .is_none());
    let (_, hash) = store.credentials(&name("alice")).await.unwrap().unwrap();
    assert_eq!(hash, "new hash");
    let newest = admin.newest_control_event().await.unwrap();
    let events = admin.control_events_after(newest - 1, 10).await.unwrap();
    assert_eq!(events[0].kind, Some(ControlKind::PasswordReset));
}

async fn deleting_a_room_takes_its_members_and_messages(both: Both) {
    let Both { store, admin } = both;
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let room = store
        .create_room(NewRoom {
            id: RoomId::new(),
            name: RoomName::parse("general").unwrap(),
            topic: RoomTopic::default(),
            visibility: RoomVisibility::Public,
            creator: alice.clone(),
            max_rooms: 1000,
            now: now(),
        })
        .await
        .unwrap();
    store
        .change_membership(&MembershipChange {
            room_id: room.id,
            actor: bob.clone(),
            at: now(),
            kind: MembershipKind::Join { max_rooms: 1000 },
        })
        .await
        .unwrap();
    let direct = store.open_direct_room(&alice, &bob, now()).await.unwrap();

    let rooms = admin.list_rooms(10).await.unwrap();
    let listed: Vec<(RoomId, &str, RoomKind, u64)> = rooms
        .iter()
        .map(|r| (r.id, r.name.as_str(), r.kind, r.members))
        .collect();
    assert_eq!(
        listed,
        [
            (room.id, "general", RoomKind::Group, 2),
            (direct.id, "alice & bob", RoomKind::Direct, 2)
        ]
    );
    let details = admin.user_details(&name("bob"), now()).await.unwrap();
    assert_eq!(details.rooms.len(), 2);

    let deleted = admin.delete_room(room.id, now()).await.unwrap();
    assert_eq!((deleted.id, deleted.members), (room.id, 2));
    assert_eq!(admin.list_rooms(10).await.unwrap().len(), 1);
    let details = admin.user_details(&name("bob"), now()).await.unwrap();
    assert_eq!(details.rooms.len(), 1);
    assert_eq!(details.rooms[0].id, direct.id);
    let newest = admin.newest_control_event().await.unwrap();
    let events = admin.control_events_after(newest - 1, 10).await.unwrap();
    assert_eq!(
        (events[0].kind, events[0].room_id),
        (Some(ControlKind::RoomDeleted), Some(room.id))
    );
}

async fn control_events_are_read_in_id_order_after_a_point_and_purged_by_age(both: Both) {
    let Both { store, admin } = both;
    assert_eq!(admin.newest_control_event().await.unwrap(), 0);
    let alice = user(&store, "alice").await;
    let long_ago = Timestamp(now().0 - 2 * 24 * 3600 * 1_000_000);
    admin.disable_user(&name("alice"), long_ago).await.unwrap();
    admin.enable_user(&name("alice"), now()).await.unwrap();
    admin.disable_user(&name("alice"), now()).await.unwrap();

    let all = admin.control_events_after(0, 10).await.unwrap();
    let kinds: Vec<_> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            Some(ControlKind::UserDisabled),
            Some(ControlKind::UserEnabled),
            Some(ControlKind::UserDisabled)
        ]
    );
    assert!(all.windows(2).all(|pair| pair[0].id < pair[1].id));
    assert!(all.iter().all(|e| e.user_id == Some(alice.id)));
    assert_eq!(admin.newest_control_event().await.unwrap(), all[2].id);
    let after_first = admin.control_events_after(all[0].id, 1).await.unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].id, all[1].id);

    let day_ago = Timestamp(now().0 - 24 * 3600 * 1_000_000);
    assert_eq!(admin.purge_control_events(day_ago).await.unwrap(), 1);
    let left = admin.control_events_after(0, 10).await.unwrap();
    assert_eq!(left.len(), 2);
    // Ids are never given twice, even after a purge.
    admin.enable_user(&name("alice"), now()).await.unwrap();
    assert!(admin.newest_control_event().await.unwrap() > all[2].id);
}

async fn unknown_names_and_rooms_are_not_found(both: Both) {
    let Both { admin, .. } = both;
    let nobody = name("nobody");
    let not_found = |result: store::Result<_>| match result {
        Err(store::Error::NotFound(message)) => message,
        other => panic!("expected NotFound, got {other:?}"),
    };
    assert_eq!(
        not_found(admin.user_details(&nobody, now()).await.map(|_| ())),
        "no user named \"nobody\""
    );
    not_found(admin.disable_user(&nobody, now()).await.map(|_| ()));
    not_found(admin.enable_user(&nobody, now()).await.map(|_| ()));
    not_found(admin.reset_password(&nobody, "x", now()).await.map(|_| ()));
    let room = RoomId::new();
    assert_eq!(
        not_found(admin.delete_room(room, now()).await.map(|_| ())),
        format!("no room with id {room}")
    );
    assert_eq!(admin.newest_control_event().await.unwrap(), 0);
}

//! Display names and finding people (issue 22).

use chat_client::pb::{self, server_event};
use tonic::Code;

use crate::helpers::{spawn_app, TestUser};

async fn set_name(user: &TestUser, name: Option<&str>) -> Result<pb::User, tonic::Status> {
    user.chat
        .clone()
        .update_profile(pb::UpdateProfileRequest {
            display_name: name.map(str::to_owned),
        })
        .await
        .map(|r| r.into_inner().user.unwrap())
}

async fn search(user: &TestUser, prefix: &str, limit: u32) -> Result<Vec<String>, tonic::Status> {
    user.chat
        .clone()
        .search_users(pb::SearchUsersRequest {
            prefix: prefix.into(),
            limit,
        })
        .await
        .map(|r| {
            r.into_inner()
                .users
                .into_iter()
                .map(|u| u.username)
                .collect()
        })
}

#[tokio::test]
async fn a_display_name_is_normalised_checked_and_told_to_who_shares_a_room() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let carol = app.user("carol").await;
    let (mut bob_events, _) = bob.subscribe().await;
    let (mut carol_events, _) = carol.subscribe().await;

    let user = set_name(&alice, Some("  Ａlice Liddell ")).await.unwrap();
    assert_eq!(
        (user.username.as_str(), user.display_name.as_str()),
        ("alice", "Alice Liddell")
    );
    loop {
        match bob_events.next().await {
            server_event::Event::Profile(changed) => {
                let changed = changed.user.unwrap();
                assert_eq!(
                    (changed.id.as_str(), changed.display_name.as_str()),
                    (alice.user.id.as_str(), "Alice Liddell")
                );
                break;
            }
            server_event::Event::Presence(_) => {}
            other => panic!("expected profile, got {other:?}"),
        }
    }
    carol_events
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
    // Messages show it, live and in History.
    let sent = alice.send(&room, "hello").await;
    assert_eq!(sent.sender.unwrap().display_name, "Alice Liddell");
    let history = bob.history(&room, 0, 10).await.messages;
    assert_eq!(
        history[0].sender.as_ref().unwrap().display_name,
        "Alice Liddell"
    );
    // Unset keeps it; empty clears it.
    assert_eq!(
        set_name(&alice, None).await.unwrap().display_name,
        "Alice Liddell"
    );
    assert_eq!(set_name(&alice, Some("")).await.unwrap().display_name, "");

    for (bad, why) in [
        (
            "x".repeat(65),
            "display_name must be at most 64 characters, got 65",
        ),
        (
            "ad\u{200B}min".to_owned(),
            "display_name must not contain invisible characters, found U+200B",
        ),
        (
            "bell\u{7}".to_owned(),
            "display_name must not contain control characters, found U+0007",
        ),
    ] {
        let status = set_name(&alice, Some(&bad)).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, why)
        );
    }
}

#[tokio::test]
async fn users_are_found_by_the_start_of_their_name_or_display_name() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    app.user("Alex_9").await;
    let bob = app.user("bob").await;
    set_name(&bob, Some("Albert Bob")).await.unwrap();
    for i in 0..25 {
        app.user(&format!("zed{i:02}")).await;
    }

    assert_eq!(
        search(&alice, "AL", 0).await.unwrap(),
        // By username: bob by his display name.
        ["Alex_9", "alice", "bob"]
    );
    assert_eq!(search(&alice, "albert", 0).await.unwrap(), ["bob"]);
    assert_eq!(
        search(&alice, "nobody", 0).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        search(&alice, "zed", 0).await.unwrap().len(),
        20,
        "at most 20"
    );
    assert_eq!(
        search(&alice, "zed", 1000).await.unwrap().len(),
        20,
        "capped"
    );
    assert_eq!(search(&alice, "zed", 3).await.unwrap().len(), 3);

    for (prefix, why) in [
        ("", "prefix must be 1 to 32 characters, got 0"),
        (
            &"z".repeat(33)[..],
            "prefix must be 1 to 32 characters, got 33",
        ),
    ] {
        let status = search(&alice, prefix, 0).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, why)
        );
    }
}

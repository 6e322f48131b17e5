//! Read state (issue 21): `MarkRead`'s answers, its marker that only moves
//! forward, the `read` events it brings the reader's other sessions and,
//! as receipts, the other members of small rooms, and the counts and last
//! message `ListRooms` shows from it.

use std::time::{Duration, Instant};

use chat_client::pb::{self, server_event::Event};
use chat_server::domain::{RoomId, Timestamp, UserId, Username};
use tonic::Code;

use crate::helpers::{assert_status, spawn_app, EventStream, TestApp, TestUser, PATIENCE};

async fn mark_read(user: &TestUser, room: &pb::Room, seq: u64) -> Result<u64, tonic::Status> {
    user.chat
        .clone()
        .mark_read(pb::MarkReadRequest {
            room_id: room.id.clone(),
            seq,
        })
        .await
        .map(|answer| answer.into_inner().last_read_seq)
}

async fn delete(user: &TestUser, message: &pb::Message) {
    user.chat
        .clone()
        .delete_message(pb::DeleteMessageRequest {
            room_id: message.room_id.clone(),
            message_id: message.id.clone(),
        })
        .await
        .expect("delete message");
}

/// The room as `user` sees it in ListRooms.
async fn listed(user: &TestUser, room: &pb::Room) -> pb::Room {
    user.chat
        .clone()
        .list_rooms(pb::ListRoomsRequest {
            joined_only: true,
            ..Default::default()
        })
        .await
        .expect("list rooms")
        .into_inner()
        .rooms
        .into_iter()
        .find(|r| r.id == room.id)
        .expect("the room is listed")
}

/// (marker, unread, mentions) of a room.
fn read_state(room: &pb::Room) -> (u64, u32, u32) {
    (room.last_read_seq, room.unread_count, room.mention_count)
}

/// The next `read` event of a stream, skipping every other kind; `None`
/// when none comes within `wait`.
async fn next_read(stream: &mut EventStream, wait: Duration) -> Option<(String, String, u64)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .ok()?;
        if let Event::Read(read) = event {
            let user = read.user.expect("a reader").username;
            return Some((read.room_id, user, read.last_read_seq));
        }
    }
}

/// Members who never log in, added through the store: a room of a
/// hundred members costs no hundred password hashes.
async fn silent_members(app: &TestApp, room: &pb::Room, count: usize, prefix: &str) {
    let room_id = RoomId::parse("room_id", &room.id).unwrap();
    for i in 0..count {
        let user = app
            .state
            .store
            .create_user(
                UserId::new(),
                &Username::parse(&format!("{prefix}{i}")).unwrap(),
                "no password",
                Timestamp::now(),
            )
            .await
            .expect("a silent member");
        app.state
            .store
            .change_membership(&chat_server::store::MembershipChange {
                room_id,
                actor: user,
                at: Timestamp::now(),
                kind: chat_server::store::MembershipKind::Join { max_rooms: 1000 },
            })
            .await
            .expect("joining");
    }
}

#[tokio::test]
async fn mark_read_answers_each_refusal_with_its_code() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let eve = app.user("eve").await;
    let room = alice.create_room("lobby").await;
    let nowhere = pb::Room {
        id: RoomId::new().to_string(),
        ..Default::default()
    };
    let request = |room_id: &str| pb::MarkReadRequest {
        room_id: room_id.into(),
        seq: 1,
    };

    assert_status(
        app.chat_with_authorization(None)
            .mark_read(request(&room.id))
            .await,
        Code::Unauthenticated,
        "missing authorization metadata: send 'authorization: Bearer <access_token>'",
    );
    assert_status(
        alice.chat.clone().mark_read(request("")).await,
        Code::InvalidArgument,
        "room_id is required",
    );
    assert_status(
        alice.chat.clone().mark_read(request("lobby")).await,
        Code::InvalidArgument,
        "room_id is not a valid room id",
    );
    assert_status(
        mark_read(&alice, &nowhere, 1).await,
        Code::NotFound,
        &format!("room {} does not exist", nowhere.id),
    );
    assert_status(
        mark_read(&eve, &room, 1).await,
        Code::PermissionDenied,
        &format!("you are not a member of room {}", room.id),
    );
    assert_eq!(
        mark_read(&alice, &room, 1).await.unwrap(),
        0,
        "nothing to read"
    );
}

#[tokio::test]
async fn a_marker_moves_forward_only_and_stops_at_the_last_seq() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    for i in 0..5 {
        alice.send(&room, &format!("m{i}")).await;
    }

    // Seq 1 is bob's join: the messages are 2 to 6.
    let marks = [
        mark_read(&bob, &room, 3).await.unwrap(),
        mark_read(&bob, &room, 1).await.unwrap(),
        mark_read(&bob, &room, 0).await.unwrap(),
        mark_read(&bob, &room, 1000).await.unwrap(),
        mark_read(&bob, &room, 4).await.unwrap(),
    ];

    assert_eq!(marks, [3, 3, 3, 6, 6]);
    assert_eq!(read_state(&listed(&bob, &room).await), (6, 0, 0));
    assert_eq!(
        read_state(&listed(&alice, &room).await),
        (0, 0, 0),
        "alice's own messages are not unread to her"
    );
}

#[tokio::test]
async fn a_new_member_starts_with_everything_before_its_join_read() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let room = alice.create_room("lobby").await;
    assert_eq!(read_state(&room), (0, 0, 0));
    for i in 0..3 {
        alice.send(&room, &format!("before {i}")).await;
    }

    let joined = bob
        .chat
        .clone()
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    alice.send(&room, "after").await;

    // The marker starts after the join's own event (seq 4).
    assert_eq!(read_state(&joined), (4, 0, 0));
    assert_eq!(
        joined.last_message.map(|m| m.text),
        Some("before 2".to_owned())
    );
    assert_eq!(read_state(&listed(&bob, &room).await), (4, 1, 0));

    // A direct room: both are members from its first message on.
    let direct = alice.open_direct_room("bob").await;
    alice.send(&direct, "psst").await;
    alice.send(&direct, "are you there").await;
    let bobs = bob.open_direct_room("alice").await;
    assert_eq!(read_state(&bobs), (0, 2, 0));
    assert_eq!(
        bobs.last_message.map(|m| m.text),
        Some("are you there".to_owned())
    );
    assert_eq!(read_state(&listed(&alice, &direct).await), (0, 0, 0));
}

#[tokio::test]
async fn marking_read_on_one_session_moves_the_others_live() {
    let app = spawn_app().await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let laptop = app.login("alice").await;
    let (mut laptop_events, _) = laptop.chat_stream().await;
    let (mut phone_events, _) = alice.subscribe().await;
    alice.send(&room, "one").await;
    alice.send(&room, "two").await;

    let moved = mark_read(&alice, &room, 2).await.unwrap();
    let unmoved = mark_read(&alice, &room, 1).await.unwrap();

    assert_eq!((moved, unmoved), (2, 2));
    let read = Some((room.id.clone(), "alice".to_owned(), 2));
    assert_eq!(next_read(&mut laptop_events, PATIENCE).await, read);
    assert_eq!(next_read(&mut phone_events, PATIENCE).await, read);
    assert_eq!(
        next_read(&mut laptop_events, Duration::from_millis(300)).await,
        None,
        "a marker that did not move says nothing"
    );
    assert_eq!(read_state(&listed(&laptop, &room).await), (2, 0, 0));
}

#[tokio::test]
async fn a_direct_partner_gets_a_read_receipt() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let direct = alice.open_direct_room("bob").await;
    let (mut alices, _) = alice.chat_stream().await;
    let sent = alice.send(&direct, "seen?").await;

    mark_read(&bob, &direct, sent.seq).await.unwrap();

    assert_eq!(
        next_read(&mut alices, PATIENCE).await,
        Some((direct.id.clone(), "bob".to_owned(), sent.seq))
    );
    // The room list says it too (once written: at most a second), so that
    // "seen" survives a reload; a group room has no partner.
    let mut shown = 0;
    for _ in 0..30 {
        shown = listed(&alice, &direct).await.peer_last_read_seq;
        if shown == sent.seq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, sent.seq);
    assert_eq!(
        listed(&bob, &direct).await.peer_last_read_seq,
        0,
        "alice read nothing"
    );
    let group = alice.create_room("group").await;
    assert_eq!(listed(&alice, &group).await.peer_last_read_seq, 0);
}

#[tokio::test]
async fn receipts_go_to_rooms_of_at_most_a_hundred_members() {
    let app = spawn_app().await;
    let (alice, bob, hundred) = app.alice_and_bob_in_a_room().await;
    silent_members(&app, &hundred, 98, "quiet").await;
    let crowd = alice.create_room("crowd").await;
    bob.join(&crowd).await;
    silent_members(&app, &crowd, 99, "crowd").await;
    alice.send(&crowd, "to the crowd").await;
    alice.send(&hundred, "to the hundred").await;
    let (mut bobs, _) = bob.subscribe().await;
    let (mut alices, _) = alice.subscribe().await;

    mark_read(&alice, &crowd, 1).await.unwrap();
    mark_read(&alice, &hundred, 1).await.unwrap();

    assert_eq!(
        next_read(&mut bobs, PATIENCE).await,
        Some((hundred.id.clone(), "alice".to_owned(), 1)),
        "a receipt from the room of 100, none from the room of 101"
    );
    assert_eq!(
        next_read(&mut alices, PATIENCE).await,
        Some((crowd.id.clone(), "alice".to_owned(), 1)),
        "the reader's own streams hear of every room"
    );
}

#[tokio::test]
async fn a_burst_of_marks_brings_the_others_few_receipts_the_last_the_latest() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    for i in 0..20 {
        alice.send(&room, &format!("m{i}")).await;
    }
    let (mut alices, _) = alice.subscribe().await;
    let bobs_phone = app.login("bob").await;
    let (mut phone, _) = bobs_phone.subscribe().await;

    let started = Instant::now();
    // Seq 1 is bob's join, where his marker starts: the messages are 2 to 21.
    for seq in 2..=21 {
        mark_read(&bob, &room, seq).await.unwrap();
    }
    let burst = started.elapsed();

    let mut receipts = Vec::new();
    while let Some((_, _, seq)) = next_read(&mut alices, Duration::from_secs(2)).await {
        receipts.push(seq);
        if seq == 21 {
            break;
        }
    }
    let mut own = Vec::new();
    while own.len() < 20 {
        let (_, _, seq) = next_read(&mut phone, PATIENCE).await.expect("own read");
        own.push(seq);
    }
    assert_eq!(receipts.last(), Some(&21), "the latest wins: {receipts:?}");
    let seconds = usize::try_from(burst.as_secs()).unwrap();
    assert!(
        receipts.len() <= 2 + seconds,
        "at most one receipt a second: {receipts:?} in {burst:?}"
    );
    assert_eq!(own, (2..=21).collect::<Vec<_>>(), "every own read");
}

#[tokio::test]
async fn markers_still_waiting_at_shutdown_are_written() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    alice.send(&room, "one").await;
    alice.send(&room, "two").await;

    // At once: well within the second a marker may wait. (Seq 1 is bob's
    // join; the messages are 2 and 3.)
    mark_read(&bob, &room, 3).await.unwrap();
    let app = app.restart().await;

    let bob = app.login("bob").await;
    assert_eq!(read_state(&listed(&bob, &room).await), (3, 0, 0));
}

/// A small deterministic generator: the same random test every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

#[tokio::test]
async fn list_rooms_counts_agree_with_a_recount() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let carol = app.user("carol").await;
    carol.join(&room).await;
    let users = [&alice, &bob, &carol];
    let mut dice = Dice(0x5eed_1234_abcd_0042);
    let mut sent: Vec<pb::Message> = Vec::new();
    for round in 0..120 {
        let who = users[dice.roll(3) as usize];
        match dice.roll(10) {
            0 | 1 if !sent.is_empty() => {
                let mine: Vec<&pb::Message> = sent
                    .iter()
                    .filter(|m| m.sender.as_ref().unwrap().id == who.user.id)
                    .collect();
                if let Some(message) = mine.get(dice.roll(10) as usize) {
                    delete(who, message).await;
                }
            }
            2 => {
                let last = listed(who, &room).await.last_seq;
                mark_read(who, &room, dice.roll(last + 1)).await.unwrap();
            }
            _ => sent.push(who.send(&room, &format!("round {round}")).await),
        }
    }

    let history = alice.history(&room, 0, 200).await.messages;
    assert!(history.len() < 200, "one page holds it all");
    for user in users {
        let shown = listed(user, &room).await;
        let unread = history
            .iter()
            .filter(|m| m.seq > shown.last_read_seq && !m.deleted)
            .filter(|m| m.sender.as_ref().unwrap().id != user.user.id)
            .count();
        let newest = history.iter().rev().find(|m| !m.deleted);
        assert_eq!(
            (shown.unread_count as usize, shown.mention_count),
            (unread, 0),
            "{}",
            user.user.username
        );
        assert_eq!(
            shown.last_message.map(|m| m.id),
            newest.map(|m| m.id.clone())
        );
    }
}

#[tokio::test]
async fn unread_counts_stop_at_9999() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let total: u64 = 10_010;
    // Sent on a ChatStream, whose acknowledgements are read as they come
    // (the stream's queue would not hold them all): quick, since the
    // writer stores what waits in one transaction.
    let (sends, outgoing) = tokio::sync::mpsc::channel(64);
    let mut events = alice
        .chat
        .clone()
        .chat_stream(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .expect("a stream")
        .into_inner();
    let room_id = room.id.clone();
    let sender = tokio::spawn(async move {
        for i in 0..total {
            let send = pb::SendMessageRequest {
                room_id: room_id.clone(),
                text: ".".into(),
                client_msg_id: format!("k{i}"),
                ..Default::default()
            };
            let event = pb::ClientEvent {
                event: Some(pb::client_event::Event::Send(send)),
            };
            if sends.send(event).await.is_err() {
                break;
            }
        }
        sends
    });
    let mut acknowledged = 0;
    while acknowledged < total {
        let event = tokio::time::timeout(PATIENCE, events.message())
            .await
            .expect("an event in time")
            .expect("the stream is fine")
            .expect("the stream is open");
        match event.event {
            Some(Event::Sent(_)) => acknowledged += 1,
            Some(Event::Error(error)) => panic!("a send failed: {error:?}"),
            _ => {}
        }
    }
    drop(sender.await.unwrap());

    // Bob's marker starts at his join (seq 1); the messages follow.
    assert_eq!(read_state(&listed(&bob, &room).await), (1, 9999, 0));
    mark_read(&bob, &room, 21).await.unwrap();
    assert_eq!(read_state(&listed(&bob, &room).await), (21, 9990, 0));
}

/// Waits for the lead's mentions (message_mentions filled as messages are
/// stored, edited and deleted) and threads; passes once they are merged.
#[tokio::test]
async fn mentions_and_thread_replies_count_as_unread() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let root = alice.send(&room, "hello @bob").await;
    let second = alice.send(&room, "@BOB, and @nobody").await;
    alice.send(&room, "no one named").await;
    alice
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "in the thread, @bob".into(),
            thread_root_id: root.id.clone(),
            ..Default::default()
        })
        .await
        .expect("a thread reply");
    bob.send(&room, "@bob talking to myself").await;

    let shown = listed(&bob, &room).await;
    // Bob's marker starts at his join, seq 1.
    assert_eq!(read_state(&shown), (1, 4, 3));
    assert_eq!(
        shown.last_message.map(|m| m.text),
        Some("@bob talking to myself".to_owned()),
        "a thread reply is no room's last message"
    );

    delete(&alice, &second).await;
    assert_eq!(read_state(&listed(&bob, &room).await), (1, 3, 2));
    mark_read(&bob, &room, root.seq).await.unwrap();
    assert_eq!(read_state(&listed(&bob, &room).await).2, 1);
}

//! Delivery guarantees: resume without gaps or duplicates, idempotent
//! sends, and slow consumers that lose nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use chat_client::pb::{self, server_event};
use chat_client::{BearerToken, Cursors, ResumingSubscription};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::helpers::{spawn_app, spawn_app_with, TestUser};

fn cursor(room: &pb::Room, after_seq: u64) -> Vec<pb::RoomCursor> {
    vec![pb::RoomCursor {
        room_id: room.id.clone(),
        after_seq,
    }]
}

/// Opens Subscribe with cursors and skips its `ready`.
async fn subscribe_from(
    user: &TestUser,
    cursors: Vec<pb::RoomCursor>,
) -> tonic::Streaming<pb::ServerEvent> {
    let mut events = user
        .chat
        .clone()
        .subscribe(pb::SubscribeRequest { cursors })
        .await
        .expect("subscribe")
        .into_inner();
    let first = events.message().await.unwrap().unwrap().event.unwrap();
    assert!(matches!(first, server_event::Event::Ready(_)), "{first:?}");
    events
}

/// Reads message events until one with `last` seq; returns their seqs.
async fn seqs_until(events: &mut tonic::Streaming<pb::ServerEvent>, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.message())
            .await
            .expect("messages keep coming")
            .expect("stream open")
            .expect("stream open")
            .event
            .unwrap();
        if let server_event::Event::Message(message) = event {
            seqs.push(message.seq);
            if message.seq >= last {
                return seqs;
            }
        }
    }
}

#[tokio::test]
async fn a_dropped_stream_resumes_with_every_missed_message_once_in_order() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let mut first = subscribe_from(&bob, vec![]).await;
    for i in 1..=3 {
        alice.send(&room, &format!("m{i}")).await;
    }
    // Seq 1 is bob's join.
    assert_eq!(seqs_until(&mut first, 4).await, [2, 3, 4]);
    drop(first);

    for i in 4..=10 {
        alice.send(&room, &format!("m{i}")).await;
    }
    let mut resumed = subscribe_from(&bob, cursor(&room, 4)).await;
    let missed = seqs_until(&mut resumed, 11).await;
    alice.send(&room, "m11").await;
    let live = seqs_until(&mut resumed, 12).await;

    assert_eq!(missed, (5..=11).collect::<Vec<_>>());
    assert_eq!(live, [12]);
}

#[tokio::test]
async fn a_chat_stream_resumes_when_its_first_event_is_resume() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    for i in 1..=5 {
        alice.send(&room, &format!("m{i}")).await;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut cursors = Cursors::default();
    // Seq 1 is bob's join: m1 and m2 are 2 and 3.
    cursors.track(&room.id, 3);
    tx.send(cursors.resume_event()).await.unwrap();
    let mut events = bob
        .chat
        .clone()
        .chat_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let ready = events.message().await.unwrap().unwrap().event.unwrap();
    assert!(matches!(ready, server_event::Event::Ready(_)));
    assert_eq!(seqs_until(&mut events, 6).await, [4, 5, 6]);

    // A second resume is refused; the stream goes on.
    tx.send(cursors.resume_event()).await.unwrap();
    let error = events.message().await.unwrap().unwrap().event.unwrap();
    let server_event::Event::Error(error) = error else {
        panic!("expected an error, got {error:?}");
    };
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            Code::InvalidArgument as i32,
            "resume is only valid as the first event of a stream"
        )
    );
    alice.send(&room, "m6").await;
    assert_eq!(seqs_until(&mut events, 7).await, [7]);
}

#[tokio::test]
async fn resuming_while_a_sender_floods_leaves_no_gap_and_no_duplicate() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    const TOTAL: u64 = 2000;
    let flood = alice.flood(&room, 8, TOTAL / 8, 0);
    // Resume mid-flood, a little behind the newest message.
    let after = loop {
        let last_seq = bob_last_seq(&bob, &room).await;
        if last_seq >= 400 {
            break last_seq - 150;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut subscribe = subscribe_from(&bob, cursor(&room, after)).await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut cursors = Cursors::default();
    cursors.track(&room.id, after);
    tx.send(cursors.resume_event()).await.unwrap();
    let mut chat = bob
        .chat
        .clone()
        .chat_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let (from_subscribe, from_chat, ()) = tokio::join!(
        seqs_until(&mut subscribe, TOTAL),
        seqs_until(&mut chat, TOTAL),
        flood
    );

    let expected: Vec<u64> = (after + 1..=TOTAL).collect();
    assert_eq!(from_subscribe, expected);
    assert_eq!(from_chat, expected);
}

async fn bob_last_seq(bob: &TestUser, room: &pb::Room) -> u64 {
    bob.chat
        .clone()
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .rooms
        .into_iter()
        .find(|r| r.id == room.id)
        .unwrap()
        .last_seq
}

#[tokio::test]
async fn more_missed_messages_than_a_resume_sends_come_with_a_resync() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    alice.flood(&room, 4, 300, 0).await;

    let mut events = subscribe_from(&bob, cursor(&room, 50)).await;

    let first = events.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!(
        first,
        server_event::Event::Resync(server_event::Resync {
            room_id: room.id.clone(),
            from_seq: 202,
        })
    );
    // Seq 1 is bob's join: the 1200 messages are 2 to 1201.
    assert_eq!(
        seqs_until(&mut events, 1201).await,
        (202..=1201).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn resuming_a_room_one_is_not_in_is_refused() {
    let app = spawn_app().await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let eve = app.user("eve").await;
    let _ = alice;

    // The stream opens (a resume may name rooms one has since lost), and
    // says which cursor it refused and why.
    let mut events = subscribe_from(&eve, cursor(&room, 0)).await;

    let refused = events.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!(
        refused,
        server_event::Event::Error(server_event::Error {
            client_msg_id: String::new(),
            code: Code::PermissionDenied as i32,
            message: format!("you are not a member of room {}", room.id),
            room_id: room.id.clone(),
        })
    );
}

#[tokio::test]
async fn the_same_client_msg_id_three_times_is_stored_and_delivered_once() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let laptop = app.login("alice").await;
    let (mut bob_stream, _) = bob.subscribe().await;
    let (mut laptop_watch, _) = laptop.subscribe().await;
    let (mut phone, _) = alice.chat_stream().await;
    let (mut tablet, _) = laptop.chat_stream().await;

    phone.send_text(&room, "only once", "k-1").await;
    let server_event::Event::Sent(first) = next_non_presence(&mut phone).await else {
        panic!("expected sent");
    };
    // The phone's message reached the tablet (another stream of alice's).
    let server_event::Event::Message(on_tablet) = next_non_presence(&mut tablet).await else {
        panic!("expected the phone's message on the tablet");
    };
    tablet.send_text(&room, "only once", "k-1").await;
    let server_event::Event::Sent(second) = next_non_presence(&mut tablet).await else {
        panic!("expected sent");
    };
    let third = alice
        .chat
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: "only once".into(),
            client_msg_id: "k-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap();

    assert_eq!(first.message.as_ref(), Some(&third));
    assert_eq!(second.message.as_ref(), Some(&third));
    let history = bob.history(&room, 0, 0).await.messages;
    assert_eq!(history, std::slice::from_ref(&third));
    for stream in [&mut bob_stream, &mut laptop_watch] {
        let server_event::Event::Message(message) = next_non_presence(stream).await else {
            panic!("expected the message");
        };
        assert_eq!(message, third);
        stream.expect_silence(Duration::from_millis(300)).await;
    }
    assert_eq!(on_tablet, third);
    for stream in [&mut phone, &mut tablet] {
        stream.expect_silence(Duration::from_millis(300)).await;
    }
}

async fn next_non_presence(stream: &mut crate::helpers::EventStream) -> server_event::Event {
    loop {
        match stream.next().await {
            server_event::Event::Presence(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_stream_that_never_reads_is_cut_while_fifty_others_get_everything() {
    const MESSAGES: u64 = 20_000;
    const READERS: usize = 49;
    // The readers' and the sleeper's joins take the room's first seqs.
    const JOINS: u64 = READERS as u64 + 1;
    let app = spawn_app().await;
    let sender = app.user("sender").await;
    let room = sender.create_room("busy").await;
    let mut readers = Vec::new();
    for i in 0..READERS {
        let reader = app.user(&format!("reader{i}")).await;
        reader.join(&room).await;
        readers.push(reader);
    }
    let sleeper = app.user("sleeper").await;
    sleeper.join(&room).await;
    // The sleeper's connection has a small HTTP/2 window, so the server's
    // queue for it fills fast.
    let small_window = Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut sleeping = chat_client::pb::chat_service_client::ChatServiceClient::with_interceptor(
        small_window,
        BearerToken::new(&sleeper.login.access_token).unwrap(),
    )
    .subscribe(pb::SubscribeRequest::default())
    .await
    .unwrap()
    .into_inner();
    let rss_before = resident_kib();

    let mut tasks = Vec::new();
    for reader in &readers {
        let mut subscription = ResumingSubscription::new(
            app.channel().await,
            BearerToken::new(&reader.login.access_token).unwrap(),
            tracked(&room, 0),
        );
        let mut chat = reader.chat.clone();
        let room_id = room.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut count = 0u64;
            let mut last = 0u64;
            while last < JOINS + MESSAGES {
                match subscription.next().await.unwrap() {
                    // The room's first events are its readers' joins.
                    server_event::Event::Member(m) => {
                        assert_eq!(m.seq, last + 1, "in order, no gap, no duplicate");
                        last = m.seq;
                    }
                    server_event::Event::Message(m) => {
                        assert_eq!(m.seq, last + 1, "in order, no gap, no duplicate");
                        last = m.seq;
                        count += 1;
                    }
                    // Cut off and resumed more than 1000 behind: what lies
                    // before the resync point comes from History.
                    server_event::Event::Resync(resync) => {
                        let missed =
                            history_between(&mut chat, &room_id, last, resync.from_seq).await;
                        count += missed.len() as u64;
                        assert_eq!(missed, (last + 1..resync.from_seq).collect::<Vec<_>>());
                        last = resync.from_seq - 1;
                    }
                    _ => {}
                }
            }
            count
        }));
    }
    sender.flood(&room, 16, MESSAGES / 16, 88).await;
    for task in tasks {
        assert_eq!(task.await.unwrap(), MESSAGES);
    }

    let status = loop {
        match sleeping.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the sleeping stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("reconnect and resume"),
        "{status:?}"
    );
    let grown_mib = resident_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 256, "the process grew by {grown_mib} MiB");

    // Resuming from nothing, it gets the newest 1000 and pages the rest.
    let mut resumed = ResumingSubscription::new(
        app.channel().await,
        BearerToken::new(&sleeper.login.access_token).unwrap(),
        tracked(&room, 0),
    );
    let mut seen = BTreeSet::new();
    let server_event::Event::Ready(_) = resumed.next().await.unwrap() else {
        panic!("expected ready");
    };
    let server_event::Event::Resync(resync) = resumed.next().await.unwrap() else {
        panic!("expected resync");
    };
    while seen.len() < 1000 {
        if let server_event::Event::Message(m) = resumed.next().await.unwrap() {
            assert!(seen.insert(m.seq));
        }
    }
    let older = history_between(&mut sleeper.chat.clone(), &room.id, 0, resync.from_seq).await;
    for seq in older {
        assert!(seen.insert(seq), "seq {seq} twice");
    }
    assert_eq!(seen, (JOINS + 1..=JOINS + MESSAGES).collect());
}

/// The seqs of a room's messages after `after` and before `before`, from
/// History, ascending.
async fn history_between(
    chat: &mut crate::helpers::Chat,
    room_id: &str,
    after: u64,
    before: u64,
) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut before_seq = before;
    while before_seq > after + 1 {
        let page = chat
            .history(pb::HistoryRequest {
                room_id: room_id.into(),
                before_seq,
                limit: 200,
            })
            .await
            .unwrap()
            .into_inner();
        let mut page: Vec<u64> = page
            .messages
            .iter()
            .map(|m| m.seq)
            .filter(|&s| s > after)
            .collect();
        let Some(&first) = page.first() else { break };
        page.extend(seqs);
        seqs = page;
        before_seq = first;
    }
    seqs
}

fn tracked(room: &pb::Room, after_seq: u64) -> Cursors {
    let mut cursors = Cursors::default();
    cursors.track(&room.id, after_seq);
    cursors
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_chat_stream_that_sends_nothing_still_gets_messages() {
    let app = spawn_app_with(|_| {}).await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut bob_stream, _) = bob.chat_stream().await;

    alice.send(&room, "are you there?").await;

    assert_eq!(bob_stream.next_message().await.text, "are you there?");
}

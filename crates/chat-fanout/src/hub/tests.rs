//! The hub's unit tests, and the helpers the tests of its parts share.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

use chat_domain::{Message, RoomEvent, RoomId, SessionId, Timestamp, User, UserId};
use chat_proto::server_event::{self, Event};

use super::resume::CATCH_UPS_PER_USER;
use super::*;

pub(super) fn user(name: &str) -> User {
    User {
        id: UserId::new(),
        username: name.into(),
        display_name: String::new(),
    }
}

pub(super) fn hub(presence: Option<mpsc::Sender<LocalPresence>>) -> Arc<Hub> {
    hub_beating_every(Duration::from_secs(30), presence)
}

/// A hub whose streams are told this heartbeat interval.
pub(super) fn hub_beating_every(
    heartbeat_interval: Duration,
    presence: Option<mpsc::Sender<LocalPresence>>,
) -> Arc<Hub> {
    let limits = StreamLimits {
        per_session: 10,
        per_user: 10,
    };
    Hub::new(
        16,
        limits,
        FanoutMetrics::default(),
        presence,
        crate::live::TTL,
        heartbeat_interval,
    )
}

/// Opens a live stream for `user` in `rooms` and takes its `ready`.
pub(super) fn open(
    hub: &Arc<Hub>,
    user: &User,
    rooms: &[(RoomId, u64)],
) -> (StreamId, OutboundStream, server_event::Ready) {
    let far = Timestamp::now().plus(Duration::from_secs(3600));
    let (id, mut stream, _) = hub.register(user, SessionId::new(), far, false).unwrap();
    hub.activate(id, rooms);
    let Some(Event::Ready(ready)) = next(&mut stream) else {
        panic!("ready comes first");
    };
    (id, stream, ready)
}

/// The next queued event, if any, without waiting.
pub(super) fn next(stream: &mut OutboundStream) -> Option<Event> {
    let frame = stream.next().now_or_never()??.ok()?;
    Some(frame.event())
}

pub(super) trait NowOrNever: std::future::Future + Sized {
    fn now_or_never(self) -> Option<Self::Output> {
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        match std::pin::pin!(self).poll(&mut context) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }
}

impl<F: std::future::Future> NowOrNever for F {}

/// The event of a stored message.
pub(super) fn message(room_id: RoomId, seq: u64, sender: &User) -> RoomEvent {
    RoomEvent::message(Message {
        id: chat_domain::MessageId::new(),
        room_id,
        seq,
        sender: sender.clone(),
        text: format!("#{seq}"),
        sent_at: Timestamp::now(),
        client_msg_id: Some(format!("k{seq}")),
        edited_at: None,
        deleted: false,
        reply_to: None,
        thread_root_id: None,
        thread: Default::default(),
        reactions: Vec::new(),
        mentions: Vec::new(),
    })
}

pub(super) fn presence_event(event: Option<Event>) -> (String, bool) {
    match event {
        Some(Event::Presence(p)) => (p.user.unwrap().username, p.online),
        other => panic!("expected presence, got {other:?}"),
    }
}

#[test]
fn ready_tells_each_stream_the_heartbeat_interval_the_hub_was_given() {
    let hub = hub_beating_every(Duration::from_millis(2_500), None);
    let (alice, bob) = (user("alice"), user("bob"));

    let (_, _, alices) = open(&hub, &alice, &[]);
    let (_, _, bobs) = open(&hub, &bob, &[(RoomId::new(), 0)]);

    for ready in [alices, bobs] {
        let interval = ready
            .heartbeat_interval
            .expect("ready carries the interval");
        assert_eq!((interval.seconds, interval.nanos), (2, 500_000_000));
    }
}

#[test]
fn messages_go_out_in_order_and_a_gap_is_reported_not_skipped() {
    let hub = hub(None);
    let (alice, room) = (user("alice"), RoomId::new());
    let (_, mut stream, _) = open(&hub, &alice, &[(room, 4)]);

    assert_eq!(
        hub.deliver(&message(room, 4, &alice), None),
        Delivery::Skipped
    );
    assert_eq!(
        hub.deliver(&message(room, 5, &alice), None),
        Delivery::Delivered
    );
    assert_eq!(
        hub.deliver(&message(room, 7, &alice), None),
        Delivery::Gap { after: 5 }
    );
    assert_eq!(
        hub.deliver(&message(room, 6, &alice), None),
        Delivery::Delivered
    );
    assert_eq!(
        hub.deliver(&message(room, 7, &alice), None),
        Delivery::Delivered
    );
    assert_eq!(
        hub.deliver(&message(RoomId::new(), 1, &alice), None),
        Delivery::Skipped
    );

    let seqs: Vec<u64> = std::iter::from_fn(|| match next(&mut stream)? {
        Event::Message(m) => Some(m.seq),
        other => panic!("{other:?}"),
    })
    .collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert_eq!(hub.room_positions(), [(room, 7)]);
}

#[test]
fn the_sender_is_acknowledged_even_when_its_stream_had_the_message() {
    let hub = hub(None);
    let (alice, room) = (user("alice"), RoomId::new());
    let (id, mut stream, _) = open(&hub, &alice, &[(room, 0)]);

    // A read of the store delivered it first, then the writer reports it.
    hub.deliver(&message(room, 1, &alice), None);
    assert_eq!(
        hub.deliver(&message(room, 1, &alice), Some(id)),
        Delivery::Skipped
    );

    assert!(matches!(next(&mut stream), Some(Event::Message(m)) if m.seq == 1));
    assert!(matches!(next(&mut stream), Some(Event::Sent(s)) if s.client_msg_id == "k1"));
    assert!(next(&mut stream).is_none());
}

#[test]
fn resync_moves_a_room_on_and_tells_its_streams() {
    let hub = hub(None);
    let (alice, room) = (user("alice"), RoomId::new());
    let (_, mut stream, _) = open(&hub, &alice, &[(room, 2)]);

    hub.resync(room, 10);

    assert!(matches!(next(&mut stream), Some(Event::Resync(r)) if r.from_seq == 10));
    assert_eq!(
        hub.deliver(&message(room, 10, &alice), None),
        Delivery::Delivered
    );
}

#[test]
fn users_online_on_other_nodes_count_until_every_node_lets_go() {
    let hub = hub(None);
    let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
    let (node_a, node_b) = (NodeId::new_v4(), NodeId::new_v4());
    let (_, mut stream, _) = open(&hub, &alice, &[(room, 0)]);

    hub.remote_online(node_a, bob.clone(), vec![room]);
    hub.remote_online(node_b, bob.clone(), vec![room]);
    assert_eq!(presence_event(next(&mut stream)), ("bob".into(), true));
    assert!(next(&mut stream).is_none(), "announced once");
    let online: Vec<String> = hub
        .online_users(alice.id, &[room])
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(online, ["alice", "bob"]);
    let (_, _, ready) = open(&hub, &alice, &[(room, 0)]);
    assert_eq!(ready.online_users.len(), 1, "ready lists bob");

    hub.remote_offline(node_a, bob.id);
    assert!(next(&mut stream).is_none(), "still online on node b");
    hub.remote_node_gone(node_b);
    assert_eq!(presence_event(next(&mut stream)), ("bob".into(), false));
}

#[test]
fn a_snapshot_replaces_what_a_node_said_before() {
    let hub = hub(None);
    let (alice, bob, carol, room) = (user("alice"), user("bob"), user("carol"), RoomId::new());
    let node = NodeId::new_v4();
    let (_, mut stream, _) = open(&hub, &alice, &[(room, 0)]);
    hub.remote_online(node, bob.clone(), vec![room]);
    assert_eq!(presence_event(next(&mut stream)), ("bob".into(), true));

    hub.remote_snapshot(node, vec![(carol.clone(), vec![room])]);

    let mut changes = vec![
        presence_event(next(&mut stream)),
        presence_event(next(&mut stream)),
    ];
    changes.sort();
    assert_eq!(changes, [("bob".into(), false), ("carol".into(), true)]);
}

#[test]
fn this_nodes_presence_changes_are_published() {
    let (tx, mut rx) = mpsc::channel(8);
    let hub = hub(Some(tx));
    let (alice, room) = (user("alice"), RoomId::new());

    let (_, stream, _) = open(&hub, &alice, &[(room, 0)]);
    drop(stream);

    assert!(matches!(
        rx.try_recv(),
        Ok(LocalPresence::Online { user, rooms }) if user.id == alice.id && rooms == [room]
    ));
    assert!(matches!(
        rx.try_recv(),
        Ok(LocalPresence::Offline { user_id }) if user_id == alice.id
    ));
}

#[test]
fn typing_is_relayed_once_per_user_and_room_in_each_interval() {
    let hub = hub(None);
    let (alice, bob, room, other) = (user("alice"), user("bob"), RoomId::new(), RoomId::new());
    let (_, mut stream, _) = open(&hub, &bob, &[(room, 0)]);
    let start = Instant::now();
    let second = Duration::from_secs(1);

    assert!(hub.typing_is_due(alice.id, room));
    assert!(hub.typing_at(room, &alice, start));
    assert!(!hub.typing_is_due(alice.id, room));
    assert!(!hub.typing_at(room, &alice, start + second));
    assert!(
        hub.typing_at(other, &alice, start + second),
        "a room of its own"
    );
    assert!(
        hub.typing_at(room, &bob, start + second),
        "a user of its own"
    );
    assert!(hub.typing_at(room, &alice, start + TYPING_INTERVAL));

    let typing = std::iter::from_fn(|| next(&mut stream))
        .filter(|event| matches!(event, Event::Typing(t) if t.user.as_ref().unwrap().username == "alice"))
        .count();
    assert_eq!(typing, 2);
    hub.lock().typing.sweep(start + 3 * TYPING_INTERVAL);
    assert!(hub.lock().typing.last.is_empty());
}

#[test]
fn a_message_makes_its_senders_next_typing_news_again() {
    let hub = hub(None);
    let (alice, bob, room) = (user("alice"), user("bob"), RoomId::new());
    let (_, _stream, _) = open(&hub, &bob, &[(room, 0)]);
    let now = Instant::now();

    assert!(hub.typing_at(room, &alice, now));
    hub.deliver(&message(room, 1, &alice), None);

    assert!(
        hub.typing_at(room, &alice, now),
        "typing right after a message is relayed"
    );
    hub.deliver(&message(room, 2, &bob), None);
    assert!(
        !hub.typing_at(room, &alice, now),
        "another's message changes nothing"
    );
}

#[test]
fn a_stream_under_pressure_drops_ephemeral_events_and_keeps_its_messages() {
    let hub = hub(None);
    let (alice, bob) = (user("alice"), user("bob"));
    let rooms: Vec<(RoomId, u64)> = (0..40).map(|_| (RoomId::new(), 0)).collect();
    let (_, mut stream, _) = open(&hub, &bob, &rooms);

    for &(room, _) in &rooms {
        hub.typing(room, &alice);
    }
    hub.heartbeat();
    for seq in 1..=8 {
        assert_eq!(
            hub.deliver(&message(rooms[0].0, seq, &alice), None),
            Delivery::Delivered
        );
    }

    let events: Vec<Event> = std::iter::from_fn(|| next(&mut stream)).collect();
    let typing = events
        .iter()
        .filter(|e| matches!(e, Event::Typing(_)))
        .count();
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.seq),
            _ => None,
        })
        .collect();
    // Half the queue of 16 takes ephemeral events; the rest waits for
    // messages.
    assert_eq!(typing, 8);
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    assert_eq!(hub.metrics.ephemeral_dropped.get(), 33);
    assert_eq!(hub.open_streams(), 1);
}

#[test]
fn a_users_streams_share_its_few_turns_to_catch_up() {
    let hub = hub(None);
    let (alice, bob) = (user("alice"), user("bob"));
    let (first, _s1, _) = open(&hub, &alice, &[]);
    let (second, _s2, _) = open(&hub, &alice, &[]);
    let (other, _s3, _) = open(&hub, &bob, &[]);

    let turns = hub.catch_up_turns(first).unwrap();
    assert!(Arc::ptr_eq(&turns, &hub.catch_up_turns(second).unwrap()));
    assert!(!Arc::ptr_eq(&turns, &hub.catch_up_turns(other).unwrap()));
    assert_eq!(turns.available_permits(), CATCH_UPS_PER_USER);
    assert!(hub.catch_up_turns(StreamId::MAX).is_none());
}

/// Takes every event queued for a stream now.
fn drain(stream: &mut OutboundStream) {
    while next(stream).is_some() {}
}

/// The status a stream ended with, if it has ended.
fn ending(stream: &mut OutboundStream) -> Option<tonic::Status> {
    match stream.next().now_or_never()? {
        Some(Err(status)) => Some(status),
        _ => None,
    }
}

#[test]
fn a_deleted_room_ends_for_its_members_here_and_nothing_more_comes_from_it() {
    let hub = hub(None);
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let (doomed, kept) = (RoomId::new(), RoomId::new());
    let (_, mut alices, _) = open(&hub, &alice, &[(doomed, 0), (kept, 0)]);
    let (_, mut bobs, _) = open(&hub, &bob, &[(doomed, 0)]);
    let (_, mut carols, _) = open(&hub, &carol, &[(kept, 0)]);
    for stream in [&mut alices, &mut bobs, &mut carols] {
        drain(stream);
    }

    assert_eq!(
        hub.end_room(doomed, &crate::events::room_deleted(doomed)),
        2
    );

    for stream in [&mut alices, &mut bobs] {
        match next(stream) {
            Some(Event::Error(error)) => assert_eq!(
                (error.code, error.room_id),
                (tonic::Code::NotFound as i32, doomed.to_string())
            ),
            other => panic!("expected the room's end, got {other:?}"),
        }
    }
    assert!(next(&mut carols).is_none());
    assert_ne!(hub.is_member(alice.id, doomed), Some(true));
    assert_eq!(
        hub.deliver(&message(doomed, 1, &alice), None),
        Delivery::Skipped
    );
    assert!(next(&mut alices).is_none());
    assert!(next(&mut bobs).is_none());
    // The other rooms go on.
    assert_eq!(
        hub.deliver(&message(kept, 1, &carol), None),
        Delivery::Delivered
    );
    assert!(matches!(next(&mut alices), Some(Event::Message(_))));
}

#[test]
fn revoking_a_user_ends_every_stream_of_every_session_of_it() {
    let hub = hub(None);
    let (alice, bob) = (user("alice"), user("bob"));
    // `open` gives each stream a session of its own.
    let (_, mut phone, _) = open(&hub, &alice, &[]);
    let (_, mut laptop, _) = open(&hub, &alice, &[]);
    let (_, mut bobs, _) = open(&hub, &bob, &[]);
    let before = hub.live_sessions().begin();

    hub.revoke_user(alice.id);

    for stream in [&mut phone, &mut laptop] {
        let status = ending(stream).expect("the stream ended");
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::Unauthenticated, "session revoked")
        );
    }
    assert!(ending(&mut bobs).is_none());
    assert!(hub.live_sessions().revoked_since(before));
}

//! Convergence (issue 21): random runs of sends, thread replies, quoted
//! replies, edits, deletions and reactions from three users. One client
//! applies the live stream; another drops its stream at random points and
//! resumes from its cursor. At the end both hold exactly what History and
//! ListThread say (text, edited, deleted, reactions in order with their
//! counts, thread reply counts), and each saw every seq of the room's log
//! once.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use tonic::Streaming;

use chat_client::pb::{self, server_event::Event};

use crate::helpers::{spawn_app, TestUser, PATIENCE};

const USERS: usize = 3;
const EMOJI: [&str; 4] = ["👍", "❤️", "🎉", "😂"];

#[derive(Clone, Debug)]
enum Op {
    /// A message by user `by`; in the thread of message `thread` (an index
    /// into the messages sent so far), quoting message `reply`.
    Send {
        by: usize,
        thread: Option<usize>,
        reply: Option<usize>,
    },
    /// The sender edits message `at`.
    Edit { at: usize },
    /// The sender deletes message `at`.
    Delete { at: usize },
    React {
        by: usize,
        at: usize,
        emoji: usize,
        added: bool,
    },
    /// The resuming client reads on to somewhere between its cursor and
    /// the room's end, and drops its stream.
    Drop { read: u8 },
    /// It resumes from its cursor.
    Resume,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..USERS, proptest::option::weighted(0.3, 0..64usize), proptest::option::weighted(0.2, 0..64usize))
            .prop_map(|(by, thread, reply)| Op::Send { by, thread, reply }),
        2 => (0..64usize).prop_map(|at| Op::Edit { at }),
        1 => (0..64usize).prop_map(|at| Op::Delete { at }),
        4 => (0..USERS, 0..64usize, 0..EMOJI.len(), proptest::bool::weighted(0.7))
            .prop_map(|(by, at, emoji, added)| Op::React { by, at, emoji, added }),
        1 => any::<u8>().prop_map(|read| Op::Drop { read }),
        1 => Just(Op::Resume),
    ]
}

/// A message as a client holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    seq: u64,
    text: String,
    edited: bool,
    deleted: bool,
    thread_root: String,
    /// Emoji in order of first use, each with who reacted.
    reactions: Vec<(String, Vec<String>)>,
    replies: u32,
}

/// A client's copy of the room, built from stream events alone.
#[derive(Debug, Default)]
struct Copy {
    messages: HashMap<String, Held>,
    /// Every event seq applied, with how often.
    seen: BTreeMap<u64, u32>,
    cursor: u64,
}

impl Copy {
    fn apply(&mut self, event: Event) {
        let seq = match event {
            Event::Message(m) => {
                if !m.thread_root_id.is_empty() {
                    if let Some(root) = self.messages.get_mut(&m.thread_root_id) {
                        root.replies += 1;
                    }
                }
                assert!(m.reactions.is_empty() && m.thread_reply_count == 0);
                self.messages.insert(
                    m.id.clone(),
                    Held {
                        seq: m.seq,
                        text: m.text.clone(),
                        edited: m.edited_at.is_some(),
                        deleted: m.deleted,
                        thread_root: m.thread_root_id.clone(),
                        ..Held::default()
                    },
                );
                m.seq
            }
            Event::Edited(e) => {
                let m = e.message.expect("the message");
                let held = self.messages.get_mut(&m.id).expect("edited after sent");
                held.text = m.text;
                held.edited = m.edited_at.is_some();
                // Replayed, an edit carries the message as it is now, a
                // tombstone if deleted since: the reactions stay until the
                // deletion's own event, which comes later.
                held.deleted = m.deleted;
                e.seq
            }
            Event::Deleted(d) => {
                let held = self
                    .messages
                    .get_mut(&d.message_id)
                    .expect("deleted after sent");
                held.text.clear();
                held.edited = false;
                held.deleted = true;
                held.reactions.clear();
                d.seq
            }
            Event::Reaction(r) => {
                let held = self
                    .messages
                    .get_mut(&r.message_id)
                    .expect("reacted after sent");
                let user = r.user.expect("who").username;
                match held.reactions.iter().position(|(e, _)| *e == r.emoji) {
                    Some(i) if r.added => held.reactions[i].1.push(user),
                    None if r.added => held.reactions.push((r.emoji, vec![user])),
                    Some(i) => {
                        held.reactions[i].1.retain(|u| *u != user);
                        if held.reactions[i].1.is_empty() {
                            held.reactions.remove(i);
                        }
                    }
                    None => panic!("a removal of an absent reaction made an event"),
                }
                r.seq
            }
            // The room's members joining.
            Event::Member(m) => m.seq,
            Event::Resync(r) => panic!("no run here misses 1000 events: {r:?}"),
            _ => return,
        };
        *self.seen.entry(seq).or_default() += 1;
        self.cursor = self.cursor.max(seq);
    }

    /// Reads `stream` until the cursor reaches `seq`.
    async fn read_to(&mut self, stream: &mut Streaming<pb::ServerEvent>, seq: u64) {
        while self.cursor < seq {
            let event = tokio::time::timeout(PATIENCE, stream.message())
                .await
                .expect("an event in time")
                .expect("the stream is fine")
                .expect("the stream is open")
                .event
                .expect("an event");
            self.apply(event);
        }
    }
}

async fn subscribe(user: &TestUser, room: &pb::Room, after_seq: u64) -> Streaming<pb::ServerEvent> {
    user.chat
        .clone()
        .subscribe(pb::SubscribeRequest {
            cursors: vec![pb::RoomCursor {
                room_id: room.id.clone(),
                after_seq,
            }],
        })
        .await
        .expect("subscribe")
        .into_inner()
}

async fn last_seq(user: &TestUser, room: &pb::Room) -> u64 {
    user.chat
        .clone()
        .list_rooms(pb::ListRoomsRequest {
            joined_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rooms
        .into_iter()
        .find(|r| r.id == room.id)
        .unwrap()
        .last_seq
}

/// What the server says now, as `Held`s by id.
async fn truth(user: &TestUser, room: &pb::Room) -> HashMap<String, Held> {
    let mut all = HashMap::new();
    let held = |m: &pb::Message| Held {
        seq: m.seq,
        text: m.text.clone(),
        edited: m.edited_at.is_some(),
        deleted: m.deleted,
        thread_root: m.thread_root_id.clone(),
        // Counts only: the stream says who, History how many.
        reactions: m
            .reactions
            .iter()
            .map(|r| (r.emoji.clone(), vec![String::new(); r.count as usize]))
            .collect(),
        replies: m.thread_reply_count,
    };
    for root in user.history(room, 0, 200).await.messages {
        let thread = user
            .chat
            .clone()
            .list_thread(pb::ListThreadRequest {
                room_id: room.id.clone(),
                thread_root_id: root.id.clone(),
                before_seq: 0,
                limit: 200,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!thread.has_more);
        for reply in &thread.messages {
            all.insert(reply.id.clone(), held(reply));
        }
        all.insert(root.id.clone(), held(&root));
    }
    all
}

/// A copy with reactors blanked out, to compare with `truth`.
fn counted(copy: &Copy) -> HashMap<String, Held> {
    copy.messages
        .iter()
        .map(|(id, m)| {
            let mut m = m.clone();
            for (_, users) in &mut m.reactions {
                *users = vec![String::new(); users.len()];
            }
            (id.clone(), m)
        })
        .collect()
}

async fn run(ops: Vec<Op>) {
    let app = spawn_app().await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(app.user(name).await);
    }
    let room = users[0].create_room("converge").await;
    for user in &users[1..] {
        user.join(&room).await;
    }
    let mut live = subscribe(&users[0], &room, 0).await;
    let mut resumer: Option<Streaming<pb::ServerEvent>> =
        Some(subscribe(&users[1], &room, 0).await);
    let (mut a, mut b) = (Copy::default(), Copy::default());
    // Each sent message: its id and sender.
    let mut sent: Vec<(String, usize)> = Vec::new();

    for (n, op) in ops.into_iter().enumerate() {
        let pick = |i: usize| sent.get(i % sent.len().max(1)).cloned();
        match op {
            Op::Send { by, thread, reply } => {
                let thread = thread.and_then(pick).map(|(id, _)| id).unwrap_or_default();
                let reply = reply.and_then(pick).map(|(id, _)| id).unwrap_or_default();
                let answer = users[by]
                    .chat
                    .clone()
                    .send_message(pb::SendMessageRequest {
                        room_id: room.id.clone(),
                        text: format!("m{n} @{}", ["ann", "ben", "cat"][n % USERS]),
                        client_msg_id: format!("k{n}"),
                        reply_to_id: reply,
                        thread_root_id: thread,
                    })
                    .await;
                // A thread reply as a root is refused; anything else goes.
                if let Ok(answer) = answer {
                    sent.push((answer.into_inner().message.unwrap().id, by));
                }
            }
            Op::Edit { at } => {
                if let Some((id, by)) = pick(at) {
                    let _ = users[by]
                        .chat
                        .clone()
                        .edit_message(pb::EditMessageRequest {
                            room_id: room.id.clone(),
                            message_id: id,
                            text: format!("edit {n}"),
                        })
                        .await;
                }
            }
            Op::Delete { at } => {
                if let Some((id, by)) = pick(at) {
                    users[by]
                        .chat
                        .clone()
                        .delete_message(pb::DeleteMessageRequest {
                            room_id: room.id.clone(),
                            message_id: id,
                        })
                        .await
                        .expect("deleting is idempotent");
                }
            }
            Op::React {
                by,
                at,
                emoji,
                added,
            } => {
                if let Some((id, _)) = pick(at) {
                    let mut chat = users[by].chat.clone();
                    let (room_id, message_id, emoji) =
                        (room.id.clone(), id, EMOJI[emoji].to_owned());
                    // On a tombstone an addition is refused.
                    let _ = if added {
                        chat.add_reaction(pb::AddReactionRequest {
                            room_id,
                            message_id,
                            emoji,
                        })
                        .await
                        .map(drop)
                    } else {
                        chat.remove_reaction(pb::RemoveReactionRequest {
                            room_id,
                            message_id,
                            emoji,
                        })
                        .await
                        .map(drop)
                    };
                }
            }
            Op::Drop { read } => {
                if let Some(mut stream) = resumer.take() {
                    let end = last_seq(&users[1], &room).await;
                    let to = b.cursor + (end - b.cursor) * u64::from(read) / 255;
                    b.read_to(&mut stream, to).await;
                }
            }
            Op::Resume => {
                if resumer.is_none() {
                    resumer = Some(subscribe(&users[1], &room, b.cursor).await);
                }
            }
        }
    }
    let end = last_seq(&users[0], &room).await;
    a.read_to(&mut live, end).await;
    let mut stream = match resumer {
        Some(stream) => stream,
        None => subscribe(&users[1], &room, b.cursor).await,
    };
    b.read_to(&mut stream, end).await;

    let every: BTreeMap<u64, u32> = (1..=end).map(|seq| (seq, 1)).collect();
    assert_eq!(a.seen, every, "the live client saw each seq once");
    assert_eq!(b.seen, every, "the resuming client saw each seq once");
    let truth = truth(&users[2], &room).await;
    assert_eq!(counted(&a), truth, "the live client's copy");
    assert_eq!(counted(&b), truth, "the resuming client's copy");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        // Each case runs a server; shrinking would run hundreds.
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    })]
    #[test]
    fn every_client_ends_with_what_history_says(ops in proptest::collection::vec(op(), 10..80)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

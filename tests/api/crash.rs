//! A server killed mid-flight loses no acknowledged message.
//!
//! The real binary runs as a child process, so it can be killed with
//! SIGKILL while clients send, then restarted on the same database.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, server_event};
use chat_client::{BearerToken, Cursors, ResumingSubscription};
use tonic::transport::Channel;

use crate::child::ChildServer;
use crate::helpers::PASSWORD;

const WORKERS: usize = 4;
/// Acknowledged sends to wait for before pulling the plug.
const ACKS_BEFORE_KILL: usize = 300;

type Chat =
    ChatServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerToken>>;

async fn user(channel: &Channel, name: &str) -> (String, pb::User) {
    let mut auth = AuthServiceClient::new(channel.clone());
    auth.register(pb::RegisterRequest {
        username: name.into(),
        password: PASSWORD.into(),
    })
    .await
    .unwrap();
    let login = auth
        .login(pb::LoginRequest {
            username: name.into(),
            password: PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (login.access_token, login.user.unwrap())
}

fn chat(channel: &Channel, token: &str) -> Chat {
    ChatServiceClient::with_interceptor(channel.clone(), BearerToken::new(token).unwrap())
}

/// Every message of a room, oldest first, paged with History.
async fn whole_history(chat: &mut Chat, room_id: &str) -> Vec<pb::Message> {
    let mut all = Vec::new();
    let mut before_seq = 0;
    loop {
        let page = chat
            .history(pb::HistoryRequest {
                room_id: room_id.into(),
                before_seq,
                limit: 200,
            })
            .await
            .unwrap()
            .into_inner();
        let mut messages = page.messages;
        before_seq = messages.first().map_or(0, |m| m.seq);
        messages.extend(all);
        all = messages;
        if !page.has_more {
            return all;
        }
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_a_sigkill_and_clients_resume() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("chat.db");
    let mut server = ChildServer::start(&database).await;
    let channel = server.channel().await;
    let (alice_token, _) = user(&channel, "alice").await;
    let (bob_token, _) = user(&channel, "bob").await;
    let room = chat(&channel, &alice_token)
        .create_room(pb::CreateRoomRequest {
            name: "general".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    chat(&channel, &bob_token)
        .join_room(pb::JoinRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();

    // Bob follows the room from the start.
    let mut cursors = Cursors::default();
    cursors.track(&room.id, 0);
    let mut subscription = ResumingSubscription::new(
        channel.clone(),
        BearerToken::new(&bob_token).unwrap(),
        cursors,
    );
    let (stop_reading, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        loop {
            tokio::select! {
                event = subscription.next() => {
                    if let Ok(server_event::Event::Message(m)) = event {
                        seqs.push(m.seq);
                    }
                }
                _ = &mut stopped => return (subscription, seqs),
            }
        }
    });

    // Alice sends from several clients at once, until the server dies.
    let acked = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let mut chat = chat(&channel, &alice_token);
            let room_id = room.id.clone();
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                let mut confirmed = BTreeMap::new();
                for n in 0.. {
                    let key = format!("w{worker}-{n}");
                    let sent = chat
                        .send_message(pb::SendMessageRequest {
                            room_id: room_id.clone(),
                            text: format!("message {key}"),
                            client_msg_id: key.clone(),
                            ..Default::default()
                        })
                        .await;
                    match sent {
                        Ok(response) => {
                            confirmed.insert(key, response.into_inner().message.unwrap().seq);
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        // The send that was in flight: maybe stored, maybe not.
                        Err(_) => return (confirmed, key),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    while acked.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().await.unwrap();
    let mut confirmed = HashMap::new();
    let mut in_doubt = Vec::new();
    for worker in workers {
        let (acks, unsure) = worker.await.unwrap();
        confirmed.extend(acks);
        in_doubt.push(unsure);
    }
    let _ = stop_reading.send(());
    let (mut subscription, mut seen) = reader.await.unwrap();

    let server = ChildServer::start(&database).await;
    let channel = server.channel().await;
    let mut alice = chat(&channel, &alice_token);

    // Every acknowledged message is there once, with the seq it was given.
    let history = whole_history(&mut alice, &room.id).await;
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    // Seq 1 is bob's join; the messages follow it with no gap.
    assert_eq!(
        seqs,
        (2..=history.len() as u64 + 1).collect::<Vec<_>>(),
        "gapless"
    );
    let stored: HashMap<&str, u64> = history
        .iter()
        .map(|m| (m.client_msg_id.as_str(), m.seq))
        .collect();
    assert_eq!(stored.len(), history.len(), "no client_msg_id twice");
    for (key, seq) in &confirmed {
        assert_eq!(stored.get(key.as_str()), Some(seq), "{key}");
    }
    assert!(confirmed.len() >= ACKS_BEFORE_KILL);

    // The sends in doubt are retried with the same key: stored once.
    for key in &in_doubt {
        alice
            .send_message(pb::SendMessageRequest {
                room_id: room.id.clone(),
                text: format!("message {key}"),
                client_msg_id: key.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let history = whole_history(&mut alice, &room.id).await;
    let last = history.last().unwrap().seq;
    assert_eq!(last, history.len() as u64 + 1);
    let keys: std::collections::HashSet<&str> =
        history.iter().map(|m| m.client_msg_id.as_str()).collect();
    assert_eq!(keys.len(), history.len());
    for key in &in_doubt {
        assert!(keys.contains(key.as_str()), "{key}");
    }

    // Bob resumes on the new server and ends up with every message once.
    subscription.reconnect_to(channel.clone(), BearerToken::new(&bob_token).unwrap());
    while seen.last().copied().unwrap_or(0) < last {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("bob's stream catches up")
            .unwrap();
        if let server_event::Event::Message(m) = event {
            seen.push(m.seq);
        }
    }
    assert_eq!(seen, (2..=last).collect::<Vec<_>>());
}

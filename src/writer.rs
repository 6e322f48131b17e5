//! The message writer: the one path by which messages are stored, edited
//! and deleted.
//!
//! Sends, edits and deletions from every stream and unary call queue here,
//! in one queue, so that each room's log takes them in one order. One task
//! takes what is waiting and stores it in arrival order: each run of sends
//! in a single transaction (group commit: one durable commit for many
//! messages), each edit or deletion in one of its own. It hands what it
//! stored to a second task, which routes each room event and answers each
//! request, in seq order; meanwhile the first stores the next batch. Running in tasks of
//! their own, a send completes even if its client goes away mid-flight, so a
//! stored message is always delivered.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::{Message, RoomEvent};
use crate::error::{Error, Result};
use crate::hub::{Hub, StreamId};
use crate::metrics::Metrics;
use crate::router::Router;
use crate::store::{
    Appended, Changed, MembershipChange, MembershipChanged, MessageChange, NewMessage, Store,
};
use chat_fanout::{events, Frame};

/// Sends waiting to be stored. When full, senders wait (and a stream stops
/// reading its client), which pushes back on clients instead of growing.
const QUEUE_CAPACITY: usize = 8192;
/// The most messages stored in one transaction: large enough to amortise a
/// durable commit and the index pages of a busy room over many messages,
/// small enough to keep each transaction under a few hundred milliseconds.
const MAX_BATCH: usize = 4096;

/// Where the outcome of a send goes.
pub enum Reply {
    /// A unary call waiting for the result.
    Call(oneshot::Sender<Result<Appended>>),
    /// A ChatStream send: the stream gets `sent` or `error`.
    Stream(StreamId),
}

enum Job {
    Send {
        message: NewMessage,
        reply: Reply,
    },
    /// An edit or a deletion; the caller waits for the message as it is
    /// now.
    Change {
        change: MessageChange,
        reply: oneshot::Sender<Result<Message>>,
    },
    /// A membership or settings change; the caller waits for what it did.
    Membership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<MembershipChanged>>,
    },
}

#[derive(Clone)]
pub struct MessageWriter {
    jobs: mpsc::Sender<Job>,
}

impl MessageWriter {
    /// Starts the writer task. Once `stop` is cancelled it refuses new sends,
    /// stores what was queued, and ends.
    pub fn spawn(
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(store, router, hub, metrics, queue, stop));
        (Self { jobs }, task)
    }

    /// Stores a message and returns it once it is durable.
    ///
    /// # Errors
    /// The store's verdict on this message, or UNAVAILABLE when shutting down.
    pub async fn append(&self, message: NewMessage) -> Result<Appended> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(message, Reply::Call(tx)).await?;
        rx.await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?
    }

    /// Queues a stream's send; its stream hears the outcome.
    ///
    /// # Errors
    /// UNAVAILABLE when shutting down.
    pub async fn enqueue(&self, message: NewMessage, reply: Reply) -> Result<()> {
        self.jobs
            .send(Job::Send { message, reply })
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))
    }

    /// Edits or deletes a message, in its room's order with the sends, and
    /// returns the message as it is now once the change is durable (and
    /// routed, when it made an event).
    ///
    /// # Errors
    /// The store's verdict on the change, or UNAVAILABLE when shutting down.
    pub async fn change(&self, change: MessageChange) -> Result<Message> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Change { change, reply })
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?
    }
}

impl MessageWriter {
    /// Joins, leaves, invites, sets a role, removes or bans, or changes a
    /// room's settings, in its room's order with the sends; returns what it
    /// did once durable and its events routed.
    ///
    /// # Errors
    /// The store's verdict on the change, or UNAVAILABLE when shutting down.
    pub async fn membership(&self, change: MembershipChange) -> Result<MembershipChanged> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Membership { change, reply })
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?
    }
}

/// What was stored, on its way to its streams and callers.
enum Stored {
    /// A batch of sends, stored in one transaction.
    Sends {
        messages: Arc<[NewMessage]>,
        replies: Vec<Reply>,
        results: chat_store::Result<Vec<chat_store::Result<Appended>>>,
    },
    /// An edit or a deletion.
    Change {
        /// Boxed: a message twice over, where a batch is a few pointers.
        result: Box<chat_store::Result<Changed>>,
        reply: oneshot::Sender<Result<Message>>,
    },
    Membership {
        result: Box<chat_store::Result<MembershipChanged>>,
        reply: oneshot::Sender<Result<MembershipChanged>>,
    },
}

/// Stored batches waiting to be delivered. Delivery runs in a task of its
/// own, so the next batch is being stored while the last one is delivered.
const DELIVERY_QUEUE: usize = 2;

async fn run(
    store: Arc<dyn Store>,
    router: Arc<dyn Router>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    queue: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let (stored, batches) = mpsc::channel(DELIVERY_QUEUE);
    let delivery = tokio::spawn(deliver(router, hub, Arc::clone(&metrics), batches));
    store_batches(store, metrics, queue, stop, stored).await;
    // The store loop has dropped its sender: delivery ends after the last batch.
    if let Err(error) = delivery.await {
        tracing::error!(error = %error, "message delivery failed");
    }
}

async fn store_batches(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    mut queue: mpsc::Receiver<Job>,
    stop: CancellationToken,
    stored: mpsc::Sender<Stored>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        let received = tokio::select! {
            received = queue.recv_many(&mut jobs, MAX_BATCH) => received,
            () = stop.cancelled(), if !stopping => {
                // Refuse new sends; what is queued is still received below.
                queue.close();
                stopping = true;
                continue;
            }
        };
        if received == 0 {
            break;
        }
        // In arrival order: a run of sends in one transaction, a change in
        // one of its own.
        let mut waiting = jobs.drain(..).peekable();
        while let Some(job) = waiting.next() {
            let started = Instant::now();
            let batch = match job {
                Job::Change { change, reply } => Stored::Change {
                    result: Box::new(store.change_message(&change).await),
                    reply,
                },
                Job::Membership { change, reply } => Stored::Membership {
                    result: Box::new(store.change_membership(&change).await),
                    reply,
                },
                Job::Send { message, reply } => {
                    let (mut messages, mut replies) = (vec![message], vec![reply]);
                    while let Some(Job::Send { message, reply }) =
                        waiting.next_if(|job| matches!(job, Job::Send { .. }))
                    {
                        messages.push(message);
                        replies.push(reply);
                    }
                    let messages: Arc<[NewMessage]> = messages.into();
                    let results = store.append_messages(Arc::clone(&messages)).await;
                    Stored::Sends {
                        messages,
                        replies,
                        results,
                    }
                }
            };
            metrics
                .commit_latency
                .observe(started.elapsed().as_secs_f64());
            if stored.send(batch).await.is_err() {
                tracing::error!("message delivery has stopped; no more messages are stored");
                return;
            }
        }
    }
}

/// Routes each stored batch's fresh messages and answers every send, batch
/// after batch, in seq order.
async fn deliver(
    router: Arc<dyn Router>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    mut batches: mpsc::Receiver<Stored>,
) {
    while let Some(batch) = batches.recv().await {
        let (messages, replies, results) = match batch {
            Stored::Sends {
                messages,
                replies,
                results,
            } => (messages, replies, results),
            Stored::Change { result, reply } => {
                if let Ok(Changed {
                    event: Some(event), ..
                }) = result.as_ref()
                {
                    router.event(event, None).await;
                }
                // The caller may have gone; the change is stored all the same.
                let _ = reply.send(
                    (*result)
                        .map(|changed| changed.message)
                        .map_err(Error::from),
                );
                continue;
            }
            Stored::Membership { result, reply } => {
                if let Ok(changed) = result.as_ref() {
                    for event in &changed.events {
                        router.event(event, None).await;
                    }
                }
                let _ = reply.send((*result).map_err(Error::from));
                continue;
            }
        };
        let sends = replies.into_iter().zip(messages.iter());
        match results {
            Ok(results) => {
                for ((reply, message), result) in sends.zip(results) {
                    if let Ok(appended) = &result {
                        if appended.fresh {
                            metrics.messages_received.inc();
                            let origin = match reply {
                                Reply::Stream(id) => Some(id),
                                Reply::Call(_) => None,
                            };
                            router
                                .event(&RoomEvent::message(appended.message.clone()), origin)
                                .await;
                        }
                    }
                    answer(&hub, reply, message, result.map_err(Error::from));
                }
            }
            Err(error) => {
                tracing::error!(error = %error, count = messages.len(), "storing messages failed");
                for (reply, message) in sends {
                    let failed = Error::Unavailable(
                        "the message could not be stored; retry with the same client_msg_id".into(),
                    );
                    answer(&hub, reply, message, Err(failed));
                }
            }
        }
    }
}

fn answer(hub: &Hub, reply: Reply, message: &NewMessage, result: Result<Appended>) {
    match reply {
        Reply::Call(tx) => {
            // The caller may have gone; the message is stored all the same.
            let _ = tx.send(result);
        }
        Reply::Stream(id) => match result {
            // Fresh messages were acknowledged by the hub, in order.
            Ok(appended) if appended.fresh => {}
            Ok(appended) => hub.send_to(id, events::sent(&appended.message)),
            Err(error) => hub.send_to(
                id,
                error_frame(message.client_msg_id.as_deref().unwrap_or_default(), &error),
            ),
        },
    }
}

/// The stream event for a failed stream request: the error's gRPC code and
/// client-facing message, decided here, in an `error` event.
pub fn error_frame(client_msg_id: &str, error: &Error) -> Frame {
    events::error(error.code(), error.client_message(), client_msg_id)
}

//! The message writer: the one path by which messages are stored.
//!
//! Sends from every stream and unary call queue here. One task takes what is
//! waiting, stores it in a single transaction (group commit: one durable
//! commit for many messages), and only then acknowledges and routes each
//! message, in seq order. Running in its own task, a send completes even if
//! its client goes away mid-flight, so a stored message is always delivered.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::hub::{Hub, StreamId};
use crate::metrics::Metrics;
use crate::pb;
use crate::pb::server_event::{self, Event};
use crate::router::Router;
use crate::store::{Appended, NewMessage, Store};
use crate::stream::Frame;

/// Sends waiting to be stored. When full, senders wait (and a stream stops
/// reading its client), which pushes back on clients instead of growing.
const QUEUE_CAPACITY: usize = 8192;
/// The most messages stored in one transaction: large enough to amortise a
/// durable commit, small enough to keep each transaction short.
const MAX_BATCH: usize = 512;

/// Where the outcome of a send goes.
pub enum Reply {
    /// A unary call waiting for the result.
    Call(oneshot::Sender<Result<Appended>>),
    /// A ChatStream send: the stream gets `sent` or `error`.
    Stream(StreamId),
}

struct Job {
    message: NewMessage,
    reply: Reply,
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
            .send(Job { message, reply })
            .await
            .map_err(|_| Error::Unavailable("server is shutting down".into()))
    }
}

async fn run(
    store: Arc<dyn Store>,
    router: Arc<dyn Router>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    mut queue: mpsc::Receiver<Job>,
    stop: CancellationToken,
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
        let batch: Vec<NewMessage> = jobs.iter().map(|job| job.message.clone()).collect();
        let started = Instant::now();
        let stored = store.append_messages(&batch).await;
        metrics
            .commit_latency
            .observe(started.elapsed().as_secs_f64());
        match stored {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    if let Ok(appended) = &result {
                        if appended.fresh {
                            metrics.messages_received.inc();
                            let origin = match job.reply {
                                Reply::Stream(id) => Some(id),
                                Reply::Call(_) => None,
                            };
                            router.message(&appended.message, origin).await;
                        }
                    }
                    answer(&hub, job, result);
                }
            }
            Err(error) => {
                tracing::error!(error = %error, count = jobs.len(), "storing messages failed");
                for job in jobs.drain(..) {
                    let failed = Error::Unavailable(
                        "the message could not be stored; retry with the same client_msg_id".into(),
                    );
                    answer(&hub, job, Err(failed));
                }
            }
        }
    }
}

fn answer(hub: &Hub, job: Job, result: Result<Appended>) {
    match job.reply {
        Reply::Call(tx) => {
            // The caller may have gone; the message is stored all the same.
            let _ = tx.send(result);
        }
        Reply::Stream(id) => match result {
            // Fresh messages were acknowledged by the hub, in order.
            Ok(appended) if appended.fresh => {}
            Ok(appended) => hub.send_to(
                id,
                Frame::from_event(Event::Sent(server_event::Sent {
                    client_msg_id: appended.message.client_msg_id.clone().unwrap_or_default(),
                    message: Some(pb::Message::from(&appended.message)),
                })),
            ),
            Err(error) => hub.send_to(
                id,
                error_frame(
                    job.message.client_msg_id.as_deref().unwrap_or_default(),
                    &error,
                ),
            ),
        },
    }
}

/// The stream event for a failed stream request.
pub fn error_frame(client_msg_id: &str, error: &Error) -> Frame {
    Frame::from_event(Event::Error(server_event::Error {
        client_msg_id: client_msg_id.to_owned(),
        code: error.code() as i32,
        message: error.client_message(),
    }))
}

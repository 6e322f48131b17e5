//! A simulated chat user on the wire: its own HTTP/2 connection and an open
//! `ChatStream`. What it sends goes through a bounded outbox; a reader task
//! takes every server event: messages to the recorder, `sent`
//! acknowledgements and `error` events to its counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, client_event, server_event};
use chat_client::BearerToken;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::payload;
use crate::recorder::{self, Recorder};

/// Events a member may have waiting to go up its stream: a sender that
/// gets this far ahead of the connection waits (and falls behind its pace,
/// which the step reports).
const OUTBOX: usize = 1024;

/// What a member's reader has seen besides messages.
pub struct MemberStats {
    /// `sent` acknowledgements of this member's own sends.
    pub acks: AtomicU64,
    /// `error` events, and a stream that ended with an error.
    pub errors: AtomicU64,
    /// The stream has ended (the server closed it, or it failed).
    pub ended: AtomicBool,
    pub first_error: Mutex<Option<String>>,
    /// From a send to its `sent` (the message is committed): the durable
    /// part of publish-to-delivery latency.
    ack_latency: Mutex<Histogram<u64>>,
}

impl Default for MemberStats {
    fn default() -> Self {
        Self {
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            first_error: Mutex::new(None),
            ack_latency: Mutex::new(recorder::new_histogram()),
        }
    }
}

impl MemberStats {
    fn acknowledged(&self, sent: &server_event::Sent) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        let stamp = sent
            .message
            .as_ref()
            .and_then(|m| payload::decode(m.text.as_bytes()));
        if let Some(stamp) = stamp {
            let mut histogram = self
                .ack_latency
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            recorder::record_latency(&mut histogram, stamp.age());
        }
    }

    fn error(&self, text: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert(text);
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Where a member's deliveries are counted: the recorder and its index.
pub type Sink = Option<(Arc<Recorder>, usize)>;

pub struct Member {
    pub outbox: mpsc::Sender<pb::ClientEvent>,
    pub stats: Arc<MemberStats>,
    /// Kept so the connection lives as long as the member.
    _channel: Channel,
    reader: JoinHandle<()>,
}

impl Member {
    /// Opens a ChatStream on `channel` as the token's user, waits for its
    /// `ready`, and sends a ping so live messages start at once (a stream
    /// otherwise holds them until its first event, to learn whether it
    /// resumes).
    ///
    /// # Errors
    /// When the stream cannot be opened or does not start with `ready`.
    pub async fn open(channel: Channel, token: BearerToken, sink: Sink) -> anyhow::Result<Self> {
        let (outbox, requests) = mpsc::channel(OUTBOX);
        let mut chat = ChatServiceClient::with_interceptor(channel.clone(), token);
        let mut events = chat
            .chat_stream(ReceiverStream::new(requests))
            .await
            .context("opening a ChatStream")?
            .into_inner();
        expect_ready(&mut events).await?;
        outbox
            .send(ping(1))
            .await
            .context("the stream closed at once")?;
        let stats = Arc::new(MemberStats::default());
        let reader = tokio::spawn(read(events, Arc::clone(&stats), sink));
        Ok(Self {
            outbox,
            stats,
            _channel: channel,
            reader,
        })
    }

    /// Sends a message on the stream (waits while the outbox is full).
    ///
    /// # Errors
    /// When the stream has ended.
    pub async fn send(&self, room_id: &str, text: String) -> anyhow::Result<()> {
        let event = pb::ClientEvent {
            event: Some(client_event::Event::Send(pb::SendMessageRequest {
                room_id: room_id.to_owned(),
                text,
                client_msg_id: String::new(),
            })),
        };
        self.outbox
            .send(event)
            .await
            .map_err(|_| anyhow::anyhow!("the stream has ended"))
    }

    /// Ends the stream and drops the connection.
    pub fn close(self) {
        self.reader.abort();
    }
}

/// Reads the first event, which must be `ready`.
///
/// # Errors
/// When the stream fails or starts with anything else.
pub async fn expect_ready(events: &mut Streaming<pb::ServerEvent>) -> anyhow::Result<()> {
    match events.message().await.context("waiting for ready")? {
        Some(pb::ServerEvent {
            event: Some(server_event::Event::Ready(_)),
        }) => Ok(()),
        Some(other) => bail!("the stream started with {other:?} instead of ready"),
        None => bail!("the stream ended before ready"),
    }
}

pub fn ping(nonce: u64) -> pb::ClientEvent {
    pb::ClientEvent {
        event: Some(client_event::Event::Ping(client_event::Ping { nonce })),
    }
}

async fn read(mut events: Streaming<pb::ServerEvent>, stats: Arc<MemberStats>, sink: Sink) {
    loop {
        match events.message().await {
            Ok(Some(event)) => match event.event {
                Some(server_event::Event::Message(message)) => {
                    if let Some((recorder, index)) = &sink {
                        recorder.record(*index, message.text.as_bytes());
                    }
                }
                Some(server_event::Event::Sent(sent)) => stats.acknowledged(&sent),
                Some(server_event::Event::Error(error)) => {
                    stats.error(format!("error event {}: {}", error.code, error.message));
                }
                _ => {}
            },
            Ok(None) => break,
            Err(status) => {
                stats.error(format!("stream ended: {status}"));
                break;
            }
        }
    }
    stats.ended.store(true, Ordering::Release);
}

/// The send-to-acknowledgement latencies of a set of members since the
/// last call, merged; each member's histogram starts again empty.
pub fn take_ack_latency<'a>(members: impl Iterator<Item = &'a Member>) -> Histogram<u64> {
    let mut merged = recorder::new_histogram();
    for member in members {
        let mut histogram = member
            .stats
            .ack_latency
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Same bounds on both sides: adding cannot fail.
        let _ = merged.add(&*histogram);
        histogram.reset();
    }
    merged
}

/// Errors and ended streams over a set of members, for a step's health.
pub fn health<'a>(members: impl Iterator<Item = &'a Member>) -> super::Health {
    let mut health = super::Health::default();
    for member in members {
        health.errors += member.stats.errors.load(Ordering::Relaxed);
        health.ended += u64::from(member.stats.ended.load(Ordering::Acquire));
        if health.first_error.is_none() {
            health.first_error = member.stats.first_error();
        }
    }
    health
}

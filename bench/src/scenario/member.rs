//! A simulated chat user on the wire: its own HTTP/2 connection and an open
//! `ChatStream`. What it sends goes through a bounded outbox; a reader task
//! takes every server event: messages to the recorder, `sent`
//! acknowledgements and `error` events to its counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use chat_client::pb::{self, client_event, server_event};
use chat_client::BearerToken;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Streaming};
use tonic_prost::ProstCodec;

use crate::payload;
use crate::recorder::{self, Recorder};

/// The method a member streams on.
const CHAT_STREAM: &str = "/chat.v1.ChatService/ChatStream";

/// What a member reads of each `ServerEvent`: the texts of messages and of
/// acknowledgements, and errors. The rest of each event arrives on the wire
/// as usual and is skipped unread (a prost message passes over the fields
/// it does not declare), as a client that only shows the texts would: the
/// chat client then does per delivery what the NATS subscriber does, and
/// no more. The tags are those of `proto/chat/v1/chat.proto`.
pub mod lean {
    use bytes::Bytes;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerEvent {
        #[prost(oneof = "Event", tags = "1, 2, 3, 7")]
        pub event: Option<Event>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Event {
        #[prost(message, tag = "1")]
        Ready(Skipped),
        #[prost(message, tag = "2")]
        Message(Text),
        #[prost(message, tag = "3")]
        Sent(Sent),
        #[prost(message, tag = "7")]
        Error(Error),
    }

    /// An event whose fields are not read.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Skipped {}

    /// A `Message`, of which only the text is read (as bytes: the payload
    /// is ASCII, and the recorder reads bytes).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Text {
        #[prost(bytes = "bytes", tag = "5")]
        pub text: Bytes,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sent {
        #[prost(message, optional, tag = "2")]
        pub message: Option<Text>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Error {
        #[prost(int32, tag = "2")]
        pub code: i32,
        #[prost(string, tag = "3")]
        pub message: String,
    }
}

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
    fn acknowledged(&self, sent: &lean::Sent) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        let stamp = sent.message.as_ref().and_then(|m| payload::decode(&m.text));
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
        let mut grpc = Grpc::new(InterceptedService::new(channel.clone(), token));
        grpc.ready().await.context("connecting")?;
        let mut events = grpc
            .streaming(
                Request::new(ReceiverStream::new(requests)),
                PathAndQuery::from_static(CHAT_STREAM),
                ProstCodec::<pb::ClientEvent, lean::ServerEvent>::default(),
            )
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
                ..Default::default()
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
pub async fn expect_ready<E: ServerEvent>(events: &mut Streaming<E>) -> anyhow::Result<()> {
    match events.message().await.context("waiting for ready")? {
        Some(event) if event.is_ready() => Ok(()),
        Some(other) => bail!("the stream started with {other:?} instead of ready"),
        None => bail!("the stream ended before ready"),
    }
}

/// A `ServerEvent` as read in full or the lean way.
pub trait ServerEvent: std::fmt::Debug {
    fn is_ready(&self) -> bool;
}

impl ServerEvent for pb::ServerEvent {
    fn is_ready(&self) -> bool {
        matches!(self.event, Some(server_event::Event::Ready(_)))
    }
}

impl ServerEvent for lean::ServerEvent {
    fn is_ready(&self) -> bool {
        matches!(self.event, Some(lean::Event::Ready(_)))
    }
}

pub fn ping(nonce: u64) -> pb::ClientEvent {
    pb::ClientEvent {
        event: Some(client_event::Event::Ping(client_event::Ping { nonce })),
    }
}

async fn read(mut events: Streaming<lean::ServerEvent>, stats: Arc<MemberStats>, sink: Sink) {
    loop {
        match events.message().await {
            Ok(Some(event)) => match event.event {
                Some(lean::Event::Message(message)) => {
                    if let Some((recorder, index)) = &sink {
                        recorder.record(*index, &message.text);
                    }
                }
                Some(lean::Event::Sent(sent)) => stats.acknowledged(&sent),
                Some(lean::Event::Error(error)) => {
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

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// A full event as the server encodes it, read the lean way.
    fn lean_of(event: server_event::Event) -> Option<lean::Event> {
        let bytes = pb::ServerEvent { event: Some(event) }.encode_to_vec();
        lean::ServerEvent::decode(bytes.as_slice())
            .expect("a ServerEvent decodes")
            .event
    }

    fn text(text: &str) -> lean::Text {
        lean::Text {
            text: bytes::Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    #[test]
    fn the_lean_reading_of_full_events_keeps_their_texts_and_errors() {
        let message = pb::Message {
            id: "0193a0d2-8f1e-7c3a-9b1d-2f0e4a5b6c7d".into(),
            room_id: "0193a0d2-8f1e-7c3a-9b1d-2f0e4a5b6c7e".into(),
            seq: 7,
            sender: Some(pb::User::default()),
            text: "hello".into(),
            sent_at: None,
            client_msg_id: "k1".into(),
            ..Default::default()
        };

        assert_eq!(
            lean_of(server_event::Event::Message(message.clone())),
            Some(lean::Event::Message(text("hello")))
        );
        assert_eq!(
            lean_of(server_event::Event::Sent(server_event::Sent {
                client_msg_id: "k1".into(),
                message: Some(message),
            })),
            Some(lean::Event::Sent(lean::Sent {
                message: Some(text("hello")),
            }))
        );
        assert_eq!(
            lean_of(server_event::Event::Error(server_event::Error {
                client_msg_id: String::new(),
                code: 8,
                message: "too slow".into(),
                room_id: String::new(),
            })),
            Some(lean::Event::Error(lean::Error {
                code: 8,
                message: "too slow".into(),
            }))
        );
        assert_eq!(
            lean_of(server_event::Event::Ready(server_event::Ready::default())),
            Some(lean::Event::Ready(lean::Skipped {}))
        );
        assert_eq!(
            lean_of(server_event::Event::Pong(server_event::Pong { nonce: 1 })),
            None
        );
    }
}

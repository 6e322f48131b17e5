//! Pre-encoded server events.
//!
//! A message to a room of a thousand open streams is encoded once: the hub
//! turns the `ServerEvent` into bytes, and every stream's queue holds a
//! cheap clone of those bytes (`Bytes` is reference-counted). `FrameCodec`
//! writes them to the wire as they are.

use bytes::{BufMut as _, Bytes};
use prost::Message as _;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::Status;

use crate::domain::Timestamp;
use crate::pb;

/// One encoded `ServerEvent`.
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Bytes,
    /// For a live message: when its send arrived, to measure delivery.
    sent_at: Option<Timestamp>,
    /// Whether the client can do without it, and when it is dropped.
    droppable: Droppable,
}

/// When a frame may be dropped rather than queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Droppable {
    /// Never: a full queue ends the stream instead (messages, answers).
    Never,
    /// Once the stream is behind (typing, the heartbeat): a hint that is
    /// stale by the time a slow client would read it.
    UnderPressure,
    /// Only when the queue is full (presence): a change of state the
    /// client would miss until it reconnects, so kept as long as there is
    /// room, but never worth ending a stream over.
    WhenFull,
}

impl Frame {
    pub fn encode(event: &pb::ServerEvent) -> Self {
        Self {
            bytes: Bytes::from(event.encode_to_vec()),
            sent_at: None,
            droppable: Droppable::Never,
        }
    }

    pub fn from_event(event: pb::server_event::Event) -> Self {
        Self::encode(&pb::ServerEvent { event: Some(event) })
    }

    /// A live message event, whose delivery latency counts from `sent_at`.
    pub fn live_message(event: pb::server_event::Event, sent_at: Timestamp) -> Self {
        Self {
            sent_at: Some(sent_at),
            ..Self::from_event(event)
        }
    }

    /// An event the client can do without: typing, the heartbeat. A
    /// stream that is behind drops it instead of queueing it.
    pub fn ephemeral(event: pb::server_event::Event) -> Self {
        Self {
            droppable: Droppable::UnderPressure,
            ..Self::from_event(event)
        }
    }

    /// A change of state the client can live without for a while
    /// (presence): dropped only when the stream's queue is full, instead of
    /// ending the stream.
    pub fn state_hint(event: pb::server_event::Event) -> Self {
        Self {
            droppable: Droppable::WhenFull,
            ..Self::from_event(event)
        }
    }

    pub fn droppable(&self) -> Droppable {
        self.droppable
    }

    pub fn sent_at(&self) -> Option<Timestamp> {
        self.sent_at
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The event, decoded again (for tests).
    #[cfg(test)]
    pub fn event(&self) -> pb::server_event::Event {
        pb::ServerEvent::decode(self.bytes.clone())
            .expect("a frame holds a ServerEvent")
            .event
            .expect("with an event")
    }
}

impl crate::stream::queue::Weigh for Frame {
    fn weight(&self) -> usize {
        self.bytes.len()
    }
}

/// Each stream's buffers start at this many bytes (tonic's default is
/// 8 KiB for each direction, allocated up front). Events and client events
/// are small; an idle stream should cost little, and a burst grows the
/// buffer as it needs.
const STREAM_BUFFER: usize = 512;
/// How many bytes of waiting events go out in one write, at most (tonic's
/// default): under load a stream's events leave in batches.
const YIELD_THRESHOLD: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(STREAM_BUFFER, YIELD_THRESHOLD)
}

/// The codec of the two RPCs that stream `ServerEvent`s: frames out,
/// protobuf messages in (a request that does not decode is the client's
/// INVALID_ARGUMENT).
#[derive(Debug)]
pub struct FrameCodec<U>(std::marker::PhantomData<U>);

impl<U> Default for FrameCodec<U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<U> Codec for FrameCodec<U>
where
    U: prost::Message + Default + Send + 'static,
{
    type Encode = Frame;
    type Decode = U;
    type Encoder = FrameEncoder;
    type Decoder = crate::codec::RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        crate::codec::RequestDecoder::new(buffer_settings())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = Frame;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }

    fn encode(&mut self, frame: Frame, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&frame.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_holds_the_event_encoded() {
        let event = pb::ServerEvent {
            event: Some(pb::server_event::Event::Pong(pb::server_event::Pong {
                nonce: 7,
            })),
        };
        let frame = Frame::encode(&event);
        assert_eq!(pb::ServerEvent::decode(frame.bytes.clone()).unwrap(), event);
    }
}

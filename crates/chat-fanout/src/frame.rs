//! Pre-encoded server events.
//!
//! A message to a room of a thousand open streams is encoded once: the
//! event is turned into bytes (`events`), and every stream's queue holds a
//! cheap clone of those bytes (`Bytes` is reference-counted). The server's
//! `FrameCodec` writes them to the wire as they are.

use bytes::Bytes;
use chat_domain::Timestamp;
use chat_proto as pb;
use prost::Message as _;

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
    /// Encodes an event no stream drops. Only `events` builds events.
    pub(crate) fn encode(event: &pb::ServerEvent) -> Self {
        Self {
            bytes: Bytes::from(event.encode_to_vec()),
            sent_at: None,
            droppable: Droppable::Never,
        }
    }

    /// An event no stream drops. Only `events` builds events.
    pub(crate) fn from_event(event: pb::server_event::Event) -> Self {
        Self::encode(&pb::ServerEvent { event: Some(event) })
    }

    /// A live message event, whose delivery latency counts from `sent_at`.
    pub(crate) fn live_message(event: pb::server_event::Event, sent_at: Timestamp) -> Self {
        Self {
            sent_at: Some(sent_at),
            ..Self::from_event(event)
        }
    }

    /// An event the client can do without: typing, the heartbeat. A
    /// stream that is behind drops it instead of queueing it.
    pub(crate) fn ephemeral(event: pb::server_event::Event) -> Self {
        Self {
            droppable: Droppable::UnderPressure,
            ..Self::from_event(event)
        }
    }

    /// A change of state the client can live without for a while
    /// (presence): dropped only when the stream's queue is full, instead of
    /// ending the stream.
    pub(crate) fn state_hint(event: pb::server_event::Event) -> Self {
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

    /// The encoded `ServerEvent`, as it goes on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
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

impl crate::queue::Weigh for Frame {
    fn weight(&self) -> usize {
        self.bytes.len()
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

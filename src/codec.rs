//! How requests of `chat.v1` are decoded: with prost, as tonic-prost does,
//! but a request that does not decode (a string field that is not UTF-8, a
//! message cut short) is the client's error. tonic-prost answers INTERNAL,
//! which tells clients and alerts that the server failed; it is
//! INVALID_ARGUMENT, naming the type the request should have been.
//!
//! The generated servers (`build.rs`) use [`RequestCodec`] for the unary
//! methods, and [`FrameCodec`] for the two that stream `ServerEvent`s:
//! pre-encoded frames out (`chat_fanout::Frame`), requests decoded by
//! [`RequestDecoder`].

use std::marker::PhantomData;

use bytes::BufMut as _;
use chat_fanout::Frame;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstEncoder};

/// The codec of the unary methods: responses encoded as tonic-prost does,
/// requests decoded by [`RequestDecoder`].
#[derive(Debug)]
pub struct RequestCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder::new(BufferSettings::default())
    }
}

/// Decodes a request of type `U`; one that does not decode fails with
/// INVALID_ARGUMENT.
#[derive(Debug)]
pub struct RequestDecoder<U> {
    buffer_settings: BufferSettings,
    _type: PhantomData<U>,
}

impl<U> RequestDecoder<U> {
    pub fn new(buffer_settings: BufferSettings) -> Self {
        Self {
            buffer_settings,
            _type: PhantomData,
        }
    }
}

impl<U> Decoder for RequestDecoder<U>
where
    U: prost::Message + Default,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| {
            Status::invalid_argument(format!(
                "request is not a valid {}: {error}",
                type_name::<U>()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
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
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder::new(buffer_settings())
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
        buf.put_slice(frame.bytes());
        Ok(())
    }
}

/// The message's name as the proto spells it (`RegisterRequest`): the
/// generated types carry the proto's names, in modules of their own.
fn type_name<U>() -> &'static str {
    let path = std::any::type_name::<U>();
    path.rsplit("::").next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn a_request_type_is_named_as_in_the_proto() {
        assert_eq!(type_name::<pb::RegisterRequest>(), "RegisterRequest");
        assert_eq!(type_name::<pb::ClientEvent>(), "ClientEvent");
    }
}

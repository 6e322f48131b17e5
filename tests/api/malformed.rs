//! Requests that do not decode: the client's error (INVALID_ARGUMENT,
//! naming the type the request should have been), never the server's.
//! Sent as raw bytes over real gRPC, as no generated client would.

use std::str::FromStr as _;

use bytes::{BufMut as _, Bytes, BytesMut};
use chat_client::pb::{self, client_event, server_event};
use http::uri::PathAndQuery;
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

use crate::helpers::{assert_status, spawn_app, RawCodec, TestUser, PATIENCE};

/// Opens a call of `method` (`/package.Service/Method`) that sends the
/// messages of `requests` as they are, with `authorization: Bearer` if a
/// token is given.
async fn raw_call(
    channel: Channel,
    method: &str,
    token: Option<&str>,
    requests: mpsc::Receiver<Bytes>,
) -> Result<Streaming<Bytes>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(ReceiverStream::new(requests));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path = PathAndQuery::from_str(method).unwrap();
    grpc.streaming(request, path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Sends one message as its bytes, and returns the answers up to the
/// call's status.
async fn call_with_bytes(
    channel: Channel,
    method: &str,
    token: Option<&str>,
    message: Bytes,
) -> Result<Vec<Bytes>, Status> {
    let (send, requests) = mpsc::channel(1);
    send.send(message).await.unwrap();
    drop(send);
    let mut answers = raw_call(channel, method, token, requests).await?;
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, answers.message()).await {
            Ok(Ok(Some(answer))) => received.push(answer),
            Ok(Ok(None)) => return Ok(received),
            Ok(Err(status)) => return Err(status),
            Err(_) => panic!("{method}: no status within {PATIENCE:?}"),
        }
    }
}

/// `message` with a string (or bytes) field `field` appended that is not
/// UTF-8: a decoder takes the last value of a field.
fn with_invalid_utf8(message: &impl prost::Message, field: u32) -> Bytes {
    let mut bytes = BytesMut::from(&message.encode_to_vec()[..]);
    length_delimited(&mut bytes, field, &[0xff, 0xfe]);
    bytes.freeze()
}

/// Appends field `field` (length-delimited) holding `value`.
fn length_delimited(buf: &mut BytesMut, field: u32, value: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, buf);
    prost::encoding::encode_varint(value.len() as u64, buf);
    buf.put_slice(value);
}

/// Field 1, length-delimited, announced five bytes long and cut off: no
/// message type decodes it, whatever its fields.
const CUT_SHORT: &[u8] = &[0x0a, 0x05, b'a'];

#[tokio::test]
async fn a_registration_with_a_username_that_is_not_utf8_is_an_invalid_argument() {
    let app = spawn_app().await;
    let request = pb::RegisterRequest {
        username: String::new(),
        password: "correct horse battery".into(),
    };

    let answered = call_with_bytes(
        app.channel().await,
        "/chat.v1.AuthService/Register",
        None,
        with_invalid_utf8(&request, 1),
    )
    .await;

    assert_status(
        answered,
        Code::InvalidArgument,
        "request is not a valid RegisterRequest: failed to decode Protobuf message: \
         RegisterRequest.username: invalid string value: data is not UTF-8 encoded",
    );
}

#[tokio::test]
async fn a_login_cut_short_is_an_invalid_argument() {
    let app = spawn_app().await;

    let answered = call_with_bytes(
        app.channel().await,
        "/chat.v1.AuthService/Login",
        None,
        Bytes::from_static(CUT_SHORT),
    )
    .await;

    assert_status(
        answered,
        Code::InvalidArgument,
        "request is not a valid LoginRequest: failed to decode Protobuf message: \
         LoginRequest.username: buffer underflow",
    );
}

#[tokio::test]
async fn an_authenticated_send_with_text_that_is_not_utf8_is_an_invalid_argument_and_stores_nothing(
) {
    let app = spawn_app().await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let request = pb::SendMessageRequest {
        room_id: room.id.clone(),
        text: String::new(),
        client_msg_id: "broken".into(),
        ..Default::default()
    };

    let answered = call_with_bytes(
        app.channel().await,
        "/chat.v1.ChatService/SendMessage",
        Some(&alice.login.access_token),
        with_invalid_utf8(&request, 2),
    )
    .await;

    assert_status(
        answered,
        Code::InvalidArgument,
        "request is not a valid SendMessageRequest: failed to decode Protobuf message: \
         SendMessageRequest.text: invalid string value: data is not UTF-8 encoded",
    );
    assert!(alice.history(&room, 0, 10).await.messages.is_empty());
}

/// Opens a ChatStream of raw client events for `user`, and waits for its
/// `ready` event.
async fn raw_chat_stream(
    app: &crate::helpers::TestApp,
    user: &TestUser,
) -> (mpsc::Sender<Bytes>, Streaming<Bytes>) {
    let (send, requests) = mpsc::channel(8);
    let mut events = raw_call(
        app.channel().await,
        "/chat.v1.ChatService/ChatStream",
        Some(&user.login.access_token),
        requests,
    )
    .await
    .expect("open ChatStream");
    let first = next_event(&mut events).await;
    assert!(
        matches!(first, server_event::Event::Ready(_)),
        "expected ready first, got {first:?}"
    );
    (send, events)
}

async fn next_event(events: &mut Streaming<Bytes>) -> server_event::Event {
    let bytes = tokio::time::timeout(PATIENCE, events.message())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
        .expect("an event");
    pb::ServerEvent::decode(bytes)
        .expect("a ServerEvent")
        .event
        .expect("with an event")
}

#[tokio::test]
async fn a_chat_stream_event_that_does_not_decode_ends_the_stream_with_invalid_argument() {
    let app = spawn_app().await;
    let (alice, _bob, room) = app.alice_and_bob_in_a_room().await;
    let (send, mut events) = raw_chat_stream(&app, &alice).await;
    let ping = pb::ClientEvent {
        event: Some(client_event::Event::Ping(client_event::Ping { nonce: 7 })),
    };
    send.send(ping.encode_to_vec().into()).await.unwrap();
    loop {
        if let server_event::Event::Pong(pong) = next_event(&mut events).await {
            assert_eq!(pong.nonce, 7);
            break;
        }
    }
    let broken_send = with_invalid_utf8(
        &pb::SendMessageRequest {
            room_id: room.id.clone(),
            text: String::new(),
            client_msg_id: "broken".into(),
            ..Default::default()
        },
        2,
    );
    let mut event = BytesMut::new();
    length_delimited(&mut event, 1, &broken_send);

    send.send(event.freeze()).await.unwrap();

    let ended = loop {
        match tokio::time::timeout(PATIENCE, events.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended without a status"),
            Ok(Err(status)) => break status,
            Err(_) => panic!("the stream did not end within {PATIENCE:?}"),
        }
    };
    assert_eq!(
        (ended.code(), ended.message()),
        (
            Code::InvalidArgument,
            "request is not a valid ClientEvent: failed to decode Protobuf message: \
             SendMessageRequest.text: ClientEvent.event: invalid string value: \
             data is not UTF-8 encoded"
        ),
        "{ended:?}"
    );
    assert!(alice.history(&room, 0, 10).await.messages.is_empty());
}

#[tokio::test]
async fn every_method_answers_invalid_argument_to_a_request_that_does_not_decode() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let descriptors =
        prost_types::FileDescriptorSet::decode(chat_server::pb::FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<(String, String)> = descriptors
        .file
        .iter()
        .filter(|file| file.package() == "chat.v1")
        .flat_map(|file| &file.service)
        .flat_map(|service| {
            service.method.iter().map(move |method| {
                let input = method.input_type().rsplit('.').next().unwrap().to_owned();
                (
                    format!("/chat.v1.{}/{}", service.name(), method.name()),
                    input,
                )
            })
        })
        .collect();
    assert!(methods.len() >= 20, "{methods:?}");

    for (method, input) in methods {
        let answered = call_with_bytes(
            app.channel().await,
            &method,
            Some(&alice.login.access_token),
            Bytes::from_static(CUT_SHORT),
        )
        .await;

        let status = answered.expect_err(&method);
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
        let expected = format!("request is not a valid {input}: ");
        assert!(
            status.message().starts_with(&expected),
            "{method}: {status:?}"
        );
    }
}

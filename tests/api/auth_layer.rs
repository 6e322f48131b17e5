//! Deny by default: every method the server describes needs a valid access
//! token, but those on the allow-list (`src/auth/layer.rs`). The methods
//! come from the descriptor sets, not from a list written here, so a new
//! RPC is covered the day it is added, and this test fails if it answers
//! a caller without a token.

use std::str::FromStr as _;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use chat_server::auth::layer::{PUBLIC_METHODS, PUBLIC_SERVICES};
use http::uri::PathAndQuery;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use prost_types::FileDescriptorSet;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{http_get, spawn_app, RawCodec, TestApp, PATIENCE};

/// The public methods and services this test expects. The server's
/// allow-list must say the same: making a method public is a change to
/// both, in one review.
const EXPECTED_PUBLIC_METHODS: [&str; 3] = [
    "/chat.v1.AuthService/Register",
    "/chat.v1.AuthService/Login",
    "/chat.v1.AuthService/Refresh",
];
const EXPECTED_PUBLIC_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

const MISSING: &str = "missing authorization metadata: send 'authorization: Bearer <access_token>'";
const MALFORMED: &str = "invalid access token";
const REVOKED: &str = "session revoked or expired";

/// Every method of every service the server registers, as its path
/// (`/package.Service/Method`).
fn every_method() -> Vec<String> {
    let sets = [
        chat_server::pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut paths = Vec::new();
    for set in sets {
        let set = FileDescriptorSet::decode(set).expect("a file descriptor set");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

fn is_expected_public(path: &str) -> bool {
    EXPECTED_PUBLIC_METHODS.contains(&path)
        || EXPECTED_PUBLIC_SERVICES
            .iter()
            .any(|service| path.starts_with(&format!("/{service}/")))
}

/// The methods that need a token.
fn protected_methods() -> Vec<String> {
    let protected: Vec<String> = every_method()
        .into_iter()
        .filter(|path| !is_expected_public(path))
        .collect();
    // Not vacuous: the walk found the chat API.
    for known in [
        "/chat.v1.AuthService/Logout",
        "/chat.v1.ChatService/SendMessage",
        "/chat.v1.ChatService/ChatStream",
        "/chat.v1.ChatService/Subscribe",
    ] {
        assert!(protected.iter().any(|path| path == known), "{known}");
    }
    protected
}

/// Calls `path` with one empty message (every request type's defaults),
/// sending `authorization: <value>` if given. `Ok` when the service
/// answered with headers (a handler ran), the status otherwise.
async fn call(channel: Channel, path: &str, authorization: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let mut request = tonic::Request::new(tokio_stream::once(Bytes::new()));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let path = PathAndQuery::from_str(path).unwrap();
    tokio::time::timeout(PATIENCE, grpc.streaming(request, path, RawCodec))
        .await
        .unwrap_or_else(|_| panic!("no answer within {PATIENCE:?}"))
        .map(drop)
}

/// The three kinds of bad credentials, with the message each earns.
async fn bad_credentials(app: &TestApp) -> [(&'static str, Option<String>, &'static str); 3] {
    let user = app.user("mallory").await;
    user.auth
        .clone()
        .logout(chat_client::pb::LogoutRequest {})
        .await
        .expect("logout");
    [
        ("no token", None, MISSING),
        (
            "a malformed token",
            Some("Bearer not-a-token".into()),
            MALFORMED,
        ),
        (
            "a revoked session's token",
            Some(format!("Bearer {}", user.login.access_token)),
            REVOKED,
        ),
    ]
}

#[tokio::test]
async fn the_allow_list_is_the_one_this_test_expects() {
    assert_eq!(PUBLIC_METHODS, EXPECTED_PUBLIC_METHODS);
    assert_eq!(PUBLIC_SERVICES, EXPECTED_PUBLIC_SERVICES);
}

#[tokio::test]
async fn every_method_not_on_the_allow_list_needs_a_valid_access_token() {
    let app = spawn_app().await;
    let channel = app.channel().await;
    let credentials = bad_credentials(&app).await;

    let methods = protected_methods();
    let mut walked = 0;
    for path in &methods {
        for (kind, authorization, message) in &credentials {
            let answered = call(channel.clone(), path, authorization.as_deref()).await;

            let status = answered
                .err()
                .unwrap_or_else(|| panic!("{path} answered a call with {kind}"));
            assert_eq!(
                (status.code(), status.message()),
                (Code::Unauthenticated, *message),
                "{path} with {kind}"
            );
            walked += 1;
        }
    }
    assert_eq!(walked, methods.len() * 3);
}

#[tokio::test]
async fn the_methods_on_the_allow_list_need_no_token() {
    let app = spawn_app().await;
    let channel = app.channel().await;
    let public: Vec<String> = every_method()
        .into_iter()
        .filter(|path| is_expected_public(path))
        .collect();
    assert_eq!(
        public
            .iter()
            .filter(|path| path.contains("chat.v1"))
            .count(),
        EXPECTED_PUBLIC_METHODS.len()
    );

    for path in &public {
        for authorization in [None, Some("Bearer not-a-token")] {
            let answered = call(channel.clone(), path, authorization).await;

            // The handler answered: with its own status for an empty
            // request (Register's INVALID_ARGUMENT, Login's "invalid
            // username or password"), or with a response.
            if let Err(status) = answered {
                assert!(
                    ![MISSING, MALFORMED].contains(&status.message()),
                    "{path} with {authorization:?}: {status:?}"
                );
            }
        }
    }
    // And the browser app, which is no gRPC method.
    assert!(http_get(app.addr, "/").await.contains("<html"));
}

#[tokio::test]
async fn a_method_that_does_not_exist_needs_a_token_and_then_is_unimplemented() {
    let app = spawn_app().await;
    let channel = app.channel().await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.login.access_token);

    for path in [
        "/chat.v1.ChatService/NoSuchMethod",
        "/chat.v1.AuthService/NoSuchMethod",
        "/chat.v1.NoSuchService/Login",
    ] {
        let without = call(channel.clone(), path, None).await;
        let with = call(channel.clone(), path, Some(&bearer)).await;

        let status = without.expect_err(path);
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, MISSING),
            "{path}"
        );
        assert_eq!(with.expect_err(path).code(), Code::Unimplemented, "{path}");
    }
}

/// Calls `path` over grpc-web on HTTP/1.1, as a browser does, with one
/// empty message; returns the HTTP status, the content type and the gRPC
/// status (from the headers of a trailers-only answer, or the trailers).
async fn grpc_web_call(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::post(format!("http://{}{path}", app.addr))
        .version(http::Version::HTTP_11)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:5173");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(0);
    let request = request.body(Full::new(frame.freeze())).unwrap();

    let response = client.request(request).await.expect("an HTTP answer");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let content_type = header("content-type").unwrap_or_default();
    let (code, message) = match header("grpc-status") {
        Some(code) => (code, header("grpc-message").unwrap_or_default()),
        None => {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            trailer_status(body)
        }
    };
    (status, content_type, code, message)
}

/// `grpc-status` and `grpc-message` from a grpc-web body's trailers.
fn trailer_status(mut body: Bytes) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 != 0 {
            for line in std::str::from_utf8(&payload).unwrap().split("\r\n") {
                match line.split_once(':') {
                    Some(("grpc-status", value)) => code = value.trim().to_owned(),
                    Some(("grpc-message", value)) => message = value.trim().to_owned(),
                    _ => {}
                }
            }
        }
    }
    (code, message)
}

#[tokio::test]
async fn browsers_calling_without_a_valid_token_are_refused_over_grpc_web() {
    let app = spawn_app().await;
    let unauthenticated = (Code::Unauthenticated as i32).to_string();

    for path in protected_methods() {
        let (http, content_type, code, message) = grpc_web_call(&app, &path, None).await;

        assert_eq!(http, 200, "{path}");
        assert!(
            content_type.starts_with("application/grpc-web"),
            "{path}: {content_type}"
        );
        assert_eq!(code, unauthenticated, "{path}");
        assert!(
            message.starts_with("missing%20authorization"),
            "{path}: {message}"
        );
    }
    let (_, _, code, message) = grpc_web_call(
        &app,
        "/chat.v1.ChatService/ListRooms",
        Some("Bearer not-a-token"),
    )
    .await;
    assert_eq!(
        (code, message),
        (unauthenticated, "invalid%20access%20token".to_owned())
    );
}

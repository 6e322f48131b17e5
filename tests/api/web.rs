//! What browsers and tools see: grpc-web over HTTP/1.1, CORS, reflection
//! and health.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use chat_client::pb;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use tokio_stream::StreamExt as _;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

use crate::helpers::{spawn_app, PASSWORD};

/// Frames a protobuf message as grpc-web does: flag byte, length, bytes.
fn grpc_web_frame(message: &impl prost::Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(0);
    frame.put_u32(body.len() as u32);
    frame.put_slice(&body);
    frame.freeze()
}

/// Splits a grpc-web response body into its message and its trailers.
fn parse_grpc_web(mut body: Bytes) -> (Vec<Bytes>, String) {
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while body.has_remaining() {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            messages.push(payload);
        } else {
            trailers.push_str(std::str::from_utf8(&payload).unwrap());
        }
    }
    (messages, trailers)
}

#[tokio::test]
async fn a_browser_can_register_over_grpc_web_on_http1() {
    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("http://{}/chat.v1.AuthService/Register", app.addr))
        .version(http::Version::HTTP_11)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "http://localhost:5173")
        .body(Full::new(grpc_web_frame(&pb::RegisterRequest {
            username: "webby".into(),
            password: PASSWORD.into(),
        })))
        .unwrap();

    let response = client.request(request).await.unwrap();

    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("grpc-message"),
        "{exposed}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let (messages, trailers) = parse_grpc_web(body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let registered = pb::RegisterResponse::decode(messages[0].clone()).unwrap();
    assert_eq!(registered.user.unwrap().username, "webby");
}

#[tokio::test]
async fn the_cors_preflight_allows_the_authorization_header_by_name() {
    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request =
        http::Request::options(format!("http://{}/chat.v1.ChatService/Subscribe", app.addr))
            .header("origin", "http://localhost:5173")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web,x-user-agent",
            )
            .body(Full::new(Bytes::new()))
            .unwrap();

    let response = client.request(request).await.unwrap();

    assert!(response.status().is_success(), "{}", response.status());
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
    ] {
        assert!(
            allowed.split(',').any(|h| h.trim() == header),
            "{header} in {allowed}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_the_chat_services() {
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };

    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();

    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "chat.v1.ChatService",
        "chat.v1.AuthService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
}

#[tokio::test]
async fn health_reports_serving() {
    let app = spawn_app().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);

    for service in ["", "chat.v1.ChatService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
}

#[tokio::test]
async fn the_browser_app_is_served_at_the_root() {
    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |path: &str| {
        let request = http::Request::get(format!("http://{}{path}", app.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.request(request)
    };

    let index = get("/").await.unwrap();
    let not_found = get("/no-such-file.js").await.unwrap();
    let app_route = get("/rooms").await.unwrap();

    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html");
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let body = index.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body)
            .to_ascii_lowercase()
            .starts_with("<!doctype html>"),
        "{body:?}"
    );
    assert_eq!(not_found.status(), 404);
    assert_eq!(app_route.status(), 200);
    assert_eq!(app_route.headers()["content-type"], "text/html");
}

/// The policy the app is written to: scripts, styles and connections from
/// its own origin only, no inline script or style, never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[tokio::test]
async fn every_response_of_the_browser_app_carries_the_security_headers() {
    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |path: String| {
        let request = http::Request::get(format!("http://{}{path}", app.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        client.request(request)
    };
    let index = get("/".into()).await.unwrap();
    let html = index.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    let script = html
        .split('"')
        .find(|part| part.starts_with("/assets/") && part.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script under /assets/ in {html}"))
        .to_owned();

    for (path, status) in [
        ("/".to_owned(), 200),
        (script, 200),
        ("/rooms".to_owned(), 200),
        ("/no-such-file.js".to_owned(), 404),
    ] {
        let response = get(path.clone()).await.unwrap();

        assert_eq!(response.status(), status, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"], CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn the_browser_app_goes_gzipped_to_a_browser_that_takes_it_and_calls_never_do() {
    use std::io::Read as _;

    let app = spawn_app().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |path: &str, gzip: bool| {
        let mut request = http::Request::get(format!("http://{}{path}", app.addr));
        if gzip {
            request = request.header("accept-encoding", "gzip, deflate, br");
        }
        client.request(request.body(Full::new(Bytes::new())).unwrap())
    };
    let html = get("/", false)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8_lossy(&html);
    let script = html
        .split('"')
        .find(|part| part.starts_with("/assets/") && part.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script under /assets/ in {html}"))
        .to_owned();

    let plain = get(&script, false).await.unwrap();
    assert_eq!(
        plain.headers().get("content-encoding"),
        None,
        "identity when gzip is not offered"
    );
    let plain = plain.into_body().collect().await.unwrap().to_bytes();
    let zipped = get(&script, true).await.unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert!(
        zipped.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding"),
        "caches keep the two apart"
    );
    assert_eq!(
        zipped.headers()["content-security-policy"],
        CONTENT_SECURITY_POLICY
    );
    let zipped = zipped.into_body().collect().await.unwrap().to_bytes();
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain, "the same file");
    assert!(
        zipped.len() * 2 < plain.len(),
        "{} gzipped bytes of {}",
        zipped.len(),
        plain.len()
    );

    // A browser offers gzip on its grpc-web calls too: they stay grpc-web
    // framed, never compressed by HTTP.
    let request = http::Request::post(format!("http://{}/chat.v1.AuthService/Register", app.addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("accept-encoding", "gzip")
        .body(Full::new(grpc_web_frame(&pb::RegisterRequest {
            username: "zippy".into(),
            password: PASSWORD.into(),
        })))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-encoding"), None);
    let (messages, trailers) =
        parse_grpc_web(response.into_body().collect().await.unwrap().to_bytes());
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    assert_eq!(messages.len(), 1);
}

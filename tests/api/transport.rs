//! Transport limits, connections, TLS, CORS and shutdown.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::pb::{self, client_event, server_event};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::helpers::{
    assert_status, spawn_app, spawn_app_with, Bystanders, TestApp, PASSWORD, PATIENCE,
};

/// The HTTP/2 client preface and an empty SETTINGS frame: what a client
/// sends first.
const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

fn health_request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

async fn check(channel: Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(health_request(""))
        .await
        .map(|response| response.into_inner().status)
}

/// Reads until the server closes the connection; how long that took.
async fn closed_by_server(mut stream: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server did not close the connection within {PATIENCE:?}"),
        }
    }
}

/// A new connection to the server from `source`, a local address (any of
/// 127.0.0.0/8 on Linux), as a client elsewhere would have.
async fn channel_from(app: &TestApp, source: &str) -> Channel {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source.parse::<IpAddr>().unwrap()));
    Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap()
}

/// A health watch, which never ends by itself: it holds a stream open on
/// its connection.
async fn watch_health(channel: Channel) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut watch = HealthClient::new(channel)
        .watch(health_request(""))
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    watch
}

/// Asserts that the server keeps the connection open for `quiet`.
async fn still_open(stream: &mut TcpStream, quiet: Duration) {
    let mut buf = [0; 1024];
    let deadline = tokio::time::Instant::now() + quiet;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return,
            Ok(Ok(0)) => panic!("the server closed the connection"),
            Ok(Ok(_)) => continue,
            Ok(Err(error)) => panic!("the connection failed: {error}"),
        }
    }
}

#[tokio::test]
async fn a_request_over_the_message_size_limit_is_refused_naming_the_limit() {
    let app = spawn_app().await;
    let mut bystanders = Bystanders::join(&app).await;
    let mut auth = app.auth();
    let request = pb::RegisterRequest {
        username: "x".repeat(70 * 1024),
        password: PASSWORD.into(),
    };
    let size = request.encoded_len();

    let refused = auth.register(request).await;

    assert_status(
        refused,
        Code::ResourceExhausted,
        &format!("message too large: {size} bytes, the limit is 65536 bytes"),
    );
    // The same client, on the same connection, goes on.
    let registered = auth
        .register(pb::RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("register after a refusal");
    assert_eq!(registered.into_inner().user.unwrap().username, "alice");
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn a_chat_stream_message_over_the_limit_ends_the_stream_naming_the_limit() {
    let app = spawn_app_with(|config| config.limits.max_message_size = 8 * 1024).await;
    let mut bystanders = Bystanders::join(&app).await;
    let alice = app.user("alice").await;
    let room = alice.create_room("general").await;
    let (mut stream, _) = alice.chat_stream().await;
    let send = pb::SendMessageRequest {
        room_id: room.id.clone(),
        text: "x".repeat(9 * 1024),
        client_msg_id: "big".into(),
        ..Default::default()
    };
    let size = pb::ClientEvent {
        event: Some(client_event::Event::Send(send.clone())),
    }
    .encoded_len();

    stream.send(client_event::Event::Send(send)).await;

    stream
        .assert_ends_with(
            Code::ResourceExhausted,
            &format!("message too large: {size} bytes, the limit is 8192 bytes"),
        )
        .await;
    // Nothing was stored, and alice's next stream works.
    let (mut again, _) = alice.chat_stream().await;
    again.send_text(&room, "still here", "small").await;
    let server_event::Event::Sent(sent) = again.next().await else {
        panic!("the send should be acknowledged");
    };
    let sent = sent.message.unwrap();
    assert_eq!((sent.seq, sent.text.as_str()), (1, "still here"));
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn metadata_over_the_header_list_limit_fails_the_call_and_the_connection_goes_on() {
    // Below h2's default of 16 KiB, so only the configured limit refuses it.
    let app = spawn_app_with(|config| config.limits.max_header_list_size = 4 * 1024).await;
    let mut bystanders = Bystanders::join(&app).await;
    let mut health = HealthClient::new(app.channel().await);
    let mut request = tonic::Request::new(health_request(""));
    request
        .metadata_mut()
        .insert("x-padding", "x".repeat(8 * 1024).parse().unwrap());

    let refused = health.check(request).await;

    // h2 answers 431 itself, before any gRPC code runs.
    assert_status(
        refused,
        Code::Unknown,
        "grpc-status header missing, mapped from HTTP status code 431",
    );
    let status = health.check(health_request("")).await.unwrap().into_inner();
    assert_eq!(status.status, ServingStatus::Serving as i32);
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn http1_headers_over_the_header_list_limit_get_431() {
    let app = spawn_app_with(|config| config.limits.max_header_list_size = 4 * 1024).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = |padding: usize| {
        http::Request::post(format!("http://{}/chat.v1.AuthService/Register", app.addr))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("x-padding", "x".repeat(padding))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let refused = client.request(request(8 * 1024)).await.unwrap();
    let served = client.request(request(3 * 1024)).await.unwrap();

    assert_eq!(refused.status(), 431);
    assert_eq!(served.status(), 200);
}

#[tokio::test]
async fn calls_beyond_the_concurrent_stream_limit_wait_for_a_free_stream() {
    let app = spawn_app_with(|config| config.limits.max_concurrent_streams = 2).await;
    let mut bystanders = Bystanders::join(&app).await;
    let mut health = HealthClient::new(app.channel().await);
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut watch = health
            .watch(health_request(""))
            .await
            .expect("watch")
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32);
        watches.push(watch);
    }

    let mut third = tokio::spawn(async move { health.check(health_request("")).await });

    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut third)
            .await
            .is_err(),
        "the third call should wait for a free stream"
    );
    bystanders.assert_chat_is_normal().await;
    assert_eq!(
        check(app.channel().await).await.unwrap(),
        ServingStatus::Serving as i32,
        "another connection is not held up"
    );
    watches.pop();
    let answered = tokio::time::timeout(PATIENCE, third)
        .await
        .expect("the third call should go once a stream is free")
        .unwrap()
        .expect("the third call");
    assert_eq!(answered.into_inner().status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_while_all_have_calls_in_flight() {
    // The test app's own connection, where the bystanders' stream is open,
    // is the first of the two.
    let app = spawn_app_with(|config| config.limits.max_connections = 2).await;
    let mut bystanders = Bystanders::join(&app).await;
    let second = app.channel().await;
    let watch = watch_health(second.clone()).await;
    app.metric_becomes("chat_connections_open", 2.0).await;

    let third = check(app.channel().await).await;

    assert_status(
        third,
        Code::ResourceExhausted,
        "too many connections to this server: at most 2; retry later",
    );
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"connections\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("chat_connections_open").await, 2.0);
    assert_eq!(app.metric("chat_connections_evicted_total").await, 0.0);
    bystanders.assert_chat_is_normal().await;
    drop((watch, second));
    app.metric_becomes("chat_connections_open", 1.0).await;
    let fourth = app.channel().await;
    assert_eq!(
        check(fourth.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert_eq!(app.metric("chat_connections_open").await, 2.0);
}

#[tokio::test]
async fn a_refused_http1_connection_is_told_why_and_closed() {
    let app = spawn_app_with(|config| config.limits.max_connections = 1).await;
    let _busy = Bystanders::join(&app).await;
    let mut refused = TcpStream::connect(app.addr).await.unwrap();

    refused
        .write_all(b"GET / HTTP/1.1\r\nhost: chat\r\n\r\n")
        .await
        .unwrap();

    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, refused.read_to_string(&mut answer))
        .await
        .expect("the server should answer and close")
        .unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert_eq!(
        body,
        "too many connections to this server: at most 1; retry later"
    );
}

#[tokio::test]
async fn beyond_twice_the_cap_connections_are_dropped_at_once() {
    // The test app's own connection, holding a stream, fills the cap of one.
    let app = spawn_app_with(|config| config.limits.max_connections = 1).await;
    let _busy = Bystanders::join(&app).await;
    let mut refused = TcpStream::connect(app.addr).await.unwrap();
    still_open(&mut refused, Duration::from_millis(200)).await;

    let dropped = TcpStream::connect(app.addr).await.unwrap();

    assert!(closed_by_server(dropped).await < Duration::from_millis(500));
    still_open(&mut refused, Duration::from_millis(100)).await;
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"connections\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_connection_without_calls_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(500);
    let app = spawn_app_with(|config| config.limits.idle_timeout = idle).await;
    // Before the connect: the server may accept before this task resumes.
    let opened = Instant::now();
    let mut connection = TcpStream::connect(app.addr).await.unwrap();

    connection.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();

    closed_by_server(connection).await;
    let open_for = opened.elapsed();
    assert!(open_for >= idle, "closed after {open_for:?}");
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_after_the_first_request_timeout() {
    let timeout = Duration::from_millis(300);
    let app = spawn_app_with(|config| config.limits.first_request_timeout = timeout).await;
    // Before the connect: the server may accept before this task resumes.
    let opened = Instant::now();
    let silent = TcpStream::connect(app.addr).await.unwrap();

    closed_by_server(silent).await;
    let open_for = opened.elapsed();

    assert!(open_for >= timeout, "closed after {open_for:?}");
}

#[tokio::test]
async fn sockets_that_send_only_the_preface_are_closed_at_the_first_request_timeout() {
    let timeout = Duration::from_millis(500);
    let app = spawn_app_with(|config| {
        config.limits.max_connections = 3;
        config.limits.first_request_timeout = timeout;
    })
    .await;
    // The test app's own connection holds the bystanders' stream.
    let mut bystanders = Bystanders::join(&app).await;
    let opened = Instant::now();
    let mut half_open = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        socket.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
        half_open.push(socket);
    }
    app.metric_becomes("chat_connections_open", 3.0).await;

    // Meanwhile, a client that calls gets in: one of them makes room.
    let legitimate = app.channel().await;
    let served = check(legitimate.clone()).await;
    for socket in half_open {
        closed_by_server(socket).await;
    }
    let all_closed_after = opened.elapsed();

    assert_eq!(served.unwrap(), ServingStatus::Serving as i32);
    assert!(
        all_closed_after >= timeout && all_closed_after < timeout + Duration::from_secs(1),
        "the half-open connections were closed after {all_closed_after:?}"
    );
    // The client that called is past its own deadline, and still connected.
    tokio::time::sleep(timeout).await;
    assert_eq!(app.metric("chat_connections_open").await, 2.0);
    assert_eq!(app.metric("chat_connections_evicted_total").await, 1.0);
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"connections\"}")
            .await,
        0.0
    );
    bystanders.assert_chat_is_normal().await;
}

#[tokio::test]
async fn at_the_cap_an_idle_connection_makes_room_and_one_with_an_open_stream_is_kept() {
    let app = spawn_app_with(|config| config.limits.max_connections = 2).await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    // The test app's own connection holds alice's stream.
    let (mut stream, _) = alice.chat_stream().await;
    // The other one made a call over HTTP/1.1 and keeps the connection
    // alive, idle.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut idle, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let page = idle
        .send_request(
            http::Request::get("/")
                .header("host", "chat")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.into_body().collect().await.unwrap();
    app.metric_becomes("chat_connections_open", 2.0).await;

    let newcomer = app.channel().await;
    let served = check(newcomer.clone()).await;

    assert_eq!(served.unwrap(), ServingStatus::Serving as i32);
    tokio::time::timeout(Duration::from_millis(500), connection)
        .await
        .expect("the idle connection should be closed")
        .unwrap()
        .expect("closed cleanly");
    assert_eq!(app.metric("chat_connections_open").await, 2.0);
    assert_eq!(app.metric("chat_connections_evicted_total").await, 1.0);
    bob.send(&room, "still with us?").await;
    assert_eq!(stream.next_message().await.text, "still with us?");
}

#[tokio::test]
async fn a_client_address_over_its_connection_cap_is_refused_while_another_address_connects() {
    // The test app's own connection, from 127.0.0.1, is the first of two.
    let app = spawn_app_with(|config| config.limits.max_connections_per_ip = 2).await;
    let second = app.channel().await;
    assert_eq!(
        check(second.clone()).await.unwrap(),
        ServingStatus::Serving as i32
    );
    app.metric_becomes("chat_connections_open", 2.0).await;

    let third = check(app.channel().await).await;
    let elsewhere = channel_from(&app, "127.0.0.2").await;
    let served_elsewhere = check(elsewhere.clone()).await;

    assert_status(
        third,
        Code::ResourceExhausted,
        "too many connections from your address: at most 2; retry later",
    );
    assert_eq!(served_elsewhere.unwrap(), ServingStatus::Serving as i32);
    assert_eq!(
        app.metric("chat_rejections_total{limit=\"connections_per_ip\"}")
            .await,
        1.0
    );
    assert_eq!(app.metric("chat_connections_open").await, 3.0);
    drop(second);
    app.metric_becomes("chat_connections_open", 2.0).await;
    assert_eq!(
        check(app.channel().await).await.unwrap(),
        ServingStatus::Serving as i32,
        "a place given back is free for the same address"
    );
}

#[tokio::test]
async fn a_connection_with_an_open_stream_is_not_idle() {
    let app =
        spawn_app_with(|config| config.limits.idle_timeout = Duration::from_millis(300)).await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    let (mut stream, _) = alice.chat_stream().await;

    tokio::time::sleep(Duration::from_millis(1200)).await;

    bob.send(&room, "are you there?").await;
    assert_eq!(stream.next_message().await.text, "are you there?");
}

/// A self-signed certificate for `localhost`, as PEM files in `dir`: the
/// certificate's path, the key's path and the certificate.
fn self_signed_localhost(dir: &Path) -> (PathBuf, PathBuf, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert_pem)
}

#[tokio::test]
async fn a_client_trusting_the_certificate_registers_and_logs_in_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed_localhost(dir.path());
    let app = spawn_app_with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    })
    .await;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://127.0.0.1:{}", app.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection");
    let mut auth = AuthServiceClient::new(channel);

    let registered = auth
        .register(pb::RegisterRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("register over TLS")
        .into_inner();
    let login = auth
        .login(pb::LoginRequest {
            username: "alice".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login over TLS")
        .into_inner();

    assert_eq!(registered.user.unwrap().username, "alice");
    assert_eq!(login.user.unwrap().username, "alice");
    assert!(!login.access_token.is_empty());
}

#[tokio::test]
async fn a_plain_text_client_cannot_call_a_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = self_signed_localhost(dir.path());
    let app = spawn_app_with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    })
    .await;

    let plain = check(app.channel().await).await;

    // The client reads the server's TLS alert as an oversized HTTP/2 frame.
    assert_status(plain, Code::Internal, "h2 protocol error: http2 error");
}

#[tokio::test]
async fn tls_offers_http2_and_http1_by_alpn_and_serves_the_browser_app_on_http1() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, cert_pem) = self_signed_localhost(dir.path());
    let app = spawn_app_with(|config| {
        config.tls_cert = Some(cert);
        config.tls_key = Some(key);
    })
    .await;
    let connect = |alpn: &[&[u8]]| {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let addr = app.addr;
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            connector
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .expect("a TLS handshake")
        }
    };

    let h2 = connect(&[b"h2", b"http/1.1"]).await;
    let http1 = connect(&[b"http/1.1"]).await;

    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(http1))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get("/")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/html");
}

#[tokio::test]
async fn a_tls_certificate_that_cannot_be_read_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = chat_server::config::Config::defaults();
    config.database_url = format!("sqlite://{}/chat.db", dir.path().display());
    let missing = dir.path().join("missing.pem");
    config.tls_cert = Some(missing.clone());
    config.tls_key = Some(missing.clone());
    let state = chat_server::state::AppState::build(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();

    let started = chat_server::startup::run(listener, state, std::future::pending()).await;

    let error = started.expect_err("the start should fail");
    assert_eq!(
        format!("{error:#}"),
        format!(
            "reading the TLS certificate chain from {}: I/O error: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

/// The answer to a CORS preflight from `origin`, sent to the server as
/// `host`.
async fn preflight(
    app: &crate::helpers::TestApp,
    origin: &str,
    host: &str,
) -> http::Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request =
        http::Request::options(format!("http://{}/chat.v1.ChatService/Subscribe", app.addr))
            .header("host", host)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-grpc-web",
            )
            .body(Full::new(Bytes::new()))
            .unwrap();
    client.request(request).await.unwrap()
}

fn cors_headers<B>(response: &http::Response<B>) -> Vec<String> {
    response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_with_that_origin() {
    let app = spawn_app_with(|config| {
        config.limits.cors_origins = vec!["https://chat.example.org".into()];
    })
    .await;
    let own_host = "chat.example.net:8443";

    for origin in [
        "http://localhost:5173",
        "https://chat.example.org",
        "https://chat.example.net:8443",
    ] {
        let response = preflight(&app, origin, own_host).await;

        assert!(
            response.status().is_success(),
            "{origin}: {}",
            response.status()
        );
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        let allowed = response.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            allowed.split(',').any(|h| h.trim() == "authorization"),
            "{origin}: {allowed}"
        );
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-credentials"),
            "{origin}"
        );
    }
}

#[tokio::test]
async fn a_foreign_origin_gets_no_cors_headers() {
    let app = spawn_app_with(|config| {
        config.limits.cors_origins = vec!["https://chat.example.org".into()];
    })
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    let preflight = preflight(&app, "https://evil.example", "chat.example.net").await;
    let call = client
        .request(
            http::Request::post(format!("http://{}/chat.v1.AuthService/Register", app.addr))
                .header("content-type", "application/grpc-web+proto")
                .header("origin", "https://evil.example")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(cors_headers(&preflight), Vec::<String>::new());
    assert_eq!(cors_headers(&call), Vec::<String>::new());
    let _ = call.into_body().collect().await;
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let app = spawn_app_with(|config| config.limits.cors_origins = vec!["*".into()]).await;

    let response = preflight(&app, "https://anyone.example", "chat.example.net").await;

    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://anyone.example"
    );
    assert!(!response
        .headers()
        .contains_key("access-control-allow-credentials"));
}

#[tokio::test]
async fn health_watchers_hear_not_serving_before_streams_end_at_shutdown() {
    let mut app = spawn_app().await;
    let alice = app.user("alice").await;
    let (mut stream, _) = alice.chat_stream().await;
    let mut watch = HealthClient::new(app.channel().await)
        .watch(health_request("chat.v1.ChatService"))
        .await
        .unwrap()
        .into_inner();
    let serving = watch.message().await.unwrap().unwrap();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    // The stream's end is polled first, so if both arrive together the
    // stream's is recorded first and the test fails.
    let ((stream_ended_at, ended), (not_serving_at, status), ()) = tokio::join!(
        async {
            let ended = stream.ended_with().await;
            (Instant::now(), ended)
        },
        async move {
            let status = watch.message().await.unwrap().unwrap().status;
            (Instant::now(), status)
        },
        app.stop(),
    );

    assert_eq!(status, ServingStatus::NotServing as i32);
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::Unavailable, "server is shutting down")
    );
    assert!(not_serving_at < stream_ended_at);
}

#[tokio::test]
async fn a_call_still_in_flight_does_not_hold_the_stop_beyond_the_grace() {
    let grace = Duration::from_millis(300);
    let mut app = spawn_app_with(|config| config.shutdown_grace = grace).await;
    // A health watch never ends by itself.
    let mut watch = HealthClient::new(app.channel().await)
        .watch(health_request(""))
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();

    let started = Instant::now();
    tokio::time::timeout(PATIENCE, app.stop())
        .await
        .expect("the stop should not wait for the watch");
    let stopped_after = started.elapsed();

    assert!(stopped_after >= grace, "stopped after {stopped_after:?}");
    assert!(
        stopped_after < grace + Duration::from_secs(1),
        "stopped after {stopped_after:?}"
    );
    let not_serving = watch.message().await.unwrap().unwrap();
    assert_eq!(not_serving.status, ServingStatus::NotServing as i32);
    // Then its connection is cut.
    assert_status(
        watch.message().await,
        Code::Unknown,
        "h2 protocol error: error reading a body from connection",
    );
}

#[tokio::test]
async fn a_full_history_page_of_the_longest_messages_fits_in_a_response() {
    let app = spawn_app().await;
    let (alice, bob, room) = app.alice_and_bob_in_a_room().await;
    alice.flood(&room, 4, 50, 4096 - "w0 m49 ".len()).await;
    let page = bob.history(&room, 0, 200).await;

    assert_eq!(page.messages.len(), 200);
    // Far more than a request may be (64 KiB), well within a response.
    assert!(page.encoded_len() > 800 * 1000, "{}", page.encoded_len());
}

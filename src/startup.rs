//! Serving: every gRPC service, grpc-web with CORS, and the browser app on
//! one listener (TLS or plain text), with the transport limits of
//! `config.limits` and a graceful shutdown bounded by `shutdown_grace`.
//! Connections themselves (the cap, timeouts, TLS) are `net`'s concern.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use http::header::{HeaderName, ACCESS_CONTROL_ALLOW_ORIGIN, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::layer::AuthLayer;
use crate::auth::Authenticator;
use crate::net::{self, ConnectionLayer, MessageLimitLayer};
use crate::pb::auth_service_server::AuthServiceServer;
use crate::pb::chat_service_server::ChatServiceServer;
use crate::service::{AuthApi, ChatApi};
use crate::state::AppState;

/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const SERVICES: [&str; 2] = ["chat.v1.AuthService", "chat.v1.ChatService"];

/// Between reporting NOT_SERVING and ending the streams, so that health
/// watchers (load balancers, clients) hear the server is going before their
/// streams end. Short, because every stop waits for it.
const NOT_SERVING_NOTICE: Duration = Duration::from_millis(100);

/// Once the grace is over and the connections are told to close, how long
/// the stop waits for them before it closes the state regardless.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Streams a client may open and reset before the server accepted them,
/// per connection, before it is sent away (GOAWAY). Such resets cost the
/// server work but the client nothing: the "rapid reset" attack
/// (CVE-2023-44487). A well-behaved client cancels a handful at once, not
/// twenty; twenty is h2's own default since the fix.
const MAX_PENDING_ACCEPT_RESETS: usize = 20;

/// Streams the server may have to reset because of the client's errors
/// (malformed or oversized frames), per connection, before it is sent away:
/// each reset is work a client can provoke for free ("MadeYouReset",
/// CVE-2025-8671). Correct clients provoke none; a quarter of hyper's
/// default of 1024 still leaves a buggy client room to recover.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Serves on `listener` until `shutdown` completes. Then health reports
/// NOT_SERVING, the open streams end, calls in flight get
/// `config.shutdown_grace` to finish before their connections are closed
/// anyway, and the state is closed.
///
/// # Errors
/// When the TLS certificate or key cannot be loaded, or the server cannot
/// start or fails while serving.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::clone(&state.config);
    let limits = &config.limits;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(net::tls_acceptor(cert, key)?),
        _ => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for service in SERVICES {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let max = limits.max_message_size;
    // grpcurl 1.8 asks for v1alpha; newer tools for v1.
    let reflection_v1 = reflection()
        .build_v1()
        .context("building reflection v1")?
        .max_decoding_message_size(max)
        .max_encoding_message_size(limits.max_response_size);
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?
        .max_decoding_message_size(max)
        .max_encoding_message_size(limits.max_response_size);

    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(%address, tls = tls.is_some(), "serving gRPC, grpc-web and HTTP/1.1");

    // Cancelled when the shutdown starts, and when its grace is over.
    let stopping = CancellationToken::new();
    let grace_over = CancellationToken::new();
    let stop = {
        let state = state.clone();
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
            tracing::info!("shutting down: reporting NOT_SERVING, then ending streams");
            for service in SERVICES.into_iter().chain([""]) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            tokio::time::sleep(NOT_SERVING_NOTICE).await;
            state.end_streams();
        }
    };
    let grpc = Routes::new(
        health_service
            .max_decoding_message_size(max)
            .max_encoding_message_size(limits.max_response_size),
    )
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha)
    .add_service(
        AuthServiceServer::new(AuthApi::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(limits.max_response_size),
    )
    .add_service(
        ChatServiceServer::new(ChatApi::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(limits.max_response_size),
    );
    // Every call, to a method that exists or not, goes through grpc-web's
    // translation, then the auth layer (deny by default: src/auth/layer.rs),
    // then the message limit, which so sees plain gRPC framing. A method
    // or service that does not exist answers UNIMPLEMENTED (tonic's
    // fallback), to a caller with a token.
    let authenticator = Authenticator::new(
        Arc::clone(&state.tokens),
        Arc::clone(&state.store),
        Arc::clone(&state.hub),
    );
    let calls = grpc
        .into_axum_router()
        .layer(MessageLimitLayer::new(max))
        .layer(AuthLayer::new(authenticator))
        .layer(tonic_web::GrpcWebLayer::new());
    // The app's files go gzipped to a browser that takes it (its bundle
    // shrinks to a third): static files only, no secret to leak through
    // compression. gRPC calls never pass here.
    let app = axum::Router::new()
        .fallback(crate::web::serve)
        .layer(tower_http::compression::CompressionLayer::new());
    let routes = axum::Router::new().fallback_service(CallsOrApp { calls, app });
    let incoming = net::Incoming::new(
        listener,
        tls,
        limits,
        Arc::clone(&state.metrics),
        grace_over.clone(),
    );
    let serving = Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_size)
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .layer(CorsOnlyWhenAllowed)
        .layer(cors(CorsPolicy::new(&limits.cors_origins)))
        .layer(ConnectionLayer::new(limits, Arc::clone(&state.metrics)))
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(incoming, stop);
    tokio::pin!(serving);
    let grace = async {
        stopping.cancelled().await;
        tokio::time::sleep(config.shutdown_grace).await;
    };
    let served = tokio::select! {
        served = &mut serving => served,
        () = grace => {
            tracing::warn!(
                grace = ?config.shutdown_grace,
                "calls still in flight after the shutdown grace: closing their connections"
            );
            grace_over.cancel();
            match tokio::time::timeout(CLOSE_WAIT, &mut serving).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::error!("connections still open after being closed; stopping anyway");
                    Ok(())
                }
            }
        }
    };
    served.context("serving")?;
    state.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Lets browser pages of allowed origins call the API through grpc-web.
/// Tokens travel in the `authorization` header, never in cookies, so
/// credentials stay off.
fn cors(policy: CorsPolicy) -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, request| {
            let host = request
                .headers
                .get(HOST)
                .and_then(|host| host.to_str().ok())
                .or_else(|| request.uri.authority().map(|a| a.as_str()));
            policy.allows(origin, host)
        }))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
        ])
        .max_age(CORS_MAX_AGE)
}

/// The browser origins allowed to call: the server's own, any page served
/// from this machine (localhost, 127.0.0.1 or [::1], any port, for
/// development), and those configured (`--cors-origins`, where `*` allows
/// any).
#[derive(Clone, Debug)]
struct CorsPolicy {
    any: bool,
    origins: Arc<[String]>,
}

impl CorsPolicy {
    fn new(configured: &[String]) -> Self {
        let origins: Vec<String> = configured
            .iter()
            .map(|origin| origin.trim().trim_end_matches('/').to_owned())
            .filter(|origin| !origin.is_empty())
            .collect();
        Self {
            any: origins.iter().any(|origin| origin == "*"),
            origins: origins.into(),
        }
    }

    /// Whether `origin` may call; `host` is where the request was sent.
    fn allows(&self, origin: &HeaderValue, host: Option<&str>) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if self.any
            || self
                .origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return false;
        }
        host.is_some_and(|host| host.eq_ignore_ascii_case(authority)) || is_loopback(authority)
    }
}

/// `localhost`, `127.0.0.1` or `[::1]`, with or without a port.
fn is_loopback(authority: &str) -> bool {
    let host_len = if authority.starts_with('[') {
        authority.find(']').map_or(authority.len(), |end| end + 1)
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, port) = authority.split_at(host_len);
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .any(|loopback| host.eq_ignore_ascii_case(loopback))
}

/// Removes every CORS header from responses that do not allow their
/// origin: tower-http's layer still adds the allowed methods, headers and
/// the like, but a page of a foreign origin should learn nothing.
#[derive(Clone, Copy)]
struct CorsOnlyWhenAllowed;

impl<S> Layer<S> for CorsOnlyWhenAllowed {
    type Service = CorsOnlyWhenAllowedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsOnlyWhenAllowedService(inner)
    }
}

#[derive(Clone)]
struct CorsOnlyWhenAllowedService<S>(S);

impl<S, B, R> Service<Request<B>> for CorsOnlyWhenAllowedService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let responding = self.0.call(request);
        Box::pin(async move {
            let mut response = responding.await?;
            let headers = response.headers_mut();
            if !headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
                let cors: Vec<HeaderName> = headers
                    .keys()
                    .filter(|name| name.as_str().starts_with("access-control-"))
                    .cloned()
                    .collect();
                for name in cors {
                    headers.remove(name);
                }
            }
            Ok(response)
        })
    }
}

/// Sends gRPC and grpc-web calls (by their content type, whatever their
/// path) to the services, behind the auth layer, and everything else to
/// the browser app, which reaches no handler. Dispatching by path instead
/// would let a request to a service's path that does not say it is gRPC
/// past anything keyed on the content type.
#[derive(Clone)]
struct CallsOrApp {
    calls: axum::Router,
    app: axum::Router,
}

impl Service<axum::extract::Request> for CallsOrApp {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <axum::Router as Service<axum::extract::Request>>::Future;

    /// Routers are always ready.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        if is_grpc(request.headers()) {
            self.calls.call(request)
        } else {
            self.app.call(request)
        }
    }
}

/// Whether the content type is gRPC's or grpc-web's (`application/grpc`,
/// `application/grpc+proto`, `application/grpc-web-text`...).
fn is_grpc(headers: &http::HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        value
            .as_bytes()
            .get(..GRPC.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(GRPC))
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(policy: &CorsPolicy, origin: &str, host: &str) -> bool {
        policy.allows(&HeaderValue::from_str(origin).unwrap(), Some(host))
    }

    #[test]
    fn pages_of_this_machine_and_of_the_server_itself_may_call() {
        let policy = CorsPolicy::new(&[]);
        let host = "chat.example.com:8443";

        for origin in [
            "http://localhost:5173",
            "https://localhost",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "https://chat.example.com:8443",
        ] {
            assert!(allows(&policy, origin, host), "{origin}");
        }
    }

    #[test]
    fn other_origins_may_not_call_unless_configured() {
        let policy = CorsPolicy::new(&["https://chat.example.org/".into()]);
        let host = "127.0.0.1:50051";

        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://localhost:80@evil.example",
            "http://localhost:",
            "file://localhost",
            "null",
            "https://chat.example.org:444",
        ] {
            assert!(!allows(&policy, origin, host), "{origin}");
        }
        assert!(allows(&policy, "https://chat.example.org", host));
        assert!(allows(
            &CorsPolicy::new(&["*".into()]),
            "https://evil.example",
            host
        ));
    }
}

//! Serving: every gRPC service, grpc-web with CORS, and the browser app on
//! one listener, with graceful shutdown.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE};
use http::Method;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::pb::auth_service_server::AuthServiceServer;
use crate::pb::chat_service_server::ChatServiceServer;
use crate::service::{AuthApi, ChatApi};
use crate::state::AppState;

/// How long browsers may cache a CORS preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
const SERVICES: [&str; 2] = ["chat.v1.AuthService", "chat.v1.ChatService"];

/// Serves on `listener` until `shutdown` completes, then ends the open
/// streams, lets in-flight calls finish, and closes the state.
///
/// # Errors
/// When the server cannot start or fails while serving.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for service in SERVICES {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    // grpcurl 1.8 asks for v1alpha; newer tools for v1.
    let reflection_v1 = reflection().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("building reflection v1alpha")?;

    let address = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(%address, "serving gRPC, grpc-web and HTTP/1.1");

    let stopping = {
        let state = state.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: ending streams");
            for service in SERVICES.into_iter().chain([""]) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
            state.end_streams();
        }
    };
    let grpc = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthServiceServer::new(AuthApi::new(state.clone())))
        .add_service(ChatServiceServer::new(ChatApi::new(state.clone())));
    // grpc-web for the gRPC methods only (it refuses other HTTP/1.1
    // requests); whatever is not a gRPC method is the browser app.
    let routes = grpc
        .into_axum_router()
        .layer(tonic_web::GrpcWebLayer::new())
        .fallback(crate::web::serve);
    Server::builder()
        .accept_http1(true)
        .layer(cors())
        .add_routes(Routes::from(routes))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopping,
        )
        .await
        .context("serving")?;
    state.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Lets browser pages call the API through grpc-web. Tokens travel in the
/// `authorization` header, never in cookies, so credentials stay off.
fn cors() -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
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

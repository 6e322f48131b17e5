//! The one door every call goes through: a tower layer in front of every
//! gRPC service that authenticates the call before any handler runs, deny
//! by default.
//!
//! A call to a method on [`PUBLIC_METHODS`] or of a service on
//! [`PUBLIC_SERVICES`] passes as it came. Any other call, to a method that
//! exists or not, needs a valid `authorization: Bearer <access token>`:
//! the layer checks it exactly as [`super::authenticate`] does (the token,
//! then the session's liveness through the cache and the store), puts the
//! [`Principal`] in the request's extensions, and calls the service, whose
//! handler takes it with [`principal`]. On failure the layer answers the
//! call itself, UNAUTHENTICATED saying why, as a trailers-only response
//! (`grpc-status` in the headers), which grpc-web's translation around the
//! layer passes to browsers as it does every handler's error.
//!
//! So a new RPC needs a token the day it is added, and the test that walks
//! every method of the descriptor set (`tests/api/auth_layer.rs`) proves it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::{Authenticator, Principal};
use crate::error::{Error, Result};

/// The methods anyone may call, as their paths: what a caller does before
/// holding an access token.
pub const PUBLIC_METHODS: [&str; 3] = [
    "/chat.v1.AuthService/Register",
    "/chat.v1.AuthService/Login",
    "/chat.v1.AuthService/Refresh",
];

/// The services every method of which anyone may call: health checks for
/// load balancers, and reflection for tools (it describes the API, whose
/// contract is public anyway).
pub const PUBLIC_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Whether a call to `path` (`/package.Service/Method`) may go without a
/// token.
pub fn is_public(path: &str) -> bool {
    if PUBLIC_METHODS.contains(&path) {
        return true;
    }
    let Some((service, method)) = path.strip_prefix('/').and_then(|path| path.split_once('/'))
    else {
        return false;
    };
    !method.is_empty() && !method.contains('/') && PUBLIC_SERVICES.contains(&service)
}

/// The caller the layer authenticated, taken out of the request's
/// extensions (once: a handler takes it first thing).
///
/// # Errors
/// INTERNAL, logged, when there is none: the service is wired without the
/// layer in front of it, a bug no client can cause.
pub fn principal<T>(request: &mut tonic::Request<T>) -> Result<Principal> {
    request
        .extensions_mut()
        .remove::<Principal>()
        .ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
            "no authenticated caller in the request: is the auth layer in front of this service?"
        ))
        })
}

/// Authenticates every call not on the allow-list before the service
/// sees it.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = RequireCaller<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireCaller {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service of [`AuthLayer`].
#[derive(Clone)]
pub struct RequireCaller<S> {
    inner: S,
    authenticator: Authenticator,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for RequireCaller<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if is_public(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The clone waits for its own readiness; the ready one serves this
        // call once the caller is known.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            match authenticator.authenticate(request.headers()).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_is_public() {
        for path in [
            "/chat.v1.AuthService/Register",
            "/chat.v1.AuthService/Login",
            "/chat.v1.AuthService/Refresh",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/chat.v1.AuthService/Logout",
            "/chat.v1.AuthService/Register/",
            "/chat.v1.AuthService/RegisterX",
            "/chat.v1.ChatService/SendMessage",
            "/chat.v1.NoSuchService/Login",
            "/grpc.health.v1.Health/",
            "/grpc.health.v1.Health",
            "/grpc.health.v1.Health/Check/x",
            "/grpc.health.v1.HealthX/Check",
            "grpc.health.v1.Health/Check",
            "/",
            "",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }
}

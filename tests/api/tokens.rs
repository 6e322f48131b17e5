//! Every kind of bad token is UNAUTHENTICATED, on unary calls and streams.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chat_client::pb;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tonic::Code;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// Secret the test server signs with, so tests can forge near-valid tokens.
const SECRET: &str = "a test secret of enough length";

async fn app_with_known_secret() -> TestApp {
    spawn_app_with(|config| config.jwt_secret = Some(SECRET.parse().unwrap())).await
}

fn sign(claims: &serde_json::Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Calls a unary RPC and opens both streams with one `authorization` value;
/// all three must fail UNAUTHENTICATED with `message`.
async fn assert_rejected(app: &TestApp, authorization: Option<&str>, message: &str) {
    let mut chat = app.chat_with_authorization(authorization);
    let unary = chat
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .unwrap_err();
    let subscribe = chat
        .subscribe(pb::SubscribeRequest::default())
        .await
        .unwrap_err();
    let stream = chat
        .chat_stream(tokio_stream::iter(Vec::<pb::ClientEvent>::new()))
        .await
        .unwrap_err();
    for status in [unary, subscribe, stream] {
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unauthenticated, message),
            "authorization {authorization:?}"
        );
    }
    assert_eq!(app.state.hub.open_streams(), 0);
}

#[tokio::test]
async fn every_kind_of_bad_token_is_unauthenticated() {
    let app = app_with_known_secret().await;
    let alice = app.user("alice").await;
    let claims = |changes: serde_json::Value| {
        let mut claims = json!({
            "sub": alice.user.id, "sid": alice.login.session_id,
            "iat": now(), "exp": now() + 600, "iss": "chat-server", "aud": "chat",
        });
        for (key, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    let valid = sign(&claims(json!({})), SECRET, Algorithm::HS256);
    let unsigned = {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        format!("{header}.{body}.")
    };
    let tampered = {
        let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims(json!({"sub": "someone-else"})).to_string());
        parts.join(".")
    };
    let cases: Vec<(Option<String>, &str)> = vec![
        (
            None,
            "missing authorization metadata: send 'authorization: Bearer <access_token>'",
        ),
        (
            Some(format!("Basic {valid}")),
            "authorization must use the Bearer scheme",
        ),
        (Some("Bearer".into()), "the bearer token is empty"),
        (Some("Bearer garbage".into()), "invalid access token"),
        (Some(format!("Bearer {tampered}")), "invalid access token"),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(json!({})),
                    "another secret entirely",
                    Algorithm::HS256
                )
            )),
            "invalid access token",
        ),
        (Some(format!("Bearer {unsigned}")), "invalid access token"),
        (
            Some(format!(
                "Bearer {}",
                sign(&claims(json!({})), SECRET, Algorithm::HS512)
            )),
            "invalid access token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(json!({"exp": now() - 60})),
                    SECRET,
                    Algorithm::HS256
                )
            )),
            "access token expired",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(json!({"nbf": now() + 600})),
                    SECRET,
                    Algorithm::HS256
                )
            )),
            "access token not valid yet",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(&claims(json!({"exp": null})), SECRET, Algorithm::HS256)
            )),
            "invalid access token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(json!({"aud": "someone-else"})),
                    SECRET,
                    Algorithm::HS256
                )
            )),
            "invalid access token",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(
                    &claims(json!({"iss": "someone-else"})),
                    SECRET,
                    Algorithm::HS256
                )
            )),
            "invalid access token",
        ),
        (
            Some(format!("Bearer {}", alice.login.refresh_token)),
            "invalid access token",
        ),
    ];

    for (authorization, message) in &cases {
        assert_rejected(&app, authorization.as_deref(), message).await;
    }
    // The untampered token works: the cases above fail for their flaw alone.
    let ok = app
        .chat_with_authorization(Some(&format!("Bearer {valid}")))
        .list_rooms(pb::ListRoomsRequest::default())
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn a_token_of_a_revoked_session_is_unauthenticated() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.login.access_token);
    alice
        .auth
        .clone()
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();

    assert_rejected(&app, Some(&bearer), "session revoked or expired").await;
}

#[tokio::test]
async fn a_stream_ends_when_its_access_token_expires() {
    let app = spawn_app_with(|config| config.access_token_ttl = Duration::from_secs(2)).await;
    let alice = app.user("alice").await;
    let (mut chat, _) = alice.chat_stream().await;
    let (mut subscribe, _) = alice.subscribe().await;

    for stream in [&mut chat, &mut subscribe] {
        stream
            .assert_ends_with(Code::Unauthenticated, "access token expired")
            .await;
    }
    assert_eq!(app.state.hub.open_streams(), 0);
}

#[tokio::test]
async fn a_token_of_a_deleted_user_is_unauthenticated() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bearer = format!("Bearer {}", alice.login.access_token);
    alice
        .auth
        .clone()
        .delete_account(pb::DeleteAccountRequest {
            password: crate::helpers::PASSWORD.into(),
        })
        .await
        .unwrap();

    assert_rejected(&app, Some(&bearer), "session revoked or expired").await;
}

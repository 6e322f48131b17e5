//! Login timing, alone in its own test binary: cargo runs test binaries one
//! after another, so no other test's load skews the medians.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use chat_client::pb;
use tonic::Code;

use helpers::{assert_status, spawn_app_with, PASSWORD};

#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    // No back-off and no per-address limit, so every attempt goes through
    // the password check.
    let app = spawn_app_with(|config| {
        config.limits.login_free_attempts = u32::MAX;
        config.limits.max_login_failures_per_ip = 0;
    })
    .await;
    app.register("alice").await;
    let attempt = |username: &'static str, password: &'static str| {
        let mut auth = app.auth();
        async move {
            let started = Instant::now();
            let result = auth
                .login(pb::LoginRequest {
                    username: username.into(),
                    password: password.into(),
                })
                .await;
            assert_status(
                result,
                Code::Unauthenticated,
                "invalid username or password",
            );
            started.elapsed()
        }
    };
    // Interleaved, so a change in the machine's load hits both alike.
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        unknown.push(attempt("nobody-here", PASSWORD).await);
        wrong.push(attempt("alice", "a wrong password").await);
    }

    let (unknown, wrong) = (median(unknown), median(wrong));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.8..=1.2).contains(&ratio),
        "median unknown user {unknown:?}, wrong password {wrong:?}"
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

//! The simulated users: registered and logged in once each, before any
//! measurement, and their access tokens reused by every stream and call.
//! Each registration and login costs the server an argon2id hash (tens of
//! milliseconds of one core), so a few dozen run at once: enough to keep
//! every hasher busy, far below the server's password queue.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use chat_client::pb;
use chat_client::pb::auth_service_client::AuthServiceClient;
use chat_client::BearerToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::net;
use crate::progress::Progress;
use crate::tasks;

/// Every simulated user's password.
pub const PASSWORD: &str = "bench password 1";
/// Registrations and logins in flight at once.
const CONCURRENCY: usize = 32;
/// Connections the setup calls share (they are not simulated users).
const SETUP_CONNECTIONS: usize = 8;
/// A login refused because the hashers are busy is retried this often…
const BUSY_RETRIES: u32 = 100;
/// …after this long.
const BUSY_PAUSE: Duration = Duration::from_millis(200);

/// A registered, logged-in user.
#[derive(Clone)]
pub struct Account {
    pub username: String,
    pub user_id: String,
    pub token: BearerToken,
}

/// Registers and logs in `count` users named `{prefix}-{index}`.
///
/// # Errors
/// The first registration or login that fails for good.
pub async fn create(
    server: SocketAddr,
    prefix: &str,
    count: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<Account>> {
    let mut channels = Vec::with_capacity(SETUP_CONNECTIONS);
    for _ in 0..SETUP_CONNECTIONS.min(count.max(1)) {
        channels.push(net::connect(server, None).await?);
    }
    let bar = progress.counter(count as u64, "accounts");
    let names: Vec<(usize, String)> = (0..count).map(|i| (i, username(prefix, i))).collect();
    let accounts = tasks::map_bounded(names, CONCURRENCY, |(index, username)| {
        let channel = channels[index % channels.len()].clone();
        let bar = bar.clone();
        async move {
            register(channel.clone(), &username).await?;
            let login = login(channel, &username).await?;
            bar.inc(1);
            account(username, login)
        }
    })
    .await;
    bar.finish_and_clear();
    accounts
}

/// The name of simulated user `index`.
pub fn username(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}")
}

/// Registers `names` without logging them in, `concurrency` at a time, on
/// one connection: for users who log in on their own later (the soak). An
/// existing account (a rerun) is fine.
///
/// # Errors
/// The first registration that fails for good.
pub async fn register_all(
    server: SocketAddr,
    names: &[String],
    concurrency: usize,
    progress: &Progress,
) -> anyhow::Result<()> {
    let channel = net::connect(server, None).await?;
    let bar = progress.counter(names.len() as u64, "registrations");
    let registered = tasks::map_bounded(names.to_vec(), concurrency, |username| {
        let (channel, bar) = (channel.clone(), bar.clone());
        async move {
            register(channel, &username).await?;
            bar.inc(1);
            Ok(())
        }
    })
    .await;
    bar.finish_and_clear();
    registered.map(|_| ())
}

fn account(username: String, login: pb::LoginResponse) -> anyhow::Result<Account> {
    let user_id = login.user.map(|u| u.id).unwrap_or_default();
    let token = BearerToken::new(&login.access_token).context("the access token")?;
    Ok(Account {
        username,
        user_id,
        token,
    })
}

/// Registers `username`; an existing account (a rerun) is fine.
async fn register(channel: Channel, username: &str) -> anyhow::Result<()> {
    let auth = AuthServiceClient::new(channel);
    let request = pb::RegisterRequest {
        username: username.into(),
        password: PASSWORD.into(),
    };
    let result = retry_busy(|| {
        let mut auth = auth.clone();
        let request = request.clone();
        async move { auth.register(request).await.map(|_| ()) }
    })
    .await;
    match result {
        Err(status) if status.code() != Code::AlreadyExists => {
            Err(status).with_context(|| format!("registering {username}"))
        }
        _ => Ok(()),
    }
}

/// Logs `username` in: a new session.
///
/// # Errors
/// The server's refusal (after retrying while its hashers are busy).
pub async fn login(channel: Channel, username: &str) -> anyhow::Result<pb::LoginResponse> {
    let auth = AuthServiceClient::new(channel);
    let request = pb::LoginRequest {
        username: username.into(),
        password: PASSWORD.into(),
    };
    retry_busy(|| {
        let mut auth = auth.clone();
        let request = request.clone();
        async move { auth.login(request).await.map(tonic::Response::into_inner) }
    })
    .await
    .with_context(|| format!("logging in {username}"))
}

/// Retries a call refused with RESOURCE_EXHAUSTED (the password queue).
async fn retry_busy<T, F, Fut>(call: F) -> Result<T, tonic::Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(status) if status.code() == Code::ResourceExhausted && tries < BUSY_RETRIES => {
                tries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            result => return result,
        }
    }
}

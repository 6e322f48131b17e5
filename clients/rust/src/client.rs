//! `Client`: a connection and a logged-in session, with the access token
//! attached to every call and refreshed before it expires.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::pb;
use crate::pb::auth_service_client::AuthServiceClient;
use crate::pb::chat_service_client::ChatServiceClient;
use crate::resume::{AuthorizedChat, BearerToken, Cursors, ResumingSubscription};

/// A token this close to expiry is refreshed before it is used.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// What a login gives.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: pb::User,
    pub session_id: String,
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: SystemTime,
}

/// One server, one session. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    session: Arc<Mutex<Option<Session>>>,
}

impl Client {
    /// Connects to a server: `http://host:port`, or just `host:port`.
    ///
    /// # Errors
    /// When the address is invalid or nothing answers there.
    pub async fn connect(address: &str) -> Result<Self, tonic::transport::Error> {
        let url = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let channel = Endpoint::from_shared(url)?.connect().await?;
        Ok(Self::from_channel(channel))
    }

    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            session: Arc::new(Mutex::new(None)),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The current session, if logged in.
    pub fn session(&self) -> Option<Session> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// # Errors
    /// The server's status: INVALID_ARGUMENT, ALREADY_EXISTS, …
    pub async fn register(&self, username: &str, password: &str) -> Result<pb::User, Status> {
        let response = AuthServiceClient::new(self.channel.clone())
            .register(pb::RegisterRequest {
                username: username.into(),
                password: password.into(),
            })
            .await?;
        response
            .into_inner()
            .user
            .ok_or_else(|| Status::internal("the server sent no user"))
    }

    /// Logs in and keeps the session for later calls.
    ///
    /// # Errors
    /// UNAUTHENTICATED for a wrong username or password.
    pub async fn login(&self, username: &str, password: &str) -> Result<pb::User, Status> {
        let login = AuthServiceClient::new(self.channel.clone())
            .login(pb::LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .await?
            .into_inner();
        let user = login
            .user
            .ok_or_else(|| Status::internal("the server sent no user"))?;
        *self.lock() = Some(Session {
            user: user.clone(),
            session_id: login.session_id,
            access_token: login.access_token,
            refresh_token: login.refresh_token,
            expires_at: expiry(login.access_token_expires_at),
        });
        Ok(user)
    }

    /// Trades the refresh token for new tokens.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when not logged in; UNAUTHENTICATED when the
    /// session is over (log in again).
    pub async fn refresh(&self) -> Result<(), Status> {
        let refresh_token = self.session().ok_or_else(not_logged_in)?.refresh_token;
        let refreshed = AuthServiceClient::new(self.channel.clone())
            .refresh(pb::RefreshRequest { refresh_token })
            .await?
            .into_inner();
        if let Some(session) = self.lock().as_mut() {
            session.access_token = refreshed.access_token;
            session.refresh_token = refreshed.refresh_token;
            session.expires_at = expiry(refreshed.access_token_expires_at);
        }
        Ok(())
    }

    /// The bearer token of the session, refreshed first if it is about to
    /// expire.
    ///
    /// # Errors
    /// As `refresh`.
    pub async fn token(&self) -> Result<BearerToken, Status> {
        let session = self.session().ok_or_else(not_logged_in)?;
        let stale = session
            .expires_at
            .duration_since(SystemTime::now())
            .map_or(true, |left| left < REFRESH_AHEAD);
        if stale {
            self.refresh().await?;
        }
        BearerToken::new(&self.session().ok_or_else(not_logged_in)?.access_token)
    }

    /// A ChatService client carrying the session's token.
    ///
    /// # Errors
    /// As `token`.
    pub async fn chat(&self) -> Result<AuthorizedChat, Status> {
        Ok(ChatServiceClient::with_interceptor(
            self.channel.clone(),
            self.token().await?,
        ))
    }

    /// A live stream of events that resumes from `cursors` after any
    /// disconnection.
    ///
    /// # Errors
    /// As `token`.
    pub async fn subscribe(&self, cursors: Cursors) -> Result<ResumingSubscription, Status> {
        Ok(ResumingSubscription::new(
            self.channel.clone(),
            self.token().await?,
            cursors,
        ))
    }
}

fn not_logged_in() -> Status {
    Status::failed_precondition("not logged in")
}

fn expiry(at: Option<prost_types::Timestamp>) -> SystemTime {
    let secs = at.map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0));
    UNIX_EPOCH + Duration::from_secs(secs)
}

//! `Client`: a connection and a logged-in session, with the access token
//! attached to every call and refreshed before it expires.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::pb;
use crate::pb::auth_service_client::AuthServiceClient;
use crate::pb::chat_service_client::ChatServiceClient;
use crate::resume::{AuthorizedChat, BearerToken, Cursors, ResumingSubscription};

/// A token this close to expiry is refreshed before it is used.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// What `Client::list_rooms` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRooms {
    /// Rooms per call: 0 means the server's default (100); the server caps
    /// it at 1000. Only the number of round trips depends on it.
    pub page_size: u32,
    /// Only the rooms the caller is a member of.
    pub joined_only: bool,
}

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
    /// Where `channel` goes, when known: subscriptions open a new
    /// connection there after their stream went silent.
    endpoint: Option<Endpoint>,
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
        let endpoint = Endpoint::from_shared(url)?;
        let channel = endpoint.connect().await?;
        Ok(Self {
            endpoint: Some(endpoint),
            ..Self::from_channel(channel)
        })
    }

    /// A client over a channel made elsewhere (TLS, say). Its
    /// subscriptions reconnect over that channel.
    pub fn from_channel(channel: Channel) -> Self {
        Self {
            channel,
            endpoint: None,
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

    /// Changes the account's password after the server checks the current
    /// one. Every other session of the account ends; this one goes on.
    ///
    /// # Errors
    /// PERMISSION_DENIED "wrong password" when `current` is wrong;
    /// INVALID_ARGUMENT when `new` is not an acceptable password.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(), Status> {
        self.auth()
            .await?
            .change_password(pb::ChangePasswordRequest {
                current_password: current.into(),
                new_password: new.into(),
            })
            .await?;
        Ok(())
    }

    /// Ends every session of the account but this one ("log out other
    /// devices"); returns how many ended.
    ///
    /// # Errors
    /// As `token`, or the server's status.
    pub async fn revoke_other_sessions(&self) -> Result<u32, Status> {
        Ok(self
            .auth()
            .await?
            .revoke_other_sessions(pb::RevokeOtherSessionsRequest {})
            .await?
            .into_inner()
            .revoked)
    }

    /// Every group room and the caller's direct rooms (or, with
    /// `joined_only`, the rooms the caller is in), in order of creation.
    /// ListRooms answers a page at a time; this follows the pages to the
    /// last.
    ///
    /// # Errors
    /// As `token`, or the server's status.
    pub async fn list_rooms(&self, options: ListRooms) -> Result<Vec<pb::Room>, Status> {
        let mut chat = self.chat().await?;
        let mut rooms = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = chat
                .list_rooms(pb::ListRoomsRequest {
                    page_size: options.page_size,
                    page_token,
                    joined_only: options.joined_only,
                })
                .await?
                .into_inner();
            rooms.extend(page.rooms);
            if page.next_page_token.is_empty() {
                return Ok(rooms);
            }
            page_token = page.next_page_token;
        }
    }

    /// Cursors at the newest message of every room the caller is in: a
    /// subscription from them gets only what is sent from now on.
    ///
    /// # Errors
    /// As `list_rooms`.
    pub async fn cursors_at_newest(&self) -> Result<Cursors, Status> {
        let mut cursors = Cursors::default();
        let joined = ListRooms {
            page_size: 1000,
            joined_only: true,
        };
        for room in self.list_rooms(joined).await? {
            cursors.track(&room.id, room.last_seq);
        }
        Ok(cursors)
    }

    /// Every member of a room, by role (the owner first) then by when
    /// they joined. ListMembers answers a page at a time; this follows the
    /// pages to the last.
    ///
    /// # Errors
    /// As `token`; PERMISSION_DENIED for a room the caller is not in.
    pub async fn list_members(&self, room_id: &str) -> Result<Vec<pb::Member>, Status> {
        let mut chat = self.chat().await?;
        let mut members = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = chat
                .list_members(pb::ListMembersRequest {
                    room_id: room_id.into(),
                    page_size: 1000,
                    page_token,
                })
                .await?
                .into_inner();
            members.extend(page.members);
            if page.next_page_token.is_empty() {
                return Ok(members);
            }
            page_token = page.next_page_token;
        }
    }

    /// Sets the caller's display name (`Some("")` clears it, `None` keeps
    /// it) and returns the caller as everyone now sees them.
    ///
    /// # Errors
    /// As `token`; INVALID_ARGUMENT for a name that is too long or has
    /// control or invisible characters.
    pub async fn update_profile(&self, display_name: Option<&str>) -> Result<pb::User, Status> {
        let user = self
            .chat()
            .await?
            .update_profile(pb::UpdateProfileRequest {
                display_name: display_name.map(str::to_owned),
            })
            .await?
            .into_inner()
            .user
            .ok_or_else(|| Status::internal("the server sent no user"))?;
        if let Some(session) = self.session.lock().expect("session lock").as_mut() {
            session.user = user.clone();
        }
        Ok(user)
    }

    /// Users whose username or display name starts with `prefix` (1 to 32
    /// characters, any case), at most `limit` (0: the server's 20).
    ///
    /// # Errors
    /// As `token`; INVALID_ARGUMENT for an empty or too long prefix.
    pub async fn search_users(&self, prefix: &str, limit: u32) -> Result<Vec<pb::User>, Status> {
        Ok(self
            .chat()
            .await?
            .search_users(pb::SearchUsersRequest {
                prefix: prefix.into(),
                limit,
            })
            .await?
            .into_inner()
            .users)
    }

    /// Blocks a user: they can no longer message or invite the caller, and
    /// the caller's streams hear no typing or presence of theirs.
    ///
    /// # Errors
    /// As `token`; NOT_FOUND for an unknown user, INVALID_ARGUMENT for the
    /// caller's own name.
    pub async fn block_user(&self, username: &str) -> Result<(), Status> {
        self.chat()
            .await?
            .block_user(pb::BlockUserRequest {
                username: username.into(),
            })
            .await?;
        Ok(())
    }

    /// Lifts a block.
    ///
    /// # Errors
    /// As `token`; NOT_FOUND for an unknown user.
    pub async fn unblock_user(&self, username: &str) -> Result<(), Status> {
        self.chat()
            .await?
            .unblock_user(pb::UnblockUserRequest {
                username: username.into(),
            })
            .await?;
        Ok(())
    }

    /// The users the caller blocks, by username.
    ///
    /// # Errors
    /// As `token`.
    pub async fn blocked_users(&self) -> Result<Vec<pb::User>, Status> {
        Ok(self
            .chat()
            .await?
            .list_blocked_users(pb::ListBlockedUsersRequest {})
            .await?
            .into_inner()
            .users)
    }

    /// An AuthService client carrying the session's token.
    async fn auth(
        &self,
    ) -> Result<AuthServiceClient<InterceptedService<Channel, BearerToken>>, Status> {
        Ok(AuthServiceClient::with_interceptor(
            self.channel.clone(),
            self.token().await?,
        ))
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
    /// disconnection, and after a silence of two heartbeat intervals (over
    /// a new connection then, for a client made by `connect`).
    ///
    /// # Errors
    /// As `token`.
    pub async fn subscribe(&self, cursors: Cursors) -> Result<ResumingSubscription, Status> {
        let subscription =
            ResumingSubscription::new(self.channel.clone(), self.token().await?, cursors);
        Ok(match &self.endpoint {
            Some(endpoint) => subscription.with_endpoint(endpoint.clone()),
            None => subscription,
        })
    }
}

fn not_logged_in() -> Status {
    Status::failed_precondition("not logged in")
}

fn expiry(at: Option<prost_types::Timestamp>) -> SystemTime {
    let secs = at.map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0));
    UNIX_EPOCH + Duration::from_secs(secs)
}

//! `chat.v1.AuthService`: accounts and sessions.

use tonic::{Request, Response, Status};

use crate::auth::{token, Principal};
use crate::domain::{Password, SessionId, Timestamp, UserId, Username};
use crate::error::{Error, Result};
use crate::pb;
use crate::service::requests;
use crate::state::AppState;
use crate::store::{NewSession, Rotation};

/// The longest user agent kept for a session.
const MAX_USER_AGENT: usize = 256;

pub struct AuthApi {
    state: AppState,
}

impl AuthApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal> {
        self.state.authenticate(request.metadata()).await
    }

    async fn register(&self, request: pb::RegisterRequest) -> Result<pb::RegisterResponse> {
        let (username, password) = requests::register(request)?;
        let hash = self.state.hashers.hash(password).await?;
        let user = self
            .state
            .store
            .create_user(UserId::new(), &username, &hash, Timestamp::now())
            .await?;
        tracing::info!(user_id = %user.id, username = %user.username, "registered");
        Ok(pb::RegisterResponse {
            user: Some(pb::User::from(&user)),
        })
    }

    async fn login(
        &self,
        user_agent: String,
        request: pb::LoginRequest,
    ) -> Result<pb::LoginResponse> {
        let (username, password) = requests::login(request)?;
        // Before any hashing: a name backing off costs the server nothing.
        self.state.login_backoff.check(&username)?;
        let credentials = self.state.store.credentials(&username).await?;
        let (user, hash) = match credentials {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let verified = self.state.hashers.verify(hash, password).await?;
        let user = match user {
            Some(user) if verified => user,
            _ => {
                tracing::info!(username = %username.as_str(), "login failed");
                self.state.metrics.login_failures.inc();
                self.state.login_backoff.failed(&username);
                return Err(requests::bad_credentials());
            }
        };
        self.state.login_backoff.succeeded(&username);
        let now = Timestamp::now();
        let session_id = SessionId::new();
        let refresh_token = token::new_refresh_token();
        self.state
            .store
            .create_session(NewSession {
                id: session_id,
                user_id: user.id,
                user_agent,
                refresh_hash: token::refresh_token_hash(&refresh_token),
                expires_at: now.plus(self.state.config.refresh_token_ttl),
                now,
            })
            .await?;
        let (access_token, expires_at) = self.state.tokens.issue(user.id, session_id, now)?;
        tracing::info!(user_id = %user.id, %session_id, "logged in");
        Ok(pb::LoginResponse {
            access_token,
            refresh_token,
            access_token_expires_at: Some(pb::timestamp(expires_at)),
            user: Some(pb::User::from(&user)),
            session_id: session_id.to_string(),
        })
    }

    async fn refresh(&self, request: pb::RefreshRequest) -> Result<pb::RefreshResponse> {
        let refresh_token = requests::refresh(&request)?;
        let now = Timestamp::now();
        let next = token::new_refresh_token();
        let rotation = self
            .state
            .store
            .rotate_refresh_token(
                &token::refresh_token_hash(refresh_token),
                &token::refresh_token_hash(&next),
                now.plus(self.state.config.refresh_token_ttl),
                now,
            )
            .await?;
        match rotation {
            Rotation::Rotated {
                user_id,
                session_id,
            } => {
                let (access_token, expires_at) =
                    self.state.tokens.issue(user_id, session_id, now)?;
                Ok(pb::RefreshResponse {
                    access_token,
                    refresh_token: next,
                    access_token_expires_at: Some(pb::timestamp(expires_at)),
                })
            }
            Rotation::Reused { session_id } => {
                tracing::warn!(%session_id, "a spent refresh token came back: session revoked");
                self.state.router.revoke_session(session_id).await;
                Err(Error::unauthenticated(
                    "refresh token already used: the session has been revoked",
                ))
            }
            Rotation::Invalid => Err(Error::unauthenticated("invalid or expired refresh token")),
        }
    }

    async fn revoke(&self, principal: &Principal, session_id: SessionId) -> Result<()> {
        let revoked = self
            .state
            .store
            .revoke_session(principal.user.id, session_id, Timestamp::now())
            .await?;
        if !revoked {
            return Err(Error::not_found(format!("session {session_id} not found")));
        }
        self.state.router.revoke_session(session_id).await;
        tracing::info!(user_id = %principal.user.id, %session_id, "session revoked");
        Ok(())
    }
}

impl AuthApi {
    async fn delete_account(&self, principal: &Principal, password: Password) -> Result<()> {
        let user_id = principal.user.id;
        let username = Username::parse(&principal.user.username)?;
        self.state.login_backoff.check(&username)?;
        let credentials = self.state.store.credentials(&username).await?;
        let stored = credentials
            .filter(|(user, _)| user.id == user_id)
            .map(|(_, hash)| hash);
        if !self.state.hashers.verify(stored, password).await? {
            self.state.metrics.login_failures.inc();
            self.state.login_backoff.failed(&username);
            return Err(requests::wrong_password());
        }
        let sessions = self
            .state
            .store
            .delete_user(user_id, Timestamp::now())
            .await?;
        for session_id in sessions {
            self.state.router.revoke_session(session_id).await;
        }
        tracing::info!(%user_id, "account deleted");
        Ok(())
    }
}

impl AuthApi {
    async fn change_password(
        &self,
        principal: &Principal,
        current: Password,
        new: Password,
    ) -> Result<()> {
        let user_id = principal.user.id;
        let username = Username::parse(&principal.user.username)?;
        self.state.login_backoff.check(&username)?;
        let credentials = self.state.store.credentials(&username).await?;
        let stored = credentials
            .filter(|(user, _)| user.id == user_id)
            .map(|(_, hash)| hash);
        if !self.state.hashers.verify(stored, current).await? {
            self.state.metrics.login_failures.inc();
            self.state.login_backoff.failed(&username);
            return Err(requests::wrong_password());
        }
        let hash = self.state.hashers.hash(new).await?;
        let revoked = self
            .state
            .store
            .change_password(user_id, &hash, principal.session_id, Timestamp::now())
            .await?;
        for session_id in &revoked {
            self.state.router.revoke_session(*session_id).await;
        }
        tracing::info!(%user_id, revoked = revoked.len(), "password changed");
        Ok(())
    }

    async fn revoke_other_sessions(&self, principal: &Principal) -> Result<u32> {
        let revoked = self
            .state
            .store
            .revoke_other_sessions(principal.user.id, principal.session_id, Timestamp::now())
            .await?;
        for session_id in &revoked {
            self.state.router.revoke_session(*session_id).await;
        }
        tracing::info!(user_id = %principal.user.id, revoked = revoked.len(), "other sessions revoked");
        Ok(u32::try_from(revoked.len()).unwrap_or(u32::MAX))
    }
}

fn user_agent<T>(request: &Request<T>) -> String {
    let agent = request
        .metadata()
        .get("user-agent")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    agent.chars().take(MAX_USER_AGENT).collect()
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(self.register(request.into_inner()).await?))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let agent = user_agent(&request);
        Ok(Response::new(
            self.login(agent, request.into_inner()).await?,
        ))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        Ok(Response::new(self.refresh(request.into_inner()).await?))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let principal = self.principal(&request).await?;
        self.revoke(&principal, principal.session_id).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let principal = self.principal(&request).await?;
        let sessions = self
            .state
            .store
            .list_sessions(principal.user.id, Timestamp::now())
            .await?;
        let sessions = sessions
            .iter()
            .map(|session| pb::Session {
                id: session.id.to_string(),
                created_at: Some(pb::timestamp(session.created_at)),
                last_seen_at: Some(pb::timestamp(session.last_seen_at)),
                user_agent: session.user_agent.clone(),
                current: session.id == principal.session_id,
            })
            .collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let principal = self.principal(&request).await?;
        let session_id = requests::revoke_session(request.get_ref())?;
        self.revoke(&principal, session_id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let principal = self.principal(&request).await?;
        let password = Password::parse(request.into_inner().password)
            .map_err(|_| requests::wrong_password())?;
        self.delete_account(&principal, password).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let principal = self.principal(&request).await?;
        let (current, new) = requests::change_password(request.into_inner())?;
        self.change_password(&principal, current, new).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn revoke_other_sessions(
        &self,
        request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Result<Response<pb::RevokeOtherSessionsResponse>, Status> {
        let principal = self.principal(&request).await?;
        let revoked = self.revoke_other_sessions(&principal).await?;
        Ok(Response::new(pb::RevokeOtherSessionsResponse { revoked }))
    }
}

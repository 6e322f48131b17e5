//! `chat.v1.AuthService`: accounts and sessions.

use std::net::IpAddr;

use tonic::{Request, Response, Status};

use crate::audit;
use crate::auth::layer::principal;
use crate::auth::{token, Principal};
use crate::domain::{Password, SessionId, Timestamp, UserId, Username};
use crate::error::{Error, Result};
use crate::limits::LoginAttempt;
use crate::pb;
use crate::service::client_addr::{address_key, client_ip};
use crate::service::requests;
use crate::state::AppState;
use crate::store::{NewSession, Rotation};

/// The longest user agent kept for a session.
const MAX_USER_AGENT: usize = 256;

pub struct AuthApi {
    state: AppState,
}

/// Where a call came from: its client address, and what the audit log
/// calls the caller before it is known.
struct Caller {
    client: Option<IpAddr>,
    user_agent: String,
}

impl AuthApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn caller<T>(&self, request: &Request<T>) -> Caller {
        Caller {
            client: client_ip(request, &self.state.config.limits.trusted_proxies),
            user_agent: user_agent(request),
        }
    }

    fn audit(&self, event: audit::Event, subject: audit::Subject<'_>, detail: &str) {
        audit::record(&self.state.metrics, event, subject, detail);
    }

    async fn register(
        &self,
        caller: &Caller,
        request: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse> {
        let (username, password) = requests::register(request)?;
        let hash = self.state.hashers.hash(password).await?;
        let user = self
            .state
            .store
            .create_user(UserId::new(), &username, &hash, Timestamp::now())
            .await?;
        self.audit(
            audit::Event::Registered,
            audit::Subject {
                user_id: Some(user.id),
                username: Some(&user.username),
                session_id: None,
                client: caller.client,
            },
            "",
        );
        Ok(pb::RegisterResponse {
            user: Some(pb::User::from(&user)),
        })
    }

    /// Admits a password check for `username` from the caller's address.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED while backing off (and audited as such).
    fn admit(&self, caller: &Caller, username: &Username) -> Result<LoginAttempt<'_>> {
        self.state
            .login_backoff
            .begin(username, address_key(caller.client))
            .inspect_err(|refused| {
                self.audit(
                    audit::Event::LoginBackoff,
                    audit::Subject {
                        username: Some(username.as_str()),
                        client: caller.client,
                        ..audit::Subject::default()
                    },
                    &refused.client_message(),
                );
            })
    }

    async fn login(&self, caller: Caller, request: pb::LoginRequest) -> Result<pb::LoginResponse> {
        let (username, password) = requests::login(request)?;
        // Before any hashing: an account backing off costs the server nothing.
        let attempt = self.admit(&caller, &username)?;
        let credentials = self.state.store.credentials(&username).await?;
        let (user, hash, disabled) = match credentials {
            Some((user, hash)) => (Some(user), Some(hash), false),
            // A disabled account's password is checked all the same (one
            // hash either way), and only the right one hears why it fails.
            None => match self.state.admin.disabled_credentials(&username).await? {
                Some(hash) => (None, Some(hash), true),
                None => (None, None, false),
            },
        };
        let verified = self.state.hashers.verify(hash, password).await?;
        if disabled && verified {
            attempt.succeeded();
            self.audit(
                audit::Event::LoginFailed,
                audit::Subject {
                    username: Some(username.as_str()),
                    client: caller.client,
                    ..audit::Subject::default()
                },
                "the account is disabled",
            );
            return Err(Error::denied("this account is disabled"));
        }
        let user = match user {
            Some(user) if verified => user,
            _ => {
                self.state.metrics.login_failures.inc();
                attempt.failed();
                self.audit(
                    audit::Event::LoginFailed,
                    audit::Subject {
                        username: Some(username.as_str()),
                        client: caller.client,
                        ..audit::Subject::default()
                    },
                    "",
                );
                return Err(requests::bad_credentials());
            }
        };
        attempt.succeeded();
        let config = &self.state.config;
        let now = Timestamp::now();
        let session_id = SessionId::new();
        let refresh_token = token::new_refresh_token();
        let evicted = self
            .state
            .store
            .create_session(NewSession {
                id: session_id,
                user_id: user.id,
                user_agent: caller.user_agent,
                refresh_hash: token::refresh_token_hash(&refresh_token),
                expires_at: now.plus(config.refresh_token_ttl.min(config.session_max_age)),
                max_sessions: config.max_sessions_per_user,
                now,
            })
            .await?;
        let (access_token, expires_at) = self.state.tokens.issue(user.id, session_id, now)?;
        let subject = audit::Subject {
            user_id: Some(user.id),
            username: Some(&user.username),
            session_id: Some(session_id),
            client: caller.client,
        };
        self.audit(audit::Event::Login, subject, "");
        for old in evicted {
            self.state.router.revoke_session(old).await;
            self.audit(
                audit::Event::SessionEvicted,
                audit::Subject {
                    session_id: Some(old),
                    ..subject
                },
                "the oldest session, ended by a login beyond the sessions per user",
            );
        }
        Ok(pb::LoginResponse {
            access_token,
            refresh_token,
            access_token_expires_at: Some(pb::timestamp(expires_at)),
            user: Some(pb::User::from(&user)),
            session_id: session_id.to_string(),
        })
    }

    async fn refresh(
        &self,
        caller: &Caller,
        request: pb::RefreshRequest,
    ) -> Result<pb::RefreshResponse> {
        let refresh_token = requests::refresh(&request)?;
        let config = &self.state.config;
        let now = Timestamp::now();
        let next = token::new_refresh_token();
        let rotation = self
            .state
            .store
            .rotate_refresh_token(
                &token::refresh_token_hash(refresh_token),
                &token::refresh_token_hash(&next),
                now.plus(config.refresh_token_ttl),
                config.session_max_age,
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
                self.audit(
                    audit::Event::RefreshTokenReused,
                    audit::Subject {
                        session_id: Some(session_id),
                        client: caller.client,
                        ..audit::Subject::default()
                    },
                    "a spent refresh token came back: session revoked",
                );
                self.state.router.revoke_session(session_id).await;
                Err(Error::unauthenticated(
                    "refresh token already used: the session has been revoked",
                ))
            }
            Rotation::Invalid => Err(Error::unauthenticated("invalid or expired refresh token")),
        }
    }

    async fn revoke(
        &self,
        caller: &Caller,
        principal: &Principal,
        session_id: SessionId,
    ) -> Result<()> {
        let revoked = self
            .state
            .store
            .revoke_session(principal.user.id, session_id, Timestamp::now())
            .await?;
        if !revoked {
            return Err(Error::not_found(format!("session {session_id} not found")));
        }
        self.state.router.revoke_session(session_id).await;
        let detail = if session_id == principal.session_id {
            "logout"
        } else {
            "revoked by another session of the account"
        };
        self.audit(
            audit::Event::SessionRevoked,
            audit::Subject {
                user_id: Some(principal.user.id),
                username: Some(&principal.user.username),
                session_id: Some(session_id),
                client: caller.client,
            },
            detail,
        );
        Ok(())
    }

    /// Checks the caller's own password again (DeleteAccount,
    /// ChangePassword), under the login back-off.
    ///
    /// # Errors
    /// PERMISSION_DENIED for a wrong password; RESOURCE_EXHAUSTED while
    /// backing off.
    async fn check_password(
        &self,
        caller: &Caller,
        principal: &Principal,
        password: Password,
    ) -> Result<()> {
        let user_id = principal.user.id;
        let username = Username::parse(&principal.user.username)?;
        let attempt = self.admit(caller, &username)?;
        let credentials = self.state.store.credentials(&username).await?;
        let stored = credentials
            .filter(|(user, _)| user.id == user_id)
            .map(|(_, hash)| hash);
        if self.state.hashers.verify(stored, password).await? {
            attempt.succeeded();
            return Ok(());
        }
        self.state.metrics.login_failures.inc();
        attempt.failed();
        self.audit(
            audit::Event::PasswordCheckFailed,
            audit::Subject {
                user_id: Some(user_id),
                username: Some(username.as_str()),
                session_id: Some(principal.session_id),
                client: caller.client,
            },
            "",
        );
        Err(requests::wrong_password())
    }

    async fn delete_account(
        &self,
        caller: &Caller,
        principal: &Principal,
        password: Password,
    ) -> Result<()> {
        self.check_password(caller, principal, password).await?;
        let user_id = principal.user.id;
        let sessions = self
            .state
            .store
            .delete_user(user_id, Timestamp::now())
            .await?;
        for session_id in &sessions {
            self.state.router.revoke_session(*session_id).await;
        }
        self.audit(
            audit::Event::AccountDeleted,
            audit::Subject {
                user_id: Some(user_id),
                username: Some(&principal.user.username),
                session_id: Some(principal.session_id),
                client: caller.client,
            },
            &format!("{} sessions ended", sessions.len()),
        );
        Ok(())
    }

    async fn change_password(
        &self,
        caller: &Caller,
        principal: &Principal,
        current: Password,
        new: Password,
    ) -> Result<()> {
        self.check_password(caller, principal, current).await?;
        let hash = self.state.hashers.hash(new).await?;
        let revoked = self
            .state
            .store
            .change_password(
                principal.user.id,
                &hash,
                principal.session_id,
                Timestamp::now(),
            )
            .await?;
        for session_id in &revoked {
            self.state.router.revoke_session(*session_id).await;
        }
        self.audit(
            audit::Event::PasswordChanged,
            audit::Subject {
                user_id: Some(principal.user.id),
                username: Some(&principal.user.username),
                session_id: Some(principal.session_id),
                client: caller.client,
            },
            &format!("{} other sessions ended", revoked.len()),
        );
        Ok(())
    }

    async fn revoke_other_sessions(&self, caller: &Caller, principal: &Principal) -> Result<u32> {
        let revoked = self
            .state
            .store
            .revoke_other_sessions(principal.user.id, principal.session_id, Timestamp::now())
            .await?;
        for session_id in &revoked {
            self.state.router.revoke_session(*session_id).await;
            self.audit(
                audit::Event::SessionRevoked,
                audit::Subject {
                    user_id: Some(principal.user.id),
                    username: Some(&principal.user.username),
                    session_id: Some(*session_id),
                    client: caller.client,
                },
                "revoked with the account's other sessions",
            );
        }
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
        let caller = self.caller(&request);
        Ok(Response::new(
            self.register(&caller, request.into_inner()).await?,
        ))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let caller = self.caller(&request);
        Ok(Response::new(
            self.login(caller, request.into_inner()).await?,
        ))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let caller = self.caller(&request);
        Ok(Response::new(
            self.refresh(&caller, request.into_inner()).await?,
        ))
    }

    async fn logout(
        &self,
        mut request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let principal = principal(&mut request)?;
        let caller = self.caller(&request);
        self.revoke(&caller, &principal, principal.session_id)
            .await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn list_sessions(
        &self,
        mut request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let principal = principal(&mut request)?;
        let sessions = self
            .state
            .store
            .list_sessions(principal.user.id, Timestamp::now())
            .await
            .map_err(Error::from)?;
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
        mut request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let principal = principal(&mut request)?;
        let caller = self.caller(&request);
        let session_id = requests::revoke_session(request.get_ref())?;
        self.revoke(&caller, &principal, session_id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn delete_account(
        &self,
        mut request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let principal = principal(&mut request)?;
        let caller = self.caller(&request);
        let password = Password::parse(request.into_inner().password)
            .map_err(|_| requests::wrong_password())?;
        self.delete_account(&caller, &principal, password).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn change_password(
        &self,
        mut request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let principal = principal(&mut request)?;
        let caller = self.caller(&request);
        let (current, new) = requests::change_password(request.into_inner())?;
        self.change_password(&caller, &principal, current, new)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn revoke_other_sessions(
        &self,
        mut request: Request<pb::RevokeOtherSessionsRequest>,
    ) -> Result<Response<pb::RevokeOtherSessionsResponse>, Status> {
        let principal = principal(&mut request)?;
        let caller = self.caller(&request);
        let revoked = self.revoke_other_sessions(&caller, &principal).await?;
        Ok(Response::new(pb::RevokeOtherSessionsResponse { revoked }))
    }
}

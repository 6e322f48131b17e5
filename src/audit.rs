//! The audit trail: security events as structured log lines and counters.
//!
//! Every event goes to the log under the `audit` target (so operators can
//! route it: `RUST_LOG=info,audit=info`, or filter on `target` in JSON
//! logs) with the client's address, and is counted in
//! `chat_audit_events_total{event="…"}`. No event ever carries a password,
//! a token or a refresh token: only ids, names and addresses.

use std::net::IpAddr;

use crate::domain::{SessionId, UserId};
use crate::metrics::Metrics;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Login,
    LoginFailed,
    /// A login refused before its password was checked, by the back-off.
    LoginBackoff,
    PasswordChanged,
    /// A wrong current password for ChangePassword or DeleteAccount.
    PasswordCheckFailed,
    SessionRevoked,
    /// A spent refresh token came back: its session was revoked.
    RefreshTokenReused,
    /// A login beyond the sessions per user ended the oldest session.
    SessionEvicted,
    AccountDeleted,
    Registered,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::LoginBackoff => "login_backoff",
            Self::PasswordChanged => "password_changed",
            Self::PasswordCheckFailed => "password_check_failed",
            Self::SessionRevoked => "session_revoked",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::SessionEvicted => "session_evicted",
            Self::AccountDeleted => "account_deleted",
            Self::Registered => "registered",
        }
    }
}

/// Who and where, as far as the event knows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subject<'a> {
    pub user_id: Option<UserId>,
    /// The name given at login, even one no account has.
    pub username: Option<&'a str>,
    pub session_id: Option<SessionId>,
    pub client: Option<IpAddr>,
}

/// Logs and counts one event; `detail` says more where the event needs it
/// (how many sessions were revoked, why a login was refused).
pub fn record(metrics: &Metrics, event: Event, subject: Subject<'_>, detail: &str) {
    metrics.audited(event.as_str());
    let Subject {
        user_id,
        username,
        session_id,
        client,
    } = subject;
    let user_id = user_id.map(tracing::field::display);
    let session_id = session_id.map(tracing::field::display);
    let client = client.map(tracing::field::display);
    match event {
        Event::LoginFailed | Event::LoginBackoff | Event::PasswordCheckFailed => tracing::warn!(
            target: "audit",
            event = event.as_str(),
            user_id,
            username,
            session_id,
            client,
            detail,
            "audit"
        ),
        _ => tracing::info!(
            target: "audit",
            event = event.as_str(),
            user_id,
            username,
            session_id,
            client,
            detail,
            "audit"
        ),
    }
}

//! Who is calling: passwords, tokens, and the check every protected call
//! and stream makes. The check runs once per call, in the tower layer in
//! front of every service ([`layer`]), which hands the [`Principal`] to
//! the handler in the request's extensions.
//!
//! The JWT proves who signed in and when it expires; the session lookup
//! proves the session has not been revoked since (Logout, RevokeSession,
//! refresh-token reuse) and the user still exists. A session found live is
//! remembered for a second ([`live`]), and forgotten at once when revoked.

pub mod keys;
pub mod layer;
pub mod password;
pub mod token;

pub use chat_fanout::live;

use std::sync::Arc;

use http::HeaderMap;

use crate::domain::{SessionId, Timestamp, User};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::store::Store;
use live::LiveSessions;
use token::TokenCodec;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: User,
    pub session_id: SessionId,
    /// When the caller's access token expires; streams end then.
    pub expires_at: Timestamp,
    /// The count of revocations before the session was found live: a
    /// stream checks it again once registered (`stream::open`), since a
    /// revocation meanwhile found no stream to end.
    pub revocations: live::Lookup,
}

/// What [`authenticate`] needs, cheap to clone: the layer holds one.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Arc<TokenCodec>,
    store: Arc<dyn Store>,
    /// For its cache of live sessions ([`live`]).
    hub: Arc<Hub>,
}

impl Authenticator {
    pub fn new(tokens: Arc<TokenCodec>, store: Arc<dyn Store>, hub: Arc<Hub>) -> Self {
        Self { tokens, store, hub }
    }

    /// [`authenticate`] with these.
    ///
    /// # Errors
    /// UNAUTHENTICATED, saying why.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal> {
        authenticate(
            &self.tokens,
            &*self.store,
            self.hub.live_sessions(),
            headers,
        )
        .await
    }
}

/// Checks the `authorization: Bearer <token>` header (metadata) of a call.
///
/// # Errors
/// UNAUTHENTICATED, saying why, for a missing, malformed, invalid, expired
/// or revoked token.
pub async fn authenticate(
    tokens: &TokenCodec,
    store: &dyn Store,
    live: &LiveSessions,
    headers: &HeaderMap,
) -> Result<Principal> {
    let token = bearer_token(headers)?;
    let subject = tokens.verify(token)?;
    // Before the cache, not only before the database: a revocation counted
    // after this is seen by `revoked_since`, one counted before has removed
    // the cache entry and reached the database.
    let lookup = live.begin();
    let user = match live.get(subject.session_id, subject.user_id) {
        Some(user) => user,
        None => {
            let user = store
                .live_session(subject.session_id, subject.user_id, Timestamp::now())
                .await?
                .ok_or_else(|| Error::unauthenticated("session revoked or expired"))?;
            live.remember(lookup, subject.session_id, user.clone());
            user
        }
    };
    Ok(Principal {
        user,
        session_id: subject.session_id,
        expires_at: subject.expires_at,
        revocations: lookup,
    })
}

fn bearer_token(headers: &HeaderMap) -> Result<&str> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Error::unauthenticated(
            "missing authorization metadata: send 'authorization: Bearer <access_token>'",
        )
    })?;
    let value = value
        .to_str()
        .map_err(|_| Error::unauthenticated("authorization metadata is not text"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::unauthenticated(
            "authorization must use the Bearer scheme",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::unauthenticated("the bearer token is empty"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_taken_from_the_metadata() {
        assert_eq!(bearer_token(&with_auth("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with_auth("bearer  abc ")).unwrap(), "abc");
        for bad in ["Basic abc", "Bearer", "abc", "Bearer   "] {
            assert_eq!(
                bearer_token(&with_auth(bad)).unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{bad}"
            );
        }
        assert!(bearer_token(&HeaderMap::new()).is_err());
    }
}

//! Who is calling: passwords, tokens, and the check every protected call
//! and stream makes.
//!
//! The JWT proves who signed in and when it expires; the session lookup
//! proves the session has not been revoked since (Logout, RevokeSession,
//! refresh-token reuse) and the user still exists. A session found live is
//! remembered for a second ([`live`]), and forgotten at once when revoked.

pub mod keys;
pub mod password;
pub mod token;

pub use chat_fanout::live;

use tonic::metadata::MetadataMap;

use crate::domain::{SessionId, Timestamp, User};
use crate::error::{Error, Result};
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

/// Checks the `authorization: Bearer <token>` metadata of a call.
///
/// # Errors
/// UNAUTHENTICATED, saying why, for a missing, malformed, invalid, expired
/// or revoked token.
pub async fn authenticate(
    tokens: &TokenCodec,
    store: &dyn Store,
    live: &LiveSessions,
    metadata: &MetadataMap,
) -> Result<Principal> {
    let token = bearer_token(metadata)?;
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

fn bearer_token(metadata: &MetadataMap) -> Result<&str> {
    let value = metadata.get("authorization").ok_or_else(|| {
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

    fn with_auth(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
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
        assert!(bearer_token(&MetadataMap::new()).is_err());
    }
}

//! Access tokens (JWT, HS256) and refresh tokens (opaque, stored hashed).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{SessionId, Timestamp, UserId};
use crate::error::{Error, Result};

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// What a valid access token proves (before the session is checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSubject {
    pub user_id: UserId,
    pub session_id: SessionId,
    /// When the token stops being valid.
    pub expires_at: Timestamp,
}

/// Signs and checks access tokens. The first key signs (its id in the
/// token's `kid` header); every key verifies, so a new key can be added
/// first and an old one dropped once the tokens it signed have expired.
pub struct TokenCodec {
    encoding: EncodingKey,
    /// The signing key's id.
    kid: String,
    /// Every key, by id.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

impl TokenCodec {
    /// Seconds of clock skew tolerated on `exp`.
    const LEEWAY_SECS: u64 = 5;

    /// A codec with one key.
    pub fn new(secret: &[u8], issuer: &str, audience: &str, lifetime: Duration) -> Self {
        Self::with_keys(&[secret], issuer, audience, lifetime)
    }

    /// A codec whose first key signs and whose every key verifies.
    ///
    /// # Panics
    /// When `secrets` is empty.
    pub fn with_keys(secrets: &[&[u8]], issuer: &str, audience: &str, lifetime: Duration) -> Self {
        assert!(!secrets.is_empty(), "at least one signing key");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = Self::LEEWAY_SECS;
        validation.validate_nbf = true;
        Self {
            encoding: EncodingKey::from_secret(secrets[0]),
            kid: key_id(secrets[0]),
            decoding: secrets
                .iter()
                .map(|secret| (key_id(secret), DecodingKey::from_secret(secret)))
                .collect(),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            lifetime,
        }
    }

    /// Issues an access token for a session; returns it with its expiry.
    ///
    /// # Errors
    /// Internal, if signing fails.
    pub fn issue(
        &self,
        user_id: UserId,
        session_id: SessionId,
        now: Timestamp,
    ) -> Result<(String, Timestamp)> {
        let expires_at = Timestamp::from_secs(now.plus(self.lifetime).secs());
        let claims = Claims {
            sub: user_id.to_string(),
            sid: session_id.to_string(),
            iat: now.secs(),
            exp: expires_at.secs(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("signing an access token: {e}"))?;
        Ok((token, expires_at))
    }

    /// Checks signature, algorithm, `exp`, `nbf`, `iss` and `aud`.
    ///
    /// # Errors
    /// UNAUTHENTICATED for any token that is not one of ours and current.
    pub fn verify(&self, token: &str) -> Result<TokenSubject> {
        let invalid = || Error::unauthenticated("invalid access token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        // A token names its key; one without a `kid` (issued before keys
        // had ids) is tried against each.
        let keys: Vec<&DecodingKey> = match &header.kid {
            Some(kid) => self
                .decoding
                .iter()
                .filter(|(id, _)| id == kid)
                .map(|(_, key)| key)
                .collect(),
            None => self.decoding.iter().map(|(_, key)| key).collect(),
        };
        let mut outcome = None;
        for key in keys {
            let decoded = jsonwebtoken::decode::<Claims>(token, key, &self.validation);
            let wrong_key = matches!(
                &decoded,
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature)
            );
            outcome = Some(decoded);
            if !wrong_key {
                break;
            }
        }
        let data = outcome.ok_or_else(invalid)?.map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "access token expired",
                ErrorKind::ImmatureSignature => "access token not valid yet",
                _ => "invalid access token",
            };
            Error::unauthenticated(reason)
        })?;
        let claims = data.claims;
        let bad = || Error::unauthenticated("invalid access token");
        Ok(TokenSubject {
            user_id: UserId::from_uuid(Uuid::try_parse(&claims.sub).map_err(|_| bad())?),
            session_id: SessionId::from_uuid(Uuid::try_parse(&claims.sid).map_err(|_| bad())?),
            expires_at: Timestamp::from_secs(claims.exp),
        })
    }
}

/// A key's id: the first 8 bytes of its SHA-256, which name the key
/// without revealing it.
fn key_id(secret: &[u8]) -> String {
    let digest = Sha256::digest(secret);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh refresh token: 256 random bits, URL-safe base64.
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a refresh token: its SHA-256.
pub fn refresh_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A fresh signing secret, for a server started without one.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(secret: &str) -> TokenCodec {
        TokenCodec::new(
            secret.as_bytes(),
            "chat",
            "chat-clients",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn an_issued_token_verifies() {
        let codec = codec("secret");
        let (user, session) = (UserId::new(), SessionId::new());
        let (token, exp) = codec.issue(user, session, Timestamp::now()).unwrap();
        let subject = codec.verify(&token).unwrap();
        assert_eq!(subject.user_id, user);
        assert_eq!(subject.session_id, session);
        assert_eq!(subject.expires_at, exp);
    }

    #[test]
    fn a_token_from_another_key_or_expired_is_rejected() {
        let (token, _) = codec("one")
            .issue(UserId::new(), SessionId::new(), Timestamp::now())
            .unwrap();
        assert_eq!(
            codec("two").verify(&token).unwrap_err().to_string(),
            "invalid access token"
        );
        let long_ago = Timestamp::from_secs(Timestamp::now().secs() - 3600);
        let (old, _) = codec("one")
            .issue(UserId::new(), SessionId::new(), long_ago)
            .unwrap();
        assert_eq!(
            codec("one").verify(&old).unwrap_err().to_string(),
            "access token expired"
        );
    }

    #[test]
    fn the_first_key_signs_and_every_key_verifies() {
        let (user, session, now) = (UserId::new(), SessionId::new(), Timestamp::now());
        let lifetime = Duration::from_secs(900);
        let old = TokenCodec::with_keys(&[b"old key".as_slice()], "chat", "chat-clients", lifetime);
        let rotated = TokenCodec::with_keys(
            &[b"new key".as_slice(), b"old key".as_slice()],
            "chat",
            "chat-clients",
            lifetime,
        );
        let (by_old, _) = old.issue(user, session, now).unwrap();
        let (by_new, _) = rotated.issue(user, session, now).unwrap();

        assert_eq!(rotated.verify(&by_old).unwrap().user_id, user);
        assert_eq!(rotated.verify(&by_new).unwrap().user_id, user);
        assert!(
            old.verify(&by_new).is_err(),
            "the old set lacks the new key"
        );
        let header = jsonwebtoken::decode_header(&by_new).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key_id(b"new key").as_str()));
        assert_eq!(key_id(b"new key").len(), 16);

        // A token without a kid, as issued before keys had ids.
        let claims = Claims {
            sub: user.to_string(),
            sid: session.to_string(),
            iat: now.secs(),
            exp: now.secs() + 900,
            iss: "chat".into(),
            aud: "chat-clients".into(),
        };
        let bare = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"old key"),
        )
        .unwrap();
        assert_eq!(rotated.verify(&bare).unwrap().session_id, session);
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert_eq!(refresh_token_hash(&a), refresh_token_hash(&a));
        assert_eq!(refresh_token_hash(&a).len(), 32);
    }
}

//! Password hashing: argon2id at OWASP's parameters, off the async runtime,
//! a bounded number at a time.

use std::sync::{Arc, LazyLock};

use anyhow::Context as _;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use tracing::Span;

use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::domain::Password;
use crate::error::{Error, Result};
use crate::metrics::{Limit, Metrics};

/// Runs password hashes a few at a time: each takes 19 MiB and a core for
/// tens of milliseconds, so a login storm must queue rather than exhaust
/// memory or take every core from the chat. The queue is bounded too.
pub struct Hashers {
    /// Hashes running now.
    running: Semaphore,
    /// Hashes running or waiting; past it, requests are refused.
    admitted: Semaphore,
    metrics: Arc<Metrics>,
}

impl Hashers {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        let workers = match limits.password_hashers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Self {
            running: Semaphore::new(workers),
            admitted: Semaphore::new(workers + limits.password_queue),
            metrics,
        }
    }

    /// Hashes a password into a PHC string.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when too many hashes wait already; internal errors.
    pub async fn hash(&self, password: Password) -> Result<String> {
        let _admitted = self.admit()?;
        let _running = self.running.acquire().await.map_err(closed)?;
        hash(password).await
    }

    /// Checks a password against a stored PHC string, or against the dummy
    /// hash when `stored` is `None` (then the answer is always `false`).
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when too many hashes wait already; internal errors.
    pub async fn verify(&self, stored: Option<String>, password: Password) -> Result<bool> {
        let _admitted = self.admit()?;
        let _running = self.running.acquire().await.map_err(closed)?;
        verify(stored, password).await
    }

    fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.admitted.try_acquire().map_err(|_| {
            self.metrics.rejected(Limit::PasswordQueue);
            Error::ResourceExhausted(
                "too many logins and registrations in progress: retry in a few seconds".into(),
            )
        })
    }
}

fn closed(_: tokio::sync::AcquireError) -> Error {
    Error::Unavailable("server is shutting down".into())
}

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a password nobody has, verified when a login names an unknown
/// user so that the answer takes as long as for a known one.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(b"not a real password at all", &salt)
        .expect("hashing the dummy password")
        .to_string()
});

/// Computes the dummy hash now, so the first unknown-user login is not slower.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

/// Hashes a password into a PHC string, unbounded: see `Hashers`.
///
/// # Errors
/// Internal, if the blocking pool is gone or argon2 fails.
async fn hash(password: Password) -> Result<String> {
    spawn_blocking_in_span(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher()
            .hash_password(password.expose(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
}

/// `Hashers::verify`, unbounded.
///
/// # Errors
/// Internal, if the stored hash is not a valid PHC string.
async fn verify(stored: Option<String>, password: Password) -> Result<bool> {
    spawn_blocking_in_span(move || {
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed =
            PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("parsing a stored hash: {e}"))?;
        let matches = hasher().verify_password(password.expose(), &parsed).is_ok();
        Ok(known && matches)
    })
    .await
}

async fn spawn_blocking_in_span<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T> {
    let span = Span::current();
    let result = tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .context("password hashing task")?;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let password = Password::parse("correct horse".into()).unwrap();
        let phc = hash(password.clone()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(Some(phc.clone()), password.clone()).await.unwrap());
        let wrong = Password::parse("wrong horse".into()).unwrap();
        assert!(!verify(Some(phc), wrong).await.unwrap());
        assert!(!verify(None, password).await.unwrap());
    }
}

//! Password hashing: argon2id at OWASP's parameters, off the async runtime,
//! a bounded number at a time.

use std::sync::{Arc, LazyLock, Mutex};

use anyhow::Context as _;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
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
        let argon2 = hasher();
        let params = argon2.params().clone();
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .as_salt()
            .decode_b64(&mut salt_bytes)
            .map_err(|e| anyhow::anyhow!("decoding a salt: {e}"))?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        with_memory(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password.expose(), salt_bytes, &mut out, blocks)
        })
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| anyhow::anyhow!("encoding argon2 parameters: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("a hash output: {e}"))?),
        };
        Ok(phc.to_string())
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
        let matches = matches(&phc, password.expose())
            .map_err(|e| anyhow::anyhow!("checking against a stored hash: {e}"))?;
        Ok(known && matches)
    })
    .await
}

/// Whether `password` hashes to the PHC string `phc`, computed in pooled
/// memory. The comparison of the outputs takes constant time.
fn matches(phc: &str, password: &[u8]) -> argon2::password_hash::Result<bool> {
    let parsed = PasswordHash::new(phc)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(&parsed)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(argon2::password_hash::Error::PhcStringField);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    with_memory(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt_bytes, &mut out, blocks)
    })?;
    Ok(Output::new(&out)? == expected)
}

/// Argon2's working memory (19 MiB a hash), kept for reuse: at most one
/// buffer per hash that ever ran at once, which `Hashers` bounds. Freed and
/// allocated anew each time instead, the allocator keeps the freed buffers
/// of every blocking thread: hundreds of MiB after a login storm.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

fn with_memory<T>(blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
    let pooled = MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop();
    let mut memory = pooled.unwrap_or_default();
    memory.resize(blocks, Block::default());
    let result = work(&mut memory);
    MEMORY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(memory);
    result
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

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::PasswordVerifier as _;
        let password = Password::parse("correct horse".into()).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let theirs = hasher()
            .hash_password(password.expose(), &salt)
            .unwrap()
            .to_string();
        assert!(matches(&theirs, password.expose()).unwrap());
        assert!(!matches(&theirs, b"wrong horse").unwrap());

        let ours = hash(password.clone()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher().verify_password(password.expose(), &parsed).is_ok());
    }
}

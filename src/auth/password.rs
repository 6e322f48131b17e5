//! Password hashing: argon2id at OWASP's parameters, off the async runtime,
//! a bounded number at a time, on threads of lower priority than the chat.

use std::sync::{mpsc, Arc, LazyLock, Mutex};

use anyhow::Context as _;
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher as _, Version};
use tracing::Span;

use tokio::sync::{oneshot, Semaphore};

use crate::config::Limits;
use crate::domain::Password;
use crate::error::{Error, Result};
use crate::metrics::{Limit, Metrics};

/// How much less CPU priority the hashing threads have (a Unix nice
/// value): while streams have work, a hash waits, so a login storm takes
/// the idle CPU but little from message delivery.
const HASHER_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Runs password hashes a few at a time, on threads of their own: each
/// takes 19 MiB and a core for tens of milliseconds, so a login storm must
/// queue rather than exhaust memory or take the cores from the chat. The
/// queue is bounded too.
pub struct Hashers {
    /// Hashes running or waiting; past it, requests are refused.
    admitted: Semaphore,
    /// The hashing threads' queue; they end when it is dropped.
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl Hashers {
    /// Starts the hashing threads (one per CPU unless the limits say).
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let workers = match limits.password_hashers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..workers {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || run_hasher(&queue))
                .context("starting a password hashing thread")?;
        }
        Ok(Self {
            admitted: Semaphore::new(workers + limits.password_queue),
            jobs,
            metrics,
        })
    }

    /// Hashes a password into a PHC string.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when too many hashes wait already; internal errors.
    pub async fn hash(&self, password: Password) -> Result<String> {
        let _admitted = self.admit()?;
        self.run(move || hash(&password)).await
    }

    /// Checks a password against a stored PHC string, or against the dummy
    /// hash when `stored` is `None` (then the answer is always `false`).
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED when too many hashes wait already; internal errors.
    pub async fn verify(&self, stored: Option<String>, password: Password) -> Result<bool> {
        let _admitted = self.admit()?;
        self.run(move || verify(stored, &password)).await
    }

    /// Runs `work` on a hashing thread, in the caller's tracing span.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = oneshot::channel();
        let span = Span::current();
        let job: Job = Box::new(move || {
            // The caller may have gone; nothing to tell then.
            let _ = done.send(span.in_scope(work));
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Unavailable("server is shutting down".into()))?;
        let result = result
            .await
            .map_err(|_| anyhow::anyhow!("a password hashing thread failed"))?;
        Ok(result?)
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

/// A hashing thread: lowers its own priority, then runs jobs until the
/// queue is dropped.
fn run_hasher(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        let job = queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        match job {
            Ok(job) => job(),
            Err(mpsc::RecvError) => return,
        }
    }
}

/// Gives the current thread `HASHER_NICENESS` (on Linux, nice values are
/// per thread). Without it the hashes still run, at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHER_NICENESS)
    {
        tracing::warn!(%error, "could not lower the password hashing threads' priority");
    }
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

/// Hashes one password on this thread, as the server stores it: for the
/// operator's tool (`chat-server admin users reset-password`), which has
/// no hashers. The server itself hashes through `Hashers`.
///
/// # Errors
/// When argon2 fails.
pub fn hash_once(password: &Password) -> anyhow::Result<String> {
    hash(password)
}

/// Hashes a password into a PHC string, on this thread: see `Hashers`.
///
/// # Errors
/// When argon2 fails.
fn hash(password: &Password) -> anyhow::Result<String> {
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
}

/// `Hashers::verify`, on this thread.
///
/// # Errors
/// When the stored hash is not a valid PHC string.
fn verify(stored: Option<String>, password: &Password) -> anyhow::Result<bool> {
    let known = stored.is_some();
    let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
    let matches = matches(&phc, password.expose())
        .map_err(|e| anyhow::anyhow!("checking against a stored hash: {e}"))?;
    Ok(known && matches)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::parse("correct horse".into()).unwrap();
        let phc = hash(&password).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(Some(phc.clone()), &password).unwrap());
        let wrong = Password::parse("wrong horse".into()).unwrap();
        assert!(!verify(Some(phc), &wrong).unwrap());
        assert!(!verify(None, &password).unwrap());
    }

    #[tokio::test]
    async fn the_hashing_threads_hash_and_verify() {
        let hashers =
            Hashers::new(&crate::config::Config::defaults().limits, Metrics::new()).unwrap();
        let password = Password::parse("correct horse".into()).unwrap();
        let phc = hashers.hash(password.clone()).await.unwrap();
        assert!(hashers.verify(Some(phc), password).await.unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_at_a_lower_priority_than_the_chat() {
        let hashers =
            Hashers::new(&crate::config::Config::defaults().limits, Metrics::new()).unwrap();
        let current = || {
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                .map_err(anyhow::Error::from)
        };
        let chat = current().unwrap();
        let hashing = hashers.run(current).await.unwrap();
        assert_eq!(hashing, (chat + HASHER_NICENESS).min(19));
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own() {
        use argon2::PasswordVerifier as _;
        let password = Password::parse("correct horse".into()).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let theirs = hasher()
            .hash_password(password.expose(), &salt)
            .unwrap()
            .to_string();
        assert!(matches(&theirs, password.expose()).unwrap());
        assert!(!matches(&theirs, b"wrong horse").unwrap());

        let ours = hash(&password).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher().verify_password(password.expose(), &parsed).is_ok());
    }
}

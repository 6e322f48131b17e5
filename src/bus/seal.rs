//! Authenticating the bus: every envelope a node publishes is sealed with
//! an HMAC-SHA256, keyed by the cluster secret, over the subject, the time
//! of sealing and the encoded envelope. A receiver opens only what a holder
//! of the secret sealed for that very subject, recently.
//!
//! Whoever can publish on the cluster's subjects without the secret (a
//! client of a shared or unauthenticated NATS) is thus heard by no node.
//! A replay is possible only within `FRESHNESS` and on the same subject,
//! where the receiver's checks against the store make it harmless.
//!
//! Several secrets may be configured, for rotation: the first seals, every
//! one opens.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use prost::Message as _;
use sha2::Sha256;

use super::wire::{Envelope, Sealed};
use crate::config::Config;
use crate::domain::Timestamp;
use crate::metrics::BusRejection;

type HmacSha256 = Hmac<Sha256>;

/// How far a seal's time may be from the receiver's clock, either way: an
/// older envelope is a replay, or waited so long in a buffer while NATS was
/// away that the store has made up for it already (the tail check, the
/// session sweep, the next presence snapshot). Either way it allows for
/// clocks that disagree by a few seconds.
pub const FRESHNESS: Duration = Duration::from_secs(60);

/// The shortest cluster secret: 128 bits.
pub const MIN_SECRET_LEN: usize = 16;

/// Separates this use of the key from any other (and the wire version).
const CONTEXT: &[u8] = b"chat-server bus v1\n";

/// Why an envelope was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Unopened {
    #[error("not sealed: an envelope without a MAC")]
    Unsigned,
    #[error("the MAC matches no cluster secret")]
    BadMac,
    #[error("sealed {age_secs} s away from this node's clock")]
    Stale { age_secs: i64 },
    #[error("undecodable: {0}")]
    Malformed(#[from] prost::DecodeError),
}

impl Unopened {
    pub fn reason(&self) -> BusRejection {
        match self {
            Self::Unsigned => BusRejection::Unsigned,
            Self::BadMac => BusRejection::BadMac,
            Self::Stale { .. } => BusRejection::Stale,
            Self::Malformed(_) => BusRejection::Malformed,
        }
    }
}

/// The cluster secrets, ready to key MACs. Cheap to clone.
#[derive(Clone)]
pub struct ClusterKeys {
    /// Never empty; the first seals.
    keys: Arc<[HmacSha256]>,
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKeys({} keys, <redacted>)", self.keys.len())
    }
}

impl ClusterKeys {
    /// Keys from secrets of at least `MIN_SECRET_LEN` bytes each; the first
    /// seals.
    ///
    /// # Errors
    /// When there is none, or one is too short.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> anyhow::Result<Self> {
        anyhow::ensure!(!secrets.is_empty(), "no cluster secret");
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(index, secret)| {
                let secret = secret.as_ref();
                anyhow::ensure!(
                    secret.len() >= MIN_SECRET_LEN,
                    "cluster secret {} is {} bytes: each must be at least {MIN_SECRET_LEN}",
                    index + 1,
                    secret.len()
                );
                Ok(HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { keys: keys.into() })
    }

    /// The secrets a node with `--nats-url` was given: `--cluster-secret-file`
    /// or `CHAT_CLUSTER_SECRET`.
    ///
    /// # Errors
    /// When neither is given, the file cannot be read, or a secret is too
    /// short: a node that could not authenticate the bus must not join it.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        if let Some(path) = &config.cluster_secret_file {
            return Self::from_file(path);
        }
        match &config.cluster_secret {
            Some(secret) => Self::new(&[secret.expose()]).context("in CHAT_CLUSTER_SECRET"),
            None => anyhow::bail!(
                "--nats-url needs a cluster secret, the same on every node, to \
                 authenticate what the nodes say to each other: give \
                 --cluster-secret-file PATH (one secret per line, at least \
                 {MIN_SECRET_LEN} bytes) or set CHAT_CLUSTER_SECRET"
            ),
        }
    }

    /// One secret per line (blank lines and `#` comments skipped).
    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the cluster secret file {}", path.display()))?;
        let secrets: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        Self::new(&secrets)
            .with_context(|| format!("in the cluster secret file {}", path.display()))
    }

    /// Seals an encoded envelope for `subject`, now.
    pub fn seal(&self, subject: &str, envelope: Bytes) -> Bytes {
        self.seal_at(subject, envelope, Timestamp::now())
    }

    /// Seals an encoded envelope for `subject` as if at `at`.
    pub fn seal_at(&self, subject: &str, envelope: Bytes, at: Timestamp) -> Bytes {
        let mac = mac(&self.keys[0], subject, at.0, &envelope)
            .finalize()
            .into_bytes()
            .to_vec();
        Sealed {
            sealed_at: at.0,
            envelope,
            mac,
        }
        .encode_to_vec()
        .into()
    }

    /// The envelope inside a payload received on `subject`, if one of the
    /// keys sealed it for that subject within `FRESHNESS` of `now`.
    ///
    /// # Errors
    /// Why it was not opened.
    pub fn open(&self, subject: &str, payload: Bytes, now: Timestamp) -> Result<Bytes, Unopened> {
        let sealed = match Sealed::decode(payload.clone()) {
            Ok(sealed) => sealed,
            Err(error) if Envelope::decode(payload).is_ok() => {
                drop(error);
                return Err(Unopened::Unsigned);
            }
            Err(error) => return Err(Unopened::Malformed(error)),
        };
        if sealed.mac.is_empty() {
            return Err(Unopened::Unsigned);
        }
        // Checked in constant time, against every key: which one matched
        // does not show.
        let matched = self.keys.iter().fold(false, |matched, key| {
            let verified = mac(key, subject, sealed.sealed_at, &sealed.envelope)
                .verify_slice(&sealed.mac)
                .is_ok();
            matched | verified
        });
        if !matched {
            return Err(Unopened::BadMac);
        }
        let age = now.0.saturating_sub(sealed.sealed_at);
        let window = i64::try_from(FRESHNESS.as_micros()).unwrap_or(i64::MAX);
        if age.unsigned_abs() > window.unsigned_abs() {
            return Err(Unopened::Stale {
                age_secs: age / 1_000_000,
            });
        }
        Ok(sealed.envelope)
    }
}

fn mac(key: &HmacSha256, subject: &str, sealed_at: i64, envelope: &[u8]) -> HmacSha256 {
    let mut mac = key.clone();
    mac.update(CONTEXT);
    // Subjects hold no whitespace: the newline ends this one unambiguously.
    mac.update(subject.as_bytes());
    mac.update(b"\n");
    mac.update(&sealed_at.to_be_bytes());
    mac.update(envelope);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::wire::Body;

    const SUBJECT: &str = "chat.node";

    fn envelope() -> Bytes {
        Envelope {
            node: uuid::Uuid::new_v4().as_bytes().to_vec(),
            body: Some(Body::Goodbye(true)),
        }
        .encode_to_vec()
        .into()
    }

    fn keys(secret: &str) -> ClusterKeys {
        ClusterKeys::new(&[secret]).unwrap()
    }

    #[test]
    fn a_sealed_envelope_opens_on_its_subject() {
        let keys = keys("sixteen bytes ok");
        let envelope = envelope();
        let sealed = keys.seal(SUBJECT, envelope.clone());

        let opened = keys.open(SUBJECT, sealed, Timestamp::now()).unwrap();

        assert_eq!(opened, envelope);
    }

    #[test]
    fn an_unsealed_envelope_is_unsigned() {
        let keys = keys("sixteen bytes ok");

        let opened = keys.open(SUBJECT, envelope(), Timestamp::now());

        assert!(matches!(opened, Err(Unopened::Unsigned)), "{opened:?}");
    }

    #[test]
    fn another_key_or_subject_or_a_changed_byte_is_a_bad_mac() {
        let keys = keys("sixteen bytes ok");
        let sealed = keys.seal(SUBJECT, envelope());
        let mut tampered = sealed.to_vec();
        let last = tampered.len() - 40;
        tampered[last] ^= 1;
        let now = Timestamp::now();

        for (subject, payload, opener) in [
            (SUBJECT, sealed.clone(), self::keys("another secret!!")),
            ("chat.room.x", sealed.clone(), keys.clone()),
            (SUBJECT, Bytes::from(tampered), keys.clone()),
        ] {
            let opened = opener.open(subject, payload, now);
            assert!(
                matches!(opened, Err(Unopened::BadMac | Unopened::Malformed(_))),
                "{opened:?}"
            );
        }
        let other = self::keys("another secret!!").open(SUBJECT, sealed, now);
        assert!(matches!(other, Err(Unopened::BadMac)), "{other:?}");
    }

    #[test]
    fn an_old_or_future_seal_is_stale() {
        let keys = keys("sixteen bytes ok");
        let now = Timestamp::now();
        let minute = i64::try_from(FRESHNESS.as_micros()).unwrap();

        for at in [now.0 - minute - 1_000_000, now.0 + minute + 1_000_000] {
            let sealed = keys.seal_at(SUBJECT, envelope(), Timestamp(at));
            let opened = keys.open(SUBJECT, sealed, now);
            assert!(matches!(opened, Err(Unopened::Stale { .. })), "{opened:?}");
        }
        let recent = keys.seal_at(SUBJECT, envelope(), Timestamp(now.0 - minute + 1_000_000));
        assert!(keys.open(SUBJECT, recent, now).is_ok());
    }

    #[test]
    fn every_key_opens_and_the_first_seals() {
        let old = keys("the old secret!!");
        let rotating = ClusterKeys::new(&["the new secret!!", "the old secret!!"]).unwrap();
        let now = Timestamp::now();

        assert!(rotating
            .open(SUBJECT, old.seal(SUBJECT, envelope()), now)
            .is_ok());
        let sealed = rotating.seal(SUBJECT, envelope());
        assert!(keys("the new secret!!")
            .open(SUBJECT, sealed.clone(), now)
            .is_ok());
        assert!(matches!(
            old.open(SUBJECT, sealed, now),
            Err(Unopened::BadMac)
        ));
    }

    #[test]
    fn short_secrets_are_refused() {
        let error = ClusterKeys::new(&["long enough secret", "short"]).unwrap_err();

        assert_eq!(
            error.to_string(),
            "cluster secret 2 is 5 bytes: each must be at least 16"
        );
        assert!(ClusterKeys::new::<&str>(&[]).is_err());
    }
}

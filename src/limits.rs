//! Abuse resistance: how fast a user may send, and how often an account may
//! fail to log in.
//!
//! Both keep per-key state in memory on each node, bounded: idle keys are
//! forgotten by `sweep`, which the maintenance task calls.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::domain::{UserId, Username};
use crate::error::{Error, Result};
use crate::metrics::{Limit, Metrics};

/// A token bucket per user for sends, unary and stream alike.
pub struct SendLimiter {
    /// `None` when sending is unlimited (a rate of 0).
    buckets: Option<DefaultKeyedRateLimiter<UserId>>,
    rate: u32,
    burst: u32,
    metrics: Arc<Metrics>,
}

impl SendLimiter {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        let buckets = NonZeroU32::new(limits.send_rate).map(|rate| {
            let burst = NonZeroU32::new(limits.send_burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            buckets,
            rate: limits.send_rate,
            burst: limits.send_burst,
            metrics,
        }
    }

    /// Takes a token from the user's bucket.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED, saying when to retry, when the bucket is empty.
    pub fn check(&self, user_id: UserId) -> Result<()> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(&user_id).map_err(|not_until| {
            self.metrics.rejected(Limit::Send);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::ResourceExhausted(format!(
                "sending too fast: at most {} messages per second (bursts of {}); retry in {} ms",
                self.rate,
                self.burst,
                wait.as_millis().max(1)
            ))
        })
    }

    /// Forgets the buckets of users who have not sent lately (full again).
    pub fn sweep(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }
}

/// How long a failed login is remembered when no further one follows.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Accounts (or names) tracked at once, so a spray of names cannot grow the
/// table without bound. Past it the stalest entry is forgotten.
const MAX_TRACKED: usize = 100_000;
/// The first back-off; each further failure doubles it up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Failed logins per account name, with a growing back-off.
///
/// Names are tracked whether or not an account has them, so the answer
/// tells nothing about which exist. The back-off is capped
/// (`--login-max-backoff`): someone failing on purpose can slow a person's
/// logins down, never lock them out for long.
pub struct LoginBackoff {
    failures: Mutex<HashMap<String, Failures>>,
    free_attempts: u32,
    max_backoff: Duration,
    metrics: Arc<Metrics>,
}

struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl LoginBackoff {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            free_attempts: limits.login_free_attempts,
            max_backoff: limits.login_max_backoff,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a login for `username` may be tried now.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED, saying when to retry, while the name backs off.
    pub fn check(&self, username: &Username) -> Result<()> {
        let now = Instant::now();
        let failures = self.lock();
        let blocked_until = failures
            .get(&username.key())
            .and_then(|f| f.blocked_until)
            .filter(|&until| until > now);
        match blocked_until {
            None => Ok(()),
            Some(until) => {
                self.metrics.rejected(Limit::LoginBackoff);
                let wait = until - now;
                Err(Error::ResourceExhausted(format!(
                    "too many failed logins for this username: retry in {} s",
                    wait.as_secs() + 1
                )))
            }
        }
    }

    /// Records a failed login; past the free attempts, the name backs off.
    pub fn failed(&self, username: &Username) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&username.key()) {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
            if failures.len() >= MAX_TRACKED {
                let stalest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(key, _)| key.clone());
                if let Some(key) = stalest {
                    failures.remove(&key);
                }
            }
        }
        let entry = failures.entry(username.key()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(entry.last) >= FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if let Some(beyond) = entry
            .count
            .checked_sub(self.free_attempts.saturating_add(1))
        {
            let backoff = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(beyond.min(31)))
                .min(self.max_backoff);
            entry.blocked_until = Some(now + backoff);
        }
    }

    /// Forgets the failures of a name that just logged in.
    pub fn succeeded(&self, username: &Username) {
        self.lock().remove(&username.key());
    }

    /// Forgets failures older than `FAILURE_MEMORY`.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock()
            .retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits(configure: impl FnOnce(&mut Limits)) -> Limits {
        let mut limits = Config::defaults().limits;
        configure(&mut limits);
        limits
    }

    #[test]
    fn a_user_may_send_a_burst_then_is_refused() {
        let limiter = SendLimiter::new(
            &limits(|l| {
                l.send_rate = 10;
                l.send_burst = 20;
            }),
            Metrics::new(),
        );
        let (alice, bob) = (UserId::new(), UserId::new());
        for _ in 0..20 {
            limiter.check(alice).unwrap();
        }
        let refused = limiter.check(alice).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.client_message().starts_with(
                "sending too fast: at most 10 messages per second (bursts of 20); retry in "
            ),
            "{}",
            refused.client_message()
        );
        limiter.check(bob).expect("another user's bucket is full");
    }

    #[test]
    fn failed_logins_back_off_after_the_free_attempts_up_to_the_maximum() {
        let backoff = LoginBackoff::new(
            &limits(|l| {
                l.login_free_attempts = 2;
                l.login_max_backoff = Duration::from_secs(4);
            }),
            Metrics::new(),
        );
        let name = Username::parse("Alice").unwrap();
        backoff.failed(&name);
        backoff.failed(&name);
        backoff.check(&name).expect("two failures are free");
        backoff.failed(&name);
        let refused = backoff
            .check(&Username::parse("alice").unwrap())
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.client_message(),
            "too many failed logins for this username: retry in 1 s"
        );
        for _ in 0..10 {
            backoff.failed(&name);
        }
        let blocked = backoff.lock()[&name.key()].blocked_until.unwrap();
        assert!(blocked <= Instant::now() + Duration::from_secs(4));
        backoff.succeeded(&name);
        backoff
            .check(&name)
            .expect("a success forgets the failures");
    }
}

//! Abuse resistance: how fast a user may send, and how often an account may
//! fail to log in.
//!
//! Both keep per-key state in memory on each node, bounded: idle keys are
//! forgotten by `sweep`, which the maintenance task calls.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// A token bucket per user for one kind of room change (creating rooms,
/// joining them), counted per minute.
pub struct RoomRate {
    /// `None` when unlimited (a rate of 0).
    buckets: Option<DefaultKeyedRateLimiter<UserId>>,
    per_minute: u32,
    burst: u32,
    limit: Limit,
    /// What the user was doing, and the flag that sets the rate.
    doing: &'static str,
    flag: &'static str,
}

impl RoomRate {
    /// Room creations per user: `--room-create-rate` a minute, bursts of
    /// `--room-create-burst`.
    pub fn creating(limits: &Limits) -> Self {
        Self::new(
            limits.room_create_rate,
            limits.room_create_burst,
            Limit::RoomCreate,
            "creating rooms",
            "--room-create-rate",
        )
    }

    /// Room joins (and direct rooms opened) per user: `--room-join-rate` a
    /// minute, bursts of `--room-join-burst`.
    pub fn joining(limits: &Limits) -> Self {
        Self::new(
            limits.room_join_rate,
            limits.room_join_burst,
            Limit::RoomJoin,
            "joining rooms",
            "--room-join-rate",
        )
    }

    /// Room changes per user (settings, invitations, roles, removals, bans,
    /// unbans): `--room-change-rate` a minute, bursts of
    /// `--room-change-burst`.
    pub fn changing(limits: &Limits) -> Self {
        Self::new(
            limits.room_change_rate,
            limits.room_change_burst,
            Limit::RoomChange,
            "changing rooms",
            "--room-change-rate",
        )
    }

    fn new(
        per_minute: u32,
        burst: u32,
        limit: Limit,
        doing: &'static str,
        flag: &'static str,
    ) -> Self {
        let buckets = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Self {
            buckets,
            per_minute,
            burst,
            limit,
            doing,
            flag,
        }
    }

    /// Takes a token from the user's bucket.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED, naming the limit and when to retry.
    pub fn check(&self, user_id: UserId, metrics: &Metrics) -> Result<()> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(&user_id).map_err(|not_until| {
            metrics.rejected(self.limit);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Error::ResourceExhausted(format!(
                "{} too fast: at most {} a minute (bursts of {}, {}); retry in {} s",
                self.doing,
                self.per_minute,
                self.burst,
                self.flag,
                wait.as_secs() + 1
            ))
        })
    }

    /// Forgets the buckets of users who are full again.
    pub fn sweep(&self) {
        if let Some(buckets) = &self.buckets {
            buckets.retain_recent();
            buckets.shrink_to_fit();
        }
    }
}

/// How long a failed login is remembered when no further one follows.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Account-and-address pairs (and addresses) tracked at once, so a spray
/// of names or addresses cannot grow the tables without bound. Past it the
/// stalest entry is forgotten.
const MAX_TRACKED: usize = 100_000;
/// The first back-off; each further failure doubles it up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The window of the per-address limit on failed logins.
const ADDRESS_WINDOW: Duration = Duration::from_secs(60);

/// Failed logins, with a growing back-off per account and client address,
/// and a generous limit per address over all accounts.
///
/// Keyed on the account and the address, an attacker failing on purpose
/// slows only their own attempts at that account: the owner, from their
/// own address, logs in as usual. The per-address limit
/// (`--max-login-failures-per-ip`, per minute) stops one address from
/// trying many accounts; it is generous enough for an office behind one
/// address. Names are tracked whether or not an account has them, so the
/// answer tells nothing about which exist.
///
/// Attempts are counted when they start, not only when they fail: logins
/// in flight take the remaining free attempts, so a burst of simultaneous
/// wrong passwords cannot all reach the (costly) hash check before the
/// first failure is recorded.
pub struct LoginBackoff {
    state: Mutex<BackoffState>,
    free_attempts: u32,
    max_backoff: Duration,
    /// Failed logins per address per [`ADDRESS_WINDOW`]; 0 for no limit.
    per_address: u32,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct BackoffState {
    accounts: HashMap<(String, IpAddr), Failures>,
    addresses: HashMap<IpAddr, AddressFailures>,
}

struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
    /// Attempts checked but not yet decided.
    in_flight: u32,
}

/// A token bucket of failures: `tokens` refill at `per_address` a window.
struct AddressFailures {
    tokens: f64,
    refilled: Instant,
    in_flight: u32,
}

/// Why a login may not be tried now.
enum Refusal {
    Account(Duration),
    Address(Duration),
}

/// A login attempt the back-off admitted; tell it how it ended. Dropped
/// undecided (the hash check failed for another reason), it counts neither
/// way.
pub struct LoginAttempt<'a> {
    backoff: &'a LoginBackoff,
    account: (String, IpAddr),
    decided: bool,
}

impl LoginAttempt<'_> {
    /// The password was wrong (or the name unknown): it counts.
    pub fn failed(mut self) {
        self.decided = true;
        self.backoff.record(&self.account, false);
    }

    /// The password was right: the account's failures from this address
    /// are forgotten.
    pub fn succeeded(mut self) {
        self.decided = true;
        self.backoff.record(&self.account, true);
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        if !self.decided {
            self.backoff.release(&self.account);
        }
    }
}

impl LoginBackoff {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            state: Mutex::new(BackoffState::default()),
            free_attempts: limits.login_free_attempts,
            max_backoff: limits.login_max_backoff,
            per_address: limits.max_login_failures_per_ip,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BackoffState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a login for `username` from `address` (already keyed with
    /// `client_addr::address_key`), counting it in flight.
    ///
    /// # Errors
    /// RESOURCE_EXHAUSTED, saying when to retry, while the account backs
    /// off for this address, while as many attempts as it has left are in
    /// flight, or while the address has failed too often.
    pub fn begin(&self, username: &Username, address: IpAddr) -> Result<LoginAttempt<'_>> {
        let now = Instant::now();
        let account = (username.key(), address);
        let mut state = self.lock();
        if let Some(refusal) = self.refusal(&mut state, &account, now) {
            drop(state);
            self.metrics.rejected(Limit::LoginBackoff);
            return Err(match refusal {
                Refusal::Account(wait) => Error::ResourceExhausted(format!(
                    "too many failed logins for this username: retry in {} s",
                    wait.as_secs() + 1
                )),
                Refusal::Address(wait) => Error::ResourceExhausted(format!(
                    "too many failed logins from this address: at most {} a minute; retry in {} s",
                    self.per_address,
                    wait.as_secs() + 1
                )),
            });
        }
        bound(&mut state.accounts, &account, now, |f| f.last);
        state
            .accounts
            .entry(account.clone())
            .or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: None,
                in_flight: 0,
            })
            .in_flight += 1;
        if self.per_address > 0 {
            bound(&mut state.addresses, &address, now, |a| a.refilled);
            let capacity = f64::from(self.per_address);
            state
                .addresses
                .entry(address)
                .or_insert(AddressFailures {
                    tokens: capacity,
                    refilled: now,
                    in_flight: 0,
                })
                .in_flight += 1;
        }
        Ok(LoginAttempt {
            backoff: self,
            account,
            decided: false,
        })
    }

    fn refusal(
        &self,
        state: &mut BackoffState,
        account: &(String, IpAddr),
        now: Instant,
    ) -> Option<Refusal> {
        if let Some(failures) = state.accounts.get_mut(account) {
            if now.duration_since(failures.last) >= FAILURE_MEMORY && failures.in_flight == 0 {
                failures.count = 0;
                failures.blocked_until = None;
            }
            if let Some(until) = failures.blocked_until.filter(|&until| until > now) {
                return Some(Refusal::Account(until - now));
            }
            // The attempts left before a back-off, of which those in flight
            // are taken; once backing off, one at a time.
            let left = self.free_attempts.saturating_sub(failures.count).max(1);
            if failures.in_flight >= left {
                return Some(Refusal::Account(Duration::ZERO));
            }
        }
        if self.per_address == 0 {
            return None;
        }
        let address = state.addresses.get_mut(&account.1)?;
        self.refill(address, now);
        let available = address.tokens - f64::from(address.in_flight);
        (available < 1.0).then(|| {
            let missing = 1.0 - available;
            let per_token = ADDRESS_WINDOW.as_secs_f64() / f64::from(self.per_address);
            Refusal::Address(Duration::from_secs_f64(missing * per_token))
        })
    }

    fn refill(&self, address: &mut AddressFailures, now: Instant) {
        let capacity = f64::from(self.per_address);
        let earned = now.duration_since(address.refilled).as_secs_f64()
            / ADDRESS_WINDOW.as_secs_f64()
            * capacity;
        address.tokens = (address.tokens + earned).min(capacity);
        address.refilled = now;
    }

    fn record(&self, account: &(String, IpAddr), succeeded: bool) {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(address) = state.addresses.get_mut(&account.1) {
            address.in_flight = address.in_flight.saturating_sub(1);
            if !succeeded {
                self.refill(address, now);
                address.tokens = (address.tokens - 1.0).max(0.0);
            }
        }
        let Some(failures) = state.accounts.get_mut(account) else {
            return;
        };
        failures.in_flight = failures.in_flight.saturating_sub(1);
        if succeeded {
            if failures.in_flight == 0 {
                state.accounts.remove(account);
            } else {
                failures.count = 0;
                failures.blocked_until = None;
            }
            return;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if let Some(beyond) = failures
            .count
            .checked_sub(self.free_attempts.saturating_add(1))
        {
            let backoff = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(beyond.min(31)))
                .min(self.max_backoff);
            failures.blocked_until = Some(now + backoff);
        }
    }

    fn release(&self, account: &(String, IpAddr)) {
        let mut state = self.lock();
        if let Some(address) = state.addresses.get_mut(&account.1) {
            address.in_flight = address.in_flight.saturating_sub(1);
        }
        if let Some(failures) = state.accounts.get_mut(account) {
            failures.in_flight = failures.in_flight.saturating_sub(1);
        }
    }

    /// Forgets failures older than `FAILURE_MEMORY`, and addresses whose
    /// bucket is full again.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        state
            .accounts
            .retain(|_, f| f.in_flight > 0 || now.duration_since(f.last) < FAILURE_MEMORY);
        state
            .addresses
            .retain(|_, a| a.in_flight > 0 || now.duration_since(a.refilled) < ADDRESS_WINDOW);
    }
}

/// Keeps a table under [`MAX_TRACKED`] before `key` is added: first by
/// forgetting entries older than the failure memory, then the stalest.
fn bound<K: Clone + Eq + std::hash::Hash, V>(
    table: &mut HashMap<K, V>,
    key: &K,
    now: Instant,
    last: impl Fn(&V) -> Instant,
) {
    if table.len() < MAX_TRACKED || table.contains_key(key) {
        return;
    }
    table.retain(|_, value| now.duration_since(last(value)) < FAILURE_MEMORY);
    if table.len() >= MAX_TRACKED {
        let stalest = table
            .iter()
            .min_by_key(|(_, value)| last(value))
            .map(|(key, _)| key.clone());
        if let Some(key) = stalest {
            table.remove(&key);
        }
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

    fn backoff(free: u32, max: Duration, per_address: u32) -> LoginBackoff {
        LoginBackoff::new(
            &limits(|l| {
                l.login_free_attempts = free;
                l.login_max_backoff = max;
                l.max_login_failures_per_ip = per_address;
            }),
            Metrics::new(),
        )
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));
    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 66));

    #[test]
    fn room_creations_beyond_the_burst_are_refused_naming_the_limit() {
        let rate = RoomRate::creating(&limits(|l| {
            l.room_create_rate = 10;
            l.room_create_burst = 3;
        }));
        let metrics = Metrics::new();
        let (alice, bob) = (UserId::new(), UserId::new());
        for _ in 0..3 {
            rate.check(alice, &metrics).unwrap();
        }
        let refused = rate.check(alice, &metrics).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.client_message().starts_with(
                "creating rooms too fast: at most 10 a minute (bursts of 3, --room-create-rate); retry in "
            ),
            "{}",
            refused.client_message()
        );
        rate.check(bob, &metrics).expect("another user's bucket");
        let off = RoomRate::joining(&limits(|l| l.room_join_rate = 0));
        for _ in 0..1000 {
            off.check(alice, &metrics).unwrap();
        }
    }

    #[test]
    fn failed_logins_back_off_after_the_free_attempts_up_to_the_maximum() {
        let backoff = backoff(2, Duration::from_secs(4), 0);
        let name = Username::parse("Alice").unwrap();
        backoff.begin(&name, HOME).unwrap().failed();
        backoff.begin(&name, HOME).unwrap().failed();
        backoff
            .begin(&name, HOME)
            .expect("two failures are free")
            .failed();
        let refused = backoff
            .begin(&Username::parse("alice").unwrap(), HOME)
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.client_message(),
            "too many failed logins for this username: retry in 1 s"
        );
        let key = (name.key(), HOME);
        for _ in 0..10 {
            backoff.lock().accounts.get_mut(&key).unwrap().blocked_until = None;
            backoff.begin(&name, HOME).unwrap().failed();
        }
        let blocked = backoff.lock().accounts[&key].blocked_until.unwrap();
        assert!(blocked <= Instant::now() + Duration::from_secs(4));
        backoff.lock().accounts.get_mut(&key).unwrap().blocked_until = None;
        backoff.begin(&name, HOME).unwrap().succeeded();
        for _ in 0..3 {
            backoff
                .begin(&name, HOME)
                .expect("a success forgets the failures")
                .failed();
        }
    }

    #[test]
    fn attempts_in_flight_take_the_free_attempts() {
        let backoff = backoff(5, Duration::from_secs(30), 0);
        let name = Username::parse("alice").unwrap();
        let admitted: Vec<_> = (0..30)
            .filter_map(|_| backoff.begin(&name, HOME).ok())
            .collect();
        assert_eq!(admitted.len(), 5, "no more attempts at once than are free");
        drop(admitted);
        let first = backoff
            .begin(&name, HOME)
            .expect("undecided attempts count neither way");
        first.failed();
        let mut left = Vec::new();
        while let Ok(attempt) = backoff.begin(&name, HOME) {
            left.push(attempt);
        }
        assert_eq!(left.len(), 4);
        for attempt in left {
            attempt.failed();
        }
        let one = backoff
            .lock()
            .accounts
            .get_mut(&(name.key(), HOME))
            .map(|f| {
                f.blocked_until = None;
            });
        assert!(one.is_some());
        let only = backoff
            .begin(&name, HOME)
            .expect("after the back-off, one try");
        assert!(backoff.begin(&name, HOME).is_err(), "and one at a time");
        only.failed();
    }

    #[test]
    fn an_attacker_backs_off_only_their_own_attempts() {
        let backoff = backoff(5, Duration::from_secs(30), 0);
        let name = Username::parse("alice").unwrap();
        for _ in 0..6 {
            backoff.begin(&name, ATTACKER).unwrap().failed();
        }
        assert!(backoff.begin(&name, ATTACKER).is_err());
        backoff
            .begin(&name, HOME)
            .expect("the owner's address is not backing off")
            .succeeded();
    }

    #[test]
    fn an_address_failing_across_many_accounts_is_refused_then_let_in_again() {
        let backoff = backoff(5, Duration::from_secs(30), 10);
        for n in 0..10 {
            let name = Username::parse(&format!("user{n}")).unwrap();
            backoff.begin(&name, ATTACKER).unwrap().failed();
        }
        let fresh = Username::parse("someone").unwrap();
        let refused = backoff.begin(&fresh, ATTACKER).err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.client_message().starts_with(
                "too many failed logins from this address: at most 10 a minute; retry in "
            ),
            "{}",
            refused.client_message()
        );
        backoff
            .begin(&fresh, HOME)
            .expect("another address")
            .succeeded();
        backoff
            .lock()
            .addresses
            .get_mut(&ATTACKER)
            .unwrap()
            .refilled -= Duration::from_secs(6);
        backoff
            .begin(&fresh, ATTACKER)
            .expect("a failure's worth refilled after a tenth of a minute")
            .succeeded();
    }
}

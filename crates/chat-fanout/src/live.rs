//! Sessions recently found live, so that a client's calls do not each read
//! its session from the database.
//!
//! An entry is trusted for a short time (`--session-cache-ttl`, [`TTL`] by
//! default). Every revocation this node hears of (its own, or another
//! node's over the bus) removes its entry at once, so a revoked session is
//! refused by the very next call. Only a revocation that never reaches this
//! node (the bus lost it) can go unseen, and then for that time at most,
//! after which the database is asked again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_domain::{SessionId, User, UserId};

/// How long a session found live is trusted without asking the database,
/// by default.
pub const TTL: Duration = Duration::from_secs(1);
/// Sessions remembered at most; past that, new ones are not remembered
/// until old ones expire.
const CAPACITY: usize = 100_000;

pub struct LiveSessions {
    entries: Mutex<HashMap<SessionId, Entry>>,
    /// Bumped by every revocation: a lookup that began before one does not
    /// fill the cache, since it may have read the session before it was
    /// revoked.
    revocations: AtomicU64,
    ttl: Duration,
    capacity: usize,
}

struct Entry {
    user: User,
    checked: Instant,
}

/// Taken before reading a session from the database; hands the result to
/// [`LiveSessions::remember`].
#[derive(Clone, Copy, Debug)]
pub struct Lookup(u64);

impl LiveSessions {
    /// Trusts a session found live for `ttl` (zero: never).
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, CAPACITY)
    }

    #[must_use]
    fn with_capacity(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
            ttl,
            capacity,
        }
    }

    /// The session's user, if the session was found live less than the TTL
    /// ago and belongs to `user_id`.
    pub fn get(&self, session_id: SessionId, user_id: UserId) -> Option<User> {
        let entries = self.lock();
        let entry = entries.get(&session_id)?;
        (entry.user.id == user_id && entry.checked.elapsed() < self.ttl).then(|| entry.user.clone())
    }

    /// Call before looking the session up (here or in the database).
    pub fn begin(&self) -> Lookup {
        Lookup(self.revocations.load(Ordering::Acquire))
    }

    /// Whether any session was revoked since `lookup` began. A stream
    /// opened with a session that was live at `lookup` checks this once it
    /// is registered: a revocation since may have missed it.
    pub fn revoked_since(&self, lookup: Lookup) -> bool {
        self.revocations.load(Ordering::Acquire) != lookup.0
    }

    /// Remembers a session the database found live, unless a revocation
    /// happened since `lookup` began.
    pub fn remember(&self, lookup: Lookup, session_id: SessionId, user: User) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        // Checked under the lock that `revoke` takes after bumping the
        // count: a revocation either came first and is seen here, or
        // comes after and removes this entry.
        if self.revocations.load(Ordering::Acquire) != lookup.0 {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&session_id) {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.checked.elapsed() < ttl);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(
            session_id,
            Entry {
                user,
                checked: Instant::now(),
            },
        );
    }

    /// Forgets a revoked session.
    pub fn revoke(&self, session_id: SessionId) {
        let mut entries = self.lock();
        // Counted under the lock that `get` takes: a lookup whose `begin`
        // came before this count sees it moved; one whose `begin` came
        // after finds the entry gone, since its `get` waits for this lock.
        self.revocations.fetch_add(1, Ordering::AcqRel);
        entries.remove(&session_id);
    }

    /// Forgets every session of a user whose profile changed, so the next
    /// call reads it as it is now. Counted like a revocation, so that a
    /// lookup that read the old profile before this does not put it back.
    /// The operator's tool ends every session of a user this way too
    /// (`Hub::revoke_user`).
    pub fn forget_user(&self, user_id: UserId) {
        let mut entries = self.lock();
        self.revocations.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, entry| entry.user.id != user_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Entry>> {
        // A panic elsewhere cannot leave the map half-updated: every change
        // is a single insert, remove or retain.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: UserId::new(),
            username: "alice".into(),
            display_name: String::new(),
        }
    }

    #[test]
    fn a_live_session_is_remembered_for_its_user_only() {
        let live = LiveSessions::new(TTL);
        let (session, alice) = (SessionId::new(), user());
        assert!(live.get(session, alice.id).is_none());
        live.remember(live.begin(), session, alice.clone());
        assert_eq!(live.get(session, alice.id).unwrap().id, alice.id);
        assert!(live.get(session, UserId::new()).is_none());
        assert!(live.get(SessionId::new(), alice.id).is_none());
    }

    #[test]
    fn an_entry_expires_after_the_ttl() {
        let live = LiveSessions::with_capacity(Duration::from_millis(20), 10);
        let (session, alice) = (SessionId::new(), user());
        live.remember(live.begin(), session, alice.clone());
        assert!(live.get(session, alice.id).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(live.get(session, alice.id).is_none());
    }

    #[test]
    fn a_revocation_removes_the_entry() {
        let live = LiveSessions::new(TTL);
        let (session, alice) = (SessionId::new(), user());
        live.remember(live.begin(), session, alice.clone());
        live.revoke(session);
        assert!(live.get(session, alice.id).is_none());
    }

    #[test]
    fn revoking_a_user_forgets_its_sessions_only_and_counts_as_a_revocation() {
        let live = LiveSessions::new(TTL);
        let (alice, bob) = (user(), user());
        let (first, second, other) = (SessionId::new(), SessionId::new(), SessionId::new());
        live.remember(live.begin(), first, alice.clone());
        live.remember(live.begin(), second, alice.clone());
        live.remember(live.begin(), other, bob.clone());
        let before = live.begin();
        live.forget_user(alice.id);
        assert!(live.revoked_since(before));
        assert!(live.get(first, alice.id).is_none());
        assert!(live.get(second, alice.id).is_none());
        assert_eq!(live.get(other, bob.id).unwrap().id, bob.id);
    }

    #[test]
    fn a_lookup_that_began_before_a_revocation_is_not_remembered() {
        let live = LiveSessions::new(TTL);
        let (session, alice) = (SessionId::new(), user());
        let lookup = live.begin();
        // The database said live, but the session was revoked meanwhile.
        live.revoke(session);
        live.remember(lookup, session, alice.clone());
        assert!(live.get(session, alice.id).is_none());
        live.remember(live.begin(), session, alice.clone());
        assert!(live.get(session, alice.id).is_some());
    }

    #[test]
    fn a_revocation_is_seen_by_lookups_that_began_before_it() {
        let live = LiveSessions::new(TTL);
        let before = live.begin();
        assert!(!live.revoked_since(before));
        live.revoke(SessionId::new());
        assert!(live.revoked_since(before));
        assert!(!live.revoked_since(live.begin()));
    }

    #[test]
    fn the_cache_is_bounded() {
        let live = LiveSessions::with_capacity(Duration::from_secs(60), 3);
        let alice = user();
        let sessions: Vec<_> = (0..5).map(|_| SessionId::new()).collect();
        for &session in &sessions {
            live.remember(live.begin(), session, alice.clone());
        }
        let kept = sessions
            .iter()
            .filter(|&&s| live.get(s, alice.id).is_some())
            .count();
        assert_eq!(kept, 3);
    }
}

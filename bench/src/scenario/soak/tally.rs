//! What the soak's users did, counted as they go (`Tally`, shared by every
//! user and reader task) and, at the end, as a plain record for the report
//! and the JSON (`SoakResult`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::cli::SoakOpts;

/// The counters every user adds to.
#[derive(Default)]
pub struct Tally {
    pub visits: AtomicU64,
    pub connect_failures: AtomicU64,
    pub logins: AtomicU64,
    pub chat_streams: AtomicU64,
    pub subscribes: AtomicU64,
    pub resumes: AtomicU64,
    pub logouts: AtomicU64,
    pub ended_by_logout: AtomicU64,
    pub dropped: AtomicU64,
    pub direct_rooms: AtomicU64,
    pub lobby_visits: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub typing_sent: AtomicU64,
    pub typing_received: AtomicU64,
    pub presence_received: AtomicU64,
    pub heartbeats: AtomicU64,
    pub resyncs: AtomicU64,
    pub gaps: AtomicU64,
    pub duplicates: AtomicU64,
    /// Failures by step and gRPC code.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One failure of `step`, e.g. ("JoinRoom", Code::NotFound).
    pub fn error(&self, step: &str, code: impl Debug) {
        *self
            .errors()
            .entry(format!("{step}: {code:?}"))
            .or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors().values().sum()
    }

    fn errors(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of a finished run.
    pub fn result(
        &self,
        opts: &SoakOpts,
        setup_secs: f64,
        churn: Duration,
        still_busy: usize,
    ) -> SoakResult {
        let get = Self::get;
        SoakResult {
            opts: opts.clone(),
            setup_secs,
            churn_secs: churn.as_secs_f64(),
            visits: get(&self.visits),
            connect_failures: get(&self.connect_failures),
            logins: get(&self.logins),
            chat_streams: get(&self.chat_streams),
            subscribes: get(&self.subscribes),
            resumes: get(&self.resumes),
            logouts: get(&self.logouts),
            ended_by_logout: get(&self.ended_by_logout),
            dropped: get(&self.dropped),
            direct_rooms: get(&self.direct_rooms),
            lobby_visits: get(&self.lobby_visits),
            sent: get(&self.sent),
            received: get(&self.received),
            typing_sent: get(&self.typing_sent),
            typing_received: get(&self.typing_received),
            presence_received: get(&self.presence_received),
            heartbeats: get(&self.heartbeats),
            resyncs: get(&self.resyncs),
            gaps: get(&self.gaps),
            duplicates: get(&self.duplicates),
            still_busy,
            errors: self.errors().clone(),
        }
    }
}

/// What a soak did, from setup to the last user leaving.
#[derive(Clone, Debug, Serialize)]
pub struct SoakResult {
    pub opts: SoakOpts,
    /// Registering the users and creating the rooms.
    pub setup_secs: f64,
    /// From the start of the churn until every user had left.
    pub churn_secs: f64,
    /// Connections made, one per visit.
    pub visits: u64,
    pub connect_failures: u64,
    pub logins: u64,
    pub chat_streams: u64,
    pub subscribes: u64,
    /// Streams opened with the cursors of earlier visits.
    pub resumes: u64,
    /// Visits that ended with Logout…
    pub logouts: u64,
    /// …and the streams that Logout ended (all of them, or an error says
    /// which stayed open).
    pub ended_by_logout: u64,
    /// Visits that ended by dropping the connection.
    pub dropped: u64,
    pub direct_rooms: u64,
    /// Visits that joined the lobby (and left it).
    pub lobby_visits: u64,
    /// Messages acknowledged: `sent` on a ChatStream, or SendMessage's answer.
    pub sent: u64,
    pub received: u64,
    pub typing_sent: u64,
    pub typing_received: u64,
    pub presence_received: u64,
    pub heartbeats: u64,
    pub resyncs: u64,
    /// Seqs a user's stream skipped in a room, against its cursor.
    pub gaps: u64,
    /// Messages at or below a user's cursor for their room.
    pub duplicates: u64,
    /// Users still in a visit when the leave wait ran out (stopped then).
    pub still_busy: usize,
    /// Failures by step and gRPC code.
    pub errors: BTreeMap<String, u64>,
}

impl SoakResult {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The counts as the report lists them.
    pub fn rows(&self) -> [(&'static str, u64); 22] {
        [
            ("users", self.opts.users as u64),
            ("visits (connections)", self.visits),
            ("connect failures", self.connect_failures),
            ("logins", self.logins),
            ("ChatStreams opened", self.chat_streams),
            ("Subscribes opened", self.subscribes),
            ("streams resumed from cursors", self.resumes),
            ("visits ended by Logout", self.logouts),
            ("  their streams ended by it", self.ended_by_logout),
            ("visits ended by dropping", self.dropped),
            ("direct rooms opened", self.direct_rooms),
            ("lobby joins (and leaves)", self.lobby_visits),
            ("messages sent (acknowledged)", self.sent),
            ("messages received", self.received),
            ("typing sent", self.typing_sent),
            ("typing received", self.typing_received),
            ("presence received", self.presence_received),
            ("heartbeats received", self.heartbeats),
            ("resyncs", self.resyncs),
            ("gaps (missed seqs)", self.gaps),
            ("duplicates", self.duplicates),
            ("users stopped while busy", self.still_busy as u64),
        ]
    }

    /// What fails the run: a gap or a duplicate, always; in a smoke run
    /// also any error, a user that would not leave, or no traffic at all.
    pub fn failures(&self, smoke: bool) -> Vec<String> {
        let mut failures = Vec::new();
        if self.gaps > 0 || self.duplicates > 0 {
            failures.push(format!(
                "soak: {} gaps (missed seqs), {} duplicates",
                self.gaps, self.duplicates
            ));
        }
        if !smoke {
            return failures;
        }
        if self.error_count() > 0 {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(what, n)| format!("{what} ×{n}"))
                .collect();
            failures.push(format!("soak: errors: {}", errors.join(", ")));
        }
        if self.still_busy > 0 {
            failures.push(format!(
                "soak: {} users still busy at the end",
                self.still_busy
            ));
        }
        if self.sent == 0 || self.received == 0 {
            failures.push(format!(
                "soak: {} messages sent, {} received",
                self.sent, self.received
            ));
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::scenario_opts;

    fn quiet_run() -> SoakResult {
        let tally = Tally::default();
        Tally::add(&tally.sent, 10);
        Tally::add(&tally.received, 30);
        tally.result(&scenario_opts(&[]), 1.0, Duration::from_secs(60), 0)
    }

    #[test]
    fn a_clean_run_passes() {
        assert!(quiet_run().failures(false).is_empty());
        assert!(quiet_run().failures(true).is_empty());
    }

    #[test]
    fn a_gap_or_a_duplicate_fails_any_run() {
        let mut gap = quiet_run();
        gap.gaps = 1;
        assert_eq!(
            gap.failures(false),
            vec!["soak: 1 gaps (missed seqs), 0 duplicates"]
        );
        let mut duplicate = quiet_run();
        duplicate.duplicates = 2;
        assert_eq!(duplicate.failures(false).len(), 1);
    }

    #[test]
    fn errors_fail_only_a_smoke_run() {
        let tally = Tally::default();
        Tally::add(&tally.sent, 1);
        Tally::add(&tally.received, 1);
        tally.error("Logout", tonic::Code::Unavailable);
        tally.error("Logout", tonic::Code::Unavailable);
        let result = tally.result(&scenario_opts(&[]), 1.0, Duration::from_secs(1), 0);
        assert!(result.failures(false).is_empty());
        assert_eq!(
            result.failures(true),
            vec!["soak: errors: Logout: Unavailable ×2"]
        );
    }
}

//! Paces sends at a steady rate: message `i` is due `i / rate` seconds after
//! the start. Timers are millisecond-grained, so each wake-up hands out
//! every message that has come due (a few per millisecond at high rates),
//! and a sender that falls behind catches up instead of losing messages.

use std::time::Duration;

use tokio::time::Instant;

/// The longest single sleep, so a caller can check its stop condition.
const MAX_SLEEP: Duration = Duration::from_millis(50);

pub struct Pacer {
    start: Instant,
    per_sec: f64,
    handed_out: u64,
}

impl Pacer {
    /// Starts now, at `per_sec` messages per second.
    pub fn new(per_sec: f64) -> Self {
        Self {
            start: Instant::now(),
            per_sec: per_sec.max(f64::MIN_POSITIVE),
            handed_out: 0,
        }
    }

    /// Waits until a message is due (at most `MAX_SLEEP`), then returns
    /// how many are due now; 0 after a sleep that ended with none due.
    pub async fn due(&mut self) -> u64 {
        let due = self.due_now();
        if due > 0 {
            self.handed_out += due;
            return due;
        }
        // Seconds from the start at which the next message is due.
        let next = (self.handed_out + 1) as f64 / self.per_sec;
        let wake = self.start + Duration::from_secs_f64(next);
        tokio::time::sleep_until(wake.min(Instant::now() + MAX_SLEEP)).await;
        let due = self.due_now();
        self.handed_out += due;
        due
    }

    fn due_now(&self) -> u64 {
        let should = (self.start.elapsed().as_secs_f64() * self.per_sec) as u64;
        should.saturating_sub(self.handed_out)
    }
}

//! Counts and times deliveries: per receiver, how many messages of the
//! current step arrived (to find losses), and one latency histogram for the
//! step (publish to delivery, microseconds).
//!
//! Receivers are tasks on a multi-threaded runtime; they record into a few
//! mutex-guarded histogram shards (never held across an `.await`), so two
//! worker threads seldom meet on one lock. Deliveries of another step (late
//! ones from a step that timed out, or warm-up probes) are counted apart.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::payload;

/// Histogram shards: more than worker threads, so contention stays rare.
const SHARDS: usize = 16;
/// The longest latency a histogram holds (one hour, in microseconds);
/// longer ones are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;
/// Two significant digits: 1% precision, and a histogram of about 20 KiB,
/// so that one per sender task stays cheap.
const SIGNIFICANT_DIGITS: u8 = 2;

/// An empty latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records one latency.
pub fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
    histogram.saturating_record(micros.clamp(1, MAX_MICROS));
}

pub struct Recorder {
    /// The step being measured; `u32::MAX` while a new one is set up.
    step: AtomicU32,
    counts: Vec<AtomicU64>,
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Deliveries that belong to another step.
    stray: AtomicU64,
    /// Texts that are not benchmark messages at all.
    foreign: AtomicU64,
}

impl Recorder {
    pub fn new(receivers: usize) -> Arc<Self> {
        Arc::new(Self {
            step: AtomicU32::new(payload::WARM_UP_STEP),
            counts: (0..receivers).map(|_| AtomicU64::new(0)).collect(),
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            stray: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        })
    }

    pub fn receivers(&self) -> usize {
        self.counts.len()
    }

    /// Starts measuring `step`: counts and latencies start from zero.
    pub fn begin(&self, step: u32) {
        self.step.store(u32::MAX, Ordering::SeqCst);
        for count in &self.counts {
            count.store(0, Ordering::Relaxed);
        }
        for shard in &self.shards {
            lock(shard).reset();
        }
        self.step.store(step, Ordering::SeqCst);
    }

    /// One delivery of `text` to `receiver`.
    pub fn record(&self, receiver: usize, text: &[u8]) {
        let Some(stamp) = payload::decode(text) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if stamp.step != self.step.load(Ordering::Acquire) {
            self.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let latency = stamp.age();
        if let Some(count) = self.counts.get(receiver) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        record_latency(&mut lock(&self.shards[receiver % SHARDS]), latency);
    }

    /// Deliveries of the current step so far.
    pub fn delivered(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Per receiver, deliveries of the current step.
    pub fn counts(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// The fewest deliveries any receiver has had in this step.
    pub fn min_count(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    pub fn stray(&self) -> u64 {
        self.stray.load(Ordering::Relaxed)
    }

    pub fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }

    /// The step's latencies so far, all shards merged.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for shard in &self.shards {
            // Same bounds on both sides: adding cannot fail.
            let _ = merged.add(&*lock(shard));
        }
        merged
    }
}

fn lock(shard: &Mutex<Histogram<u64>>) -> MutexGuard<'_, Histogram<u64>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Latency percentiles of a histogram, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
            mean_ms: histogram.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_of_another_step_are_not_counted() {
        let recorder = Recorder::new(2);
        recorder.begin(3);
        recorder.record(0, payload::encode(3, 0, 100).as_bytes());
        recorder.record(1, payload::encode(2, 0, 100).as_bytes());
        recorder.record(1, b"not a benchmark message");
        assert_eq!(recorder.counts(), vec![1, 0]);
        assert_eq!((recorder.stray(), recorder.foreign()), (1, 1));
        assert_eq!(recorder.histogram().len(), 1);
    }

    #[test]
    fn beginning_a_step_starts_from_zero() {
        let recorder = Recorder::new(1);
        recorder.begin(1);
        recorder.record(0, payload::encode(1, 0, 100).as_bytes());
        recorder.begin(2);
        assert_eq!(recorder.delivered(), 0);
        assert!(recorder.histogram().is_empty());
    }
}

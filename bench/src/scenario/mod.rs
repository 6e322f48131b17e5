//! The scenarios, and the measuring code they share: a *step* sends at one
//! steady rate for a while through a [`Publisher`] (the chat server or
//! NATS), waits for the deliveries, then checks that every receiver got
//! exactly what was sent to it and reads the latency percentiles. A
//! *ladder* runs steps at rising rates to find the highest sustained one.
//! The soak measures no rate: users come and go for a long time, and every
//! message they receive is checked against their cursors.

pub mod direct;
pub mod durable;
pub mod fanout;
pub mod idle;
pub mod list_rooms;
pub mod member;
pub mod nats;
pub mod soak;
pub mod storm;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cpu;
use crate::pacer::Pacer;
use crate::payload;
use crate::progress::Progress;
use crate::recorder::{Percentiles, Recorder};

/// A step passes only if it sent at least this share of its target rate.
const MIN_RATE_SHARE: f64 = 0.95;
/// How often a step checks whether its deliveries have all arrived.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// Between two warm-up probes.
const WARM_UP_TICK: Duration = Duration::from_millis(250);
/// How long every receiver may take to get its first warm-up probe.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Something that carries benchmark messages to a known set of receivers.
pub trait Publisher: Send {
    /// Hands message `seq` (its text stamped with the send instant) to the
    /// transport. Waits when the transport pushes back.
    fn publish(
        &mut self,
        seq: u64,
        text: String,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Per receiver, the deliveries due once messages `0..sent` are out.
    fn expected(&self, sent: u64) -> Vec<u64>;
    /// Errors and ended streams since the start.
    fn health(&self) -> Health;
    /// Publish-to-acknowledgement latencies since the last call, where the
    /// transport acknowledges (the chat server, once a message is stored).
    fn take_ack_latency(&mut self) -> Option<Histogram<u64>> {
        None
    }
}

/// Trouble a transport has seen so far (cumulative).
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub errors: u64,
    pub ended: u64,
    pub first_error: Option<String>,
}

/// One steady-rate step.
#[derive(Clone, Debug)]
pub struct Step {
    pub label: String,
    pub messages_per_sec: f64,
    /// Deliveries per message (the receivers of each), for the rate label.
    pub fanout: f64,
    pub secs: f64,
    pub message_bytes: usize,
    pub drain: Duration,
    pub p99_limit_ms: f64,
    /// While set, the step keeps sending past `secs` (the login storm).
    pub busy: Option<Arc<AtomicBool>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub label: String,
    pub target_messages_per_sec: f64,
    pub target_deliveries_per_sec: f64,
    /// From the first send to the last.
    pub send_secs: f64,
    pub sent: u64,
    pub sent_per_sec: f64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub deliveries_per_sec: f64,
    pub lost: u64,
    pub duplicated: u64,
    /// Deliveries of earlier steps that arrived during this one.
    pub stray: u64,
    pub drained: bool,
    /// From the last send until the last delivery (or the drain timeout).
    pub drain_secs: f64,
    pub errors: u64,
    pub streams_ended: u64,
    pub first_error: Option<String>,
    /// Cores' worth of CPU used by processes outside the run meanwhile.
    pub other_cpu_cores: f64,
    /// Publish to delivery.
    pub latency: Percentiles,
    /// Publish to the sender's acknowledgement (stored), when there is one.
    pub ack_latency: Option<Percentiles>,
    pub passed: bool,
    pub verdict: String,
    /// Times the step was measured: more than once when other processes
    /// disturbed it (see `cpu::Guard`).
    pub attempts: u32,
}

/// Runs one step, once the machine is quiet; again when other processes
/// disturbed it (up to the guard's retries; not a step that runs beside
/// other work of ours, like the login storm).
///
/// # Errors
/// Only when the transport fails outright; losses and errors the server
/// answered are part of the result.
pub async fn run_step<P: Publisher>(
    publisher: &mut P,
    recorder: &Recorder,
    step: &Step,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<StepResult> {
    let guard = cpu::guard();
    let mut attempts = 1;
    loop {
        // A busy step's other work has already started: no waiting now.
        if step.busy.is_none() {
            cpu::wait_until_quiet(progress).await;
        }
        let mut result = run_step_once(publisher, recorder, step, ids.next_id(), progress).await?;
        result.attempts = attempts;
        let disturbed = result.other_cpu_cores > guard.limit_cores;
        if !disturbed || attempts > guard.retries || step.busy.is_some() {
            return Ok(result);
        }
        progress.note(format!(
            "{}: other processes used {:.2} cores meanwhile; measuring again",
            step.label, result.other_cpu_cores
        ));
        attempts += 1;
    }
}

async fn run_step_once<P: Publisher>(
    publisher: &mut P,
    recorder: &Recorder,
    step: &Step,
    id: u32,
    progress: &Progress,
) -> anyhow::Result<StepResult> {
    let before = publisher.health();
    let cpu_before = cpu::Snapshot::take();
    let _ = publisher.take_ack_latency();
    recorder.begin(id);
    let stray_before = recorder.stray();
    let bar = progress.timer(Duration::from_secs_f64(step.secs), step.label.clone());
    let started = Instant::now();
    let mut pacer = Pacer::new(step.messages_per_sec);
    let mut seq = 0;
    let mut publish_errors = 0u64;
    while started.elapsed().as_secs_f64() < step.secs || is_busy(step) {
        for _ in 0..pacer.due().await {
            let text = payload::encode(id, seq, step.message_bytes);
            if publisher.publish(seq, text).await.is_err() {
                publish_errors += 1;
            }
            seq += 1;
        }
        bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!("sent {seq}, delivered {}", recorder.delivered()));
    }
    let send_secs = started.elapsed().as_secs_f64();
    let sent = seq;
    let expected = publisher.expected(sent);
    let (drained, drain_secs) = drain(recorder, &expected, step.drain).await;
    bar.finish_and_clear();
    let after = publisher.health();
    let mut result = tally(step, recorder, &expected, send_secs, sent);
    result.stray = recorder.stray() - stray_before;
    result.drained = drained;
    result.drain_secs = drain_secs;
    result.other_cpu_cores = cpu::Snapshot::take().other_cores_since(&cpu_before);
    result.ack_latency = publisher.take_ack_latency().map(|h| Percentiles::of(&h));
    result.errors = after.errors - before.errors + publish_errors;
    result.streams_ended = after.ended - before.ended;
    result.first_error = after
        .first_error
        .filter(|_| result.errors > 0 || result.streams_ended > 0);
    judge(step, &mut result);
    Ok(result)
}

fn is_busy(step: &Step) -> bool {
    step.busy
        .as_ref()
        .is_some_and(|busy| busy.load(Ordering::Acquire))
}

/// Waits until every receiver has its expected deliveries, or the timeout.
/// Returns whether they all arrived, and how long that took.
async fn drain(recorder: &Recorder, expected: &[u64], timeout: Duration) -> (bool, f64) {
    let started = Instant::now();
    let total: u64 = expected.iter().sum();
    loop {
        if recorder.delivered() >= total {
            let counts = recorder.counts();
            if counts.iter().zip(expected).all(|(got, want)| got >= want) {
                return (true, started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() >= timeout {
            return (false, started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Counts and latencies of a finished step.
fn tally(
    step: &Step,
    recorder: &Recorder,
    expected: &[u64],
    send_secs: f64,
    sent: u64,
) -> StepResult {
    let counts = recorder.counts();
    let (mut lost, mut duplicated) = (0, 0);
    for (got, want) in counts.iter().zip(expected) {
        lost += want.saturating_sub(*got);
        duplicated += got.saturating_sub(*want);
    }
    let delivered: u64 = counts.iter().sum();
    let per_sec = |n: u64| {
        if send_secs > 0.0 {
            n as f64 / send_secs
        } else {
            0.0
        }
    };
    StepResult {
        label: step.label.clone(),
        target_messages_per_sec: step.messages_per_sec,
        target_deliveries_per_sec: step.messages_per_sec * step.fanout,
        send_secs,
        sent,
        sent_per_sec: per_sec(sent),
        expected_deliveries: expected.iter().sum(),
        delivered,
        deliveries_per_sec: per_sec(delivered),
        lost,
        duplicated,
        stray: 0,
        drained: false,
        drain_secs: 0.0,
        errors: 0,
        streams_ended: 0,
        first_error: None,
        other_cpu_cores: 0.0,
        latency: Percentiles::of(&recorder.histogram()),
        ack_latency: None,
        passed: false,
        verdict: String::new(),
        attempts: 1,
    }
}

/// Decides whether a step passed, and says why not.
fn judge(step: &Step, result: &mut StepResult) {
    let mut problems = Vec::new();
    if result.lost > 0 {
        problems.push(format!("{} deliveries lost", result.lost));
    }
    if result.duplicated > 0 {
        problems.push(format!("{} duplicated", result.duplicated));
    }
    if result.errors > 0 {
        problems.push(format!("{} errors", result.errors));
    }
    if result.streams_ended > 0 {
        problems.push(format!("{} streams ended", result.streams_ended));
    }
    if result.latency.p99_ms >= step.p99_limit_ms {
        problems.push(format!(
            "p99 {:.1} ms ≥ {} ms",
            result.latency.p99_ms, step.p99_limit_ms
        ));
    }
    if result.sent_per_sec < step.messages_per_sec * MIN_RATE_SHARE {
        problems.push(format!(
            "sender reached {:.0} of {:.0} messages/s",
            result.sent_per_sec, step.messages_per_sec
        ));
    }
    result.passed = problems.is_empty();
    result.verdict = if result.passed {
        "pass".into()
    } else {
        problems.join(", ")
    };
}

/// Sends probes until every receiver has had one: connections are warm and
/// (for NATS) every subscription is known to the server before measuring.
///
/// # Errors
/// When some receiver has had no probe after `WARM_UP_TIMEOUT`.
pub async fn warm_up<P: Publisher>(
    publisher: &mut P,
    recorder: &Recorder,
    probes_per_tick: usize,
    message_bytes: usize,
) -> anyhow::Result<()> {
    recorder.begin(payload::WARM_UP_STEP);
    let started = Instant::now();
    let mut seq = 0;
    while recorder.min_count() == 0 {
        if started.elapsed() > WARM_UP_TIMEOUT {
            let missing = recorder.counts().iter().filter(|&&c| c == 0).count();
            bail!(
                "{missing} of {} receivers had no warm-up message after {WARM_UP_TIMEOUT:?}",
                recorder.receivers()
            );
        }
        for _ in 0..probes_per_tick {
            let text = payload::encode(payload::WARM_UP_STEP, seq, message_bytes);
            publisher.publish(seq, text).await?;
            seq += 1;
        }
        tokio::time::sleep(WARM_UP_TICK).await;
    }
    Ok(())
}

/// Gives out step ids (0 is the warm-up).
#[derive(Debug)]
pub struct StepIds(u32);

impl Default for StepIds {
    fn default() -> Self {
        Self(payload::WARM_UP_STEP + 1)
    }
}

impl StepIds {
    pub fn next_id(&mut self) -> u32 {
        self.0 += 1;
        self.0 - 1
    }
}

/// What a ladder found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LadderResult {
    pub steps: Vec<StepResult>,
    /// The most deliveries/s of any passing step.
    pub max_sustained_deliveries_per_sec: Option<f64>,
    pub stopped_because: String,
}

/// How a ladder climbs.
pub struct LadderPlan {
    /// Deliveries/s of each step, in order.
    pub rates: Vec<u64>,
    /// Bisection steps between the last pass and the first failure.
    pub refine: u32,
    /// A template for each step (its id, rate and label are set here).
    pub step: Step,
    pub name: String,
    /// Each step lasts at least long enough to send this many messages.
    pub min_messages: u64,
}

/// The lowest rate a ladder descends to, as a fraction of its first rate.
const LADDER_FLOOR_DIVISOR: u64 = 8;

/// Runs steps at rising rates until one fails; when the very first one
/// fails, halves the rate until one passes (down to an eighth of it). Then
/// bisects between the highest passing rate and the lowest failing one.
///
/// # Errors
/// When the transport fails outright.
pub async fn ladder<P: Publisher>(
    publisher: &mut P,
    recorder: &Recorder,
    plan: &LadderPlan,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<LadderResult> {
    let mut runner = LadderRun {
        publisher,
        recorder,
        plan,
        ids,
        progress,
        steps: Vec::new(),
    };
    let mut pass: Option<u64> = None;
    let mut fail: Option<u64> = None;
    // Rising.
    for &rate in &plan.rates {
        match runner.step(rate).await? {
            Verdict::Pass => pass = Some(rate),
            Verdict::Fail => {
                fail = Some(rate);
                break;
            }
            Verdict::Unusable => {
                return Ok(runner.finish(format!("{rate}/s left the system unusable")))
            }
        }
    }
    // Falling, when even the first rate failed.
    if let (None, Some(first)) = (pass, fail) {
        let floor = (first / LADDER_FLOOR_DIVISOR).max(1);
        let mut rate = first / 2;
        while pass.is_none() && rate >= floor {
            match runner.step(rate).await? {
                Verdict::Pass => pass = Some(rate),
                Verdict::Fail => fail = Some(rate),
                Verdict::Unusable => {
                    return Ok(runner.finish(format!("{rate}/s left the system unusable")))
                }
            }
            rate /= 2;
        }
    }
    let (Some(mut low), Some(mut high)) = (pass, fail) else {
        let why = match fail {
            None => "every rate of the ladder passed".into(),
            Some(rate) => format!("every rate down to {rate}/s failed"),
        };
        return Ok(runner.finish(why));
    };
    for _ in 0..plan.refine {
        let rate = (low + high) / 2;
        if rate <= low || rate >= high {
            break;
        }
        match runner.step(rate).await? {
            Verdict::Pass => low = rate,
            Verdict::Fail => high = rate,
            Verdict::Unusable => break,
        }
    }
    Ok(runner.finish(format!("passes at {low}/s, fails at {high}/s")))
}

/// How a ladder step went.
enum Verdict {
    Pass,
    Fail,
    /// Failed so that later steps would not mean anything: deliveries
    /// still outstanding after the drain timeout, or streams ended.
    Unusable,
}

/// A ladder in progress.
struct LadderRun<'a, P> {
    publisher: &'a mut P,
    recorder: &'a Recorder,
    plan: &'a LadderPlan,
    ids: &'a mut StepIds,
    progress: &'a Progress,
    steps: Vec<StepResult>,
}

impl<P: Publisher> LadderRun<'_, P> {
    async fn step(&mut self, rate: u64) -> anyhow::Result<Verdict> {
        let step = run_ladder_step(
            self.publisher,
            self.recorder,
            self.plan,
            rate,
            self.ids,
            self.progress,
        )
        .await?;
        let verdict = if step.passed {
            Verdict::Pass
        } else if step.drained && step.streams_ended == 0 {
            Verdict::Fail
        } else {
            Verdict::Unusable
        };
        self.steps.push(step);
        Ok(verdict)
    }

    fn finish(self, stopped_because: String) -> LadderResult {
        let max_sustained_deliveries_per_sec = self
            .steps
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.deliveries_per_sec)
            .reduce(f64::max);
        LadderResult {
            steps: self.steps,
            max_sustained_deliveries_per_sec,
            stopped_because,
        }
    }
}

async fn run_ladder_step<P: Publisher>(
    publisher: &mut P,
    recorder: &Recorder,
    plan: &LadderPlan,
    rate: u64,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<StepResult> {
    let mut step = plan.step.clone();
    step.messages_per_sec = rate as f64 / step.fanout;
    step.secs = step
        .secs
        .max(plan.min_messages as f64 / step.messages_per_sec);
    step.label = format!("{} {rate}/s", plan.name);
    let result = run_step(publisher, recorder, &step, ids, progress).await?;
    progress.note(format!(
        "{}: {:.0} deliveries/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms: {}",
        step.label,
        result.deliveries_per_sec,
        result.latency.p50_ms,
        result.latency.p99_ms,
        result.latency.p999_ms,
        result.verdict
    ));
    Ok(result)
}

/// A geometric ladder of rates from `start` up to `max`.
pub fn geometric(start: u64, factor: f64, max: u64) -> Vec<u64> {
    let mut rates = Vec::new();
    let mut rate = start.max(1) as f64;
    while rate <= max as f64 {
        rates.push(rate.round() as u64);
        rate *= factor.max(1.01);
    }
    rates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_geometric_ladder_rises_to_its_maximum() {
        assert_eq!(geometric(100, 2.0, 1000), vec![100, 200, 400, 800]);
        assert!(geometric(10, 0.5, 100).len() > 1);
    }

    #[test]
    fn step_ids_start_after_the_warm_up() {
        let mut ids = StepIds::default();
        assert_eq!((ids.next_id(), ids.next_id()), (1, 2));
    }
}

//! Scenario 4, the login storm: the fan-out runs at a moderate rate for a
//! window without logins, then for a window in which many clients log in
//! at once (each on a new connection of its own, as devices would). The
//! delivery p99 of the two windows is compared.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::fanout::{self, ChatRoom};
use super::{StepIds, StepResult};
use crate::accounts::{self, Account};
use crate::cli::StormOpts;
use crate::net;
use crate::progress::Progress;
use crate::recorder::{self, Percentiles};

#[derive(Clone, Debug, Serialize)]
pub struct StormResult {
    pub logins: usize,
    pub rate_deliveries_per_sec: u64,
    pub without_storm: StepResult,
    pub with_storm: StepResult,
    /// p99 with the storm over p99 without.
    pub p99_ratio: f64,
    /// From the first login to the last answer.
    pub storm_secs: f64,
    pub logins_ok: usize,
    pub login_errors: usize,
    pub first_login_error: Option<String>,
    /// Connect plus Login, per client.
    pub login_latency: Percentiles,
}

/// Runs both windows on an open fan-out room; the logins use the names in
/// `accounts` (new sessions of existing users).
///
/// # Errors
/// When the transport fails outright.
pub async fn run(
    server: SocketAddr,
    room: &ChatRoom,
    accounts: &[Account],
    opts: &StormOpts,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<StormResult> {
    let mut publisher = room.publisher();
    let mut step = fanout::step_template(&opts.fanout);
    step.secs = opts.storm_secs;
    step.messages_per_sec = opts.storm_rate as f64 / step.fanout;
    super::warm_up(&mut publisher, &room.recorder, 1, step.message_bytes).await?;

    step.label = format!("storm: without {}/s", opts.storm_rate);
    let without_storm =
        super::run_step(&mut publisher, &room.recorder, &step, ids, progress).await?;
    progress.note(format!(
        "{}: p99 {:.2} ms: {}",
        step.label, without_storm.latency.p99_ms, without_storm.verdict
    ));

    let busy = Arc::new(AtomicBool::new(true));
    step.label = format!("storm: with {} logins", opts.logins);
    step.busy = Some(Arc::clone(&busy));
    let names: Vec<String> = (0..opts.logins)
        .map(|i| accounts[i % accounts.len()].username.clone())
        .collect();
    crate::cpu::wait_until_quiet(progress).await;
    let storm = tokio::spawn(login_storm(server, names, busy));
    let with_storm = super::run_step(&mut publisher, &room.recorder, &step, ids, progress).await?;
    let logins = storm.await?;
    progress.note(format!(
        "{}: p99 {:.2} ms, logins p99 {:.0} ms: {}",
        step.label, with_storm.latency.p99_ms, logins.latency.p99_ms, with_storm.verdict
    ));
    let p99_ratio = if without_storm.latency.p99_ms > 0.0 {
        with_storm.latency.p99_ms / without_storm.latency.p99_ms
    } else {
        0.0
    };
    Ok(StormResult {
        logins: opts.logins,
        rate_deliveries_per_sec: opts.storm_rate,
        without_storm,
        with_storm,
        p99_ratio,
        storm_secs: logins.secs,
        logins_ok: logins.ok,
        login_errors: logins.errors.len(),
        first_login_error: logins.errors.into_iter().next(),
        login_latency: logins.latency,
    })
}

struct Logins {
    secs: f64,
    ok: usize,
    errors: Vec<String>,
    latency: Percentiles,
}

/// Logs every name in at once, each from a new connection; clears `busy`
/// when the last one has answered.
async fn login_storm(server: SocketAddr, names: Vec<String>, busy: Arc<AtomicBool>) -> Logins {
    let started = Instant::now();
    let latencies = Arc::new(Mutex::new(recorder::new_histogram()));
    let tasks: Vec<_> = names
        .into_iter()
        .map(|name| {
            let latencies = Arc::clone(&latencies);
            tokio::spawn(async move {
                let began = Instant::now();
                let channel = net::connect(server, None).await?;
                accounts::login(channel, &name).await?;
                let took: Duration = began.elapsed();
                let mut histogram = latencies.lock().unwrap_or_else(|p| p.into_inner());
                recorder::record_latency(&mut histogram, took);
                anyhow::Ok(())
            })
        })
        .collect();
    let (mut ok, mut errors) = (0, Vec::new());
    for task in tasks {
        match task.await {
            Ok(Ok(())) => ok += 1,
            Ok(Err(error)) => errors.push(format!("{error:#}")),
            Err(error) => errors.push(format!("login task: {error}")),
        }
    }
    busy.store(false, Ordering::Release);
    let latency = Percentiles::of(&latencies.lock().unwrap_or_else(|p| p.into_inner()));
    Logins {
        secs: started.elapsed().as_secs_f64(),
        ok,
        errors,
        latency,
    }
}

//! How much CPU the rest of the machine used while we measured. On a small
//! shared machine another program (a compiler, say) changes latency
//! figures a lot, so every step records the CPU used by processes that are
//! not part of the run: the machine's busy time (without interrupt
//! handling) minus that of this process, the servers it started, and any
//! `nats-server`.
//!
//! The [`Guard`] makes a run patient on such a machine: before each step it
//! waits (up to a limit) until other processes are quiet, and a step they
//! disturbed anyway is measured again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::progress::Progress;

/// Processes that belong to the run besides this one.
static OURS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// CPU ticks of the run's processes that have been stopped.
static RETIRED: AtomicU64 = AtomicU64::new(0);

/// Kernel clock ticks per second (`USER_HZ`, 100 on Linux everywhere).
const TICKS_PER_SEC: f64 = 100.0;
/// Other processes' CPU is sampled this often while waiting…
const QUIET_SAMPLE: Duration = Duration::from_secs(1);
/// …and must stay under the limit for this many samples in a row: builds
/// and test runs come in bursts with short pauses.
const QUIET_SAMPLES: u32 = 3;

/// When other processes disturb a measurement, and what to do about it.
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    /// More than this many cores used by other processes disturbs a step.
    pub limit_cores: f64,
    /// How long to wait before a step for the machine to be quiet.
    pub wait: Duration,
    /// How often a disturbed step is measured again.
    pub retries: u32,
}

impl Guard {
    /// Never waits, never repeats.
    pub const OFF: Self = Self {
        limit_cores: f64::INFINITY,
        wait: Duration::ZERO,
        retries: 0,
    };
}

static GUARD: OnceLock<Guard> = OnceLock::new();

/// Sets the run's guard (once; later calls are ignored).
pub fn set_guard(guard: Guard) {
    let _ = GUARD.set(guard);
}

pub fn guard() -> Guard {
    GUARD.get().copied().unwrap_or(Guard::OFF)
}

/// Waits until other processes have used less than the guard's limit for a
/// few seconds, or its wait is over. Returns whether it is quiet.
pub async fn wait_until_quiet(progress: &Progress) -> bool {
    let guard = guard();
    if guard.wait.is_zero() {
        return true;
    }
    let started = Instant::now();
    let mut told = false;
    let mut quiet = 0;
    loop {
        let before = Snapshot::take();
        tokio::time::sleep(QUIET_SAMPLE).await;
        let other = Snapshot::take().other_cores_since(&before);
        if other < guard.limit_cores {
            quiet += 1;
            if quiet >= QUIET_SAMPLES {
                return true;
            }
            continue;
        }
        quiet = 0;
        if started.elapsed() >= guard.wait {
            progress.note(format!(
                "other processes still use {other:.2} cores after {:?}: measuring anyway",
                guard.wait
            ));
            return false;
        }
        if !told {
            progress.note(format!(
                "waiting for other processes to quiet down (they use {other:.2} cores)"
            ));
            told = true;
        }
    }
}

/// Counts a process (a started server) as part of the run.
pub fn register(pid: u32) {
    lock().push(pid);
}

/// Stops counting a process (a server about to be stopped), keeping the
/// CPU time it used so far.
pub fn unregister(pid: u32) {
    RETIRED.fetch_add(process_ticks(pid).unwrap_or(0), Ordering::Relaxed);
    lock().retain(|&p| p != pid);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u32>> {
    OURS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// CPU counters at one moment, in clock ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// The machine's busy time, interrupts excluded.
    busy: u64,
    /// The run's processes' user and system time.
    ours: u64,
    /// Wall clock, for turning ticks into cores.
    at: Option<Instant>,
}

impl Snapshot {
    pub fn take() -> Self {
        let mut pids = lock().clone();
        pids.push(std::process::id());
        pids.extend(pids_named("nats-server"));
        Self {
            busy: machine_busy().unwrap_or(0),
            ours: RETIRED.load(Ordering::Relaxed)
                + pids
                    .iter()
                    .filter_map(|&pid| process_ticks(pid))
                    .sum::<u64>(),
            at: Some(Instant::now()),
        }
    }

    /// Cores' worth of CPU other processes used since `earlier`.
    pub fn other_cores_since(&self, earlier: &Self) -> f64 {
        let (Some(now), Some(then)) = (self.at, earlier.at) else {
            return 0.0;
        };
        let secs = now.duration_since(then).as_secs_f64();
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        // A process that ended meanwhile makes `ours` shrink: count none.
        let ours = self.ours.saturating_sub(earlier.ours) as f64;
        if secs <= 0.0 {
            return 0.0;
        }
        ((busy - ours) / TICKS_PER_SEC / secs).max(0.0)
    }
}

/// Busy ticks of all CPUs: user, nice, system and steal (not idle, iowait,
/// irq or softirq: network interrupts are our own traffic).
fn machine_busy() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(7))
}

/// User plus system ticks of a process (all its threads).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after ')'.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Pids of processes with this command name.
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_ticks() {
        assert!(process_ticks(std::process::id()).is_some());
        assert!(machine_busy().is_some());
    }

    #[test]
    fn other_cpu_is_never_negative() {
        let earlier = Snapshot::take();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(Snapshot::take().other_cores_since(&earlier) >= 0.0);
    }
}

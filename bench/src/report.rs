//! The results of a run: one serialisable record (written as JSON), the
//! issue's targets checked against it, the checks that make a smoke run
//! fail, and the human-readable table printed on stdout.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use crate::cpu;
use crate::scenario::direct::DirectResult;
use crate::scenario::durable::DurableRun;
use crate::scenario::fanout::FanoutResult;
use crate::scenario::idle::IdleResult;
use crate::scenario::list_rooms::{self, ListRoomsResult};
use crate::scenario::soak::SoakResult;
use crate::scenario::storm::StormResult;
use crate::scenario::StepResult;
use crate::server::BinaryInfo;

/// The targets of the issue.
pub const FANOUT_SHARE_OF_NATS: f64 = 0.5;
pub const FANOUT_P99_TARGET_MS: f64 = 20.0;
pub const FANOUT_P99_TARGET_RATE: u64 = 100_000;
pub const IDLE_KIB_PER_STREAM: f64 = 12.0;
pub const IDLE_STREAMS_HELD: usize = 50_000;
pub const STORM_P99_RATIO: f64 = 2.0;
pub const DURABLE_PER_SEC: f64 = 50_000.0;
/// `ListRooms` for one user in this many rooms of this many messages…
pub const LIST_ROOMS_ROOMS: usize = 1000;
pub const LIST_ROOMS_MESSAGES: u64 = 100_000;
/// …answers with this p99 (the whole list in one call).
pub const LIST_ROOMS_P99_MS: f64 = 50.0;
/// Other processes using this much CPU (in cores) make a run suspect.
const BUSY_MACHINE_CORES: f64 = 0.1;

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: Machine,
    /// The command line of the run.
    pub command: String,
    pub started_at_unix: u64,
    pub total_secs: f64,
    /// Cores' worth of CPU used by processes outside the run, on average
    /// over the whole run (a compiler, say): figures taken while this is
    /// high are not comparable.
    pub other_cpu_cores: f64,
    /// Steps during which other processes used more (in cores) were
    /// measured again, and targets judged on them are not judged; none
    /// (infinite) in a smoke run.
    pub other_cpu_limit_cores: Option<f64>,
    pub smoke: bool,
    /// The server binary started, when the run started one.
    pub server_binary: Option<BinaryInfo>,
    /// Scenario 1 against the chat server.
    pub fanout: Option<FanoutResult>,
    /// Scenario 6: the same against NATS.
    pub baseline: Option<FanoutResult>,
    /// Why the baseline did not run, when it did not.
    pub baseline_error: Option<String>,
    pub storm: Option<StormResult>,
    pub direct: Option<DirectResult>,
    pub idle: Option<IdleResult>,
    pub durable: Vec<DurableRun>,
    pub soak: Option<SoakResult>,
    pub list_rooms: Option<ListRoomsResult>,
    pub targets: Vec<TargetCheck>,
    /// What makes the run fail (a smoke run: any loss or error).
    pub failures: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
        };
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0.0);
        Self {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_default(),
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|k| k.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// One target of the issue against what was measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when the run did not measure it.
    pub met: Option<bool>,
}

impl Results {
    /// Checks the targets against the figures (not a smoke run's:
    /// its sizes are too small to mean anything).
    pub fn check_targets(&mut self) {
        if self.smoke {
            return;
        }
        let mut checks = Vec::new();
        if let Some(fanout) = &self.fanout {
            let nats_steps = self.baseline.iter().flat_map(|n| n.ladder.steps.iter());
            let other = most_other_cpu(fanout.ladder.steps.iter().chain(nats_steps));
            checks.push(judged(
                fanout_vs_nats(fanout, self.baseline.as_ref()),
                other,
            ));
            checks.push(judged(fanout_p99(fanout), fanout.fixed.other_cpu_cores));
        }
        if let Some(idle) = &self.idle {
            checks.extend(idle_checks(idle));
        }
        if let Some(storm) = &self.storm {
            checks.push(TargetCheck {
                name: "login storm: delivery p99 at most doubles".into(),
                target: format!("≤ {STORM_P99_RATIO}×"),
                measured: format!(
                    "{:.2}× ({:.2} → {:.2} ms)",
                    storm.p99_ratio,
                    storm.without_storm.latency.p99_ms,
                    storm.with_storm.latency.p99_ms
                ),
                met: Some(storm.p99_ratio <= STORM_P99_RATIO),
            });
            let other = most_other_cpu([&storm.without_storm, &storm.with_storm].into_iter());
            if let Some(check) = checks.pop() {
                checks.push(judged(check, other));
            }
        }
        for run in self.durable.iter().filter(|r| r.synchronous == "full") {
            checks.push(TargetCheck {
                name: format!(
                    "durable sends at synchronous=FULL ({:?}, {} in flight per sender)",
                    run.path, run.in_flight
                )
                .to_lowercase(),
                target: format!("≥ {} acknowledged/s", thousands(DURABLE_PER_SEC)),
                measured: format!("{}/s", thousands(run.acknowledged_per_sec)),
                met: Some(run.acknowledged_per_sec >= DURABLE_PER_SEC),
            });
            if let Some(check) = checks.pop() {
                checks.push(judged(check, run.other_cpu_cores));
            }
        }
        if let Some(list) = &self.list_rooms {
            checks.extend(list_rooms_check(list));
        }
        self.targets = checks;
    }

    /// Collects what makes the run fail. Losses, duplicates and errors fail
    /// a smoke run anywhere; a full run fails only on what is wrong at any
    /// rate: duplicates, acknowledged messages that were not stored, and a
    /// soak's gaps.
    pub fn check_failures(&mut self) {
        let mut failures = Vec::new();
        let steps = self.all_steps();
        for (scenario, step) in &steps {
            if step.duplicated > 0 {
                failures.push(format!(
                    "{scenario} {}: {} duplicated deliveries",
                    step.label, step.duplicated
                ));
            }
            if self.smoke && (step.lost > 0 || step.errors > 0 || step.streams_ended > 0) {
                failures.push(format!("{scenario} {}: {}", step.label, step.verdict));
            }
        }
        for run in &self.durable {
            if run.lost > 0 {
                failures.push(format!(
                    "durable {:?}: {} acknowledged but not stored",
                    run.path, run.lost
                ));
            }
            if self.smoke
                && (run.errors > 0 || run.stored != run.acknowledged || run.acknowledged == 0)
            {
                failures.push(format!(
                    "durable {:?}: {} acknowledged, {} stored, {} errors ({})",
                    run.path,
                    run.acknowledged,
                    run.stored,
                    run.errors,
                    run.first_error.as_deref().unwrap_or("-")
                ));
            }
        }
        if self.smoke {
            if let Some(idle) = &self.idle {
                if idle.opened < idle.streams || idle.ended_while_held > 0 {
                    failures.push(format!(
                        "idle: {} of {} opened, {} ended while held ({})",
                        idle.opened,
                        idle.streams,
                        idle.ended_while_held,
                        idle.first_error.as_deref().unwrap_or("-")
                    ));
                }
            }
            if let Some(storm) = &self.storm {
                if storm.login_errors > 0 {
                    failures.push(format!(
                        "storm: {} logins failed ({})",
                        storm.login_errors,
                        storm.first_login_error.as_deref().unwrap_or("-")
                    ));
                }
            }
            if let Some(error) = &self.baseline_error {
                failures.push(format!("baseline: {error}"));
            }
        }
        if let Some(soak) = &self.soak {
            failures.extend(soak.failures(self.smoke));
        }
        if let Some(list) = &self.list_rooms {
            failures.extend(list_rooms_failures(list));
        }
        self.failures = failures;
    }

    fn all_steps(&self) -> Vec<(&'static str, &StepResult)> {
        let mut steps = Vec::new();
        for (name, fanout) in [
            ("fanout/chat", &self.fanout),
            ("fanout/nats", &self.baseline),
        ] {
            if let Some(fanout) = fanout {
                steps.push((name, &fanout.fixed));
                steps.extend(fanout.ladder.steps.iter().map(|s| (name, s)));
            }
        }
        if let Some(storm) = &self.storm {
            steps.push(("storm", &storm.without_storm));
            steps.push(("storm", &storm.with_storm));
        }
        if let Some(direct) = &self.direct {
            steps.extend(direct.ladder.steps.iter().map(|s| ("direct", s)));
        }
        steps
    }

    /// Writes the JSON result file.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self).context("encoding the results")?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// What is wrong with list-rooms at any size: counts that disagree with
/// the recount, rooms missing, failed calls.
fn list_rooms_failures(list: &ListRoomsResult) -> Vec<String> {
    let mut failures = Vec::new();
    for state in &list.states {
        if state.mismatches > 0 {
            failures.push(format!(
                "list-rooms/{}: {} rooms differ from the recount ({})",
                state.markers.label(),
                state.mismatches,
                state.mismatch_examples.join("; ")
            ));
        }
        for run in &state.lists {
            if run.errors > 0 || run.walks == 0 {
                failures.push(format!(
                    "list-rooms/{} page size {}: {} of {} walks failed ({})",
                    state.markers.label(),
                    list_rooms::page_label(run.page_size),
                    run.errors,
                    run.walks + run.errors,
                    run.first_error.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    failures
}

/// The target: the worst p99 of a whole-list call (page size
/// 1000) over the marker states, judged at the size only.
fn list_rooms_check(list: &ListRoomsResult) -> Option<TargetCheck> {
    let seeded = &list.seeded;
    let (state, run) = list
        .states
        .iter()
        .flat_map(|s| s.lists.iter().map(move |r| (s, r)))
        .filter(|(_, r)| r.page_size >= 1000 && r.walks > 0)
        .max_by(|a, b| a.1.call_latency.p99_ms.total_cmp(&b.1.call_latency.p99_ms))?;
    let full_size =
        seeded.rooms >= LIST_ROOMS_ROOMS && seeded.messages_per_room >= LIST_ROOMS_MESSAGES;
    let check = TargetCheck {
        name: format!(
            "list-rooms: ListRooms p99, 1 user in {} rooms of {} messages",
            thousands(seeded.rooms as f64),
            thousands(seeded.messages_per_room as f64)
        ),
        target: format!(
            "< {LIST_ROOMS_P99_MS} ms at {} × {}",
            thousands(LIST_ROOMS_ROOMS as f64),
            thousands(LIST_ROOMS_MESSAGES as f64)
        ),
        measured: format!(
            "{:.2} ms (worst state: {}, page size {}){}",
            run.call_latency.p99_ms,
            state.markers.label(),
            run.page_size,
            if full_size {
                ""
            } else {
                " (smaller: not judged)"
            }
        ),
        met: full_size.then_some(run.call_latency.p99_ms < LIST_ROOMS_P99_MS),
    };
    let other = list
        .states
        .iter()
        .flat_map(|s| s.lists.iter())
        .map(|r| r.other_cpu_cores)
        .fold(0.0, f64::max);
    Some(judged(check, other))
}

/// The most CPU other processes used during any of these steps.
fn most_other_cpu<'a>(steps: impl Iterator<Item = &'a StepResult>) -> f64 {
    steps.map(|s| s.other_cpu_cores).fold(0.0, f64::max)
}

/// A check of figures taken while other processes used `other_cores` is
/// not judged when that is over the run's limit.
fn judged(mut check: TargetCheck, other_cores: f64) -> TargetCheck {
    if other_cores > cpu::guard().limit_cores {
        check.met = None;
        check.measured = format!(
            "{} (not judged: other processes used up to {other_cores:.2} cores)",
            check.measured
        );
    }
    check
}

fn fanout_vs_nats(chat: &FanoutResult, nats: Option<&FanoutResult>) -> TargetCheck {
    let chat_max = chat.ladder.max_sustained_deliveries_per_sec;
    let nats_max = nats.and_then(|n| n.ladder.max_sustained_deliveries_per_sec);
    let or_none =
        |v: Option<f64>| v.map_or_else(|| "none".into(), |v| format!("{}/s", thousands(v)));
    let (measured, met) = match (chat_max, nats_max) {
        (Some(c), Some(n)) if n > 0.0 => (
            format!(
                "{}/s vs NATS {}/s = {:.2}",
                thousands(c),
                thousands(n),
                c / n
            ),
            Some(c / n >= FANOUT_SHARE_OF_NATS),
        ),
        // No chat rate passed while NATS had one: below any share of it.
        (None, Some(n)) if n > 0.0 => (
            format!("no rate passed vs NATS {}/s", thousands(n)),
            Some(false),
        ),
        (c, n) => (format!("{} vs NATS {}", or_none(c), or_none(n)), None),
    };
    TargetCheck {
        name: "fanout: sustained deliveries/s vs NATS, same run".into(),
        target: format!("≥ {FANOUT_SHARE_OF_NATS} × NATS"),
        measured,
        met,
    }
}

fn fanout_p99(chat: &FanoutResult) -> TargetCheck {
    let fixed = &chat.fixed;
    let at_target_rate = fixed.target_deliveries_per_sec.round() as u64 == FANOUT_P99_TARGET_RATE;
    TargetCheck {
        name: format!(
            "fanout: p99 at {} deliveries/s",
            thousands(fixed.target_deliveries_per_sec)
        ),
        target: format!(
            "≤ {FANOUT_P99_TARGET_MS} ms at {}/s",
            thousands(FANOUT_P99_TARGET_RATE as f64)
        ),
        measured: format!("{:.2} ms ({} lost)", fixed.latency.p99_ms, fixed.lost),
        met: at_target_rate.then_some(
            fixed.latency.p99_ms <= FANOUT_P99_TARGET_MS && fixed.lost == 0 && fixed.drained,
        ),
    }
}

fn idle_checks(idle: &IdleResult) -> Vec<TargetCheck> {
    // The targets are for a connection per stream: with several to a
    // connection, the figures are shown and not judged.
    let own_connections = idle.streams_per_connection <= 1;
    let shared = if own_connections {
        String::new()
    } else {
        format!(
            " ({} to a connection: not judged)",
            idle.streams_per_connection
        )
    };
    let per_stream = TargetCheck {
        name: format!(
            "idle: server memory per open stream ({} streams)",
            idle.opened
        ),
        target: format!("≤ {IDLE_KIB_PER_STREAM} KiB"),
        measured: idle.server_kib_per_stream.map_or_else(
            || "not measured (no server pid)".into(),
            |k| format!("{k:.2} KiB{shared}"),
        ),
        met: idle
            .server_kib_per_stream
            .filter(|_| own_connections)
            .map(|k| k <= IDLE_KIB_PER_STREAM),
    };
    let held = TargetCheck {
        name: "idle: open streams held".into(),
        target: format!("{} held", thousands(IDLE_STREAMS_HELD as f64)),
        measured: format!(
            "{} of {} opened, {} ended while held{}{shared}",
            idle.opened,
            idle.requested,
            idle.ended_while_held,
            idle.capped_by_open_files
                .map_or_else(String::new, |l| format!(" (open-file limit {l})"))
        ),
        // Only a run asked for 50 000 can meet or miss it.
        met: (idle.requested >= IDLE_STREAMS_HELD && own_connections)
            .then_some(idle.opened >= IDLE_STREAMS_HELD && idle.ended_while_held == 0),
    };
    vec![per_stream, held]
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (the civil
/// calendar from a day count, after Howard Hinnant's `civil_from_days`).
pub fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let minutes = unix % 86_400 / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

/// 1234567.8 as "1 234 568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The human-readable table.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    let m = &results.machine;
    let _ = writeln!(
        out,
        "\n== chat-server benchmark{}: {} × {}, {:.1} GiB, Linux {} ({:.0} s)",
        if results.smoke {
            " (SMOKE: sizes too small for timing)"
        } else {
            ""
        },
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        results.total_secs
    );
    if let Some(bin) = &results.server_binary {
        let _ = writeln!(
            out,
            "server: {} ({} bytes, built {})",
            bin.path.display(),
            bin.bytes,
            utc(bin.modified_unix)
        );
    }
    if results.other_cpu_cores >= BUSY_MACHINE_CORES {
        let _ = writeln!(
            out,
            "WARNING: other processes used {:.2} cores on average during this run: latency figures are not comparable",
            results.other_cpu_cores
        );
    }
    fanout_table(&mut out, results);
    storm_table(&mut out, results);
    direct_table(&mut out, results);
    idle_table(&mut out, results);
    durable_table(&mut out, results);
    soak_table(&mut out, results);
    list_rooms_table(&mut out, results);
    targets_table(&mut out, results);
    out
}

fn list_rooms_table(out: &mut String, results: &Results) {
    let Some(list) = &results.list_rooms else {
        return;
    };
    let seeded = &list.seeded;
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    let _ = writeln!(
        out,
        "\n-- ListRooms: 1 user in {} rooms of {} messages ({} senders; every {}th its own, every {}th naming it)",
        thousands(seeded.rooms as f64),
        thousands(seeded.messages_per_room as f64),
        seeded.senders,
        seeded.own_every,
        seeded.mention_every
    );
    let _ = writeln!(
        out,
        "  setup {:.1} s; seeded {} messages in {:.1} s ({}/s), {:.2} GiB; now {:.2} GiB{}",
        seeded.setup_secs,
        thousands(seeded.seeded_messages as f64),
        seeded.seed_secs,
        thousands(seeded.seeded_per_sec),
        gib(seeded.seeded_bytes),
        gib(list.database_bytes),
        if list.reused { " (reused)" } else { "" }
    );
    let _ = writeln!(
        out,
        "  {:<8} {:>14} {:>6} {:>6}  {:>26}  {:>26}  {:>9} {:>9} {:>6}",
        "markers",
        "page size",
        "walks",
        "calls",
        "call p50 / p99 / max ms",
        "walk p50 / p99 / max ms",
        "unread",
        "mentions",
        "other"
    );
    for state in &list.states {
        for run in &state.lists {
            let _ = writeln!(
                out,
                "  {:<8} {:>14} {:>6} {:>6}  {:>26}  {:>26}  {:>9} {:>9} {:>6.2}{}",
                state.markers.label(),
                list_rooms::page_label(run.page_size),
                run.walks,
                run.calls,
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    run.call_latency.p50_ms, run.call_latency.p99_ms, run.call_latency.max_ms
                ),
                format!(
                    "{:.2} / {:.2} / {:.2}",
                    run.walk_latency.p50_ms, run.walk_latency.p99_ms, run.walk_latency.max_ms
                ),
                thousands(state.expected_unread as f64),
                thousands(state.expected_mentions as f64),
                run.other_cpu_cores,
                if run.cut_short {
                    "  (cut short by --max-secs)"
                } else {
                    ""
                }
            );
        }
        if state.mismatches > 0 {
            let _ = writeln!(
                out,
                "  {:<8} {} rooms differ from the recount, e.g. {}",
                "",
                state.mismatches,
                state.mismatch_examples.first().map_or("-", String::as_str)
            );
        }
    }
}

fn latency_cell(step: &StepResult) -> String {
    format!(
        "{:.2} / {:.2} / {:.2}",
        step.latency.p50_ms, step.latency.p99_ms, step.latency.p999_ms
    )
}

fn fanout_table(out: &mut String, results: &Results) {
    let Some(chat) = &results.fanout else {
        if let Some(nats) = &results.baseline {
            let _ = writeln!(out, "\n-- Fan-out baseline (NATS only)");
            ladder_rows(out, "nats", nats);
        }
        return;
    };
    let nats = results.baseline.as_ref();
    let _ = writeln!(
        out,
        "\n-- Fan-out: 1 room, {} streams, {} sender(s), {}-byte messages (setup {:.1} s)",
        chat.streams, chat.senders, chat.message_bytes, chat.setup_secs
    );
    let _ = writeln!(
        out,
        "  {:<48} {:>22} {:>22} {:>10}",
        "", "chat", "NATS", "chat/NATS"
    );
    let chat_max = chat.ladder.max_sustained_deliveries_per_sec;
    let nats_max = nats.and_then(|n| n.ladder.max_sustained_deliveries_per_sec);
    let ratio = match (chat_max, nats_max) {
        (Some(c), Some(n)) if n > 0.0 => format!("{:.2}", c / n),
        _ => "-".into(),
    };
    let or_dash = |v: Option<f64>| v.map_or_else(|| "-".into(), thousands);
    let _ = writeln!(
        out,
        "  {:<48} {:>22} {:>22} {:>10}",
        "max sustained deliveries/s (p99 < limit, 0 lost)",
        or_dash(chat_max),
        or_dash(nats_max),
        ratio
    );
    let _ = writeln!(
        out,
        "  {:<48} {:>22} {:>22}",
        format!(
            "p50/p99/p999 ms at {}/s",
            thousands(chat.fixed.target_deliveries_per_sec)
        ),
        latency_cell(&chat.fixed),
        nats.map_or_else(|| "-".into(), |n| latency_cell(&n.fixed))
    );
    let _ = writeln!(
        out,
        "  {:<48} {:>22} {:>22}",
        "  lost at that rate",
        chat.fixed.lost,
        nats.map_or_else(|| "-".into(), |n| n.fixed.lost.to_string())
    );
    if let Some(error) = &results.baseline_error {
        let _ = writeln!(out, "  NATS baseline did not run: {error}");
    }
    ladder_rows(out, "chat", chat);
    if let Some(nats) = nats {
        ladder_rows(out, "nats", nats);
    }
}

fn ladder_rows(out: &mut String, system: &str, fanout: &FanoutResult) {
    let _ = writeln!(out, "  fixed rate ({system}):");
    step_row(out, &fanout.fixed);
    let _ = writeln!(
        out,
        "  ladder ({system}): target/s → delivered/s, p50/p99/p999 ms, ack p50/p99 ms, other CPU, verdict ({})",
        fanout.ladder.stopped_because
    );
    for step in &fanout.ladder.steps {
        step_row(out, step);
    }
}

fn step_row(out: &mut String, step: &StepResult) {
    let _ = writeln!(
        out,
        "    {:>11} → {:>11}  {:>24}  {:>13}  {:>5.2}  {}",
        thousands(step.target_deliveries_per_sec),
        thousands(step.deliveries_per_sec),
        latency_cell(step),
        step.ack_latency.map_or_else(
            || "-".into(),
            |a| format!("{:.1} / {:.1}", a.p50_ms, a.p99_ms)
        ),
        step.other_cpu_cores,
        step.verdict
    );
}

fn storm_table(out: &mut String, results: &Results) {
    let Some(storm) = &results.storm else { return };
    let _ = writeln!(
        out,
        "\n-- Login storm: {} concurrent logins during a fan-out at {} deliveries/s",
        storm.logins,
        thousands(storm.rate_deliveries_per_sec as f64)
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>24}  {}",
        "without storm p50/p99/p999 ms",
        latency_cell(&storm.without_storm),
        storm.without_storm.verdict
    );
    let _ = writeln!(
        out,
        "  {:<34} {:>24}  {}",
        "with storm p50/p99/p999 ms",
        latency_cell(&storm.with_storm),
        storm.with_storm.verdict
    );
    let _ = writeln!(
        out,
        "  p99 ratio {:.2}; logins: {} ok, {} failed, all done in {:.1} s, login p50/p99 {:.0}/{:.0} ms",
        storm.p99_ratio,
        storm.logins_ok,
        storm.login_errors,
        storm.storm_secs,
        storm.login_latency.p50_ms,
        storm.login_latency.p99_ms
    );
}

fn direct_table(out: &mut String, results: &Results) {
    let Some(direct) = &results.direct else {
        return;
    };
    let _ = writeln!(
        out,
        "\n-- Direct: {} users in {} pairs, {}-byte messages (setup {:.1} s)",
        direct.users, direct.pairs, direct.message_bytes, direct.setup_secs
    );
    let _ = writeln!(
        out,
        "  max sustained messages/s (each one delivery): {}",
        direct
            .ladder
            .max_sustained_deliveries_per_sec
            .map_or_else(|| "-".into(), thousands)
    );
    let _ = writeln!(
        out,
        "  target/s → delivered/s, p50/p99/p999 ms, ack p50/p99 ms, other CPU, verdict ({})",
        direct.ladder.stopped_because
    );
    for step in &direct.ladder.steps {
        step_row(out, step);
    }
}

fn idle_table(out: &mut String, results: &Results) {
    let Some(idle) = &results.idle else { return };
    let kib =
        |v: Option<u64>| v.map_or_else(|| "-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let _ = writeln!(
        out,
        "\n-- Idle: {} ChatStreams over {} users, from {} source address(es)",
        idle.streams,
        idle.users,
        idle.source_addresses.len()
    );
    if idle.streams_per_connection > 1 {
        let _ = writeln!(
            out,
            "  {} streams to a connection, on {} connections",
            idle.streams_per_connection, idle.connections
        );
    }
    if let Some(limit) = idle.capped_by_open_files {
        let _ = writeln!(
            out,
            "  (asked for {}; an open-file limit of {limit} holds only {})",
            idle.requested, idle.streams
        );
    }
    let _ = writeln!(
        out,
        "  opened {} ({} failed) in {:.1} s = {:.0}/s; {} ended while held {:.0} s",
        idle.opened,
        idle.failed,
        idle.open_secs,
        idle.opens_per_sec,
        idle.ended_while_held,
        idle.held_secs
    );
    let _ = writeln!(
        out,
        "  server RSS {} → {}: {} per stream; bench RSS {} → {}",
        kib(idle.server_rss_before_kib),
        kib(idle.server_rss_after_kib),
        idle.server_kib_per_stream
            .map_or_else(|| "-".into(), |k| format!("{k:.2} KiB")),
        kib(idle.bench_rss_before_kib),
        kib(idle.bench_rss_after_kib)
    );
    if let Some(error) = &idle.first_error {
        let _ = writeln!(out, "  first failure: {error}");
    }
}

fn durable_table(out: &mut String, results: &Results) {
    if results.durable.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n-- Durable sends (each sender its own room and connection)"
    );
    let _ = writeln!(
        out,
        "  {:<14} {:<7} {:>8} {:>10} {:>12} {:>14} {:>9} {:>7} {:>20}",
        "synchronous",
        "path",
        "senders",
        "in flight",
        "acked",
        "acked/s",
        "stored",
        "errors",
        "ack p50/p99 ms"
    );
    for run in &results.durable {
        let _ = writeln!(
            out,
            "  {:<14} {:<7} {:>8} {:>10} {:>12} {:>14} {:>9} {:>7} {:>20}",
            run.synchronous,
            format!("{:?}", run.path).to_lowercase(),
            run.senders,
            run.in_flight,
            run.acknowledged,
            thousands(run.acknowledged_per_sec),
            run.stored,
            run.errors,
            format!(
                "{:.2} / {:.2}",
                run.ack_latency.p50_ms, run.ack_latency.p99_ms
            )
        );
        if let Some(error) = &run.first_error {
            let _ = writeln!(out, "    first error: {error}");
        }
    }
}

fn soak_table(out: &mut String, results: &Results) {
    let Some(soak) = &results.soak else { return };
    let opts = &soak.opts;
    let _ = writeln!(
        out,
        "\n-- Soak: {} users in {} shared rooms ({} each), {:?} of churn; setup {:.1} s ({})",
        opts.users,
        opts.rooms,
        opts.rooms_per_user,
        opts.duration,
        soak.setup_secs,
        if opts.skip_register {
            "users reused"
        } else {
            "users registered"
        }
    );
    let _ = writeln!(out, "  summary after {:.0} s of churn:", soak.churn_secs);
    for (what, n) in soak.rows() {
        let _ = writeln!(out, "    {what:<30} {n:>9}");
    }
    if soak.errors.is_empty() {
        let _ = writeln!(out, "    errors: none");
    } else {
        let _ = writeln!(out, "    errors by step and code:");
        for (what, n) in &soak.errors {
            let _ = writeln!(out, "      {what:<50} {n:>7}");
        }
    }
}

fn targets_table(out: &mut String, results: &Results) {
    if results.targets.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n-- Targets");
    for check in &results.targets {
        let verdict = match check.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "n/a",
        };
        let _ = writeln!(
            out,
            "  [{verdict:^7}] {:<52} target {:<28} measured {}",
            check.name, check.target, check.measured
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(streams: usize, per_connection: usize, kib: f64) -> IdleResult {
        IdleResult {
            requested: streams,
            streams,
            capped_by_open_files: None,
            streams_per_connection: per_connection,
            connections: streams.div_ceil(per_connection),
            users: 100,
            source_addresses: Vec::new(),
            opened: streams,
            failed: 0,
            first_error: None,
            open_secs: 1.0,
            opens_per_sec: streams as f64,
            server_rss_before_kib: Some(0),
            server_rss_after_kib: Some(0),
            server_kib_per_stream: Some(kib),
            bench_rss_before_kib: None,
            bench_rss_after_kib: None,
            held_secs: 5.0,
            other_cpu_cores: 0.0,
            ended_while_held: 0,
            samples: Vec::new(),
        }
    }

    #[test]
    fn idle_targets_are_judged_only_with_a_connection_per_stream() {
        let own = idle_checks(&idle(50_000, 1, 10.0));
        assert_eq!(own[0].met, Some(true));
        assert_eq!(own[1].met, Some(true));
        let shared = idle_checks(&idle(50_000, 3, 6.0));
        assert_eq!(shared[0].met, None);
        assert_eq!(shared[1].met, None);
        assert!(shared[0].measured.contains("3 to a connection"));
    }

    #[test]
    fn unix_times_are_shown_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400 + 3_660), "2000-02-29 01:01 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1_234_567.8), "1 234 568");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1 000");
    }
}

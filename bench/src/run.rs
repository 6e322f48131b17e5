//! Running a command: which scenarios with which options (the plan), the
//! servers they need (one for fan-out, storm and direct chats; a fresh one
//! per durable-send setting; a fresh one for idle streams, so its memory
//! baseline is clean; a fresh one for the soak; list-rooms starts its own
//! on the database it seeds), and the report at the end. A scenario that fails outright is recorded and the others still run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::accounts::{self, Account};
use crate::cli::{
    scenario_opts, Cli, Command, DirectOpts, DurableOpts, FanoutOpts, IdleOpts, ListRoomsOpts,
    SoakOpts, StormOpts, Synchronous, TargetOpts,
};
use crate::progress::Progress;
use crate::report::{self, Machine, Results};
use crate::scenario::fanout::{self, ChatRoom, FanoutResult};
use crate::scenario::nats::NatsRoom;
use crate::scenario::soak::{self, SoakResult};
use crate::scenario::{direct, durable, idle, list_rooms, storm, StepIds};
use crate::server::{self, Server};
use crate::{cpu, net, plot};

/// How a run ended: the checks that failed, if any.
#[derive(Debug)]
pub struct Outcome {
    failures: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn failures(&self) -> &[String] {
        &self.failures
    }
}

/// The scenarios of a command, each with its options.
#[derive(Debug, Default)]
struct Plan {
    fanout: Option<FanoutOpts>,
    baseline: Option<FanoutOpts>,
    storm: Option<StormOpts>,
    direct: Option<DirectOpts>,
    idle: Option<IdleOpts>,
    durable: Option<DurableOpts>,
    soak: Option<SoakOpts>,
    list_rooms: Option<ListRoomsOpts>,
    smoke: bool,
}

impl Plan {
    fn of(command: &Command, target: &TargetOpts) -> Self {
        let with_nats = |opts: &FanoutOpts| (!target.no_nats).then(|| opts.clone());
        match command {
            Command::Fanout(opts) => Self {
                fanout: Some(opts.clone()),
                baseline: with_nats(opts),
                ..Self::default()
            },
            Command::Baseline(opts) => Self {
                baseline: Some(opts.clone()),
                ..Self::default()
            },
            Command::Storm(opts) => Self {
                storm: Some(opts.clone()),
                ..Self::default()
            },
            Command::Direct(opts) => Self {
                direct: Some(opts.clone()),
                ..Self::default()
            },
            Command::Idle(opts) => Self {
                idle: Some(opts.clone()),
                ..Self::default()
            },
            Command::Durable(opts) => Self {
                durable: Some(opts.clone()),
                ..Self::default()
            },
            Command::Soak(opts) => Self {
                soak: Some(opts.clone()),
                ..Self::default()
            },
            Command::ListRooms(opts) => Self {
                list_rooms: Some(opts.clone()),
                ..Self::default()
            },
            Command::All(all) => {
                let streams = all.fanout_streams.to_string();
                let fanout: FanoutOpts = scenario_opts(&["--streams", &streams]);
                Self {
                    baseline: with_nats(&fanout),
                    fanout: Some(fanout),
                    storm: Some(scenario_opts(&[
                        "--streams",
                        &streams,
                        "--logins",
                        &all.logins.to_string(),
                    ])),
                    direct: Some(scenario_opts(&["--users", &all.direct_users.to_string()])),
                    idle: Some(scenario_opts(&["--streams", &all.idle_streams.to_string()])),
                    durable: Some(scenario_opts(&[
                        "--senders",
                        &all.durable_senders.to_string(),
                    ])),
                    soak: None,
                    list_rooms: None,
                    smoke: false,
                }
            }
            Command::Smoke => Self::smoke(target),
        }
    }

    /// Every scenario, small: a few seconds each, every message checked.
    /// Latency limits are loose, since a smoke run does not time anything.
    fn smoke(target: &TargetOpts) -> Self {
        let fanout: FanoutOpts = scenario_opts(&[
            "--streams",
            "50",
            "--senders",
            "2",
            "--fixed-rate",
            "5000",
            "--fixed-secs",
            "2",
            "--step-secs",
            "1",
            "--ladder",
            "2500,10000",
            "--refine",
            "0",
            "--p99-limit-ms",
            "5000",
            "--min-step-messages",
            "0",
        ]);
        Self {
            baseline: (!target.no_nats).then(|| fanout.clone()),
            fanout: Some(fanout),
            storm: Some(scenario_opts(&[
                "--streams",
                "50",
                "--senders",
                "2",
                "--logins",
                "20",
                "--storm-rate",
                "2500",
                "--storm-secs",
                "1",
                "--p99-limit-ms",
                "5000",
            ])),
            direct: Some(scenario_opts(&[
                "--users",
                "50",
                "--rates",
                "200,500",
                "--step-secs",
                "1",
                "--p99-limit-ms",
                "5000",
            ])),
            // Two streams to a connection, the last one alone: both ways
            // of opening them.
            idle: Some(scenario_opts(&[
                "--streams",
                "201",
                "--streams-per-connection",
                "2",
                "--users",
                "10",
                "--source-addresses",
                "2",
                "--hold-secs",
                "1",
            ])),
            durable: Some(scenario_opts(&[
                "--senders",
                "20",
                "--in-flight",
                "2",
                "--secs",
                "1",
            ])),
            // A few visits per user, with every kind of visit among them.
            soak: Some(scenario_opts(&[
                "--users",
                "16",
                "--duration",
                "8s",
                "--rooms",
                "4",
                "--rooms-per-user",
                "2",
                "--online-min",
                "1s",
                "--online-max",
                "3s",
                "--pause-min",
                "200ms",
                "--pause-max",
                "1s",
                "--send-interval",
                "300ms",
                "--progress",
                "4s",
            ])),
            // 20 rooms of 1000 messages; a page size of 7 walks three
            // pages. Markers 9999+ behind need rooms longer than the cap:
            // here every marker in the `behind` state is at 0.
            list_rooms: Some(scenario_opts(&[
                "--rooms",
                "20",
                "--messages",
                "1000",
                "--walks",
                "3",
                "--warm-up-walks",
                "1",
                "--page-sizes",
                "1000,0,7",
            ])),
            smoke: true,
        }
    }
}

/// What every scenario needs.
struct Context<'a> {
    target: &'a TargetOpts,
    progress: Progress,
    /// Unique to the run: account names on a given server, NATS subject.
    run_id: String,
    ids: StepIds,
    /// Scenarios that failed outright.
    errors: Vec<String>,
}

impl Context<'_> {
    /// Account names: short on a fresh server, unique on a given one.
    fn prefix(&self, role: &str) -> String {
        if self.target.server.is_some() {
            format!("b{}-{role}", self.run_id)
        } else {
            role.to_owned()
        }
    }

    fn record<T>(&mut self, scenario: &str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let text = format!("{scenario}: {error:#}");
                self.progress.note(format!("FAILED {text}"));
                self.errors.push(text);
                None
            }
        }
    }
}

/// Runs a command and reports.
///
/// # Errors
/// When the results cannot be written.
pub async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let files = net::raise_fd_limit();
    let plan = Plan::of(&cli.command, &cli.target);
    cpu::set_guard(if plan.smoke {
        cpu::Guard::OFF
    } else {
        cpu::Guard {
            limit_cores: cli.guard.other_cpu_limit,
            wait: Duration::from_secs_f64(cli.guard.quiet_wait.max(0.0)),
            retries: cli.guard.retries,
        }
    });
    let progress = Progress::new(cli.output.quiet);
    progress.note(format!("open-file limit {files}"));
    let started = Instant::now();
    let mut results = Results {
        machine: Machine::detect(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        smoke: plan.smoke,
        server_binary: server::binary_info(&cli.target),
        ..Results::default()
    };
    let mut context = Context {
        target: &cli.target,
        progress,
        run_id: run_id(),
        ids: StepIds::default(),
        errors: Vec::new(),
    };
    let cpu_before = cpu::Snapshot::take();
    execute(&plan, &mut context, &mut results).await;
    results.total_secs = started.elapsed().as_secs_f64();
    results.other_cpu_cores = cpu::Snapshot::take().other_cores_since(&cpu_before);
    results.other_cpu_limit_cores = Some(cpu::guard().limit_cores).filter(|l| l.is_finite());
    results.check_targets();
    results.check_failures();
    results.failures.extend(context.errors);
    finish(&cli, &results, &context.progress)?;
    Ok(Outcome {
        failures: results.failures,
    })
}

/// Prints the table, writes the JSON and the plots.
fn finish(cli: &Cli, results: &Results, progress: &Progress) -> anyhow::Result<()> {
    println!("{}", report::table(results));
    let out_dir = default_out_dir();
    let json = cli
        .output
        .out
        .clone()
        .unwrap_or_else(|| out_dir.join("results.json"));
    results.write_json(&json)?;
    println!("results: {}", json.display());
    let plots_dir = cli.output.plots_dir.clone().unwrap_or(out_dir);
    match plot::write_all(results, &plots_dir) {
        Ok(files) => {
            for file in files {
                println!("plot: {}", file.display());
            }
        }
        Err(error) => progress.note(format!("plots not drawn: {error:#}")),
    }
    Ok(())
}

/// `target/bench` of the build this binary belongs to (it runs from
/// `target/release`), else under the working directory.
fn default_out_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("bench")))
        .unwrap_or_else(|| "target/bench".into())
}

fn run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:x}{:x}", secs % 0x100_0000, std::process::id() % 0x1000)
}

async fn execute(plan: &Plan, context: &mut Context<'_>, results: &mut Results) {
    if plan.fanout.is_some() || plan.storm.is_some() || plan.direct.is_some() {
        let outcome = main_server(plan, context, results).await;
        context.record("main server", outcome);
    }
    if let Some(opts) = &plan.baseline {
        let outcome = baseline(opts, context).await;
        match outcome {
            Ok(result) => results.baseline = Some(result),
            Err(error) => {
                context.progress.note(format!("baseline: {error:#}"));
                results.baseline_error = Some(format!("{error:#}"));
            }
        }
    }
    if let Some(opts) = &plan.durable {
        let outcome = durable_sends(opts, context).await;
        if let Some(runs) = context.record("durable", outcome) {
            results.durable = runs;
        }
    }
    if let Some(opts) = &plan.idle {
        let outcome = idle_streams(opts, context).await;
        results.idle = context.record("idle", outcome);
    }
    if let Some(opts) = &plan.soak {
        let outcome = soak_run(opts, context).await;
        results.soak = context.record("soak", outcome);
    }
    if let Some(opts) = &plan.list_rooms {
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| default_out_dir().with_file_name("bench-data"));
        let outcome = list_rooms::run(opts, context.target, &data_dir, &context.progress).await;
        results.list_rooms = context.record("list-rooms", outcome);
    }
}

/// Fan-out, storm and direct chats on one server, one set of accounts.
async fn main_server(
    plan: &Plan,
    context: &mut Context<'_>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let room_opts = plan
        .fanout
        .clone()
        .or_else(|| plan.storm.as_ref().map(|s| s.fanout.clone()));
    let needed = [
        room_opts
            .as_ref()
            .map_or(0, |o| o.streams + o.senders.max(1)),
        plan.direct.as_ref().map_or(0, |o| o.users),
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let server = Server::start(context.target, Synchronous::Full).await?;
    context.progress.note(format!(
        "server on {}; creating {needed} accounts",
        server.addr
    ));
    let began = Instant::now();
    let accounts = accounts::create(
        server.addr,
        &context.prefix("user"),
        needed,
        &context.progress,
    )
    .await?;
    context.progress.note(format!(
        "{needed} accounts registered and logged in in {:.1} s",
        began.elapsed().as_secs_f64()
    ));
    if let Some(opts) = room_opts {
        let outcome = chat_room(plan, &opts, &server, &accounts, context, results).await;
        context.record("fanout/chat", outcome);
    }
    if let Some(opts) = &plan.direct {
        let outcome = direct::run(
            server.addr,
            &accounts,
            opts,
            &mut context.ids,
            &context.progress,
        )
        .await;
        results.direct = context.record("direct", outcome);
    }
    server.stop().await;
    Ok(())
}

/// The chat fan-out room: the fan-out measurement, then the storm.
async fn chat_room(
    plan: &Plan,
    opts: &FanoutOpts,
    server: &Server,
    accounts: &[Account],
    context: &mut Context<'_>,
    results: &mut Results,
) -> anyhow::Result<()> {
    let room = ChatRoom::open(
        server.addr,
        accounts,
        opts,
        &context.run_id,
        &context.progress,
    )
    .await?;
    context.progress.note(format!(
        "fanout/chat: {} streams open in {:.1} s",
        opts.streams, room.setup_secs
    ));
    if let Some(fanout_opts) = &plan.fanout {
        let mut publisher = room.publisher();
        let outcome = fanout::measure(
            "chat",
            &mut publisher,
            &room.recorder,
            fanout_opts,
            &mut context.ids,
            &context.progress,
        )
        .await;
        if let Some((fixed, ladder)) = context.record("fanout/chat", outcome) {
            results.fanout = Some(FanoutResult {
                system: "chat".into(),
                streams: opts.streams,
                senders: opts.senders.max(1),
                message_bytes: opts.message_bytes,
                setup_secs: room.setup_secs,
                fixed,
                ladder,
            });
        }
    }
    if let Some(storm_opts) = &plan.storm {
        let receivers = &accounts[opts.senders.max(1)..][..opts.streams];
        let outcome = storm::run(
            server.addr,
            &room,
            receivers,
            storm_opts,
            &mut context.ids,
            &context.progress,
        )
        .await;
        results.storm = context.record("storm", outcome);
    }
    room.close().await
}

async fn baseline(opts: &FanoutOpts, context: &mut Context<'_>) -> anyhow::Result<FanoutResult> {
    let url = &context.target.nats_url;
    let room = NatsRoom::open(url, opts, &context.run_id, &context.progress).await?;
    context.progress.note(format!(
        "fanout/nats: {} subscribers on {url} in {:.1} s",
        opts.streams, room.setup_secs
    ));
    let mut publisher = room.publisher();
    let measured = fanout::measure(
        "nats",
        &mut publisher,
        &room.recorder,
        opts,
        &mut context.ids,
        &context.progress,
    )
    .await;
    let setup_secs = room.setup_secs;
    room.close();
    let (fixed, ladder) = measured?;
    Ok(FanoutResult {
        system: "nats".into(),
        streams: opts.streams,
        senders: opts.senders.max(1),
        message_bytes: opts.message_bytes,
        setup_secs,
        fixed,
        ladder,
    })
}

/// Each synchronous setting on a fresh server (a given server: once, as
/// it is configured), each send path on it.
async fn durable_sends(
    opts: &DurableOpts,
    context: &mut Context<'_>,
) -> anyhow::Result<Vec<durable::DurableRun>> {
    let modes: Vec<Option<Synchronous>> = if context.target.server.is_some() {
        vec![None]
    } else {
        opts.modes.iter().copied().map(Some).collect()
    };
    let mut runs = Vec::new();
    for mode in modes {
        let server = Server::start(context.target, mode.unwrap_or(Synchronous::Full)).await?;
        let label = mode.map_or("as configured", Synchronous::flag);
        let prefix = context.prefix(&format!("durable{}", mode.map_or("", Synchronous::flag)));
        let accounts =
            accounts::create(server.addr, &prefix, opts.senders, &context.progress).await?;
        let senders = durable::prepare(server.addr, &accounts, &context.run_id)
            .await
            .context("preparing the senders")?;
        for &path in &opts.paths {
            for &in_flight in &opts.in_flight {
                let run =
                    durable_run(&senders, opts, in_flight, path, label, &context.progress).await?;
                context.progress.note(format!(
                    "durable/{label} {path:?} × {in_flight}: {:.0} acknowledged/s \
                     ({} acked, {} stored, {} errors)",
                    run.acknowledged_per_sec, run.acknowledged, run.stored, run.errors
                ));
                runs.push(run);
            }
        }
        server.stop().await;
    }
    Ok(runs)
}

/// One durable run, once the machine is quiet; again when other processes
/// disturbed it.
async fn durable_run(
    senders: &[durable::Sender],
    opts: &DurableOpts,
    in_flight: usize,
    path: crate::cli::SendPath,
    label: &str,
    progress: &Progress,
) -> anyhow::Result<durable::DurableRun> {
    let guard = cpu::guard();
    let mut attempts = 1;
    loop {
        cpu::wait_until_quiet(progress).await;
        let run = durable::run(senders, opts, in_flight, path, label, progress).await?;
        if run.other_cpu_cores <= guard.limit_cores || attempts > guard.retries {
            return Ok(run);
        }
        progress.note(format!(
            "durable/{label} {path:?}: other processes used {:.2} cores meanwhile; measuring again",
            run.other_cpu_cores
        ));
        attempts += 1;
    }
}

async fn idle_streams(
    opts: &IdleOpts,
    context: &mut Context<'_>,
) -> anyhow::Result<idle::IdleResult> {
    let server = Server::start(context.target, Synchronous::Full).await?;
    let accounts = accounts::create(
        server.addr,
        &context.prefix("idle"),
        opts.users,
        &context.progress,
    )
    .await?;
    context.progress.note(format!(
        "idle: opening {} streams over {} users",
        opts.streams, opts.users
    ));
    cpu::wait_until_quiet(&context.progress).await;
    let result = idle::run(&server, &accounts, opts, &context.progress).await;
    server.stop().await;
    result
}

/// The soak on a fresh server (or the given one). A started server that
/// exits meanwhile fails the soak: every visit after it would only count
/// connection errors.
async fn soak_run(opts: &SoakOpts, context: &mut Context<'_>) -> anyhow::Result<SoakResult> {
    let mut server = Server::start(context.target, Synchronous::Full).await?;
    context
        .progress
        .note(format!("soak: server on {}", server.addr));
    let result = soak::run(server.addr, opts, &context.run_id, &context.progress).await;
    if server.has_exited() {
        let tail = server.log_tail();
        server.stop().await;
        anyhow::bail!("the server exited during the soak; its log ends with:\n{tail}");
    }
    server.stop().await;
    result
}

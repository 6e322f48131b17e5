//! The command line: one subcommand per scenario, `all` for every
//! benchmark scenario in one run, and `smoke` for every scenario at a small
//! size (CI).
//!
//! Each scenario's options are a struct that derives `Parser` as well as
//! `Args`, so `all` and `smoke` build them from argument lists and get the
//! same defaults as the subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "Load generator for chat-server over real gRPC connections (one HTTP/2 connection per simulated user)",
    after_help = "Examples:\n  cargo run --release -p chat-bench -- all\n  cargo run --release -p chat-bench -- fanout --streams 1000\n  cargo run --release -p chat-bench -- idle --streams 50000\n  cargo run --release -p chat-bench -- soak --users 50 --duration 2m\n  cargo run --release -p chat-bench -- smoke"
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetOpts,
    #[command(flatten)]
    pub output: OutputOpts,
    #[command(flatten)]
    pub guard: GuardOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scenario 1 (with the NATS baseline of scenario 6 unless --no-nats):
    /// one room, N member streams, sustained deliveries/s and latency.
    Fanout(FanoutOpts),
    /// Scenario 2: many 1:1 conversations at steady rates.
    Direct(DirectOpts),
    /// Scenario 3: N open authenticated streams; server memory per stream.
    Idle(IdleOpts),
    /// Scenario 4: concurrent logins while a fan-out runs at a moderate rate.
    Storm(StormOpts),
    /// Scenario 5: acknowledged sends with many concurrent senders.
    Durable(DurableOpts),
    /// Scenario 6 alone: the fan-out against NATS core pub/sub.
    Baseline(FanoutOpts),
    /// The soak: users come and go for a long time (10 minutes by
    /// default), every message they receive checked for gaps and
    /// duplicates. `scripts/soak` runs it and samples the server meanwhile.
    Soak(SoakOpts),
    /// `ListRooms` latency for one user in many rooms with long histories,
    /// where every room's unread and mention counts are computed (issue
    /// 21). Seeds the database file directly: not part of `all`, since the
    /// full size (100 million messages) takes tens of minutes to seed.
    ListRooms(ListRoomsOpts),
    /// Every benchmark scenario at full size, one report (not the soak: it
    /// measures no rate, and takes as long as it is asked to; not
    /// list-rooms, whose seeding alone takes longer than all the others).
    All(AllOpts),
    /// Every scenario once at a small size: checks that every message
    /// arrives, exits non-zero on any loss or error. Not a timing.
    Smoke,
}

/// Which server to drive, and where NATS is.
#[derive(Clone, Debug, Args)]
pub struct TargetOpts {
    /// Drive an already running server at this address instead of starting
    /// one (its limits must allow the load: see BENCHMARKS.md).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub server: Option<SocketAddr>,
    /// The pid of --server, to read its memory from /proc.
    #[arg(long, global = true, requires = "server")]
    pub server_pid: Option<u32>,
    /// The server binary to start [default: chat-server beside this binary].
    #[arg(long, global = true, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// One more flag for the started server (repeatable), e.g.
    /// --server-arg=--stream-queue=4096.
    #[arg(long, global = true, value_name = "FLAG", allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// NATS server for the baseline.
    #[arg(long, global = true, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Skip the NATS baseline.
    #[arg(long, global = true)]
    pub no_nats: bool,
}

/// Where results go.
#[derive(Clone, Debug, Args)]
pub struct OutputOpts {
    /// JSON result file [default: target/bench/results.json].
    #[arg(long, global = true, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Folder for the SVG plots [default: target/bench].
    #[arg(long, global = true, value_name = "DIR")]
    pub plots_dir: Option<PathBuf>,
    /// No progress bars or phase notes; only the table.
    #[arg(long, global = true)]
    pub quiet: bool,
}

/// Patience on a shared machine: measurements are only comparable when
/// nothing else runs. `smoke` ignores these (it times nothing).
#[derive(Clone, Debug, Args)]
pub struct GuardOpts {
    /// A step during which other processes used more CPU than this (in
    /// cores) counts as disturbed.
    #[arg(long, global = true, default_value_t = 0.2)]
    pub other_cpu_limit: f64,
    /// Before each step, wait up to this many seconds for other processes
    /// to use less than --other-cpu-limit (0: never wait).
    #[arg(long, global = true, default_value_t = 900.0)]
    pub quiet_wait: f64,
    /// How often a disturbed step is measured again.
    #[arg(long, global = true, default_value_t = 2)]
    pub retries: u32,
}

#[derive(Clone, Debug, Parser, Serialize)]
pub struct FanoutOpts {
    /// Member streams in the room (one user and one connection each).
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Senders (members too, each on its own ChatStream); messages go
    /// round-robin over them.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Bytes of each message text (the send instant is embedded in it).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(48..=4096))]
    pub message_bytes: u16,
    /// The fixed-rate run, in deliveries per second (messages/s × streams).
    #[arg(long, default_value_t = 100_000)]
    pub fixed_rate: u64,
    /// Length of the fixed-rate run.
    #[arg(long, default_value_t = 10.0)]
    pub fixed_secs: f64,
    /// Length of each step of the rate ladder (a p99 over fewer bursts of
    /// N deliveries varies a lot from run to run).
    #[arg(long, default_value_t = 10.0)]
    pub step_secs: f64,
    /// Explicit ladder of deliveries/s (comma-separated) instead of the
    /// geometric one.
    #[arg(long, value_delimiter = ',')]
    pub ladder: Vec<u64>,
    /// First step of the geometric ladder, in deliveries/s.
    #[arg(long, default_value_t = 5_000)]
    pub ladder_start: u64,
    /// Each step's rate is the previous one times this.
    #[arg(long, default_value_t = 1.5)]
    pub ladder_factor: f64,
    /// The ladder stops here even if every step passed.
    #[arg(long, default_value_t = 4_000_000)]
    pub ladder_max: u64,
    /// Bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2)]
    pub refine: u32,
    /// A step passes when its p99 is under this (and nothing was lost).
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// A ladder step lasts at least long enough to send this many messages.
    /// Its p99 is over the bursts of its messages: at 5 000 deliveries/s a
    /// 10 s step holds only 50, and one slow message alone fails it.
    #[arg(long, default_value_t = 200)]
    pub min_step_messages: u64,
    /// How long to wait after a step's last send for its deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
}

#[derive(Clone, Debug, Parser, Serialize)]
pub struct StormOpts {
    #[command(flatten)]
    pub fanout: FanoutOpts,
    /// Concurrent logins, each on its own new connection.
    #[arg(long, default_value_t = 200)]
    pub logins: usize,
    /// The fan-out's moderate rate during both windows, in deliveries/s.
    #[arg(long, default_value_t = 10_000)]
    pub storm_rate: u64,
    /// Length of the window without the storm; the one with it lasts at
    /// least this, and until the last login has answered.
    #[arg(long, default_value_t = 10.0)]
    pub storm_secs: f64,
}

#[derive(Clone, Debug, Parser, Serialize)]
pub struct DirectOpts {
    /// Users, paired into users/2 direct rooms; each has a ChatStream.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Total send rates to step through, in messages/s over all users
    /// (each message is one delivery); stops at the first failing one.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,4000,8000,16000,32000"
    )]
    pub rates: Vec<u64>,
    /// Bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2)]
    pub refine: u32,
    /// Length of each rate step.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(48..=4096))]
    pub message_bytes: u16,
    /// A step passes when its p99 is under this (and nothing was lost).
    #[arg(long, default_value_t = 50.0)]
    pub p99_limit_ms: f64,
    /// How long to wait after a step's last send for its deliveries.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
}

#[derive(Clone, Debug, Parser, Serialize)]
pub struct IdleOpts {
    /// Streams to open, each on its own connection.
    #[arg(long, default_value_t = 20_000)]
    pub streams: usize,
    /// Accounts the streams are spread over (each login costs an argon2
    /// hash, so streams share the sessions of this many users).
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Streams on each connection. The targets are for one (each user on
    /// a connection of its own, as native clients do); more, as a
    /// browser's tabs share one connection, hold more streams within an
    /// open-file limit, and the report then judges no target.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub streams_per_connection: u32,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub open_concurrency: usize,
    /// Loopback source addresses (127.0.0.1, .2, …) the connections are
    /// spread over [default: one per 20 000 streams].
    #[arg(long)]
    pub source_addresses: Option<u8>,
    /// How long every stream is held open, after the last one opened,
    /// before checking that none ended.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    pub fn flag(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendPath {
    /// `send` events on a ChatStream, acknowledged by `sent`.
    Stream,
    /// Unary SendMessage calls.
    Unary,
}

#[derive(Clone, Debug, Parser, Serialize)]
pub struct DurableOpts {
    /// Concurrent senders, each a user with its own connection and room.
    #[arg(long, default_value_t = 256)]
    pub senders: usize,
    /// Sends each sender keeps in flight; each value is a run of its own.
    /// One is a person waiting for each acknowledgement; more is a client
    /// that pipelines its sends (a bridge, a bot, a burst after a reconnect).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub in_flight: Vec<usize>,
    /// Length of each run.
    #[arg(long, default_value_t = 10.0)]
    pub secs: f64,
    /// SQLite synchronous settings to run (a fresh server each).
    #[arg(long, value_delimiter = ',', default_value = "full,normal")]
    pub modes: Vec<Synchronous>,
    /// Send paths to run on each server.
    #[arg(long, value_delimiter = ',', default_value = "stream,unary")]
    pub paths: Vec<SendPath>,
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(48..=4096))]
    pub message_bytes: u16,
}

/// Where each room's read marker stands in one measurement of list-rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkerState {
    /// `--behind` events behind in every room (at least the 9999 cap: the
    /// worst case, every count cut at the cap).
    Behind,
    /// A few unread in most rooms (0 to `--some-unread` behind).
    Some,
    /// Every room read to its end.
    Read,
}

impl MarkerState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Behind => "behind",
            Self::Some => "some",
            Self::Read => "read",
        }
    }
}

/// One user in many rooms with long histories. The users and rooms are
/// made through gRPC; the messages are written into the database file
/// while the server is stopped (through gRPC, 100 million would take
/// hours), then the server is started again on it for each marker state.
#[derive(Clone, Debug, Parser, Serialize)]
pub struct ListRoomsOpts {
    /// Rooms the measured user is a member of.
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Messages seeded into each room.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// Other users, members of every room, who send the seeded messages.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub senders: u32,
    /// Every this many seeded messages, one is the measured user's own
    /// (never unread; 0: none).
    #[arg(long, default_value_t = 10)]
    pub own_every: u64,
    /// Every this many seeded messages, one mentions the measured user
    /// (0: none).
    #[arg(long, default_value_t = 50)]
    pub mention_every: u64,
    /// Bytes of each seeded message's text.
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u16).range(16..=1024))]
    pub text_bytes: u16,
    /// Marker states to measure, each on a fresh start of the server.
    #[arg(long, value_delimiter = ',', default_value = "behind,some,read")]
    pub markers: Vec<MarkerState>,
    /// In the `behind` state, how far each marker is from the room's end.
    #[arg(long, default_value_t = 20_000)]
    pub behind: u64,
    /// In the `some` state, room i's marker is (7 i mod (this + 1)) behind.
    #[arg(long, default_value_t = 50)]
    pub some_unread: u64,
    /// Page sizes to list with, each walking every page (0: the server's
    /// default, 100). 1000 takes the whole list of 1000 rooms in one call.
    #[arg(long, value_delimiter = ',', default_value = "1000,0")]
    pub page_sizes: Vec<u32>,
    /// Walks over every page timed per page size and marker state.
    #[arg(long, default_value_t = 200)]
    pub walks: u32,
    /// Untimed walks first (caches, connections).
    #[arg(long, default_value_t = 5)]
    pub warm_up_walks: u32,
    /// A measurement stops after this long even with walks left (a slow
    /// server would otherwise take hours); it reports how many it made.
    #[arg(long, default_value_t = 120.0)]
    pub max_secs: f64,
    /// Folder in which the database's folder is made [default:
    /// target/bench-data beside the results]. Needs room: about 300 bytes
    /// per message (30 GB at the full size).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Keep the seeded database (its folder is printed) for --reuse.
    #[arg(long)]
    pub keep: bool,
    /// Measure on a database seeded by an earlier run with --keep (its
    /// folder): no setup, no seeding; the sizes are those it was seeded
    /// with.
    #[arg(long, value_name = "DIR")]
    pub reuse: Option<std::path::PathBuf>,
}

/// The soak's users and what they do on each visit. The defaults stay
/// inside every limit of a server started with its own defaults, so that
/// `scripts/soak` needs no server flags: a user sends at most one message
/// per 1.5 s, holds one stream per session and one session at a time, and
/// never fails a login.
#[derive(Clone, Debug, Parser, Serialize)]
pub struct SoakOpts {
    /// Simulated users, registered once at the start.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// How long the churn runs; then every user disconnects.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Shared group rooms.
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Shared rooms each user is a member of.
    #[arg(long, default_value_t = 3)]
    pub rooms_per_user: usize,
    /// Shortest stay of one visit.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub online_min: Duration,
    /// Longest stay of one visit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub online_max: Duration,
    /// Shortest pause between visits.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub pause_min: Duration,
    /// Longest pause between visits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub pause_max: Duration,
    /// Mean time between one connected user's sends (each wait is drawn
    /// between half and one and a half times this). The default stays far
    /// below the server's per-user send rate (10/s, bursts of 20).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub send_interval: Duration,
    /// Share of visits that open a direct room with a random other user
    /// and write there first.
    #[arg(long, default_value_t = 0.2)]
    pub direct_share: f64,
    /// Share of visits that join the lobby room, write there, and leave it
    /// before disconnecting.
    #[arg(long, default_value_t = 0.1)]
    pub lobby_share: f64,
    /// Share of visits that use `ChatStream`; the others use `Subscribe`
    /// and send with the unary RPCs.
    #[arg(long, default_value_t = 0.67)]
    pub chat_stream_share: f64,
    /// Share of visits that end with Logout; the others drop the
    /// connection without a word.
    #[arg(long, default_value_t = 0.5)]
    pub logout_share: f64,
    /// Registrations in flight at once (each costs an argon2 hash).
    #[arg(long, default_value_t = 4)]
    pub register_concurrency: usize,
    /// The users exist already (an earlier run on the same server): skip
    /// registering them.
    #[arg(long)]
    pub skip_register: bool,
    /// How often a progress line is printed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub progress: Duration,
    /// Usernames are PREFIX-0, PREFIX-1, …; rooms PREFIX-room-0, … and
    /// PREFIX-lobby.
    #[arg(long, default_value = "soak")]
    pub prefix: String,
    /// How long to wait between setting up (registering) and the churn, so
    /// that a sampler can take its starting measurement in between.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub start_delay: Duration,
    /// Seed of the random choices, for a repeatable run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A duration as the soak's flags are written: numbers each followed by a
/// unit (`ms`, `s`, `m`, `h`), as in `500ms`, `90s`, `10m` or `1m 30s`; `0`
/// alone is none.
///
/// # Errors
/// When the text is not such a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("a duration such as 30s or 10m".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{text:?}: each unit needs a number before it"))?;
        let secs = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(format!("{text:?}: the units are ms, s, m and h")),
        };
        total += Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// The sizes of `all`; every other option keeps its scenario's default.
#[derive(Clone, Debug, Args)]
pub struct AllOpts {
    #[arg(long, default_value_t = 1000)]
    pub fanout_streams: usize,
    #[arg(long, default_value_t = 2000)]
    pub direct_users: usize,
    #[arg(long, default_value_t = 20_000)]
    pub idle_streams: usize,
    #[arg(long, default_value_t = 200)]
    pub logins: usize,
    #[arg(long, default_value_t = 256)]
    pub durable_senders: usize,
}

/// Options of one scenario from an argument list, with its defaults.
///
/// # Panics
/// When the arguments are not valid for `T`: they are written in this
/// crate, so that is a bug here.
pub fn scenario_opts<T: Parser>(args: &[&str]) -> T {
    let argv = std::iter::once("scenario").chain(args.iter().copied());
    T::try_parse_from(argv).unwrap_or_else(|error| panic!("built-in options {args:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_with_their_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_duration_without_a_known_unit_is_refused() {
        for text in ["", "10", "5d", "s", "m10", "1m x"] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn the_soak_defaults_are_those_of_a_ten_minute_run() {
        let opts: SoakOpts = scenario_opts(&[]);
        assert_eq!(opts.users, 200);
        assert_eq!(opts.duration, Duration::from_secs(600));
        assert_eq!(
            (opts.online_min, opts.online_max),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        assert_eq!(opts.send_interval, Duration::from_secs(3));
        assert_eq!(opts.start_delay, Duration::ZERO);
    }
}

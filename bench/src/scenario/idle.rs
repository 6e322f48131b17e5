//! Scenario 3, idle streams: N authenticated ChatStreams, each on its own
//! connection (or K to a connection, as a browser's tabs share one), opened
//! and held. Measures the server's resident memory per
//! open stream ((RSS after − RSS before) / N), samples it as the streams
//! open (for the plot), and the time to open them all. The connections come
//! from several loopback source addresses when one would run out of ports.
//!
//! Streams share the sessions of a modest number of users (each login is an
//! argon2 hash): the figure is the cost of a stream and its connection, not
//! of a user.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_client::pb;
use chat_client::pb::chat_service_client::ChatServiceClient;
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tonic::transport::Channel;

use super::member::expect_ready;
use crate::accounts::Account;
use crate::cli::IdleOpts;
use crate::progress::Progress;
use crate::server::{self, Server};
use crate::{cpu, net};

/// How often memory is sampled while streams open.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Settling before the "before" and "after" readings: let allocator and
/// kernel catch up with what just happened.
const SETTLE: Duration = Duration::from_secs(2);
/// Opening stops after this many failures (something is wrong).
const MAX_FAILURES: usize = 100;
/// File descriptors each process keeps for everything but the idle
/// streams' sockets (listener, database files, setup connections, epoll…).
const FD_RESERVE: u64 = 200;

#[derive(Clone, Debug, Serialize)]
pub struct IdleResult {
    /// Streams asked for.
    pub requested: usize,
    /// Streams tried: fewer than asked when an open-file limit (of this
    /// process or the server's) cannot hold them all.
    pub streams: usize,
    /// The open-file limit that capped the streams, if one did.
    pub capped_by_open_files: Option<u64>,
    /// Streams on each connection (the last may have fewer).
    pub streams_per_connection: usize,
    /// Connections the streams were opened on.
    pub connections: usize,
    pub users: usize,
    pub source_addresses: Vec<IpAddr>,
    pub opened: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub open_secs: f64,
    pub opens_per_sec: f64,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) / opened, in KiB.
    pub server_kib_per_stream: Option<f64>,
    pub bench_rss_before_kib: Option<u64>,
    pub bench_rss_after_kib: Option<u64>,
    pub held_secs: f64,
    /// Cores' worth of CPU used by processes outside the run while opening.
    pub other_cpu_cores: f64,
    /// Streams that ended while held (should be none).
    pub ended_while_held: u64,
    /// (open streams, server RSS in KiB) as they opened.
    pub samples: Vec<(usize, u64)>,
}

/// One connection's open idle streams.
struct IdleConnection {
    _channel: Channel,
    readers: Vec<JoinHandle<()>>,
}

/// Opens and holds the streams on `server` as `accounts` (round-robin).
///
/// # Errors
/// When too many streams fail to open.
pub async fn run(
    server: &Server,
    accounts: &[Account],
    opts: &IdleOpts,
    progress: &Progress,
) -> anyhow::Result<IdleResult> {
    anyhow::ensure!(!accounts.is_empty(), "idle needs accounts");
    let limit = server
        .open_file_limit()
        .unwrap_or(u64::MAX)
        .min(net::fd_limit());
    let per_connection = opts.streams_per_connection as usize;
    let fits = usize::try_from(limit.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .saturating_mul(per_connection);
    let streams = opts.streams.min(fits);
    let capped = (streams < opts.streams).then_some(limit);
    if let Some(limit) = capped {
        progress.note(format!(
            "idle: an open-file limit of {limit} (this process or the server) holds {streams} streams, not {}",
            opts.streams
        ));
    }
    let connections = streams.div_ceil(per_connection);
    let sources = net::loopback_sources(connections, opts.source_addresses);
    tokio::time::sleep(SETTLE).await;
    let rss_before = server.rss_kib();
    let bench_before = server::own_rss_kib();
    let opened = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(vec![(0, rss_before.unwrap_or(0))]));
    let sampler = tokio::spawn(sample(
        server.rss_kib_reader(),
        Arc::clone(&opened),
        Arc::clone(&samples),
    ));
    let started = Instant::now();
    let cpu_before = cpu::Snapshot::take();
    let plan = Opening {
        server: server.addr,
        accounts,
        sources: &sources,
        count: streams,
        per_connection,
        concurrency: opts.open_concurrency.max(1),
    };
    let opening = open_all(&plan, &opened, &ended, progress).await;
    let open_secs = started.elapsed().as_secs_f64();
    let other_cpu_cores = cpu::Snapshot::take().other_cores_since(&cpu_before);
    sampler.abort();
    let (open, failed, first_error) = opening?;
    let opened_streams: usize = open.iter().map(|c| c.readers.len()).sum();
    progress.note(format!(
        "idle: {opened_streams} streams open on {} connections in {open_secs:.1} s ({failed} failed); holding {} s",
        open.len(),
        opts.hold_secs
    ));
    let ended_before_hold = ended.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(opts.hold_secs).max(SETTLE)).await;
    let rss_after = server.rss_kib();
    let bench_after = server::own_rss_kib();
    let mut samples = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(rss) = rss_after {
        samples.push((opened_streams, rss));
    }
    let result = IdleResult {
        requested: opts.streams,
        streams,
        capped_by_open_files: capped,
        streams_per_connection: per_connection,
        connections: open.len(),
        users: accounts.len(),
        source_addresses: sources,
        opened: opened_streams,
        failed,
        first_error,
        open_secs,
        opens_per_sec: opened_streams as f64 / open_secs.max(f64::MIN_POSITIVE),
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_kib_per_stream: per_stream(rss_before, rss_after, opened_streams),
        bench_rss_before_kib: bench_before,
        bench_rss_after_kib: bench_after,
        held_secs: opts.hold_secs,
        other_cpu_cores,
        ended_while_held: ended.load(Ordering::Relaxed) - ended_before_hold,
        samples,
    };
    for reader in open.into_iter().flat_map(|c| c.readers) {
        reader.abort();
    }
    Ok(result)
}

fn per_stream(before: Option<u64>, after: Option<u64>, streams: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    (streams > 0).then(|| (after as f64 - before as f64) / streams as f64)
}

/// What to open: `count` streams to `server`, `per_connection` to a
/// connection, as `accounts` (round-robin, a connection's streams as one
/// user) from `sources` (round-robin), `concurrency` connections at a
/// time.
struct Opening<'a> {
    server: SocketAddr,
    accounts: &'a [Account],
    sources: &'a [IpAddr],
    count: usize,
    per_connection: usize,
    concurrency: usize,
}

/// Opens every connection and its streams, a bounded number at a time.
/// Returns the open connections, how many failed, and the first failure.
async fn open_all(
    plan: &Opening<'_>,
    opened: &Arc<AtomicUsize>,
    ended: &Arc<AtomicU64>,
    progress: &Progress,
) -> anyhow::Result<(Vec<IdleConnection>, usize, Option<String>)> {
    let (server, accounts, sources) = (plan.server, plan.accounts, plan.sources);
    let connections = plan.count.div_ceil(plan.per_connection);
    let bar = progress.counter(plan.count as u64, "idle streams");
    let mut running = JoinSet::new();
    let mut open = Vec::with_capacity(connections);
    let (mut failed, mut first_error) = (0, None);
    let mut next = 0;
    while next < connections || !running.is_empty() {
        while next < connections && running.len() < plan.concurrency {
            let account = &accounts[next % accounts.len()];
            let source = sources[next % sources.len()];
            let streams = plan
                .per_connection
                .min(plan.count - next * plan.per_connection);
            let (token, ended) = (account.token.clone(), Arc::clone(ended));
            running.spawn(async move {
                let channel = net::connect(server, Some(source)).await?;
                let mut readers = Vec::with_capacity(streams);
                for _ in 0..streams {
                    readers
                        .push(open_one(channel.clone(), token.clone(), Arc::clone(&ended)).await?);
                }
                anyhow::Ok(IdleConnection {
                    _channel: channel,
                    readers,
                })
            });
            next += 1;
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined.context("an opening task panicked")? {
            Ok(connection) => {
                let streams = connection.readers.len();
                open.push(connection);
                opened.fetch_add(streams, Ordering::Relaxed);
                bar.inc(streams as u64);
            }
            Err(error) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
                if failed >= MAX_FAILURES {
                    running.abort_all();
                    bar.finish_and_clear();
                    anyhow::bail!(
                        "{failed} idle connections failed to open their streams (after {} streams opened); the first: {}",
                        opened.load(Ordering::Relaxed),
                        first_error.unwrap_or_default()
                    );
                }
            }
        }
    }
    bar.finish_and_clear();
    Ok((open, failed, first_error))
}

/// Opens a ChatStream that never sends (its request side stays open),
/// waits for `ready`, then keeps reading (heartbeats) until it ends.
async fn open_one(
    channel: Channel,
    token: chat_client::BearerToken,
    ended: Arc<AtomicU64>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut chat = ChatServiceClient::with_interceptor(channel, token);
    let mut events = chat
        .chat_stream(tokio_stream::pending::<pb::ClientEvent>())
        .await
        .context("opening an idle ChatStream")?
        .into_inner();
    expect_ready(&mut events).await?;
    let reader = tokio::spawn(async move {
        while let Ok(Some(_)) = events.message().await {}
        ended.fetch_add(1, Ordering::Relaxed);
    });
    Ok(reader)
}

/// Samples (open streams, RSS) until aborted.
async fn sample(
    rss: impl Fn() -> Option<u64> + Send + 'static,
    opened: Arc<AtomicUsize>,
    samples: Arc<Mutex<Vec<(usize, u64)>>>,
) {
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        if let Some(kib) = rss() {
            let count = opened.load(Ordering::Relaxed);
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((count, kib));
        }
    }
}

//! Scenario 5, durable sends: many concurrent senders, each a user with its
//! own connection and its own room (so nothing is fanned out), send as
//! fast as acknowledgements come back, keeping a fixed number of sends in
//! flight. Over ChatStream `send` events (acknowledged by `sent`) and over
//! unary SendMessage. An acknowledgement means the message is committed;
//! afterwards every room's newest seq must equal its acknowledged sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::pb::{self, client_event, server_event};
use chat_client::BearerToken;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, Barrier};
use tonic::transport::Channel;

use super::fanout::create_room;
use super::member::expect_ready;
use crate::accounts::Account;
use crate::cli::{DurableOpts, SendPath};
use crate::payload;
use crate::progress::Progress;
use crate::recorder::{self, Percentiles};
use crate::tasks;
use crate::{cpu, net};

/// Senders being set up at once.
const SETUP_CONCURRENCY: usize = 64;
/// A run that has not heard every acknowledgement this long after its end
/// has lost some.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Serialize)]
pub struct DurableRun {
    /// "full", "normal", or "as configured" for a given server.
    pub synchronous: String,
    pub path: SendPath,
    pub senders: usize,
    pub in_flight: usize,
    /// From the start until the last acknowledgement.
    pub secs: f64,
    pub acknowledged: u64,
    pub acknowledged_per_sec: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Messages the rooms gained (their newest seq moved by this much).
    pub stored: u64,
    /// Acknowledged but not stored (must be 0).
    pub lost: u64,
    /// Send to acknowledgement.
    pub ack_latency: Percentiles,
    /// Cores' worth of CPU used by processes outside the run meanwhile.
    pub other_cpu_cores: f64,
}

/// A sender's connection, account and room.
#[derive(Clone)]
pub struct Sender {
    channel: Channel,
    token: BearerToken,
    room_id: String,
}

/// Connects every sender and creates its room.
///
/// # Errors
/// When a connection or a room fails.
pub async fn prepare(
    server: SocketAddr,
    accounts: &[Account],
    run_id: &str,
) -> anyhow::Result<Vec<Sender>> {
    let items: Vec<(usize, Account)> = accounts.iter().cloned().enumerate().collect();
    tasks::map_bounded(items, SETUP_CONCURRENCY, |(index, account)| {
        let name = format!("durable-{run_id}-{index}");
        async move {
            let channel = net::connect(server, None).await?;
            let room_id = create_room(channel.clone(), &account, &name).await?;
            Ok(Sender {
                channel,
                token: account.token,
                room_id,
            })
        }
    })
    .await
}

/// What one sender did.
struct Tally {
    acknowledged: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            acknowledged: 0,
            errors: 0,
            first_error: None,
            latency: recorder::new_histogram(),
        }
    }

    fn error(&mut self, text: String) {
        self.errors += 1;
        self.first_error.get_or_insert(text);
    }
}

/// One run over `path` with every sender.
///
/// # Errors
/// When the stored counts cannot be read.
pub async fn run(
    senders: &[Sender],
    opts: &DurableOpts,
    in_flight: usize,
    path: SendPath,
    synchronous: &str,
    progress: &Progress,
) -> anyhow::Result<DurableRun> {
    let stored_before = stored(senders).await?;
    let start = Arc::new(Barrier::new(senders.len() + 1));
    let secs = Duration::from_secs_f64(opts.secs);
    let bar = progress.timer(secs, format!("durable/{synchronous} {path:?}"));
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(index, sender)| {
            let (sender, start) = (sender.clone(), Arc::clone(&start));
            let (in_flight, bytes) = (in_flight.max(1), usize::from(opts.message_bytes));
            tokio::spawn(async move {
                match path {
                    SendPath::Stream => {
                        send_on_stream(sender, index, in_flight, bytes, secs, start).await
                    }
                    SendPath::Unary => {
                        send_unary(sender, index, in_flight, bytes, secs, start).await
                    }
                }
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    let cpu_before = cpu::Snapshot::take();
    let ticker = tokio::spawn({
        let bar = bar.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
        }
    });
    let mut total = Tally::new();
    for task in tasks {
        let tally = task.await.context("a sender panicked")?;
        total.acknowledged += tally.acknowledged;
        total.errors += tally.errors;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        let _ = total.latency.add(&tally.latency);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let other_cpu_cores = cpu::Snapshot::take().other_cores_since(&cpu_before);
    ticker.abort();
    bar.finish_and_clear();
    let stored_after = stored(senders).await?;
    let stored: u64 = stored_after
        .iter()
        .zip(&stored_before)
        .map(|(a, b)| a - b)
        .sum();
    Ok(DurableRun {
        synchronous: synchronous.into(),
        path,
        senders: senders.len(),
        in_flight: in_flight.max(1),
        secs: elapsed,
        acknowledged: total.acknowledged,
        acknowledged_per_sec: total.acknowledged as f64 / elapsed.max(f64::MIN_POSITIVE),
        errors: total.errors,
        first_error: total.first_error,
        stored,
        lost: total.acknowledged.saturating_sub(stored),
        ack_latency: Percentiles::of(&total.latency),
        other_cpu_cores,
    })
}

fn text(index: usize, n: u64, bytes: usize) -> (String, String) {
    (
        payload::encode(1, n, bytes),
        format!("{index}-{n}-{}", payload::now_nanos()),
    )
}

/// Sends on a ChatStream, keeping `in_flight` sends unacknowledged.
async fn send_on_stream(
    sender: Sender,
    index: usize,
    in_flight: usize,
    bytes: usize,
    secs: Duration,
    start: Arc<Barrier>,
) -> Tally {
    let mut tally = Tally::new();
    let opened = open_stream(&sender).await;
    start.wait().await;
    let (outbox, mut events) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            tally.error(format!("{error:#}"));
            return tally;
        }
    };
    let deadline = Instant::now() + secs;
    let mut pending: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let mut n = 0;
    let send = |n: u64| {
        let (text, client_msg_id) = text(index, n, bytes);
        pb::ClientEvent {
            event: Some(client_event::Event::Send(pb::SendMessageRequest {
                room_id: sender.room_id.clone(),
                text,
                client_msg_id,
                ..Default::default()
            })),
        }
    };
    for _ in 0..in_flight {
        if outbox.send(send(n)).await.is_err() {
            break;
        }
        pending.push_back(Instant::now());
        n += 1;
    }
    while !pending.is_empty() {
        let next = tokio::time::timeout_at((deadline + ACK_TIMEOUT).into(), events.message()).await;
        let event = match next {
            Ok(Ok(Some(event))) => event.event,
            Ok(Ok(None)) => {
                tally.error("the stream ended".into());
                break;
            }
            Ok(Err(status)) => {
                tally.error(format!("stream failed: {status}"));
                break;
            }
            Err(_) => {
                tally.error(format!(
                    "{} sends unacknowledged after the timeout",
                    pending.len()
                ));
                break;
            }
        };
        match event {
            Some(server_event::Event::Sent(_)) => tally.acknowledged += 1,
            Some(server_event::Event::Error(error)) => {
                tally.error(format!("error event {}: {}", error.code, error.message));
            }
            _ => continue,
        }
        if let Some(sent_at) = pending.pop_front() {
            recorder::record_latency(&mut tally.latency, sent_at.elapsed());
        }
        if Instant::now() < deadline && outbox.send(send(n)).await.is_ok() {
            pending.push_back(Instant::now());
            n += 1;
        }
    }
    tally
}

async fn open_stream(
    sender: &Sender,
) -> anyhow::Result<(
    mpsc::Sender<pb::ClientEvent>,
    tonic::Streaming<pb::ServerEvent>,
)> {
    let (outbox, requests) = mpsc::channel(64);
    let mut chat =
        ChatServiceClient::with_interceptor(sender.channel.clone(), sender.token.clone());
    let mut events = chat
        .chat_stream(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .context("opening a ChatStream")?
        .into_inner();
    expect_ready(&mut events).await?;
    Ok((outbox, events))
}

/// Calls SendMessage, `in_flight` calls at a time.
async fn send_unary(
    sender: Sender,
    index: usize,
    in_flight: usize,
    bytes: usize,
    secs: Duration,
    start: Arc<Barrier>,
) -> Tally {
    start.wait().await;
    let deadline = Instant::now() + secs;
    let lanes: Vec<_> = (0..in_flight)
        .map(|lane| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut chat = ChatServiceClient::with_interceptor(sender.channel, sender.token);
                let mut n = lane as u64;
                while Instant::now() < deadline {
                    let (text, client_msg_id) = text(index, n, bytes);
                    let began = Instant::now();
                    let request = pb::SendMessageRequest {
                        room_id: sender.room_id.clone(),
                        text,
                        client_msg_id,
                        ..Default::default()
                    };
                    match chat.send_message(request).await {
                        Ok(_) => {
                            tally.acknowledged += 1;
                            recorder::record_latency(&mut tally.latency, began.elapsed());
                        }
                        Err(status) => tally.error(format!("SendMessage: {status}")),
                    }
                    n += in_flight as u64;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::new();
    for lane in lanes {
        match lane.await {
            Ok(tally) => {
                total.acknowledged += tally.acknowledged;
                total.errors += tally.errors;
                if total.first_error.is_none() {
                    total.first_error = tally.first_error;
                }
                let _ = total.latency.add(&tally.latency);
            }
            Err(error) => total.error(format!("a send lane panicked: {error}")),
        }
    }
    total
}

/// Each sender's room's newest seq.
async fn stored(senders: &[Sender]) -> anyhow::Result<Vec<u64>> {
    tasks::map_bounded(senders.to_vec(), SETUP_CONCURRENCY, |sender| async move {
        let page = ChatServiceClient::with_interceptor(sender.channel, sender.token)
            .history(pb::HistoryRequest {
                room_id: sender.room_id,
                before_seq: 0,
                limit: 1,
            })
            .await
            .context("reading a room's newest message")?
            .into_inner();
        match page.messages.last() {
            Some(message) => Ok(message.seq),
            None if page.has_more => bail!("History answered no message but has_more"),
            None => Ok(0),
        }
    })
    .await
}

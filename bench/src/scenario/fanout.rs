//! Scenario 1, fan-out: one room, N member streams, one or more senders.
//! The same measurement runs against the chat server ([`ChatRoom`]) and
//! against NATS (`nats::NatsRoom`): a warm-up, a fixed-rate run (100 000
//! deliveries/s by default), then a rate ladder for the highest sustained
//! deliveries/s with p99 under the limit and nothing lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_client::pb;
use chat_client::pb::chat_service_client::ChatServiceClient;
use serde::Serialize;

use super::member::{self, Member};
use super::{Health, LadderPlan, LadderResult, Publisher, Step, StepIds, StepResult};
use crate::accounts::Account;
use crate::cli::FanoutOpts;
use crate::net;
use crate::progress::Progress;
use crate::recorder::Recorder;
use crate::tasks;

/// Member streams being opened at once.
const OPEN_CONCURRENCY: usize = 128;

/// Everything the fan-out measured on one system.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    /// "chat" or "nats".
    pub system: String,
    pub streams: usize,
    pub senders: usize,
    pub message_bytes: u16,
    /// Connecting, joining and opening every stream.
    pub setup_secs: f64,
    pub fixed: StepResult,
    pub ladder: LadderResult,
}

/// Warm-up, fixed-rate run, then the ladder, on any transport.
///
/// # Errors
/// When the warm-up fails or the transport fails outright.
pub async fn measure<P: Publisher>(
    system: &str,
    publisher: &mut P,
    recorder: &Recorder,
    opts: &FanoutOpts,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<(StepResult, LadderResult)> {
    let template = step_template(opts);
    super::warm_up(publisher, recorder, 1, template.message_bytes)
        .await
        .with_context(|| format!("fanout/{system}: warm-up"))?;
    let mut fixed = template.clone();
    fixed.secs = opts.fixed_secs;
    fixed.messages_per_sec = opts.fixed_rate as f64 / fixed.fanout;
    fixed.label = format!("fanout/{system} fixed {}/s", opts.fixed_rate);
    let fixed_result = super::run_step(publisher, recorder, &fixed, ids, progress).await?;
    progress.note(format!(
        "{}: p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, {} lost: {}",
        fixed.label,
        fixed_result.latency.p50_ms,
        fixed_result.latency.p99_ms,
        fixed_result.latency.p999_ms,
        fixed_result.lost,
        fixed_result.verdict
    ));
    let plan = LadderPlan {
        rates: if opts.ladder.is_empty() {
            super::geometric(opts.ladder_start, opts.ladder_factor, opts.ladder_max)
        } else {
            opts.ladder.clone()
        },
        refine: opts.refine,
        step: template,
        name: format!("fanout/{system}"),
        min_messages: opts.min_step_messages,
    };
    let ladder = super::ladder(publisher, recorder, &plan, ids, progress).await?;
    Ok((fixed_result, ladder))
}

/// The step every fan-out step starts from.
pub fn step_template(opts: &FanoutOpts) -> Step {
    Step {
        label: String::new(),
        messages_per_sec: 0.0,
        fanout: opts.streams as f64,
        secs: opts.step_secs,
        message_bytes: usize::from(opts.message_bytes),
        drain: Duration::from_secs_f64(opts.drain_secs),
        p99_limit_ms: opts.p99_limit_ms,
        busy: None,
    }
}

/// The fan-out room on the chat server: receivers are members with a
/// ChatStream each; senders are members too and send on their streams.
pub struct ChatRoom {
    pub room_id: String,
    pub recorder: Arc<Recorder>,
    pub setup_secs: f64,
    receivers: Vec<Member>,
    senders: Vec<Member>,
    /// The receivers' accounts, for leaving the room afterwards.
    receiver_accounts: Vec<Account>,
    server: SocketAddr,
}

impl ChatRoom {
    /// Creates the room with the first sender's account, then has every
    /// receiver (`accounts[senders..senders + streams]`) connect, join and
    /// open its stream, then opens the senders' streams.
    ///
    /// # Errors
    /// When any of that fails.
    pub async fn open(
        server: SocketAddr,
        accounts: &[Account],
        opts: &FanoutOpts,
        run_id: &str,
        progress: &Progress,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let senders = opts.senders.max(1);
        anyhow::ensure!(
            accounts.len() >= senders + opts.streams,
            "the fan-out needs {} accounts",
            senders + opts.streams
        );
        let (sender_accounts, rest) = accounts.split_at(senders);
        let receiver_accounts = rest[..opts.streams].to_vec();
        let first = net::connect(server, None).await?;
        let room_id = create_room(
            first.clone(),
            &sender_accounts[0],
            &format!("fanout-{run_id}"),
        )
        .await?;
        let recorder = Recorder::new(opts.streams);
        let bar = progress.counter(opts.streams as u64, "fanout/chat streams");
        let receivers = tasks::map_bounded(
            receiver_accounts.iter().cloned().enumerate().collect(),
            OPEN_CONCURRENCY,
            |(index, account)| {
                let (room_id, recorder, bar) =
                    (room_id.clone(), Arc::clone(&recorder), bar.clone());
                async move {
                    let channel = net::connect(server, None).await?;
                    join_room(channel.clone(), &account, &room_id).await?;
                    let member =
                        Member::open(channel, account.token, Some((recorder, index))).await?;
                    bar.inc(1);
                    Ok(member)
                }
            },
        )
        .await?;
        bar.finish_and_clear();
        let mut sender_members = Vec::with_capacity(senders);
        for (i, account) in sender_accounts.iter().enumerate() {
            let channel = if i == 0 {
                first.clone()
            } else {
                net::connect(server, None).await?
            };
            join_room(channel.clone(), account, &room_id).await?;
            sender_members.push(Member::open(channel, account.token.clone(), None).await?);
        }
        Ok(Self {
            room_id,
            recorder,
            setup_secs: started.elapsed().as_secs_f64(),
            receivers,
            senders: sender_members,
            receiver_accounts,
            server,
        })
    }

    pub fn publisher(&self) -> ChatPublisher<'_> {
        ChatPublisher { room: self }
    }

    /// Closes every stream; the receivers then leave the room, so later
    /// scenarios on this server do not share it.
    ///
    /// # Errors
    /// When leaving fails.
    pub async fn close(self) -> anyhow::Result<()> {
        for member in self.receivers.into_iter().chain(self.senders) {
            member.close();
        }
        let channel = net::connect(self.server, None).await?;
        let room_id = self.room_id;
        tasks::map_bounded(self.receiver_accounts, OPEN_CONCURRENCY, |account| {
            let (channel, room_id) = (channel.clone(), room_id.clone());
            async move {
                ChatServiceClient::with_interceptor(channel, account.token)
                    .leave_room(pb::LeaveRoomRequest { room_id })
                    .await
                    .context("leaving the fan-out room")?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }
}

/// Sends into the chat room, round-robin over the senders.
pub struct ChatPublisher<'a> {
    room: &'a ChatRoom,
}

impl Publisher for ChatPublisher<'_> {
    async fn publish(&mut self, seq: u64, text: String) -> anyhow::Result<()> {
        let senders = &self.room.senders;
        let sender = &senders[(seq % senders.len() as u64) as usize];
        sender.send(&self.room.room_id, text).await
    }

    fn expected(&self, sent: u64) -> Vec<u64> {
        vec![sent; self.room.receivers.len()]
    }

    fn health(&self) -> Health {
        member::health(self.room.receivers.iter().chain(&self.room.senders))
    }

    fn take_ack_latency(&mut self) -> Option<hdrhistogram::Histogram<u64>> {
        Some(member::take_ack_latency(self.room.senders.iter()))
    }
}

/// Creates a group room as `account`; returns its id.
///
/// # Errors
/// The server's refusal.
pub async fn create_room(
    channel: tonic::transport::Channel,
    account: &Account,
    name: &str,
) -> anyhow::Result<String> {
    let room = ChatServiceClient::with_interceptor(channel, account.token.clone())
        .create_room(pb::CreateRoomRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating room {name}"))?
        .into_inner()
        .room
        .context("CreateRoom answered no room")?;
    Ok(room.id)
}

async fn join_room(
    channel: tonic::transport::Channel,
    account: &Account,
    room_id: &str,
) -> anyhow::Result<()> {
    ChatServiceClient::with_interceptor(channel, account.token.clone())
        .join_room(pb::JoinRoomRequest {
            room_id: room_id.into(),
        })
        .await
        .with_context(|| format!("{} joining the fan-out room", account.username))?;
    Ok(())
}

//! Scenario 2, direct conversations: users in pairs, one direct room per
//! pair, every user on its own connection with a ChatStream, each sending
//! to its partner at a steady share of the total rate. Steps through the
//! given total rates until one fails, then bisects; every message must
//! reach the partner, once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_client::pb;
use chat_client::pb::chat_service_client::ChatServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::member::{self, Member};
use super::{Health, LadderPlan, LadderResult, Publisher, Step, StepIds};
use crate::accounts::Account;
use crate::cli::DirectOpts;
use crate::net;
use crate::progress::Progress;
use crate::recorder::Recorder;
use crate::tasks;

/// Users being set up at once.
const OPEN_CONCURRENCY: usize = 128;

#[derive(Clone, Debug, Serialize)]
pub struct DirectResult {
    pub users: usize,
    pub pairs: usize,
    pub message_bytes: u16,
    pub setup_secs: f64,
    pub ladder: LadderResult,
}

/// Runs the scenario with `accounts[..opts.users]`.
///
/// # Errors
/// When setting up fails or the transport fails outright.
pub async fn run(
    server: SocketAddr,
    accounts: &[Account],
    opts: &DirectOpts,
    ids: &mut StepIds,
    progress: &Progress,
) -> anyhow::Result<DirectResult> {
    let users = opts.users - opts.users % 2;
    anyhow::ensure!(users >= 2, "direct needs at least two users");
    anyhow::ensure!(accounts.len() >= users, "direct needs {users} accounts");
    let started = Instant::now();
    let accounts = &accounts[..users];
    let channels = connect_all(server, users, progress).await?;
    let rooms = open_rooms(&channels, accounts).await?;
    let recorder = Recorder::new(users);
    let members = open_members(&channels, accounts, &recorder, progress).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    progress.note(format!(
        "direct: {users} users in {} pairs ready in {setup_secs:.1} s",
        users / 2
    ));
    let mut publisher = DirectPublisher {
        members: &members,
        rooms: &rooms,
    };
    super::warm_up(
        &mut publisher,
        &recorder,
        users,
        usize::from(opts.message_bytes),
    )
    .await
    .context("direct: warm-up")?;
    let plan = LadderPlan {
        rates: opts.rates.clone(),
        refine: opts.refine,
        step: Step {
            label: String::new(),
            messages_per_sec: 0.0,
            fanout: 1.0,
            secs: opts.step_secs,
            message_bytes: usize::from(opts.message_bytes),
            drain: Duration::from_secs_f64(opts.drain_secs),
            p99_limit_ms: opts.p99_limit_ms,
            busy: None,
        },
        name: "direct".into(),
        // Every message is one delivery: a step holds thousands.
        min_messages: 0,
    };
    let ladder = super::ladder(&mut publisher, &recorder, &plan, ids, progress).await?;
    for member in members {
        member.close();
    }
    Ok(DirectResult {
        users,
        pairs: users / 2,
        message_bytes: opts.message_bytes,
        setup_secs,
        ladder,
    })
}

async fn connect_all(
    server: SocketAddr,
    users: usize,
    progress: &Progress,
) -> anyhow::Result<Vec<Channel>> {
    let bar = progress.counter(users as u64, "direct connections");
    let channels = tasks::map_bounded((0..users).collect(), OPEN_CONCURRENCY, |_| {
        let bar = bar.clone();
        async move {
            let channel = net::connect(server, None).await?;
            bar.inc(1);
            Ok(channel)
        }
    })
    .await;
    bar.finish_and_clear();
    channels
}

/// Opens each pair's direct room (by the first of the pair); returns each
/// user's room id.
async fn open_rooms(channels: &[Channel], accounts: &[Account]) -> anyhow::Result<Vec<String>> {
    let pairs: Vec<(Channel, Account, String)> = (0..accounts.len() / 2)
        .map(|pair| {
            let (first, second) = (&accounts[2 * pair], &accounts[2 * pair + 1]);
            (
                channels[2 * pair].clone(),
                first.clone(),
                second.username.clone(),
            )
        })
        .collect();
    let pair_rooms = tasks::map_bounded(
        pairs,
        OPEN_CONCURRENCY,
        |(channel, account, other)| async move {
            let room = ChatServiceClient::with_interceptor(channel, account.token)
                .open_direct_room(pb::OpenDirectRoomRequest { username: other })
                .await
                .context("opening a direct room")?
                .into_inner()
                .room
                .context("OpenDirectRoom answered no room")?;
            Ok(room.id)
        },
    )
    .await?;
    Ok(pair_rooms
        .into_iter()
        .flat_map(|room| [room.clone(), room])
        .collect())
}

async fn open_members(
    channels: &[Channel],
    accounts: &[Account],
    recorder: &Arc<Recorder>,
    progress: &Progress,
) -> anyhow::Result<Vec<Member>> {
    let bar = progress.counter(accounts.len() as u64, "direct streams");
    let items: Vec<(usize, Channel, Account)> = channels
        .iter()
        .cloned()
        .zip(accounts.iter().cloned())
        .enumerate()
        .map(|(i, (channel, account))| (i, channel, account))
        .collect();
    let members = tasks::map_bounded(items, OPEN_CONCURRENCY, |(index, channel, account)| {
        let (recorder, bar) = (Arc::clone(recorder), bar.clone());
        async move {
            let member = Member::open(channel, account.token, Some((recorder, index))).await?;
            bar.inc(1);
            Ok(member)
        }
    })
    .await;
    bar.finish_and_clear();
    members
}

/// Message `seq` is sent by user `seq % users` to its partner.
struct DirectPublisher<'a> {
    members: &'a [Member],
    rooms: &'a [String],
}

impl Publisher for DirectPublisher<'_> {
    async fn publish(&mut self, seq: u64, text: String) -> anyhow::Result<()> {
        let user = (seq % self.members.len() as u64) as usize;
        self.members[user].send(&self.rooms[user], text).await
    }

    fn expected(&self, sent: u64) -> Vec<u64> {
        let users = self.members.len() as u64;
        (0..users)
            .map(|receiver| {
                let partner = receiver ^ 1;
                sent / users + u64::from(partner < sent % users)
            })
            .collect()
    }

    fn health(&self) -> Health {
        member::health(self.members.iter())
    }

    fn take_ack_latency(&mut self) -> Option<hdrhistogram::Histogram<u64>> {
        Some(member::take_ack_latency(self.members.iter()))
    }
}

//! Scenario 6, the baseline: the fan-out against NATS core pub/sub, with
//! the same runtime, payloads, pacing and measuring code as against the
//! chat server. Each subscriber has its own NATS connection (as each chat
//! member has its own HTTP/2 connection), all subscribed to one subject
//! unique to the run; senders publish on connections of their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use async_nats::{Client, Subject};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;

use super::{Health, Publisher};
use crate::cli::FanoutOpts;
use crate::progress::Progress;
use crate::recorder::Recorder;
use crate::tasks;

/// Subscriber connections being opened at once.
const OPEN_CONCURRENCY: usize = 64;
/// Messages a subscription may buffer in this process before the client
/// drops them (counted as losses): as deep as a chat stream's queue.
const SUBSCRIPTION_CAPACITY: usize = 8192;

pub struct NatsRoom {
    pub recorder: Arc<Recorder>,
    pub setup_secs: f64,
    subject: Subject,
    publishers: Vec<Client>,
    subscribers: Vec<(Client, JoinHandle<()>)>,
    /// Subscriptions that ended.
    ended: Arc<AtomicU64>,
}

impl NatsRoom {
    /// Connects the subscribers and the publishers.
    ///
    /// # Errors
    /// When NATS cannot be reached.
    pub async fn open(
        url: &str,
        opts: &FanoutOpts,
        run_id: &str,
        progress: &Progress,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let subject = Subject::from(format!("chat-bench.{run_id}.fanout"));
        let recorder = Recorder::new(opts.streams);
        let ended = Arc::new(AtomicU64::new(0));
        let bar = progress.counter(opts.streams as u64, "fanout/nats subscribers");
        let subscribers =
            tasks::map_bounded((0..opts.streams).collect(), OPEN_CONCURRENCY, |index| {
                let (url, subject) = (url.to_owned(), subject.clone());
                let (recorder, ended, bar) =
                    (Arc::clone(&recorder), Arc::clone(&ended), bar.clone());
                async move {
                    let client = connect(&url).await?;
                    let mut subscription = client
                        .subscribe(subject)
                        .await
                        .context("subscribing on NATS")?;
                    client
                        .flush()
                        .await
                        .context("flushing the NATS subscription")?;
                    let reader = tokio::spawn(async move {
                        while let Some(message) = subscription.next().await {
                            recorder.record(index, &message.payload);
                        }
                        ended.fetch_add(1, Ordering::Relaxed);
                    });
                    bar.inc(1);
                    Ok((client, reader))
                }
            })
            .await?;
        bar.finish_and_clear();
        let mut publishers = Vec::new();
        for _ in 0..opts.senders.max(1) {
            publishers.push(connect(url).await?);
        }
        Ok(Self {
            recorder,
            setup_secs: started.elapsed().as_secs_f64(),
            subject,
            publishers,
            subscribers,
            ended,
        })
    }

    pub fn publisher(&self) -> NatsPublisher<'_> {
        NatsPublisher { room: self }
    }

    /// Ends every subscription and connection.
    pub fn close(self) {
        for (_, reader) in &self.subscribers {
            reader.abort();
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    async_nats::ConnectOptions::new()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

pub struct NatsPublisher<'a> {
    room: &'a NatsRoom,
}

impl Publisher for NatsPublisher<'_> {
    async fn publish(&mut self, seq: u64, text: String) -> anyhow::Result<()> {
        let publishers = &self.room.publishers;
        let client = &publishers[(seq % publishers.len() as u64) as usize];
        client
            .publish(self.room.subject.clone(), text.into())
            .await
            .context("publishing on NATS")
    }

    fn expected(&self, sent: u64) -> Vec<u64> {
        vec![sent; self.room.subscribers.len()]
    }

    fn health(&self) -> Health {
        Health {
            errors: 0,
            ended: self.room.ended.load(Ordering::Relaxed),
            first_error: None,
        }
    }
}

//! The application state shared by every service: store, hub, router,
//! message writer, token codec and configuration, plus the background tasks
//! that serve them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::auth::{self, password, token, Principal};
use crate::bus::NatsRouter;
use crate::config::{redact_url, Config};
use crate::domain::Timestamp;
use crate::hub::{Hub, StreamLimits};
use crate::limits::{LoginBackoff, SendLimiter};
use crate::metrics::Metrics;
use crate::router::{LocalRouter, Router};
use crate::store::{self, Store};
use crate::writer::MessageWriter;

/// How often streams are checked for expired access tokens: a stream ends
/// at most this long after its token expires.
const EXPIRY_CHECK: Duration = Duration::from_millis(500);
/// Presence changes waiting for the bus; beyond that, the next snapshot
/// carries them.
const PRESENCE_QUEUE: usize = 16_384;
/// How often idle rate-limit state is forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub router: Arc<dyn Router>,
    pub writer: MessageWriter,
    pub tokens: Arc<token::TokenCodec>,
    pub metrics: Arc<Metrics>,
    pub hashers: Arc<password::Hashers>,
    pub send_limiter: Arc<SendLimiter>,
    pub login_backoff: Arc<LoginBackoff>,
    background: Arc<Background>,
}

struct Background {
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl AppState {
    /// Opens and migrates the database, loads (or creates) the signing
    /// secret, and starts the message writer and the stream maintenance.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = store::connect(
            &config.database_url,
            config.sqlite_synchronous,
            config.database_pool_size,
        )
        .await
        .with_context(|| {
            format!(
                "opening the database at {}",
                redact_url(&config.database_url)
            )
        })?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.expose().to_owned(),
            None => store
                .setting_or_init("jwt_secret", &token::new_secret())
                .await
                .context("loading the token signing secret")?,
        };
        let tokens = Arc::new(token::TokenCodec::new(
            secret.as_bytes(),
            &config.jwt_issuer,
            &config.jwt_audience,
            config.access_token_ttl,
        ));
        tokio::task::spawn_blocking(password::warm_up)
            .await
            .context("preparing the password hasher")?;

        let metrics = Metrics::new();
        let limits = &config.limits;
        let (presence, presence_changes) = match &config.nats_url {
            Some(_) => {
                let (tx, rx) = mpsc::channel(PRESENCE_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let hub = Hub::new(
            config.stream_queue,
            StreamLimits {
                per_session: limits.max_streams_per_session,
                per_user: limits.max_streams_per_user,
            },
            Arc::clone(&metrics),
            presence,
            config.session_cache_ttl,
        );
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let router: Arc<dyn Router> = match presence_changes {
            Some(presence_changes) => {
                let (router, bus_tasks) = NatsRouter::start(
                    &config,
                    Arc::clone(&hub),
                    Arc::clone(&store),
                    Arc::clone(&metrics),
                    presence_changes,
                    stop.clone(),
                )
                .await?;
                tasks.extend(bus_tasks);
                router
            }
            None => Arc::new(LocalRouter::new(
                Arc::clone(&hub),
                Arc::clone(&store),
                Arc::clone(&metrics),
            )),
        };
        let (writer, writer_task) = MessageWriter::spawn(
            Arc::clone(&store),
            Arc::clone(&router),
            Arc::clone(&hub),
            Arc::clone(&metrics),
            stop.clone(),
        );
        let hashers = Arc::new(password::Hashers::new(limits, Arc::clone(&metrics))?);
        let send_limiter = Arc::new(SendLimiter::new(limits, Arc::clone(&metrics)));
        let login_backoff = Arc::new(LoginBackoff::new(limits, Arc::clone(&metrics)));
        let maintenance = tokio::spawn(maintain(
            Arc::clone(&hub),
            Arc::clone(&send_limiter),
            Arc::clone(&login_backoff),
            config.heartbeat_interval,
            stop.clone(),
        ));
        Ok(Self {
            config: Arc::new(config),
            store,
            hub,
            router,
            writer,
            tokens,
            hashers,
            send_limiter,
            login_backoff,
            metrics,
            background: Arc::new(Background {
                stop,
                tasks: Mutex::new(
                    [writer_task, maintenance]
                        .into_iter()
                        .chain(tasks)
                        .collect(),
                ),
            }),
        })
    }

    /// Checks a call's bearer token, and that its session is still live.
    ///
    /// # Errors
    /// UNAUTHENTICATED, saying why.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> crate::error::Result<Principal> {
        auth::authenticate(
            &self.tokens,
            &*self.store,
            self.hub.live_sessions(),
            metadata,
        )
        .await
    }

    /// Ends every open stream and refuses new ones.
    pub fn end_streams(&self) {
        self.hub.shutdown();
    }

    /// Stores the messages still queued, stops the background tasks and
    /// closes the database.
    pub async fn close(&self) {
        self.hub.shutdown();
        self.background.stop.cancel();
        let tasks = std::mem::take(
            &mut *self
                .background
                .tasks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for task in tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a background task failed");
            }
        }
        self.store.close().await;
    }
}

/// Ends streams whose token expired, sends heartbeats to idle streams, and
/// forgets the rate-limit state nobody needs any more.
async fn maintain(
    hub: Arc<Hub>,
    send_limiter: Arc<SendLimiter>,
    login_backoff: Arc<LoginBackoff>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let mut expiry = tokio::time::interval(EXPIRY_CHECK);
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    for timer in [&mut expiry, &mut beat, &mut sweep] {
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = expiry.tick() => hub.expire(Timestamp::now()),
            _ = beat.tick() => hub.heartbeat(),
            _ = sweep.tick() => {
                hub.sweep();
                send_limiter.sweep();
                login_backoff.sweep();
            }
            () = stop.cancelled() => break,
        }
    }
}

//! The application state shared by every service: store, hub, router,
//! message writer, read markers, token codec and configuration, plus the
//! background tasks that serve them (the control events of the operator's
//! tool among them: `control`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::auth::{self, password, token, Principal};
use crate::bus::NatsRouter;
use crate::config::{check_heartbeat_interval, redact_url, Config};
use crate::control;
use crate::domain::Timestamp;
use crate::hub::{Hub, StreamLimits};
use crate::limits::{LoginBackoff, RoomRate, SendLimiter};
use crate::metrics::Metrics;
use crate::reads::ReadMarkers;
use crate::router::{LocalRouter, Router};
use crate::store::{self, AdminStore, Store};
use crate::writer::MessageWriter;

/// How often streams are checked for expired access tokens: a stream ends
/// at most this long after its token expires.
const EXPIRY_CHECK: Duration = Duration::from_millis(500);
/// Presence changes waiting for the bus; beyond that, the next snapshot
/// carries them.
const PRESENCE_QUEUE: usize = 16_384;
/// How often expired refresh tokens and ended sessions are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// How long an ended (revoked or expired) session is kept before it is
/// purged with its refresh tokens: a spent token presented within that
/// time is still recognised, and revokes nothing more.
const KEEP_ENDED_SESSIONS: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How often idle rate-limit state is forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// The same store as the operator's tool sees it: disabled accounts,
    /// and the control events the `control` task follows.
    pub admin: Arc<dyn AdminStore>,
    pub hub: Arc<Hub>,
    pub router: Arc<dyn Router>,
    pub writer: MessageWriter,
    pub tokens: Arc<token::TokenCodec>,
    pub metrics: Arc<Metrics>,
    pub hashers: Arc<password::Hashers>,
    pub send_limiter: Arc<SendLimiter>,
    pub login_backoff: Arc<LoginBackoff>,
    /// Room creations per user.
    pub room_create: Arc<RoomRate>,
    /// Room joins (and direct rooms opened) per user.
    pub room_join: Arc<RoomRate>,
    /// Room changes (settings, invitations, roles, removals) per user.
    pub room_change: Arc<RoomRate>,
    /// Read markers, written in bursts by a task of their own.
    pub reads: Arc<ReadMarkers>,
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
    /// When the configuration holds a zero heartbeat interval (the flag
    /// refuses one; a `Config` built in code is checked here), or the
    /// database cannot be opened or migrated.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        check_heartbeat_interval(config.heartbeat_interval).map_err(anyhow::Error::msg)?;
        let (store, admin) = store::connect_with_admin(
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
        let keys = auth::keys::load(&config, &*store)
            .await
            .context("loading the token signing keys")?;
        let keys: Vec<&[u8]> = keys.iter().map(|key| key.expose().as_bytes()).collect();
        let tokens = Arc::new(token::TokenCodec::with_keys(
            &keys,
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
            metrics.fanout.clone(),
            presence,
            config.session_cache_ttl,
            config.heartbeat_interval,
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
        let (reads, reads_task) =
            ReadMarkers::spawn(Arc::clone(&store), Arc::clone(&router), stop.clone());
        tasks.push(reads_task);
        let hashers = Arc::new(password::Hashers::new(limits, Arc::clone(&metrics))?);
        let send_limiter = Arc::new(SendLimiter::new(limits, Arc::clone(&metrics)));
        let login_backoff = Arc::new(LoginBackoff::new(limits, Arc::clone(&metrics)));
        let room_create = Arc::new(RoomRate::creating(limits));
        let room_join = Arc::new(RoomRate::joining(limits));
        let room_change = Arc::new(RoomRate::changing(limits));
        let maintenance = tokio::spawn(maintain(
            Arc::clone(&hub),
            Arc::clone(&send_limiter),
            Arc::clone(&login_backoff),
            [
                Arc::clone(&room_create),
                Arc::clone(&room_join),
                Arc::clone(&room_change),
            ],
            config.heartbeat_interval,
            stop.clone(),
        ));
        tasks.push(tokio::spawn(purge_sessions(
            Arc::clone(&store),
            stop.clone(),
        )));
        tasks.push(
            control::spawn(
                Arc::clone(&admin),
                Arc::clone(&hub),
                Arc::clone(&router),
                stop.clone(),
            )
            .await?,
        );
        Ok(Self {
            config: Arc::new(config),
            store,
            admin,
            hub,
            router,
            writer,
            tokens,
            hashers,
            send_limiter,
            login_backoff,
            room_create,
            room_join,
            room_change,
            reads,
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

    /// Checks a call's bearer token, and that its session is still live:
    /// what the auth layer does for every call (`auth::layer`), for code
    /// that holds metadata rather than a request.
    ///
    /// # Errors
    /// UNAUTHENTICATED, saying why.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> crate::error::Result<Principal> {
        auth::authenticate(
            &self.tokens,
            &*self.store,
            self.hub.live_sessions(),
            metadata.as_ref(),
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

/// Purges spent and expired refresh tokens and long-ended sessions, at
/// start and then every [`PURGE_INTERVAL`].
async fn purge_sessions(store: Arc<dyn Store>, stop: CancellationToken) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match store
            .purge_sessions(Timestamp::now(), KEEP_ENDED_SESSIONS)
            .await
        {
            Ok(0) => {}
            Ok(purged) => {
                tracing::info!(purged, "purged expired refresh tokens and ended sessions")
            }
            Err(error) => tracing::warn!(%error, "purging expired sessions failed; retrying later"),
        }
    }
}

/// Ends streams whose token expired, sends heartbeats to idle streams, and
/// forgets the rate-limit state nobody needs any more.
async fn maintain(
    hub: Arc<Hub>,
    send_limiter: Arc<SendLimiter>,
    login_backoff: Arc<LoginBackoff>,
    room_rates: [Arc<RoomRate>; 3],
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
                for rate in &room_rates {
                    rate.sweep();
                }
            }
            () = stop.cancelled() => break,
        }
    }
}

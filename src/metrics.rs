//! Operational metrics in Prometheus' text format, served on their own
//! listener (`--metrics-listen`) so they stay off the public port.
//!
//! Every server has its own registry (no process-wide globals), so tests
//! running several servers in one process read each one's own numbers.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use chat_fanout::metrics::FanoutMetrics;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Which limit turned a request away.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    Send,
    StreamsPerSession,
    StreamsPerUser,
    Connections,
    /// The per-client-address connection cap (`--max-connections-per-ip`).
    ConnectionsPerAddress,
    LoginBackoff,
    PasswordQueue,
    RoomCreate,
    RoomJoin,
    RoomChange,
    RoomsPerUser,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::StreamsPerSession => "streams_per_session",
            Self::StreamsPerUser => "streams_per_user",
            Self::Connections => "connections",
            Self::ConnectionsPerAddress => "connections_per_ip",
            Self::LoginBackoff => "login_backoff",
            Self::PasswordQueue => "password_queue",
            Self::RoomCreate => "room_create",
            Self::RoomJoin => "room_join",
            Self::RoomChange => "room_change",
            Self::RoomsPerUser => "rooms_per_user",
        }
    }
}

impl EncodeLabelValue for Limit {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: Limit,
}

/// Why a message from the cluster bus was not acted on.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum BusRejection {
    /// Not sealed at all.
    Unsigned,
    /// Sealed with no key of this cluster, or for another subject.
    BadMac,
    /// Sealed too long ago (or ahead): a replay, or held up in a buffer.
    Stale,
    /// Does not decode, or a field is not what it must be.
    Malformed,
    /// Authentic, but the database does not confirm it: a membership,
    /// revocation or message seq the store does not have.
    Unconfirmed,
}

impl BusRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::BadMac => "bad_mac",
            Self::Stale => "stale",
            Self::Malformed => "malformed",
            Self::Unconfirmed => "unconfirmed",
        }
    }
}

impl EncodeLabelValue for BusRejection {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BusRejectionLabel {
    reason: BusRejection,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuditLabel {
    event: &'static str,
}

/// The server's metrics. Cheap to share: every metric is an `Arc` inside.
pub struct Metrics {
    registry: Registry,
    pub connections_open: Gauge,
    /// Connections without a call in flight closed to make room for a new
    /// one at the connection cap.
    pub connections_evicted: Counter,
    pub messages_received: Counter,
    /// The hub's: streams, users online, deliveries, slow consumers.
    pub fanout: FanoutMetrics,
    rejections: Family<LimitLabel, Counter>,
    /// Security events of the audit log (`audit.rs`), by kind.
    audit_events: Family<AuditLabel, Counter>,
    pub login_failures: Counter,
    /// One transaction of the message writer, from begin to commit.
    pub commit_latency: Histogram,
    /// Messages read from the store because a room's delivery had a gap.
    pub gap_fills: Counter,
    /// Events not published to the other nodes: the bus queue was full.
    pub bus_dropped: Counter,
    bus_rejections: Family<BusRejectionLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("chat");
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Open client connections",
            connections_open.clone(),
        );
        let connections_evicted = Counter::default();
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room for a new one at the connection cap",
            connections_evicted.clone(),
        );
        let messages_received = Counter::default();
        registry.register(
            "messages_received",
            "Messages accepted and stored",
            messages_received.clone(),
        );
        let rejections = Family::<LimitLabel, Counter>::default();
        registry.register(
            "rejections",
            "Requests refused by a limit, by limit",
            rejections.clone(),
        );
        let audit_events = Family::<AuditLabel, Counter>::default();
        registry.register(
            "audit_events",
            "Security events (logins, failures, back-offs, password changes, revocations, deletions), by event",
            audit_events.clone(),
        );
        let login_failures = Counter::default();
        registry.register(
            "login_failures",
            "Logins refused for a wrong username or password",
            login_failures.clone(),
        );
        let commit_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register(
            "db_commit_seconds",
            "Duration of a message batch's database transaction",
            commit_latency.clone(),
        );
        let gap_fills = Counter::default();
        registry.register(
            "gap_fills",
            "Messages read from the database to fill a gap in a room's delivery",
            gap_fills.clone(),
        );
        let bus_dropped = Counter::default();
        registry.register(
            "bus_dropped",
            "Events not published to the other nodes because the bus queue was full",
            bus_dropped.clone(),
        );
        let bus_rejections = Family::<BusRejectionLabel, Counter>::default();
        registry.register(
            "bus_rejected",
            "Messages from the cluster bus not acted on, by reason",
            bus_rejections.clone(),
        );
        let fanout = FanoutMetrics::default();
        fanout.register(&mut registry);
        Arc::new(Self {
            registry,
            fanout,
            connections_open,
            connections_evicted,
            messages_received,
            rejections,
            audit_events,
            login_failures,
            commit_latency,
            gap_fills,
            bus_dropped,
            bus_rejections,
        })
    }

    /// Counts a request refused by `limit`.
    pub fn rejected(&self, limit: Limit) {
        self.rejections.get_or_create(&LimitLabel { limit }).inc();
    }

    /// Counts an event of the audit log.
    pub fn audited(&self, event: &'static str) {
        self.audit_events.get_or_create(&AuditLabel { event }).inc();
    }

    /// Counts a message from the cluster bus that was not acted on.
    pub fn bus_rejected(&self, reason: BusRejection) {
        self.bus_rejections
            .get_or_create(&BusRejectionLabel { reason })
            .inc();
    }

    /// The metrics in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
///
/// # Errors
/// When serving fails.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("reading the metrics address")?;
    tracing::info!(%address, "serving metrics at /metrics");
    let app = axum::Router::new()
        .route("/metrics", get(render))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving metrics")
}

async fn render(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}

//! What the fan-out counts. The server registers these in its Prometheus
//! registry beside its own (`chat_server::metrics`), under the same names
//! as ever.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The fan-out's counters; clones share them.
#[derive(Clone, Debug)]
pub struct FanoutMetrics {
    pub streams_open: Gauge,
    pub users_online: Gauge,
    pub messages_delivered: Counter,
    /// From a send's arrival to its delivery to a stream.
    pub delivery_latency: Histogram,
    pub slow_consumer_disconnects: Counter,
    /// Typing, heartbeat and presence events dropped for streams that were
    /// behind.
    pub ephemeral_dropped: Counter,
}

impl Default for FanoutMetrics {
    fn default() -> Self {
        Self {
            streams_open: Gauge::default(),
            users_online: Gauge::default(),
            messages_delivered: Counter::default(),
            // 100 µs to about 6.5 s.
            delivery_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            slow_consumer_disconnects: Counter::default(),
            ephemeral_dropped: Counter::default(),
        }
    }
}

impl FanoutMetrics {
    /// Adds these to `registry` (whose prefix is the server's).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "streams_open",
            "Open ChatStream and Subscribe streams",
            self.streams_open.clone(),
        );
        registry.register(
            "users_online",
            "Users with at least one open stream on this node",
            self.users_online.clone(),
        );
        registry.register(
            "messages_delivered",
            "Message events handed to streams",
            self.messages_delivered.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from a send's arrival to its delivery to a stream",
            self.delivery_latency.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Streams ended because their client read too slowly",
            self.slow_consumer_disconnects.clone(),
        );
        registry.register(
            "ephemeral_dropped",
            "Typing, presence and heartbeat events dropped for streams that were behind",
            self.ephemeral_dropped.clone(),
        );
    }

    pub fn observe_delivery(&self, latency: Duration) {
        self.messages_delivered.inc();
        self.delivery_latency.observe(latency.as_secs_f64());
    }
}

//! Control events: how a change made by the operator's tool (`chat-server
//! admin`, the `admin` module) reaches every node, without the bus.
//!
//! The tool writes a row to `control_events` in the transaction of its
//! change (`chat_store::AdminStore`). Each node reads the rows after the
//! highest id it has seen, every [`POLL_INTERVAL`], starting from the
//! newest at its start (what came before is in the database already: a
//! disabled account's sessions are revoked there), and does here what a
//! local revocation or room end does: a disabled account or a reset
//! password ends every session and stream of the user (`Hub::revoke_user`),
//! a deleted room gets its members' streams an `error` for the room and
//! takes it out of their rooms (`Hub::end_room`), a new owner's role
//! changes are delivered from the room's log (`Router::logged_elsewhere`). Rows older than
//! [`KEEP_EVENTS`] are purged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::Timestamp;
use crate::hub::Hub;
use crate::router::Router;
use crate::store::{AdminStore, ControlEvent, ControlKind};
use chat_fanout::events;

/// How often each node reads the control events. The tool promises that
/// a disabled account's streams end within a second: a change is seen at
/// the next read, at most this long after its commit, and acted on at
/// once. Each read is one short range of the table's primary key, so
/// twice a second costs a node next to nothing.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Control events read at most at once; more wait for the next read.
const BATCH: u32 = 1000;

/// How long control events are kept: far longer than any node takes to
/// read them, short enough that the table stays small.
pub const KEEP_EVENTS: Duration = Duration::from_secs(24 * 60 * 60);

/// How often a node purges control events older than [`KEEP_EVENTS`].
const PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Reads where the control events end now, and starts the task that
/// follows them until `stop`.
///
/// # Errors
/// When the newest control event cannot be read.
pub async fn spawn(
    store: Arc<dyn AdminStore>,
    hub: Arc<Hub>,
    router: Arc<dyn Router>,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let newest = store
        .newest_control_event()
        .await
        .context("reading the newest control event")?;
    Ok(tokio::spawn(follow(store, hub, router, newest, stop)))
}

async fn follow(
    store: Arc<dyn AdminStore>,
    hub: Arc<Hub>,
    router: Arc<dyn Router>,
    mut seen: i64,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(POLL_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first purge comes after one interval, not at start: nodes
    // starting together need not all purge at once.
    let mut purged = Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match store.control_events_after(seen, BATCH).await {
            Ok(read) => {
                for event in read {
                    seen = seen.max(event.id);
                    apply(&hub, &*router, &event).await;
                }
            }
            Err(error) => tracing::warn!(%error, "reading control events"),
        }
        if purged.elapsed() >= PURGE_INTERVAL {
            purged = Instant::now();
            let before = Timestamp(Timestamp::now().0 - Timestamp(0).plus(KEEP_EVENTS).0);
            match store.purge_control_events(before).await {
                Ok(0) => {}
                Ok(count) => tracing::debug!(count, "purged old control events"),
                Err(error) => tracing::warn!(%error, "purging old control events"),
            }
        }
    }
}

/// Does here what one control event asks.
async fn apply(hub: &Hub, router: &dyn Router, event: &ControlEvent) {
    match (event.kind, event.user_id, event.room_id) {
        (Some(ControlKind::UserDisabled | ControlKind::PasswordReset), Some(user_id), _) => {
            tracing::info!(
                id = event.id,
                kind = ?event.kind,
                %user_id,
                "control event: ending the user's sessions and streams"
            );
            hub.revoke_user(user_id);
        }
        (Some(ControlKind::RoomDeleted), _, Some(room_id)) => {
            let members = hub.end_room(room_id, &events::room_deleted(room_id));
            tracing::info!(
                id = event.id,
                %room_id,
                members,
                "control event: the room was deleted"
            );
        }
        (Some(ControlKind::OwnerSet), _, Some(room_id)) => {
            tracing::info!(id = event.id, %room_id, "control event: the room has a new owner");
            router.logged_elsewhere(room_id).await;
        }
        (Some(ControlKind::UserEnabled), _, _) => {
            tracing::debug!(id = event.id, kind = ?event.kind, "control event: nothing to end");
        }
        _ => tracing::warn!(
            id = event.id,
            "a control event this node does not understand: skipped"
        ),
    }
}

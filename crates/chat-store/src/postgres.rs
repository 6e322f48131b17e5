//! The store for several nodes: PostgreSQL, with the same behaviour as
//! SQLite (`sqlite.rs`) and the same rules for batches (`plan_appends`).
//!
//! Any number of servers may share one database. A room's seqs stay gapless
//! and ordered because a batch locks its rooms' rows (`FOR UPDATE`, in id
//! order so that two batches never wait on each other in a cycle) before
//! reading their newest seq, and bumps it in the same transaction. A
//! `client_msg_id` reused at the same moment on another node, for a room this
//! batch did not lock, shows up as a unique violation: the batch is then
//! planned again, and sees the other node's message.
//!
//! Every other statement is shared with SQLite (`queries.rs`); this file
//! holds what is PostgreSQL's own: connecting, the batch append (arrays, so
//! no statement grows with the batch), `last_seqs` by array, and the row
//! lock of a refresh-token rotation.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{
    batch_keys, batch_room_senders, blocked_in_direct_room, plan_appends, AppendContext,
    AppendPlan, Appended, NewMessage, RoomCounters,
};
use crate::queries::Backend;
use crate::rows::message_from_row;
use crate::sql::MESSAGE_SELECT;
use crate::sql::{
    already_exists_if_unique, from_seq, is_unique_violation, room_seqs, to_seq, EVENT_MESSAGE,
};
use chat_domain::{MessageId, RoomId, UserId};

/// How long a request waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a batch is planned again after another node used one of its
/// keys at the same moment. Each retry sees the committed rows, so a second
/// attempt settles every key; the third only covers a fresh race.
const APPEND_ATTEMPTS: u32 = 3;

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at a `postgres://` URL, with at most
    /// `connections` connections, and brings its schema up to date. The
    /// message writer holds one; history, room lists and logins share the
    /// rest. Nodes starting together are safe: sqlx holds an advisory lock
    /// while it migrates.
    ///
    /// # Errors
    /// When the server cannot be reached or a migration fails.
    pub async fn connect(url: &str, connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .context("connecting to PostgreSQL")?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .context("migrating the PostgreSQL database")?;
        Ok(Self { pool })
    }

    /// Locks the batch's rooms and reads what `plan_appends` needs, a few
    /// queries for the whole batch. Arrays instead of one parameter per
    /// value: no statement grows with the batch.
    async fn append_context(
        tx: &mut Transaction<'_, Postgres>,
        batch: &[NewMessage],
    ) -> Result<AppendContext> {
        let mut context = AppendContext::default();

        // Locking first: the reads below then see every message committed
        // to these rooms before us, and no one else appends until we commit.
        let rooms: BTreeSet<Uuid> = batch.iter().map(|m| m.room_id.uuid()).collect();
        let rooms: Vec<Uuid> = rooms.into_iter().collect();
        let rows = sqlx::query(
            "SELECT id, last_seq, msg_count FROM rooms WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&rooms)
        .fetch_all(&mut **tx)
        .await
        .context("locking the batch's rooms")?;
        for row in rows {
            let room = RoomId::from_uuid(row.try_get("id")?);
            context.rooms.insert(
                room,
                RoomCounters {
                    last_seq: to_seq(row.try_get("last_seq")?),
                    msg_count: to_seq(row.try_get("msg_count")?),
                    last_message: None,
                },
            );
        }

        let keys = batch_keys(batch);
        if !keys.is_empty() {
            let (senders, keys): (Vec<Uuid>, Vec<String>) = keys
                .into_iter()
                .map(|(sender, key)| (sender, key.to_owned()))
                .unzip();
            let rows = sqlx::query(&format!(
                "{MESSAGE_SELECT} WHERE (m.sender_id, m.client_msg_id) IN
                    (SELECT * FROM UNNEST($1::uuid[], $2::text[]))"
            ))
            .bind(&senders)
            .bind(&keys)
            .fetch_all(&mut **tx)
            .await
            .context("reading earlier sends of the batch's keys")?;
            for row in rows {
                context.remember_earlier(message_from_row(&row)?);
            }
        }

        let (room_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) =
            batch_room_senders(batch).into_iter().unzip();
        // With the number of each sender's newest message in the room.
        let rows = sqlx::query(&format!(
            "SELECT m.room_id, m.user_id,
                 COALESCE((SELECT x.sender_ord FROM messages x
                           WHERE x.room_id = m.room_id AND x.sender_id = m.user_id
                           ORDER BY x.seq DESC LIMIT 1), 0) AS sender_ord,
                 {} AS blocked
             FROM room_members m WHERE (m.room_id, m.user_id) IN
                (SELECT * FROM UNNEST($1::uuid[], $2::uuid[]))",
            blocked_in_direct_room("m.room_id", "m.user_id"),
        ))
        .bind(&room_ids)
        .bind(&user_ids)
        .fetch_all(&mut **tx)
        .await
        .context("reading the senders' memberships")?;
        for row in rows {
            let pair = (
                RoomId::from_uuid(row.try_get("room_id")?),
                UserId::from_uuid(row.try_get("user_id")?),
            );
            context
                .members
                .insert(pair, to_seq(row.try_get("sender_ord")?));
            if row.try_get("blocked")? {
                context.blocked.insert(pair);
            }
        }
        Ok(context)
    }

    /// Writes a batch's plan: the new messages, then the rooms' counters.
    async fn write_plan(tx: &mut Transaction<'_, Postgres>, plan: &AppendPlan) -> Result<()> {
        if !plan.fresh.is_empty() {
            let mut ids = Vec::with_capacity(plan.fresh.len());
            let mut rooms = Vec::with_capacity(plan.fresh.len());
            let mut seqs = Vec::with_capacity(plan.fresh.len());
            let mut senders = Vec::with_capacity(plan.fresh.len());
            let mut texts = Vec::with_capacity(plan.fresh.len());
            let mut sent_at = Vec::with_capacity(plan.fresh.len());
            let mut keys = Vec::with_capacity(plan.fresh.len());
            let mut ords = Vec::with_capacity(plan.fresh.len());
            let mut sender_ords = Vec::with_capacity(plan.fresh.len());
            for fresh in &plan.fresh {
                let message = &fresh.message;
                ords.push(from_seq(fresh.ord));
                sender_ords.push(from_seq(fresh.sender_ord));
                ids.push(message.id.uuid());
                rooms.push(message.room_id.uuid());
                seqs.push(from_seq(message.seq));
                senders.push(message.sender.id.uuid());
                texts.push(message.text.clone());
                sent_at.push(message.sent_at.0);
                keys.push(message.client_msg_id.clone());
            }
            sqlx::query(
                "INSERT INTO messages
                     (id, room_id, seq, sender_id, text, sent_at, client_msg_id, ord, sender_ord)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[],
                                      $5::text[], $6::int8[], $7::text[], $8::int8[], $9::int8[])",
            )
            .bind(&ids)
            .bind(&rooms)
            .bind(&seqs)
            .bind(&senders)
            .bind(&texts)
            .bind(&sent_at)
            .bind(&keys)
            .bind(&ords)
            .bind(&sender_ords)
            .execute(&mut **tx)
            .await?;
            // Each message's own event in the room log, at the message's seq.
            sqlx::query(
                "INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, at)
                 SELECT room_id, seq, $1, id, sender_id, at
                 FROM UNNEST($2::uuid[], $3::int8[], $4::uuid[], $5::uuid[], $6::int8[])
                     AS k (room_id, seq, id, sender_id, at)",
            )
            .bind(EVENT_MESSAGE)
            .bind(&rooms)
            .bind(&seqs)
            .bind(&ids)
            .bind(&senders)
            .bind(&sent_at)
            .execute(&mut **tx)
            .await
            .context("inserting message events")?;
        }
        if !plan.rooms.is_empty() {
            // One statement for every room of the batch, not one each.
            let mut rooms = Vec::with_capacity(plan.rooms.len());
            let mut seqs = Vec::with_capacity(plan.rooms.len());
            let mut counts = Vec::with_capacity(plan.rooms.len());
            let mut last_messages = Vec::with_capacity(plan.rooms.len());
            for (room, counters) in &plan.rooms {
                rooms.push(room.uuid());
                seqs.push(from_seq(counters.last_seq));
                counts.push(from_seq(counters.msg_count));
                last_messages.push(counters.last_message.map(MessageId::uuid));
            }
            sqlx::query(
                "UPDATE rooms SET last_seq = k.seq, msg_count = k.msg_count,
                     last_message_id = COALESCE(k.last_message_id, rooms.last_message_id)
                 FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::uuid[])
                     AS k (id, seq, msg_count, last_message_id)
                 WHERE rooms.id = k.id",
            )
            .bind(&rooms)
            .bind(&seqs)
            .bind(&counts)
            .bind(&last_messages)
            .execute(&mut **tx)
            .await
            .context("bumping the rooms' counters")?;
        }
        Ok(())
    }

    /// One attempt at a batch, in one transaction.
    async fn try_append(&self, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
        let mut tx = self.pool.begin().await?;
        let context = Self::append_context(&mut tx, batch).await?;
        let plan = plan_appends(batch, context);
        Self::write_plan(&mut tx, &plan).await?;
        tx.commit().await.context("committing messages")?;
        Ok(plan.results)
    }
}

impl Backend for PostgresStore {
    type Db = Postgres;

    /// The token's row lock: two nodes presenting the same token at once
    /// take turns, so the second one sees it spent and detects reuse.
    const TOKEN_FOR_ROTATION: &'static str =
        "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at, s.created_at
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE t.token_hash = $1
         FOR UPDATE";

    const ROOM_SEQ_FOR_UPDATE: &'static str = "SELECT last_seq FROM rooms WHERE id = $1 FOR UPDATE";
    const USER_FOR_UPDATE: &'static str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        let ids: Vec<Uuid> = room_ids.iter().map(|id| id.uuid()).collect();
        let rows: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT id, last_seq FROM rooms WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(room_seqs(rows))
    }

    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>> {
        let mut attempt = 1;
        loop {
            match self.try_append(&batch).await {
                Err(Error::Database(e)) if is_unique_violation(&e) => {
                    if attempt == APPEND_ATTEMPTS {
                        return Err(already_exists_if_unique(e, || {
                            "a client_msg_id of this batch kept being used at the same moment"
                                .to_owned()
                        }));
                    }
                    attempt += 1;
                    tracing::debug!(
                        attempt,
                        "another node used a key of this batch: planning again"
                    );
                }
                outcome => return outcome,
            }
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

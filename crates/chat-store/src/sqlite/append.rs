//! Storing a batch of messages: one transaction, run in one go on a thread
//! of its own.
//!
//! Through sqlx, every statement of a transaction is a round trip to the
//! connection's thread, each reply waking the task that waits for it. Here
//! the append thread borrows the writer connection's SQLite handle (sqlx's
//! thread waits meanwhile, one round trip) and runs the whole transaction
//! itself through rusqlite, on the same bundled SQLite. Under a fan-out of
//! 100 000 deliveries/s the mean commit went from 4.5 to 5.0 ms down to 3.7
//! to 4.1 ms, and durable stream sends with one send in flight rose by about
//! 17% (BENCHMARKS.md); most of what is left is waiting for a core, and the
//! `fsync`.

use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::types::ToSql;
use sqlx::SqlitePool;

use crate::error::Result;
use crate::model::{
    batch_keys, batch_room_senders, blocked_in_direct_room, plan_appends, AppendContext,
    AppendPlan, Appended, NewMessage, RoomCounters,
};
use crate::rows::reply_preview;
use crate::sql::{from_seq, to_seq, EVENT_MESSAGE};
use crate::sql::{message_columns, reply_joins};
use chat_domain::{Message, MessageId, RoomId, ThreadSummary, Timestamp, User, UserId};

/// Pairs bound in one lookup query: two parameters each, well under
/// SQLite's limit of 32 766 parameters per statement.
pub(super) const PAIRS_PER_QUERY: usize = 500;
/// Messages per INSERT statement: nine parameters each (six for their
/// events).
const ROWS_PER_INSERT: usize = 500;

/// A one-thread runtime that runs only the message writer's transactions,
/// so that they do not wait in line behind the server's stream tasks: on
/// the server's runtime a one-message commit took 7.3 ms on average under a
/// fan-out of 100 000 deliveries/s, here 4 to 5.5 ms with sqlx's round trips
/// (BENCHMARKS.md).
pub(super) struct AppendThread {
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl AppendThread {
    pub(super) fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name("sqlite-append")
            .enable_time()
            .build()
            .context("starting the SQLite append thread")?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Stores `batch` in one transaction on the writer connection.
    pub(super) async fn append(
        &self,
        writer: SqlitePool,
        batch: Arc<[NewMessage]>,
    ) -> Result<Vec<Result<Appended>>> {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime is there until dropped");
        runtime
            .spawn(async move {
                let mut connection = writer.acquire().await?;
                let mut locked = connection.lock_handle().await?;
                let handle = locked.as_raw_handle();
                // SAFETY: `handle` is the writer's open connection. While
                // `locked` lives, nothing else uses or closes it: sqlx's
                // connection thread waits for the lock, and the pool keeps
                // the connection until `connection` is returned. rusqlite
                // does not own a connection made by `from_handle`: dropping
                // `db` finalizes the statements prepared on it and leaves the
                // connection open (and, without rusqlite's `hooks` feature,
                // its hooks alone), and `db` is dropped before `locked`. The
                // transaction is committed or rolled back by then, so sqlx
                // gets the connection back outside any transaction.
                #[allow(unsafe_code)]
                let db = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }
                    .context("borrowing the writer connection")?;
                let results = append_in(&db, &batch);
                drop(db);
                drop(locked);
                results
            })
            .await
            .context("storing a batch on the SQLite append thread")?
    }
}

impl Drop for AppendThread {
    fn drop(&mut self) {
        // The store is dropped on the server's runtime, where a runtime may
        // not be dropped by waiting for its thread.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Stores a batch in one transaction, and says what became of each send.
fn append_in(db: &rusqlite::Connection, batch: &[NewMessage]) -> Result<Vec<Result<Appended>>> {
    let tx = db
        .unchecked_transaction()
        .context("beginning to store messages")?;
    let context = append_context(&tx, batch)?;
    let plan = plan_appends(batch, context);
    write_plan(&tx, &plan)?;
    tx.commit().context("committing messages")?;
    Ok(plan.results)
}

/// Reads what `plan_appends` needs for a batch, a few queries for the whole
/// batch rather than several per message.
fn append_context(db: &rusqlite::Connection, batch: &[NewMessage]) -> Result<AppendContext> {
    let mut context = AppendContext::default();

    let keys: Vec<_> = batch_keys(batch).into_iter().collect();
    for chunk in keys.chunks(PAIRS_PER_QUERY) {
        let sql = earlier_sends_sql(chunk.len());
        query_pairs(db, &sql, chunk, "the lookup of earlier sends", |row| {
            context.remember_earlier(message_from_row(row)?);
            Ok(())
        })?;
    }

    // Each room's counters, and whether the sender is a member and the
    // number of its newest message there, in one query.
    let pairs: Vec<_> = batch_room_senders(batch).into_iter().collect();
    for chunk in pairs.chunks(PAIRS_PER_QUERY) {
        let sql = format!(
            "WITH k (room_id, user_id) AS (VALUES {}) \
             SELECT k.room_id, k.user_id, r.last_seq, r.msg_count, \
                 EXISTS (SELECT 1 FROM room_members m \
                         WHERE m.room_id = k.room_id AND m.user_id = k.user_id), \
                 COALESCE((SELECT x.sender_ord FROM messages x \
                           WHERE x.room_id = k.room_id AND x.sender_id = k.user_id \
                           ORDER BY x.seq DESC LIMIT 1), 0), \
                 {} \
             FROM k JOIN rooms r ON r.id = k.room_id",
            placeholders(chunk.len(), 2),
            blocked_in_direct_room("k.room_id", "k.user_id"),
        );
        query_pairs(db, &sql, chunk, "the lookup of the batch's rooms", |row| {
            let room = RoomId::from_uuid(row.get(0)?);
            context.rooms.insert(
                room,
                RoomCounters {
                    last_seq: to_seq(row.get(2)?),
                    msg_count: to_seq(row.get(3)?),
                    last_message: None,
                },
            );
            let sender = UserId::from_uuid(row.get(1)?);
            if row.get(4)? {
                context.members.insert((room, sender), to_seq(row.get(5)?));
            }
            if row.get(6)? {
                context.blocked.insert((room, sender));
            }
            Ok(())
        })?;
    }
    Ok(context)
}

/// Runs `sql` with `pairs` bound in order, two parameters each, and hands
/// each row to `each`. `what` names the query in errors.
fn query_pairs<A: ToSql, B: ToSql>(
    db: &rusqlite::Connection,
    sql: &str,
    pairs: &[(A, B)],
    what: &str,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    let mut query = db
        .prepare(sql)
        .with_context(|| format!("preparing {what}"))?;
    let mut rows = query
        .query(rusqlite::params_from_iter(pair_params(pairs)))
        .with_context(|| format!("running {what}"))?;
    while let Some(row) = rows.next().with_context(|| format!("reading {what}"))? {
        each(row).with_context(|| format!("reading a row of {what}"))?;
    }
    Ok(())
}

/// Pairs as the flat list of parameters of `(?, ?), (?, ?)`.
fn pair_params<A: ToSql, B: ToSql>(pairs: &[(A, B)]) -> impl Iterator<Item = &dyn ToSql> {
    pairs
        .iter()
        .flat_map(|(a, b)| [a as &dyn ToSql, b as &dyn ToSql])
}

/// Writes a batch's plan: the new messages, then the rooms' counters.
fn write_plan(db: &rusqlite::Connection, plan: &AppendPlan) -> Result<()> {
    for chunk in plan.fresh.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO messages \
                 (id, room_id, seq, sender_id, text, sent_at, client_msg_id, ord, sender_ord) \
             VALUES {}",
            placeholders(chunk.len(), 9)
        );
        let rows: Vec<_> = chunk
            .iter()
            .map(|f| {
                (
                    f.message.id.uuid(),
                    f.message.room_id.uuid(),
                    from_seq(f.message.seq),
                    f.message.sender.id.uuid(),
                    [from_seq(f.ord), from_seq(f.sender_ord)],
                )
            })
            .collect();
        let params =
            chunk
                .iter()
                .zip(&rows)
                .flat_map(|(f, (id, room, seq, sender, [ord, sender_ord]))| {
                    let m = &f.message;
                    [
                        id as &dyn ToSql,
                        room,
                        seq,
                        sender,
                        &m.text,
                        &m.sent_at.0,
                        &m.client_msg_id,
                        ord,
                        sender_ord,
                    ]
                });
        db.prepare(&sql)
            .context("preparing to insert messages")?
            .execute(rusqlite::params_from_iter(params))
            .context("inserting messages")?;
        // Each message's own event in the room log, at the message's seq.
        let sql = format!(
            "INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, at) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let params = chunk
            .iter()
            .zip(&rows)
            .flat_map(|(f, (id, room, seq, sender, _))| {
                [
                    room as &dyn ToSql,
                    seq,
                    &EVENT_MESSAGE,
                    id,
                    sender,
                    &f.message.sent_at.0,
                ]
            });
        db.prepare(&sql)
            .context("preparing to insert message events")?
            .execute(rusqlite::params_from_iter(params))
            .context("inserting message events")?;
    }
    let rooms: Vec<_> = plan
        .rooms
        .iter()
        .map(|(room, counters)| {
            (
                room.uuid(),
                from_seq(counters.last_seq),
                from_seq(counters.msg_count),
                counters.last_message.map(MessageId::uuid),
            )
        })
        .collect();
    for chunk in rooms.chunks(PAIRS_PER_QUERY) {
        let sql = format!(
            "WITH k (id, seq, msg_count, last_message_id) AS (VALUES {}) \
             UPDATE rooms SET last_seq = k.seq, msg_count = k.msg_count, \
                 last_message_id = COALESCE(k.last_message_id, rooms.last_message_id) \
             FROM k WHERE rooms.id = k.id",
            placeholders(chunk.len(), 4)
        );
        let params = chunk
            .iter()
            .flat_map(|(id, seq, count, last)| [id as &dyn ToSql, seq, count, last]);
        db.prepare(&sql)
            .context("preparing to update room counters")?
            .execute(rusqlite::params_from_iter(params))
            .context("updating room counters")?;
    }
    Ok(())
}

/// The stored messages of `pairs` (sender, client_msg_id) pairs, bound in
/// that order.
///
/// `CROSS JOIN` makes SQLite take the pairs as the outer loop, so each is
/// one search of the idempotency index. With a plain join it may instead
/// scan that whole index and probe the pairs, once per batch: it did, and
/// the scan grew with the table.
pub(super) fn earlier_sends_sql(pairs: usize) -> String {
    format!(
        concat!(
            "WITH k (sender_id, key) AS (VALUES {}) SELECT ",
            message_columns!(),
            " FROM k CROSS JOIN messages m CROSS JOIN users u",
            reply_joins!(),
            " WHERE m.sender_id = k.sender_id AND m.client_msg_id = k.key \
               AND m.client_msg_id IS NOT NULL AND u.id = m.sender_id"
        ),
        placeholders(pairs, 2)
    )
}

/// `rows` tuples of `columns` placeholders each: `(?, ?), (?, ?)`.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * (columns * 3 + 2));
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            out.push_str(if column == 0 { "?" } else { ", ?" });
        }
        out.push(')');
    }
    out
}

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId::from_uuid(row.get("id")?),
        room_id: RoomId::from_uuid(row.get("room_id")?),
        seq: to_seq(row.get("seq")?),
        sender: User {
            id: UserId::from_uuid(row.get("sender_id")?),
            username: row.get("username")?,
            display_name: row.get("display_name")?,
        },
        text: row.get("text")?,
        sent_at: Timestamp(row.get("sent_at")?),
        client_msg_id: row.get("client_msg_id")?,
        edited_at: row.get::<_, Option<i64>>("edited_at")?.map(Timestamp),
        deleted: row.get("deleted")?,
        reply_to: match row.get::<_, Option<uuid::Uuid>>("reply_to_id")? {
            None => None,
            Some(id) => Some(reply_preview(
                id,
                row.get("reply_sender_id")?,
                row.get("reply_sender_name")?,
                row.get("reply_sender_display")?,
                row.get("reply_text")?,
                row.get("reply_deleted")?,
            )),
        },
        thread_root_id: row
            .get::<_, Option<uuid::Uuid>>("thread_root_id")?
            .map(MessageId::from_uuid),
        thread: ThreadSummary {
            reply_count: u32::try_from(row.get::<_, i64>("thread_reply_count")?)
                .unwrap_or_default(),
            last_reply_at: row
                .get::<_, Option<i64>>("thread_last_reply_at")?
                .map(Timestamp),
        },
        reactions: Vec::new(),
        mentions: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::{SqliteStore, Store as _};
    use chat_domain::{ClientMsgId, MessageText, RoomName, Username};

    async fn open(path: &std::path::Path) -> SqliteStore {
        let url = format!("sqlite://{}", path.display());
        SqliteStore::connect(&url, crate::Synchronous::Normal)
            .await
            .unwrap()
    }

    fn send(room_id: RoomId, sender: &User, text: &str) -> NewMessage {
        NewMessage {
            id: MessageId::new(),
            room_id,
            sender: sender.clone(),
            text: MessageText::parse(text.into()).unwrap(),
            sent_at: Timestamp::from_secs(1_700_000_000),
            client_msg_id: ClientMsgId::parse(String::new()).unwrap(),
            reply_to_id: None,
            thread_root_id: None,
        }
    }

    /// A batch that fails in the database leaves nothing behind, and the
    /// writer connection it borrowed is whole again: not left inside the
    /// transaction, and usable by sqlx's writes and by the next batch.
    #[tokio::test]
    async fn a_failed_batch_is_rolled_back_and_the_writer_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let store = open(&path).await;
        let now = Timestamp::from_secs(1_700_000_000);
        let alice = store
            .create_user(UserId::new(), &Username::parse("alice").unwrap(), "h", now)
            .await
            .unwrap();
        let room = RoomId::new();
        store
            .create_room(crate::NewRoom {
                id: room,
                name: RoomName::parse("general").unwrap(),
                topic: chat_domain::RoomTopic::default(),
                visibility: chat_domain::RoomVisibility::Public,
                creator: alice.clone(),
                max_rooms: 1000,
                now,
            })
            .await
            .unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.text = 'refused' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();

        let batch = [send(room, &alice, "kept?"), send(room, &alice, "refused")];
        let error = store.append_messages(Arc::new(batch)).await.unwrap_err();
        assert!(
            format!("{:#}", anyhow::Error::from(error)).contains("refused by the test"),
            "the cause is kept for the log"
        );
        assert_eq!(store.history(room, alice.id, 0, 10).await.unwrap().0, []);
        assert_eq!(store.last_seqs(&[room]).await.unwrap(), [(room, 0)]);

        let other = RoomId::new();
        store
            .create_room(crate::NewRoom {
                id: other,
                name: RoomName::parse("other").unwrap(),
                topic: chat_domain::RoomTopic::default(),
                visibility: chat_domain::RoomVisibility::Public,
                creator: alice.clone(),
                max_rooms: 1000,
                now,
            })
            .await
            .expect("sqlx writes on the writer connection after the failure");
        let results = store
            .append_messages(Arc::new([send(room, &alice, "stored")]))
            .await
            .unwrap();
        assert_eq!(results[0].as_ref().unwrap().message.seq, 1);
        store.close().await;
        let (messages, _) = open(&path)
            .await
            .history(room, alice.id, 0, 10)
            .await
            .unwrap();
        let texts: Vec<_> = messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            ["stored"],
            "committed, not left in an open transaction"
        );
    }

    /// The plan of the idempotency lookup for a full chunk of pairs: every
    /// step that reads `messages` must be a search of its index.
    #[tokio::test]
    async fn earlier_sends_are_looked_up_by_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        open(&path).await.close().await;
        let db = rusqlite::Connection::open(&path).unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", earlier_sends_sql(PAIRS_PER_QUERY));
        let pairs: Vec<(Uuid, String)> = (0..PAIRS_PER_QUERY)
            .map(|i| (Uuid::now_v7(), format!("key-{i}")))
            .collect();
        let mut query = db.prepare(&sql).unwrap();
        let steps: Vec<String> = query
            .query_map(rusqlite::params_from_iter(pair_params(&pairs)), |row| {
                row.get("detail")
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let reads: Vec<_> = steps.iter().filter(|s| s.contains(" m ")).collect();
        assert!(!reads.is_empty(), "no step reads messages: {steps:?}");
        for step in reads {
            assert!(
                step.starts_with("SEARCH m USING INDEX messages_idempotency"),
                "{steps:?}"
            );
        }
    }
}

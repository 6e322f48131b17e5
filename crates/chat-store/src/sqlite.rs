//! The embedded store: SQLite in WAL mode with `synchronous=FULL` (unless
//! configured otherwise), so a committed transaction survives a crash or
//! power loss.
//!
//! All writes go through one connection (SQLite has one writer anyway; a
//! single connection means no lock contention, and the message writer batches
//! sends into few transactions). Reads use a small pool of their own, which
//! WAL lets run beside the writer.
//!
//! Message batches are stored from a thread of their own, in one go (see
//! `append.rs`).
//!
//! Every other statement is shared with PostgreSQL (`queries.rs`); this
//! file holds what is SQLite's own: opening the file and its two pools,
//! the batch append, and `last_seqs` with a bound list of ids.

mod append;

use self::append::AppendThread;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{Appended, NewMessage, Synchronous};
use crate::queries::Backend;
use crate::sql::room_seqs;
use chat_domain::RoomId;

/// Readers beside the one writer: enough for history and room lists under
/// load on a small machine, few enough to keep file handles bounded.
const READ_CONNECTIONS: u32 = 4;
/// How long a statement waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Page cache of the writer, in KiB (SQLite's default is 2 MiB). A batch
/// of messages to many rooms dirties a page of each index per room; with
/// the default, those pages were evicted between batches and read back
/// from the file on the next one.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Page cache of each reader, in KiB. A room list of 1 000 rooms over a
/// large database touches a few thousand pages (each room's counters and
/// newest message); at 16 MiB they were read back from the file on every
/// call (`pread` took most of the time), at 64 MiB they stay (BENCHMARKS.md,
/// "ListRooms over long histories").
const READER_CACHE_KIB: u32 = 64 * 1024;
/// WAL pages after which a commit copies them into the database (SQLite's
/// default is 1000). Busy pages (index tails, room rows) are rewritten by
/// almost every batch: a longer WAL copies each once per checkpoint instead
/// of once per few batches, and fsyncs the database file less often.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// How long after a deletion the WAL is checkpointed and truncated, so
/// that the page images holding the erased text leave it: a few seconds,
/// so that a burst of deletions costs one checkpoint (well within the 10 s
/// the erasure promise allows).
const ERASURE_CHECKPOINT_DELAY: Duration = Duration::from_secs(2);
/// Checkpoints tried after a deletion before giving up until the next one:
/// a checkpoint that a reader holds back is tried again after the delay.
const ERASURE_CHECKPOINT_TRIES: u32 = 4;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    appends: AppendThread,
    /// Wakes the task that checkpoints the WAL after deletions.
    erasures: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://` URL and
    /// brings its schema up to date.
    ///
    /// # Errors
    /// When the file cannot be created or a migration fails.
    pub async fn connect(url: &str, synchronous: Synchronous) -> Result<Self> {
        let synchronous = match synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (a multi-row INSERT keeps one, to undo
            // just that statement) stay in memory, not in a temporary file.
            .pragma("temp_store", "memory")
            // A deleted message's text is erased, not hidden: freed space
            // is overwritten with zeros, in the WAL and then the file.
            .pragma("secure_delete", "on")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the database folder {}", dir.display()))?;
            }
        }
        // No ping before each use: the database is a local file, and the
        // ping is one more round trip to the connection's thread.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}")),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("migrating the SQLite database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options.pragma("cache_size", format!("-{READER_CACHE_KIB}")))
            .await?;
        let erasures = Arc::new(Notify::new());
        tokio::spawn(checkpoint_after_erasures(
            writer.clone(),
            Arc::clone(&erasures),
        ));
        Ok(Self {
            writer,
            reader,
            appends: AppendThread::start()?,
            erasures,
        })
    }
}

/// Once woken by a deletion, waits `ERASURE_CHECKPOINT_DELAY` (deletions
/// meanwhile share the checkpoint), then copies the WAL into the database
/// and truncates it: with `secure_delete`, neither file then holds the
/// erased text. Ends when the store closes.
async fn checkpoint_after_erasures(writer: SqlitePool, erasures: Arc<Notify>) {
    loop {
        erasures.notified().await;
        for _ in 0..ERASURE_CHECKPOINT_TRIES {
            tokio::time::sleep(ERASURE_CHECKPOINT_DELAY).await;
            if writer.is_closed() {
                return;
            }
            // (busy, WAL frames, frames checkpointed): busy when a reader
            // still needed the WAL and it could not be truncated.
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&writer)
                .await
            {
                Ok((0, _, _)) => break,
                Ok(_) => tracing::debug!("a reader held the WAL; checkpointing again"),
                Err(error) => tracing::warn!(%error, "checkpointing the WAL after a deletion"),
            }
        }
        if writer.is_closed() {
            return;
        }
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;

    /// One writer: nothing else can spend the token between the reads and
    /// writes of a rotation, and SQLite has no row locks to take.
    const TOKEN_FOR_ROTATION: &'static str =
        "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at, s.created_at
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE t.token_hash = $1";

    /// One writer: no one else takes a seq between the read and the write.
    const ROOM_SEQ_FOR_UPDATE: &'static str = "SELECT last_seq FROM rooms WHERE id = $1";
    const USER_FOR_UPDATE: &'static str = "SELECT id FROM users WHERE id = $1";

    fn erased(&self) {
        self.erasures.notify_one();
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    async fn last_seqs(&self, room_ids: &[RoomId]) -> Result<Vec<(RoomId, u64)>> {
        let mut found = Vec::with_capacity(room_ids.len());
        // SQLite binds at most 32 766 parameters per statement.
        for chunk in room_ids.chunks(1000) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT id, last_seq FROM rooms WHERE id IN (");
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id.uuid());
            }
            query.push(")");
            let rows: Vec<(Uuid, i64)> = query.build_query_as().fetch_all(&self.reader).await?;
            found.extend(room_seqs(rows));
        }
        Ok(found)
    }

    async fn append_messages(&self, batch: Arc<[NewMessage]>) -> Result<Vec<Result<Appended>>> {
        self.appends.append(self.writer.clone(), batch).await
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
        // The checkpoint task sees the pool closed and ends.
        self.erasures.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::model::RoomPage;
    use crate::Store as _;
    use chat_domain::UserId;

    /// A new database migrated up to, not including, the migration named
    /// `description`: a database of the release before it. The folder
    /// lives as long as the returned `TempDir`.
    async fn database_before(description: &str) -> (tempfile::TempDir, String, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/chat.db", dir.path().display());
        let mut before = sqlx::migrate!("./migrations/sqlite");
        let at = before
            .migrations
            .iter()
            .position(|m| m.description == description)
            .unwrap_or_else(|| panic!("no migration named {description:?}"));
        before.migrations = Cow::Owned(before.migrations[..at].to_vec());
        let options = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        before.run(&pool).await.unwrap();
        (dir, url, pool)
    }

    /// A database of the release before the room log: migrating it gives
    /// each stored message its `message` event, at the message's seq.
    #[tokio::test]
    async fn existing_messages_become_the_events_of_their_rooms_log() {
        let (_dir, url, pool) = database_before("room events").await;
        let (user, room) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query(
            "INSERT INTO users (id, username, username_key, password_hash, created_at)
             VALUES ($1, 'alice', 'alice', 'hash', 1)",
        )
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO rooms (id, name, kind, last_seq, created_at)
             VALUES ($1, 'lobby', 1, 2, 1)",
        )
        .bind(room)
        .execute(&pool)
        .await
        .unwrap();
        for (seq, text) in [(1_i64, "one"), (2, "two")] {
            sqlx::query(
                "INSERT INTO messages (id, room_id, seq, sender_id, text, sent_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(Uuid::now_v7())
            .bind(room)
            .bind(seq)
            .bind(user)
            .bind(text)
            .bind(seq * 1000)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = SqliteStore::connect(&url, Synchronous::Normal)
            .await
            .unwrap();
        let (events, more) = store
            .room_events(RoomId::from_uuid(room), 0, u64::MAX, 10)
            .await
            .unwrap();

        let log: Vec<_> = events
            .iter()
            .map(|e| (e.seq, e.new_message().map(|m| (m.seq, m.text.clone()))))
            .collect();
        assert_eq!(
            (log, more),
            (
                vec![
                    (1, Some((1, "one".to_owned()))),
                    (2, Some((2, "two".to_owned())))
                ],
                false
            )
        );
        crate::Store::close(&store).await;
    }

    /// A database of the release before the unread numbers: migrating it
    /// numbers the stored messages and the members' markers, so that the
    /// counts go on from there.
    #[tokio::test]
    async fn existing_messages_and_markers_are_numbered() {
        let (_dir, url, pool) = database_before("unread counts").await;
        let (alice, bob, room) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for (id, name) in [(alice, "alice"), (bob, "bob")] {
            sqlx::query(
                "INSERT INTO users (id, username, username_key, password_hash, created_at)
                 VALUES ($1, $2, $2, 'hash', 1)",
            )
            .bind(id)
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO rooms (id, name, kind, last_seq, created_at)
             VALUES ($1, 'lobby', 1, 5, 1)",
        )
        .bind(room)
        .execute(&pool)
        .await
        .unwrap();
        // Bob has read up to his own second message; alice up to seq 1.
        for (user, marker) in [(alice, 1_i64), (bob, 3)] {
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, joined_at, last_read_seq)
                 VALUES ($1, $2, 1, $3)",
            )
            .bind(room)
            .bind(user)
            .bind(marker)
            .execute(&pool)
            .await
            .unwrap();
        }
        for (seq, sender) in [(1_i64, alice), (2, bob), (3, bob), (4, alice), (5, bob)] {
            sqlx::query(
                "INSERT INTO messages (id, room_id, seq, sender_id, text, sent_at)
                 VALUES ($1, $2, $3, $4, 'hi', $5)",
            )
            .bind(Uuid::now_v7())
            .bind(room)
            .bind(seq)
            .bind(sender)
            .bind(seq * 1000)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;

        let store = SqliteStore::connect(&url, Synchronous::Normal)
            .await
            .unwrap();
        let page = RoomPage {
            after: None,
            limit: 10,
            joined_only: true,
        };
        let mut unread = Vec::new();
        for user in [alice, bob] {
            let rooms = store
                .list_rooms(UserId::from_uuid(user), page)
                .await
                .unwrap();
            unread.push(rooms[0].read.unread_count);
        }
        assert_eq!(unread, [3, 1], "alice: bob's 2, 3 and 5; bob: alice's 4");
        crate::Store::close(&store).await;
    }
}

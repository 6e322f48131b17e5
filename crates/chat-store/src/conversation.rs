//! What a message carries beyond its own row, and the sends that refer to
//! other rows: replies, thread replies, mentions and reactions
//! (docs/design/room-log.md), written once for both databases like
//! `queries.rs`.
//!
//! A message's row holds its content and its thread counts; its reply
//! preview is joined from the quoted message when read (so it shows that
//! message as it is now); its mentions and reactions live in tables of
//! their own and are read for a whole page at once, one query each.

use std::collections::HashMap;
use std::marker::PhantomData;

use anyhow::Context as _;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row as _, Transaction, Type,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{
    blocked_in_direct_room, blocked_sender, Appended, Changed, Membership, NewMessage,
};
use crate::rows::message_from_row;
use crate::sql::MESSAGE_SELECT;
use crate::sql::{from_seq, to_seq, EVENT_MESSAGE};
use chat_domain::{Message, MessageId, MessageText, ReactionSummary, RoomId, User, UserId};

/// Statements about a message's surroundings, for any database that binds
/// and reads these column types (the bounds of `impl Store`).
pub(crate) struct Conversation<DB>(PhantomData<DB>);

impl<DB> Conversation<DB>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> Uuid: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<Uuid>: Encode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    str: Type<DB>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
    /// Fills in the mentions of `messages` and, for a `viewer`, their
    /// reactions as that user sees them (stream events carry none).
    pub(crate) async fn fill(
        conn: &mut DB::Connection,
        messages: &mut [Message],
        viewer: Option<UserId>,
    ) -> Result<()> {
        let ids: Vec<Uuid> = messages
            .iter()
            .filter(|m| !m.deleted)
            .map(|m| m.id.uuid())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut mentions = Self::mentions_of(&mut *conn, &ids).await?;
        let mut reactions = match viewer {
            Some(viewer) => Self::reactions_of(&mut *conn, &ids, viewer).await?,
            None => HashMap::new(),
        };
        for message in messages {
            let id = message.id.uuid();
            message.mentions = mentions.remove(&id).unwrap_or_default();
            message.reactions = reactions.remove(&id).unwrap_or_default();
        }
        Ok(())
    }

    async fn mentions_of(
        conn: &mut DB::Connection,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<User>>> {
        let sql = format!(
            "SELECT mm.message_id, u.id, u.username, u.display_name
             FROM message_mentions mm JOIN users u ON u.id = mm.user_id
             WHERE mm.message_id IN ({}) AND mm.removed = FALSE
             ORDER BY mm.message_id, u.username_key",
            numbered(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(conn).await.context("reading mentions")?;
        let mut by_message: HashMap<Uuid, Vec<User>> = HashMap::new();
        for row in rows {
            by_message.entry(row.try_get(0)?).or_default().push(User {
                id: UserId::from_uuid(row.try_get(1)?),
                username: row.try_get(2)?,
                display_name: row.try_get(3)?,
            });
        }
        Ok(by_message)
    }

    async fn reactions_of(
        conn: &mut DB::Connection,
        ids: &[Uuid],
        viewer: UserId,
    ) -> Result<HashMap<Uuid, Vec<ReactionSummary>>> {
        let sql = format!(
            "SELECT c.message_id, c.emoji, c.count,
                EXISTS (SELECT 1 FROM message_reactions r
                        WHERE r.message_id = c.message_id AND r.user_id = $1
                          AND r.emoji = c.emoji) AS mine
             FROM reaction_counts c WHERE c.message_id IN ({})
             ORDER BY c.message_id, c.first_seq",
            numbered(2, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(viewer.uuid());
        for id in ids {
            query = query.bind(*id);
        }
        let rows = query.fetch_all(conn).await.context("reading reactions")?;
        let mut by_message: HashMap<Uuid, Vec<ReactionSummary>> = HashMap::new();
        for row in rows {
            by_message
                .entry(row.try_get(0)?)
                .or_default()
                .push(ReactionSummary {
                    emoji: row.try_get(1)?,
                    count: u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or_default(),
                    reacted_by_me: row.try_get(3)?,
                });
        }
        Ok(by_message)
    }

    /// Answers a change that changed nothing: the message as `viewer` sees
    /// it, and no event. The transaction wrote nothing; it is dropped.
    pub(crate) async fn unchanged(
        mut tx: Transaction<'_, DB>,
        mut changed: Changed,
        viewer: UserId,
    ) -> Result<Changed> {
        Self::fill(
            &mut tx,
            std::slice::from_mut(&mut changed.message),
            Some(viewer),
        )
        .await?;
        Ok(changed)
    }

    /// The members of a room that `text` names, each once.
    pub(crate) async fn mentioned_members(
        tx: &mut Transaction<'_, DB>,
        room_id: RoomId,
        text: &MessageText,
    ) -> Result<Vec<User>> {
        let keys = chat_domain::mentions(text);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT u.id, u.username, u.display_name
             FROM room_members rm JOIN users u ON u.id = rm.user_id
             WHERE rm.room_id = $1 AND u.username_key IN ({})
             ORDER BY u.username_key",
            numbered(2, keys.len())
        );
        let mut query = sqlx::query(&sql).bind(room_id.uuid());
        for key in keys {
            query = query.bind(key);
        }
        let rows = query
            .fetch_all(&mut **tx)
            .await
            .context("reading the members a message names")?;
        rows.iter()
            .map(|row| {
                Ok(User {
                    id: UserId::from_uuid(row.try_get(0)?),
                    username: row.try_get(1)?,
                    display_name: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Stores a new message's mentions: each member's by another is
    /// numbered on from its newest in the room (`message_mentions.ord`,
    /// for the unread mention counts).
    pub(crate) async fn add_mentions(
        tx: &mut Transaction<'_, DB>,
        message: &Message,
        members: &[User],
    ) -> Result<()> {
        for member in members {
            sqlx::query(
                "INSERT INTO message_mentions (user_id, room_id, seq, message_id, sender_id, ord)
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $1 = $5 THEN 0 ELSE
                     COALESCE((SELECT MAX(mm.ord) FROM message_mentions mm
                               WHERE mm.user_id = $1 AND mm.room_id = $2), 0) + 1 END)",
            )
            .bind(member.id.uuid())
            .bind(message.room_id.uuid())
            .bind(from_seq(message.seq))
            .bind(message.id.uuid())
            .bind(message.sender.id.uuid())
            .execute(&mut **tx)
            .await
            .context("storing a mention")?;
        }
        Ok(())
    }

    /// Takes a message's mentions away (it is deleted, or edited): the
    /// numbered rows stay, as removed, so that the numbers stay; the
    /// others go.
    pub(crate) async fn remove_mentions(
        tx: &mut Transaction<'_, DB>,
        message_id: MessageId,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM message_mentions WHERE message_id = $1 AND (ord IS NULL OR ord = 0)",
        )
        .bind(message_id.uuid())
        .execute(&mut **tx)
        .await
        .context("removing a message's mentions")?;
        sqlx::query("UPDATE message_mentions SET removed = TRUE WHERE message_id = $1")
            .bind(message_id.uuid())
            .execute(&mut **tx)
            .await
            .context("removing a message's mentions")?;
        Ok(())
    }

    /// Replaces an edited message's mentions with `members`: a name it had
    /// when sent comes back with its number, any other is a row without
    /// one (counted apart).
    pub(crate) async fn replace_mentions(
        tx: &mut Transaction<'_, DB>,
        message: &Message,
        members: &[User],
    ) -> Result<()> {
        Self::remove_mentions(tx, message.id).await?;
        for member in members {
            sqlx::query(
                "INSERT INTO message_mentions (user_id, room_id, seq, message_id, sender_id, ord)
                 VALUES ($1, $2, $3, $4, $5, CASE WHEN $1 = $5 THEN 0 END)
                 ON CONFLICT (user_id, room_id, seq) DO UPDATE SET removed = FALSE",
            )
            .bind(member.id.uuid())
            .bind(message.room_id.uuid())
            .bind(from_seq(message.seq))
            .bind(message.id.uuid())
            .bind(message.sender.id.uuid())
            .execute(&mut **tx)
            .await
            .context("storing a mention")?;
        }
        Ok(())
    }

    /// Appends messages one at a time in one transaction: the path of the
    /// sends `NewMessage::is_plain` leaves out (replies, thread replies,
    /// texts that may name members), which check the rows they refer to.
    /// The same outcomes as the batch append for everything else.
    pub(crate) async fn append(
        tx: &mut Transaction<'_, DB>,
        batch: &[NewMessage],
        room_seq_for_update: &str,
    ) -> Result<Vec<Result<Appended>>> {
        let mut results = Vec::with_capacity(batch.len());
        for new in batch {
            results.push(Self::append_one(tx, new, room_seq_for_update).await?);
        }
        Ok(results)
    }

    /// One send: the outer error is the database's (the whole batch
    /// fails), the inner one this send's own.
    async fn append_one(
        tx: &mut Transaction<'_, DB>,
        new: &NewMessage,
        room_seq_for_update: &str,
    ) -> Result<Result<Appended>> {
        let room_id = new.room_id;
        if let Some(key) = new.client_msg_id.as_deref() {
            let earlier = sqlx::query(&format!(
                "{MESSAGE_SELECT} WHERE m.sender_id = $1 AND m.client_msg_id = $2"
            ))
            .bind(new.sender.id.uuid())
            .bind(key)
            .fetch_optional(&mut **tx)
            .await
            .context("reading an earlier send of the key")?;
            if let Some(row) = earlier {
                let mut message = message_from_row(&row)?;
                if message.room_id != room_id {
                    return Ok(Err(Error::Taken(format!(
                        "client_msg_id {key:?} was already used for a message in another room"
                    ))));
                }
                Self::fill(&mut **tx, std::slice::from_mut(&mut message), None).await?;
                return Ok(Ok(Appended {
                    message,
                    fresh: false,
                }));
            }
        }
        let last_seq: Option<i64> = sqlx::query_scalar(room_seq_for_update)
            .bind(room_id.uuid())
            .fetch_optional(&mut **tx)
            .await
            .context("locking the room")?;
        let Some(last_seq) = last_seq else {
            return Ok(Err(Membership::NoSuchRoom
                .require_member(room_id)
                .unwrap_err()));
        };
        // The room's message count, and, if the sender is a member, the
        // number of its newest message there.
        let numbers = sqlx::query(&format!(
            "SELECT r.msg_count,
                 COALESCE((SELECT x.sender_ord FROM messages x
                           WHERE x.room_id = $1 AND x.sender_id = $2
                           ORDER BY x.seq DESC LIMIT 1), 0),
                 {}
             FROM rooms r JOIN room_members m ON m.room_id = r.id AND m.user_id = $2
             WHERE r.id = $1",
            blocked_in_direct_room("$1", "$2"),
        ))
        .bind(room_id.uuid())
        .bind(new.sender.id.uuid())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(numbers) = numbers else {
            return Ok(Err(Membership::NotMember
                .require_member(room_id)
                .unwrap_err()));
        };
        let msg_count: i64 = numbers.try_get(0)?;
        let sender_ord: i64 = numbers.try_get(1)?;
        if numbers.try_get::<bool, _>(2)? {
            return Ok(Err(blocked_sender()));
        }
        if let Some(target) = new.reply_to_id {
            if Self::room_and_root_of(tx, target)
                .await?
                .map(|(room, _)| room)
                != Some(room_id)
            {
                return Ok(Err(Error::NotFound(format!(
                    "reply_to_id: message {target} does not exist in room {room_id}"
                ))));
            }
        }
        if let Some(root) = new.thread_root_id {
            match Self::room_and_root_of(tx, root).await? {
                Some((room, None)) if room == room_id => {}
                Some((room, Some(_))) if room == room_id => {
                    return Ok(Err(Error::Invalid(format!(
                        "thread_root_id: message {root} is a thread reply; a thread's root \
                         must be a top-level message"
                    ))))
                }
                _ => {
                    return Ok(Err(Error::NotFound(format!(
                        "thread_root_id: message {root} does not exist in room {room_id}"
                    ))))
                }
            }
        }
        let mentioned = Self::mentioned_members(tx, room_id, &new.text).await?;

        let seq = to_seq(last_seq) + 1;
        sqlx::query(
            "INSERT INTO messages (id, room_id, seq, sender_id, text, sent_at, client_msg_id,
                                   reply_to_id, thread_root_id, ord, sender_ord)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(new.id.uuid())
        .bind(room_id.uuid())
        .bind(from_seq(seq))
        .bind(new.sender.id.uuid())
        .bind(new.text.as_str())
        .bind(new.sent_at.0)
        .bind(new.client_msg_id.as_deref())
        .bind(new.reply_to_id.map(MessageId::uuid))
        .bind(new.thread_root_id.map(MessageId::uuid))
        .bind(msg_count + 1)
        .bind(sender_ord + 1)
        .execute(&mut **tx)
        .await
        .context("inserting a message")?;
        sqlx::query(
            "INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(room_id.uuid())
        .bind(from_seq(seq))
        .bind(EVENT_MESSAGE)
        .bind(new.id.uuid())
        .bind(new.sender.id.uuid())
        .bind(new.sent_at.0)
        .execute(&mut **tx)
        .await
        .context("inserting a message event")?;
        // A thread reply leaves the room's newest top-level message as it is.
        sqlx::query(
            "UPDATE rooms SET last_seq = $1, msg_count = msg_count + 1,
                 last_message_id = COALESCE($3, last_message_id)
             WHERE id = $2",
        )
        .bind(from_seq(seq))
        .bind(room_id.uuid())
        .bind(new.thread_root_id.is_none().then(|| new.id.uuid()))
        .execute(&mut **tx)
        .await
        .context("bumping the room's seq")?;
        if let Some(root) = new.thread_root_id {
            sqlx::query(
                "UPDATE messages SET thread_reply_count = thread_reply_count + 1,
                    thread_last_reply_at = $1
                 WHERE id = $2",
            )
            .bind(new.sent_at.0)
            .bind(root.uuid())
            .execute(&mut **tx)
            .await
            .context("counting a thread reply")?;
        }
        let row = sqlx::query(&format!("{MESSAGE_SELECT} WHERE m.id = $1"))
            .bind(new.id.uuid())
            .fetch_one(&mut **tx)
            .await
            .context("reading back a message")?;
        let mut message = message_from_row(&row)?;
        Self::add_mentions(tx, &message, &mentioned).await?;
        message.mentions = mentioned;
        Ok(Ok(Appended {
            message,
            fresh: true,
        }))
    }

    /// The room of a message and, for a thread reply, its root.
    async fn room_and_root_of(
        tx: &mut Transaction<'_, DB>,
        id: MessageId,
    ) -> Result<Option<(RoomId, Option<Uuid>)>> {
        let row = sqlx::query("SELECT room_id, thread_root_id FROM messages WHERE id = $1")
            .bind(id.uuid())
            .fetch_optional(&mut **tx)
            .await
            .context("reading a message a send refers to")?;
        row.map(|row| {
            Ok((
                RoomId::from_uuid(row.try_get(0)?),
                row.try_get::<Option<Uuid>, _>(1)?,
            ))
        })
        .transpose()
    }
}

/// `count` numbered placeholders from `$first`: `$2, $3, $4`. Both
/// databases bind them by number (`queries.rs`).
fn numbered(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

//! list-rooms (issue 21): how fast `ListRooms` answers one user who is a
//! member of many rooms with long histories, now that every room it lists
//! carries the caller's read marker, its unread and mention counts (cut at
//! 9999) and its newest top-level message.
//!
//! Sending 100 million messages through gRPC would take hours, so the
//! history is written into the database file directly:
//!
//! 1. a server on a fresh database (which it migrates) registers the users
//!    and makes the rooms: the measured user creates them, the senders
//!    join each and send one message there naming it, so every room also
//!    holds rows the server wrote itself;
//! 2. the server stops, and each room gets its messages in one statement
//!    (a recursive CTE), a `message` event each in `room_events`, a
//!    `message_mentions` row for each one that names the measured user,
//!    and `rooms.last_seq` moved to the end;
//! 3. for each marker state (far behind, a few unread, all read) the
//!    measured user's markers are set with SQL and the counts recounted,
//!    and the server is started again on the file; after a few untimed
//!    walks it lists the rooms again and again with each page size,
//!    walking every page, each call timed, and the first walk's counts are
//!    checked against the recount.
//!
//! The database can be kept (`--keep`) and measured again later
//! (`--reuse`), e.g. with a newer server, without seeding it again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use chat_client::pb;
use chat_client::pb::chat_service_client::ChatServiceClient;
use chat_client::BearerToken;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::accounts::{self, Account};
use crate::cli::{ListRoomsOpts, MarkerState, Synchronous, TargetOpts};
use crate::progress::Progress;
use crate::recorder::{self, Percentiles};
use crate::server::Server;
use crate::{cpu, net, tasks};

/// The server cuts both counts here (`chat_domain::MAX_UNREAD_COUNT`).
pub const COUNT_CAP: u64 = 9999;
/// The database file inside the scenario's folder (`Server::start_in`).
const DATABASE: &str = "chat.db";
/// What a kept folder says about its database, for `--reuse`.
const SEEDED_FILE: &str = "list-rooms.json";
/// Setup calls (room creations, joins, sends) in flight at once.
const SETUP_CONCURRENCY: usize = 32;
/// Page cache for the seeding connection (KiB): the indexes of the room
/// being filled stay in memory.
const SEED_CACHE_KIB: u64 = 1 << 20;
/// A walk that has not reached the last page after this many pages is
/// going round in circles.
const MAX_PAGES: usize = 100_000;
/// Mismatches described one by one in the result; the rest are counted.
const MISMATCHES_SHOWN: usize = 5;

/// The measured user is `lr-reader-0` (`accounts::create` numbers its
/// users); the senders' messages name it.
const READER: &str = "lr-reader";
/// The senders are `lr-sender-0`, `lr-sender-1`, …
const SENDER_PREFIX: &str = "lr-sender";

/// Text after the head of each seeded message, cut to `--text-bytes`.
const FILLER: &str = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do \
    eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, \
    quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. ";

/// One room's messages, events, mentions and newest seq. Counted from the
/// room's end, every `own-every`th message is the reader's own (the 10th,
/// 20th, … newest) and every `mention-every`th names it (the 2nd, 52nd, …
/// newest), so that a marker a few messages behind has a mention to count.
/// `?1` room id,
/// `?2` its last seq before, `?3` messages, `?4` own-every, `?5` the
/// reader's id, `?6` senders, `?7` mention-every, `?8` the mention, `?9`
/// text bytes, `?10` filler, `?11`/`?12` the room's part of the ids, `?13`
/// the ids' milliseconds, `?14` the first message's time (µs).
///
/// Ids are UUIDv7-shaped and rise with the room and the message, so every
/// index on them is appended to, never split in the middle.
///
/// Each message also gets its numbers (`ord` in the room, `sender_ord`
/// among its sender's), counted on from the room's (`?15`) and each
/// sender's newest before.
const INSERT_MESSAGES: &str = "
    INSERT INTO messages (id, room_id, seq, sender_id, text, sent_at, ord, sender_ord)
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?3),
    s(i, sender_id) AS (
        SELECT i, CASE WHEN ?4 > 0 AND (?3 - 1 - i) % ?4 = ?4 - 1 THEN ?5
                       ELSE (SELECT id FROM temp.bench_senders WHERE k = i % ?6) END
        FROM n),
    b(sender_id, newest) AS (
        SELECT sender_id, MAX(sender_ord) FROM messages WHERE room_id = ?1 GROUP BY sender_id)
    SELECT unhex(printf('%012x7%03x%04x%012x', ?13, ?11, ?12, s.i)),
        ?1, ?2 + 1 + s.i, s.sender_id,
        substr(CASE WHEN ?7 > 0 AND (?3 - 1 - s.i) % ?7 = 1 % ?7 THEN ?8 ELSE '' END
               || printf('seeded %d: ', s.i) || ?10, 1, ?9),
        ?14 + s.i * 1000,
        ?15 + 1 + s.i,
        COALESCE(b.newest, 0) + row_number() OVER (PARTITION BY s.sender_id ORDER BY s.i)
    FROM s LEFT JOIN b ON b.sender_id = s.sender_id
    ORDER BY s.i";
const INSERT_EVENTS: &str = "
    INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, emoji, at)
    SELECT room_id, seq, 1, id, sender_id, NULL, sent_at FROM messages
    WHERE room_id = ?1 AND seq > ?2 ORDER BY seq";
/// Numbered on from the reader's newest mention in the room, as the
/// server numbers them (its own are 0).
const INSERT_MENTIONS: &str = "
    INSERT INTO message_mentions (user_id, room_id, seq, message_id, sender_id, ord)
    SELECT ?3, room_id, seq, id, sender_id,
        CASE WHEN sender_id = ?3 THEN 0 ELSE
            (SELECT COALESCE(MAX(ord), 0) FROM message_mentions
             WHERE user_id = ?3 AND room_id = ?1)
            + row_number() OVER (PARTITION BY sender_id = ?3 ORDER BY seq) END
    FROM messages
    WHERE room_id = ?1 AND seq > ?2 AND substr(text, 1, length(?4)) = ?4 ORDER BY seq";
const SET_LAST_SEQ: &str = "
    UPDATE rooms SET last_seq = ?2 + ?3, msg_count = msg_count + ?3,
        last_message_id = (SELECT id FROM messages WHERE room_id = ?1 ORDER BY seq DESC LIMIT 1)
    WHERE id = ?1";

/// Sets one room's marker `?3` events before its end (never below 0).
const SET_MARKER: &str = "
    UPDATE room_members
    SET last_read_seq = max(0, (SELECT last_seq FROM rooms WHERE id = ?2) - ?3)
    WHERE user_id = ?1 AND room_id = ?2";
/// Then the numbers the server keeps with a marker (`read_ord`,
/// `read_sent`, `read_mentions`), as its `store_markers` writes them.
const SET_MARKER_NUMBERS: &str = "
    UPDATE room_members SET
        read_ord = COALESCE((SELECT x.ord FROM messages x
                             WHERE x.room_id = ?2 AND x.seq <= room_members.last_read_seq
                             ORDER BY x.seq DESC LIMIT 1), 0),
        read_sent = COALESCE((SELECT x.sender_ord FROM messages x
                              WHERE x.room_id = ?2 AND x.sender_id = ?1
                                  AND x.seq <= room_members.last_read_seq
                              ORDER BY x.seq DESC LIMIT 1), 0),
        read_mentions = COALESCE((SELECT mm.ord FROM message_mentions mm
                                  WHERE mm.user_id = ?1 AND mm.room_id = ?2
                                      AND mm.seq <= room_members.last_read_seq
                                      AND mm.ord > 0
                                  ORDER BY mm.seq DESC LIMIT 1), 0)
    WHERE user_id = ?1 AND room_id = ?2";

/// What the server should answer, counted plainly (without the cap and
/// its LIMIT subqueries, which the server uses): per room of the reader,
/// its newest seq, the marker, the unread messages and mentions, the
/// newest top-level message.
const RECOUNT: &str = "
    SELECT r.id, r.last_seq, me.last_read_seq,
        (SELECT COUNT(*) FROM messages x
         WHERE x.room_id = r.id AND x.seq > me.last_read_seq
             AND x.sender_id <> ?1 AND NOT x.deleted),
        (SELECT COUNT(*) FROM message_mentions mm JOIN messages x ON x.id = mm.message_id
         WHERE mm.user_id = ?1 AND mm.room_id = r.id AND mm.seq > me.last_read_seq
             AND x.sender_id <> ?1 AND NOT x.deleted),
        (SELECT x.id FROM messages x
         WHERE x.room_id = r.id AND x.thread_root_id IS NULL AND NOT x.deleted
         ORDER BY x.seq DESC LIMIT 1)
    FROM room_members me JOIN rooms r ON r.id = me.room_id
    WHERE me.user_id = ?1";

#[derive(Clone, Debug, Serialize)]
pub struct ListRoomsResult {
    /// The folder of the database (removed after the run unless kept).
    pub database_dir: PathBuf,
    pub kept: bool,
    /// Measured on a database seeded by an earlier run.
    pub reused: bool,
    pub seeded: Seeded,
    /// The database's files (main, WAL) after the last measurement.
    pub database_bytes: u64,
    pub states: Vec<StateResult>,
}

/// What was seeded; kept beside a kept database for `--reuse`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Seeded {
    pub rooms: usize,
    pub messages_per_room: u64,
    pub senders: u32,
    pub own_every: u64,
    pub mention_every: u64,
    pub text_bytes: u16,
    pub reader: String,
    pub reader_id: Uuid,
    pub room_ids: Vec<Uuid>,
    /// Registering the users, creating and joining the rooms, one message
    /// per sender and room, all through gRPC.
    pub setup_secs: f64,
    /// Writing the messages into the file.
    pub seed_secs: f64,
    pub seeded_messages: u64,
    pub seeded_per_sec: f64,
    /// The database's files right after seeding.
    pub seeded_bytes: u64,
}

/// One marker state: the server started on it, each page size measured.
#[derive(Clone, Debug, Serialize)]
pub struct StateResult {
    pub markers: MarkerState,
    /// Over all rooms, from the recount: unread messages and mentions,
    /// each room's cut at the cap.
    pub expected_unread: u64,
    pub expected_mentions: u64,
    /// Setting the markers and recounting.
    pub recount_secs: f64,
    /// From starting the server until it served.
    pub server_start_secs: f64,
    pub lists: Vec<ListResult>,
    /// Rooms of the first walk that differ from the recount (unread or
    /// mention count, marker, newest seq or message), or are missing.
    pub mismatches: usize,
    pub mismatch_examples: Vec<String>,
}

/// Walks over every page of the rooms with one page size.
#[derive(Clone, Debug, Serialize)]
pub struct ListResult {
    /// As asked: 0 is the server's default (100).
    pub page_size: u32,
    pub walks: u64,
    pub calls: u64,
    /// Rooms of the first timed walk.
    pub rooms_listed: usize,
    /// Each `ListRooms` call.
    pub call_latency: Percentiles,
    /// Each walk over every page.
    pub walk_latency: Percentiles,
    pub secs: f64,
    /// Stopped by `--max-secs` before `--walks`.
    pub cut_short: bool,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Cores' worth of CPU used by processes outside the run meanwhile.
    pub other_cpu_cores: f64,
}

/// What one room should show the reader.
#[derive(Clone, Debug)]
struct Expected {
    last_seq: u64,
    marker: u64,
    unread: u64,
    mentions: u64,
    last_message: Option<Uuid>,
}

type Chat = ChatServiceClient<InterceptedService<Channel, BearerToken>>;

/// Runs the scenario: seeds (or reuses) a database under `data_dir`, then
/// measures each marker state on it.
///
/// # Errors
/// When the setup, the seeding or a server start fails; failed calls while
/// measuring are counted in the result instead.
pub async fn run(
    opts: &ListRoomsOpts,
    target: &TargetOpts,
    data_dir: &Path,
    progress: &Progress,
) -> anyhow::Result<ListRoomsResult> {
    if target.server.is_some() {
        bail!("list-rooms writes into the server's database: it starts its own server, without --server");
    }
    let (dir, seeded, temporary) = match &opts.reuse {
        Some(dir) => (dir.clone(), read_seeded(dir)?, None),
        None => {
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let temporary = tempfile::Builder::new()
                .prefix("list-rooms.")
                .tempdir_in(data_dir)
                .with_context(|| format!("creating a folder in {}", data_dir.display()))?;
            let dir = temporary.path().to_owned();
            progress.note(format!("list-rooms: database in {}", dir.display()));
            let seeded = prepare(opts, target, &dir, progress).await?;
            write_seeded(&dir, &seeded)?;
            if opts.keep {
                // Kept from here on, even if a measurement fails.
                (temporary.keep(), seeded, None)
            } else {
                (dir, seeded, Some(temporary))
            }
        }
    };
    let mut states = Vec::new();
    for &state in &opts.markers {
        states.push(measure_state(opts, target, &dir, &seeded, state, progress).await?);
    }
    let database_bytes = database_bytes(&dir);
    let kept = temporary.is_none();
    drop(temporary);
    if kept {
        progress.note(format!(
            "list-rooms: database kept in {} (--reuse it)",
            dir.display()
        ));
    }
    Ok(ListRoomsResult {
        database_dir: dir,
        kept,
        reused: opts.reuse.is_some(),
        seeded,
        database_bytes,
        states,
    })
}

/// Steps 1 and 2: the users and rooms through gRPC, then the messages
/// into the file.
async fn prepare(
    opts: &ListRoomsOpts,
    target: &TargetOpts,
    dir: &Path,
    progress: &Progress,
) -> anyhow::Result<Seeded> {
    let began = Instant::now();
    let server = Server::start_in(target, Synchronous::Full, dir).await?;
    let setup = set_up(server.addr, opts, progress).await;
    server.stop().await;
    let (reader, senders, room_ids) = setup?;
    let setup_secs = began.elapsed().as_secs_f64();
    progress.note(format!(
        "list-rooms: {} rooms, {} senders set up in {setup_secs:.1} s; seeding {} messages each",
        opts.rooms, opts.senders, opts.messages
    ));
    let reader_id = parse_id(&reader.user_id)?;
    let plan = SeedPlan {
        reader_id,
        reader_name: reader.username.clone(),
        sender_ids: senders
            .iter()
            .map(|s| parse_id(&s.user_id))
            .collect::<anyhow::Result<_>>()?,
        room_ids: room_ids.clone(),
        messages: opts.messages,
        own_every: opts.own_every,
        mention_every: opts.mention_every,
        text_bytes: opts.text_bytes,
    };
    let bar = progress.counter(opts.rooms as u64, "seeding rooms");
    let db = dir.join(DATABASE);
    let began = Instant::now();
    let seeded_messages = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || seed(&db, &plan, &bar))
            .await
            .context("the seeding task panicked")??
    };
    bar.finish_and_clear();
    let seed_secs = began.elapsed().as_secs_f64();
    let seeded_bytes = database_bytes(dir);
    progress.note(format!(
        "list-rooms: {seeded_messages} messages seeded in {seed_secs:.1} s ({:.0}/s), database {:.2} GiB",
        seeded_messages as f64 / seed_secs.max(1e-9),
        seeded_bytes as f64 / f64::from(1u32 << 30)
    ));
    Ok(Seeded {
        rooms: opts.rooms,
        messages_per_room: opts.messages,
        senders: opts.senders,
        own_every: opts.own_every,
        mention_every: opts.mention_every,
        text_bytes: opts.text_bytes,
        reader: reader.username,
        reader_id,
        room_ids,
        setup_secs,
        seed_secs,
        seeded_messages,
        seeded_per_sec: seeded_messages as f64 / seed_secs.max(1e-9),
        seeded_bytes,
    })
}

/// The reader, the senders and the rooms' ids: the reader creates every
/// room, each sender joins it and sends one message there naming the
/// reader.
async fn set_up(
    addr: SocketAddr,
    opts: &ListRoomsOpts,
    progress: &Progress,
) -> anyhow::Result<(Account, Vec<Account>, Vec<Uuid>)> {
    let reader = accounts::create(addr, READER, 1, progress)
        .await?
        .pop()
        .context("no reader account")?;
    // `accounts::create` names its users PREFIX-INDEX.
    let senders = accounts::create(addr, SENDER_PREFIX, opts.senders as usize, progress).await?;
    let channel = net::connect(addr, None).await?;
    let reader_chat = ChatServiceClient::with_interceptor(channel.clone(), reader.token.clone());
    let bar = progress.counter(opts.rooms as u64, "creating rooms");
    let room_ids = tasks::map_bounded(
        (0..opts.rooms).collect::<Vec<_>>(),
        SETUP_CONCURRENCY,
        |index| {
            let (mut chat, bar) = (reader_chat.clone(), bar.clone());
            async move {
                let name = format!("lr-room-{index}");
                let room = chat
                    .create_room(pb::CreateRoomRequest {
                        name: name.clone(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("creating room {name}"))?
                    .into_inner()
                    .room
                    .context("CreateRoom answered no room")?;
                bar.inc(1);
                parse_id(&room.id)
            }
        },
    )
    .await?;
    bar.finish_and_clear();
    let mention = format!("@{} ", reader.username);
    let work: Vec<(usize, usize)> = (0..opts.rooms)
        .flat_map(|room| (0..senders.len()).map(move |sender| (room, sender)))
        .collect();
    let bar = progress.counter(work.len() as u64, "joining and sending");
    let chats: Vec<Chat> = senders
        .iter()
        .map(|s| ChatServiceClient::with_interceptor(channel.clone(), s.token.clone()))
        .collect();
    tasks::map_bounded(work, SETUP_CONCURRENCY, |(room, sender)| {
        let mut chat = chats[sender].clone();
        let room_id = room_ids[room].to_string();
        let text = format!("{mention}hello from {SENDER_PREFIX}-{sender}");
        let bar = bar.clone();
        async move {
            chat.join_room(pb::JoinRoomRequest {
                room_id: room_id.clone(),
            })
            .await
            .with_context(|| format!("{SENDER_PREFIX}-{sender} joining room {room}"))?;
            chat.send_message(pb::SendMessageRequest {
                room_id,
                text,
                ..Default::default()
            })
            .await
            .with_context(|| format!("{SENDER_PREFIX}-{sender} sending in room {room}"))?;
            bar.inc(1);
            Ok(())
        }
    })
    .await?;
    bar.finish_and_clear();
    Ok((reader, senders, room_ids))
}

fn parse_id(id: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(id).with_context(|| format!("the server's id {id:?}"))
}

struct SeedPlan {
    reader_id: Uuid,
    reader_name: String,
    sender_ids: Vec<Uuid>,
    room_ids: Vec<Uuid>,
    messages: u64,
    own_every: u64,
    mention_every: u64,
    text_bytes: u16,
}

/// Step 2, on a stopped server's file: each room in one transaction.
/// Returns the messages written.
fn seed(db: &Path, plan: &SeedPlan, bar: &ProgressBar) -> anyhow::Result<u64> {
    let conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    // A throwaway database: no journal, no syncs. A crash here loses the
    // run, never anything else.
    let mode: String = conn.query_row("PRAGMA journal_mode = OFF", [], |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("off"),
        "journal_mode stayed {mode}"
    );
    conn.execute_batch(&format!(
        "PRAGMA synchronous = OFF; PRAGMA cache_size = -{SEED_CACHE_KIB};
         PRAGMA temp_store = MEMORY;
         CREATE TEMP TABLE bench_senders (k INTEGER PRIMARY KEY, id BLOB NOT NULL);"
    ))?;
    for (k, id) in plan.sender_ids.iter().enumerate() {
        conn.execute(
            "INSERT INTO temp.bench_senders (k, id) VALUES (?1, ?2)",
            params![k as i64, id],
        )?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let id_millis = i64::try_from(now.as_millis()).context("the clock")?;
    let first_micros = i64::try_from(now.as_micros()).context("the clock")?;
    let filler = FILLER.repeat(1 + usize::from(plan.text_bytes) / FILLER.len());
    let mention = format!("@{} ", plan.reader_name);
    let messages = i64::try_from(plan.messages).context("--messages")?;
    let own_every = i64::try_from(plan.own_every).context("--own-every")?;
    let mention_every = i64::try_from(plan.mention_every).context("--mention-every")?;
    let senders = plan.sender_ids.len() as i64;
    let mut written = 0;
    for (index, room) in plan.room_ids.iter().enumerate() {
        let (base, base_count): (i64, i64) = conn
            .query_row(
                "SELECT last_seq, msg_count FROM rooms WHERE id = ?1",
                [room],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .with_context(|| format!("room {room}"))?;
        let index = index as i64;
        conn.execute_batch("BEGIN")?;
        let inserted = conn
            .execute(
                INSERT_MESSAGES,
                params![
                    room,
                    base,
                    messages,
                    own_every,
                    plan.reader_id,
                    senders,
                    mention_every,
                    mention,
                    i64::from(plan.text_bytes),
                    filler,
                    (index >> 14) & 0xfff,
                    0x8000 | (index & 0x3fff),
                    id_millis,
                    first_micros,
                    base_count,
                ],
            )
            .with_context(|| format!("seeding the messages of room {room}"))?;
        conn.execute(INSERT_EVENTS, params![room, base])
            .context("seeding the room's events")?;
        if mention_every > 0 {
            conn.execute(
                INSERT_MENTIONS,
                params![room, base, plan.reader_id, mention],
            )
            .context("seeding the room's mentions")?;
        }
        conn.execute(SET_LAST_SEQ, params![room, base, messages])?;
        conn.execute_batch("COMMIT")?;
        written += inserted as u64;
        bar.inc(1);
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "journal_mode stayed {mode}"
    );
    Ok(written)
}

/// Step 3 for one marker state.
async fn measure_state(
    opts: &ListRoomsOpts,
    target: &TargetOpts,
    dir: &Path,
    seeded: &Seeded,
    state: MarkerState,
    progress: &Progress,
) -> anyhow::Result<StateResult> {
    let began = Instant::now();
    let expected = {
        let (db, seeded, opts) = (dir.join(DATABASE), seeded.clone(), opts.clone());
        tokio::task::spawn_blocking(move || set_markers(&db, &seeded, &opts, state))
            .await
            .context("the marker task panicked")??
    };
    let recount_secs = began.elapsed().as_secs_f64();
    let expected_unread = expected.values().map(|e| e.unread.min(COUNT_CAP)).sum();
    let expected_mentions = expected.values().map(|e| e.mentions.min(COUNT_CAP)).sum();
    progress.note(format!(
        "list-rooms/{}: markers set and recounted in {recount_secs:.1} s: {expected_unread} unread, {expected_mentions} mentions over {} rooms",
        state.label(),
        expected.len()
    ));
    let began = Instant::now();
    let server = Server::start_in(target, Synchronous::Full, dir).await?;
    let server_start_secs = began.elapsed().as_secs_f64();
    let measured = measure_lists(server.addr, opts, seeded, state, progress).await;
    let tail = server.log_tail();
    server.stop().await;
    let (lists, first_walk) =
        measured.with_context(|| format!("the server's log ends with:\n{tail}"))?;
    let (mismatches, mismatch_examples) = compare(&first_walk, &expected);
    if mismatches > 0 {
        progress.note(format!(
            "list-rooms/{}: {mismatches} rooms differ from the recount, e.g. {}",
            state.label(),
            mismatch_examples.first().map_or("-", String::as_str)
        ));
    }
    Ok(StateResult {
        markers: state,
        expected_unread,
        expected_mentions,
        recount_secs,
        server_start_secs,
        lists,
        mismatches,
        mismatch_examples,
    })
}

/// Sets the reader's markers for `state` and recounts what each room
/// should show (on a stopped server's file).
fn set_markers(
    db: &Path,
    seeded: &Seeded,
    opts: &ListRoomsOpts,
    state: MarkerState,
) -> anyhow::Result<HashMap<Uuid, Expected>> {
    let mut conn = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{SEED_CACHE_KIB}"))?;
    let tx = conn.transaction()?;
    {
        let mut update = tx.prepare(SET_MARKER)?;
        let mut numbers = tx.prepare(SET_MARKER_NUMBERS)?;
        for (index, room) in seeded.room_ids.iter().enumerate() {
            let behind = match state {
                MarkerState::Behind => opts.behind,
                MarkerState::Some => (7 * index as u64) % (opts.some_unread + 1),
                MarkerState::Read => 0,
            };
            let behind = i64::try_from(behind).context("--behind")?;
            update.execute(params![seeded.reader_id, room, behind])?;
            numbers.execute(params![seeded.reader_id, room])?;
        }
    }
    tx.commit()?;
    let mut recount = conn.prepare(RECOUNT)?;
    let rows = recount.query_map([seeded.reader_id], |row| {
        let seq = |i: usize| row.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
        Ok((
            row.get::<_, Uuid>(0)?,
            Expected {
                last_seq: seq(1)?,
                marker: seq(2)?,
                unread: seq(3)?,
                mentions: seq(4)?,
                last_message: row.get(5)?,
            },
        ))
    })?;
    let expected = rows.collect::<Result<HashMap<_, _>, _>>()?;
    Ok(expected)
}

/// Every page size: untimed walks, then timed ones. Returns the results
/// and the first timed walk's rooms.
async fn measure_lists(
    addr: SocketAddr,
    opts: &ListRoomsOpts,
    seeded: &Seeded,
    state: MarkerState,
    progress: &Progress,
) -> anyhow::Result<(Vec<ListResult>, Vec<pb::Room>)> {
    let channel = net::connect(addr, None).await?;
    let login = accounts::login(channel.clone(), &seeded.reader).await?;
    let token = BearerToken::new(&login.access_token).context("the access token")?;
    let mut chat = ChatServiceClient::with_interceptor(channel, token);
    let mut lists = Vec::new();
    let mut first_walk = None;
    for &page_size in &opts.page_sizes {
        let mut ignored = recorder::new_histogram();
        for _ in 0..opts.warm_up_walks {
            walk(&mut chat, page_size, &mut ignored).await?;
        }
        cpu::wait_until_quiet(progress).await;
        let (list, rooms) = timed_walks(&mut chat, page_size, opts, progress).await;
        progress.note(format!(
            "list-rooms/{} page size {}: {} walks, {} calls; call p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; walk p50 {:.2} ms, p99 {:.2} ms{}",
            state.label(),
            page_label(page_size),
            list.walks,
            list.calls,
            list.call_latency.p50_ms,
            list.call_latency.p99_ms,
            list.call_latency.max_ms,
            list.walk_latency.p50_ms,
            list.walk_latency.p99_ms,
            list.first_error
                .as_ref()
                .map_or_else(String::new, |e| format!("; {} errors, first: {e}", list.errors))
        ));
        if first_walk.is_none() {
            first_walk = rooms;
        }
        lists.push(list);
    }
    Ok((lists, first_walk.unwrap_or_default()))
}

/// "1000", or "default (100)" for 0.
pub fn page_label(page_size: u32) -> String {
    if page_size == 0 {
        "default (100)".into()
    } else {
        page_size.to_string()
    }
}

/// Timed walks until `--walks` or `--max-secs`.
async fn timed_walks(
    chat: &mut Chat,
    page_size: u32,
    opts: &ListRoomsOpts,
    progress: &Progress,
) -> (ListResult, Option<Vec<pb::Room>>) {
    let bar = progress.counter(
        u64::from(opts.walks),
        format!("ListRooms page {}", page_label(page_size)),
    );
    let cpu_before = cpu::Snapshot::take();
    let mut calls = recorder::new_histogram();
    let mut walks = recorder::new_histogram();
    let (mut errors, mut first_error, mut first_rooms) = (0, None, None);
    let limit = Duration::from_secs_f64(opts.max_secs.max(0.0));
    let started = Instant::now();
    let mut done = 0;
    while done < opts.walks && started.elapsed() < limit {
        match walk(chat, page_size, &mut calls).await {
            Ok((rooms, took)) => {
                recorder::record_latency(&mut walks, took);
                first_rooms.get_or_insert(rooms);
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
        done += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let result = ListResult {
        page_size,
        walks: walks.len(),
        calls: calls.len(),
        rooms_listed: first_rooms.as_ref().map_or(0, Vec::len),
        call_latency: Percentiles::of(&calls),
        walk_latency: Percentiles::of(&walks),
        secs: started.elapsed().as_secs_f64(),
        cut_short: done < opts.walks,
        errors,
        first_error,
        other_cpu_cores: cpu::Snapshot::take().other_cores_since(&cpu_before),
    };
    (result, first_rooms)
}

/// Lists every joined room, page after page; each call's latency goes to
/// `calls`. Returns the rooms and the whole walk's time.
async fn walk(
    chat: &mut Chat,
    page_size: u32,
    calls: &mut Histogram<u64>,
) -> anyhow::Result<(Vec<pb::Room>, Duration)> {
    let began = Instant::now();
    let mut rooms = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let call = Instant::now();
        let page = chat
            .list_rooms(pb::ListRoomsRequest {
                page_size,
                page_token,
                joined_only: true,
            })
            .await
            .context("ListRooms")?
            .into_inner();
        recorder::record_latency(calls, call.elapsed());
        rooms.extend(page.rooms);
        if page.next_page_token.is_empty() {
            return Ok((rooms, began.elapsed()));
        }
        page_token = page.next_page_token;
    }
    bail!("ListRooms still had pages after {MAX_PAGES}")
}

/// Rooms of a walk that differ from the recount (or are missing from it),
/// and a few of them described.
fn compare(rooms: &[pb::Room], expected: &HashMap<Uuid, Expected>) -> (usize, Vec<String>) {
    let mut examples = Vec::new();
    let mut mismatches = 0;
    let mut seen = 0;
    for room in rooms {
        let Some(want) = Uuid::parse_str(&room.id)
            .ok()
            .and_then(|id| expected.get(&id))
        else {
            mismatches += 1;
            if examples.len() < MISMATCHES_SHOWN {
                examples.push(format!("room {} is not one of the reader's", room.id));
            }
            continue;
        };
        seen += 1;
        let got_last = room
            .last_message
            .as_ref()
            .and_then(|m| Uuid::parse_str(&m.id).ok());
        let mut wrong = Vec::new();
        let mut check = |name: &str, got: String, want: String| {
            if got != want {
                wrong.push(format!("{name} {got} (expected {want})"));
            }
        };
        check(
            "unread_count",
            room.unread_count.to_string(),
            want.unread.min(COUNT_CAP).to_string(),
        );
        check(
            "mention_count",
            room.mention_count.to_string(),
            want.mentions.min(COUNT_CAP).to_string(),
        );
        check(
            "last_read_seq",
            room.last_read_seq.to_string(),
            want.marker.to_string(),
        );
        check(
            "last_seq",
            room.last_seq.to_string(),
            want.last_seq.to_string(),
        );
        check(
            "last_message",
            format!("{got_last:?}"),
            format!("{:?}", want.last_message),
        );
        if !wrong.is_empty() {
            mismatches += 1;
            if examples.len() < MISMATCHES_SHOWN {
                examples.push(format!("room {}: {}", room.id, wrong.join(", ")));
            }
        }
    }
    let missing = expected.len().saturating_sub(seen);
    if missing > 0 {
        mismatches += missing;
        examples.push(format!("{missing} of the reader's rooms not listed"));
    }
    (mismatches, examples)
}

/// The bytes of the database's files in `dir` (main, WAL, shared memory).
fn database_bytes(dir: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(dir.join(format!("{DATABASE}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

fn write_seeded(dir: &Path, seeded: &Seeded) -> anyhow::Result<()> {
    let path = dir.join(SEEDED_FILE);
    let json = serde_json::to_string_pretty(seeded).context("encoding the seeding facts")?;
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
}

fn read_seeded(dir: &Path) -> anyhow::Result<Seeded> {
    let path = dir.join(SEEDED_FILE);
    let json = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a folder kept by list-rooms --keep?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&json).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: Uuid, unread: u32, mentions: u32, marker: u64) -> pb::Room {
        pb::Room {
            id: id.to_string(),
            unread_count: unread,
            mention_count: mentions,
            last_read_seq: marker,
            last_seq: 100,
            ..Default::default()
        }
    }

    fn expected(unread: u64, mentions: u64, marker: u64) -> Expected {
        Expected {
            last_seq: 100,
            marker,
            unread,
            mentions,
            last_message: None,
        }
    }

    #[test]
    fn counts_over_the_cap_are_expected_at_the_cap() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let want = HashMap::from([(a, expected(20_000, 400, 0)), (b, expected(3, 0, 97))]);
        let rooms = [room(a, 9999, 400, 0), room(b, 3, 0, 97)];
        assert_eq!(compare(&rooms, &want), (0, Vec::new()));
    }

    #[test]
    fn a_wrong_count_and_a_missing_room_are_mismatches() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let want = HashMap::from([(a, expected(5, 1, 95)), (b, expected(0, 0, 100))]);
        let (mismatches, examples) = compare(&[room(a, 0, 1, 95)], &want);
        assert_eq!(mismatches, 2);
        assert!(
            examples[0].contains("unread_count 0 (expected 5)"),
            "{examples:?}"
        );
        assert!(examples[1].contains("1 of the reader's rooms not listed"));
    }

    #[test]
    fn seeding_writes_messages_events_mentions_and_the_newest_seq() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = dir.path().join(DATABASE);
        let conn = Connection::open(&db).expect("a database");
        // The columns the seeding writes, as the migrations make them.
        conn.execute_batch(
            "CREATE TABLE rooms (id BLOB PRIMARY KEY, last_seq INTEGER NOT NULL DEFAULT 0,
                 msg_count INTEGER NOT NULL DEFAULT 0, last_message_id BLOB);
             CREATE TABLE room_members (room_id BLOB, user_id BLOB,
                 last_read_seq INTEGER NOT NULL DEFAULT 0,
                 read_ord INTEGER NOT NULL DEFAULT 0, read_sent INTEGER NOT NULL DEFAULT 0,
                 read_mentions INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (room_id, user_id));
             CREATE TABLE messages (id BLOB PRIMARY KEY NOT NULL, room_id BLOB NOT NULL,
                 seq INTEGER NOT NULL, sender_id BLOB NOT NULL, text TEXT NOT NULL,
                 sent_at INTEGER NOT NULL, deleted BOOLEAN NOT NULL DEFAULT FALSE,
                 thread_root_id BLOB, ord INTEGER NOT NULL DEFAULT 0,
                 sender_ord INTEGER NOT NULL DEFAULT 0, UNIQUE (room_id, seq));
             CREATE TABLE room_events (room_id BLOB NOT NULL, seq INTEGER NOT NULL,
                 kind INTEGER NOT NULL, message_id BLOB, actor_id BLOB, emoji TEXT,
                 at INTEGER NOT NULL, PRIMARY KEY (room_id, seq)) WITHOUT ROWID;
             CREATE TABLE message_mentions (user_id BLOB NOT NULL, room_id BLOB NOT NULL,
                 seq INTEGER NOT NULL, message_id BLOB NOT NULL, sender_id BLOB, ord INTEGER,
                 removed BOOLEAN NOT NULL DEFAULT FALSE,
                 PRIMARY KEY (user_id, room_id, seq)) WITHOUT ROWID;",
        )
        .expect("the schema");
        let (reader, sender) = (Uuid::now_v7(), Uuid::now_v7());
        let rooms = vec![Uuid::now_v7(), Uuid::now_v7()];
        for (i, room) in rooms.iter().enumerate() {
            conn.execute(
                "INSERT INTO rooms (id, last_seq) VALUES (?1, ?2)",
                params![room, i as i64 * 3],
            )
            .expect("a room");
            conn.execute(
                "INSERT INTO room_members (room_id, user_id) VALUES (?1, ?2)",
                params![room, reader],
            )
            .expect("a member");
        }
        drop(conn);
        let plan = SeedPlan {
            reader_id: reader,
            reader_name: "lr-reader".into(),
            sender_ids: vec![sender],
            room_ids: rooms.clone(),
            messages: 100,
            own_every: 10,
            mention_every: 25,
            text_bytes: 40,
        };
        let written = seed(&db, &plan, &ProgressBar::hidden()).expect("seeding");
        assert_eq!(written, 200);

        let conn = Connection::open(&db).expect("the database");
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        assert_eq!(count("SELECT COUNT(*) FROM messages"), 200);
        assert_eq!(count("SELECT COUNT(DISTINCT id) FROM messages"), 200);
        assert_eq!(
            count("SELECT COUNT(*) FROM messages WHERE length(id) = 16"),
            200
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM room_events WHERE kind = 1"),
            200
        );
        assert_eq!(count("SELECT COUNT(*) FROM message_mentions"), 8);
        assert_eq!(
            count("SELECT COUNT(*) FROM messages WHERE text LIKE '@lr-reader %'"),
            8
        );
        assert_eq!(count("SELECT MIN(length(text)) FROM messages"), 40);
        assert_eq!(count("SELECT SUM(last_seq) FROM rooms"), 100 + 103);
        assert_eq!(
            count("SELECT MIN(seq) FROM messages WHERE room_id = (SELECT id FROM rooms WHERE last_seq = 103)"),
            4
        );
        let own: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM messages WHERE sender_id = ?1",
                [reader],
                |r| r.get(0),
            )
            .expect("own messages");
        assert_eq!(own, 20);
        // Numbered as the server numbers them: in the room, per sender,
        // and the reader's mentions by others.
        assert_eq!(count("SELECT SUM(msg_count) FROM rooms"), 200);
        assert_eq!(
            count("SELECT COUNT(*) FROM messages WHERE ord <> seq - (SELECT last_seq FROM rooms r WHERE r.id = room_id) + 100"),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM messages m WHERE sender_ord <> (SELECT COUNT(*) FROM messages x WHERE x.room_id = m.room_id AND x.sender_id = m.sender_id AND x.seq <= m.seq)"),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM message_mentions mm WHERE ord <> (SELECT COUNT(*) FROM message_mentions x WHERE x.user_id = mm.user_id AND x.room_id = mm.room_id AND x.seq <= mm.seq)"),
            0
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM rooms r WHERE last_message_id = (SELECT id FROM messages WHERE room_id = r.id ORDER BY seq DESC LIMIT 1)"),
            2
        );
        // Ids rise with the room and the seq: appended to every index.
        let ordered = count(
            "SELECT COUNT(*) FROM (SELECT id, LAG(id) OVER (ORDER BY room_id = (SELECT id FROM rooms WHERE last_seq = 103), seq) AS before FROM messages) WHERE before IS NOT NULL AND before >= id",
        );
        assert_eq!(ordered, 0);
    }
}

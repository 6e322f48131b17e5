//! The soak: simulated users come and go against one server for a long
//! time, then everyone leaves. The server's side (memory, descriptors,
//! open streams before and after) is `scripts/soak`'s part: it starts the
//! server, runs this scenario against it and samples the process meanwhile
//! (`docs/soak.md`).
//!
//! Users are registered once at the start. Then each, in a loop (`user`):
//! connects (its own HTTP/2 connection), logs in (a new session), joins its
//! shared rooms, opens a `ChatStream` or a `Subscribe` stream that resumes
//! from the cursors of its previous visits, sends now and then (sometimes
//! in a direct room, or in a lobby it joins and leaves within the visit),
//! receives, then logs out or just drops the connection, and pauses.
//!
//! Everything a user receives is checked against its per-room cursors
//! (`reader`): a message that skips a seq is a gap, one at or below the
//! cursor a duplicate. What every user did is counted in a `Tally`; the
//! report fails the run on any gap or duplicate (a smoke run on any error
//! too).

mod dice;
mod reader;
mod tally;
mod user;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chat_client::{pb, Client};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use self::dice::Dice;
pub use self::tally::SoakResult;
use self::tally::Tally;
use self::user::User;
use crate::accounts;
use crate::cli::SoakOpts;
use crate::net;
use crate::progress::Progress;

/// How long the end of the run waits for users to finish their visits
/// (each may wait for acknowledgements and for its stream to end).
const LEAVE_WAIT: Duration = Duration::from_secs(30);
/// How often the progress bar is redrawn during the churn.
const BAR_TICK: Duration = Duration::from_millis(250);

/// What every user shares.
struct World {
    server: SocketAddr,
    opts: SoakOpts,
    /// Unique to the run: part of every `client_msg_id`, so that a rerun
    /// with the same users never looks like a retried send.
    run_id: String,
    usernames: Vec<String>,
    /// The shared group rooms' ids.
    rooms: Vec<String>,
    lobby: String,
    tally: Tally,
    /// Users connected right now.
    online: AtomicU64,
    /// When the churn ends: every user leaves after what it is doing.
    stop_at: Instant,
}

impl World {
    fn stopping(&self) -> bool {
        Instant::now() >= self.stop_at
    }

    async fn stopped(&self) {
        sleep_until(self.stop_at).await;
    }

    /// The figures of a progress line.
    fn status(&self) -> String {
        let tally = &self.tally;
        format!(
            "online={:>3} visits={} sent={} received={} errors={}",
            self.online.load(Ordering::Relaxed),
            Tally::get(&tally.visits),
            Tally::get(&tally.sent),
            Tally::get(&tally.received),
            tally.error_count(),
        )
    }
}

/// Sets up the users and rooms on `server`, runs the churn, and waits for
/// every user to leave.
///
/// # Errors
/// When the options do not make sense, or setting up fails; what goes
/// wrong during the churn is counted in the result instead.
pub async fn run(
    server: SocketAddr,
    opts: &SoakOpts,
    run_id: &str,
    progress: &Progress,
) -> anyhow::Result<SoakResult> {
    check(opts)?;
    let setup = Instant::now();
    let (usernames, rooms, lobby) = set_up(server, opts, progress).await?;
    let setup_secs = setup.elapsed().as_secs_f64();
    progress.note(format!(
        "soak: setup: {} {} users, {} shared rooms, in {setup_secs:.1} s",
        if opts.skip_register {
            "reusing"
        } else {
            "registered"
        },
        opts.users,
        rooms.len(),
    ));
    // scripts/soak takes its starting sample after this line.
    progress.note(format!(
        "soak: setup done; churn starts in {:?}",
        opts.start_delay
    ));
    tokio::time::sleep(opts.start_delay).await;
    progress.note(format!("soak: churn started: {:?}", opts.duration));
    let started = Instant::now();
    let world = Arc::new(World {
        server,
        opts: opts.clone(),
        run_id: run_id.to_owned(),
        usernames,
        rooms,
        lobby,
        tally: Tally::default(),
        online: AtomicU64::new(0),
        stop_at: started + opts.duration,
    });
    let mut users = spawn_users(&world);
    follow(&world, started, progress).await;
    progress.note(format!(
        "soak: churn over after {:.0?}: every user leaves",
        started.elapsed()
    ));
    let still_busy = wait_for_leaving(&mut users, progress).await;
    progress.note(format!(
        "soak: all users left ({} connected)",
        world.online.load(Ordering::Relaxed)
    ));
    Ok(world
        .tally
        .result(opts, setup_secs, started.elapsed(), still_busy))
}

/// The options a run cannot go without.
fn check(opts: &SoakOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.users >= 2, "--users must be at least 2");
    anyhow::ensure!(
        (1..=opts.rooms).contains(&opts.rooms_per_user),
        "--rooms-per-user must be from 1 to --rooms"
    );
    anyhow::ensure!(
        opts.online_min <= opts.online_max && opts.pause_min <= opts.pause_max,
        "each minimum must be at most its maximum"
    );
    anyhow::ensure!(!opts.progress.is_zero(), "--progress must be more than 0");
    for (flag, share) in [
        ("--direct-share", opts.direct_share),
        ("--lobby-share", opts.lobby_share),
        ("--chat-stream-share", opts.chat_stream_share),
        ("--logout-share", opts.logout_share),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&share), "{flag} must be from 0 to 1");
    }
    Ok(())
}

/// Registers the users (unless they exist already) and finds or creates
/// the rooms. Returns the usernames, the shared rooms' ids and the lobby's.
async fn set_up(
    server: SocketAddr,
    opts: &SoakOpts,
    progress: &Progress,
) -> anyhow::Result<(Vec<String>, Vec<String>, String)> {
    let usernames: Vec<String> = (0..opts.users)
        .map(|i| accounts::username(&opts.prefix, i))
        .collect();
    if !opts.skip_register {
        accounts::register_all(server, &usernames, opts.register_concurrency, progress).await?;
    }
    let (rooms, lobby) = create_rooms(server, opts, &usernames[0]).await?;
    Ok((usernames, rooms, lobby))
}

/// Finds or creates the shared rooms and the lobby, as the first user.
/// Returns the shared rooms' ids and the lobby's.
async fn create_rooms(
    server: SocketAddr,
    opts: &SoakOpts,
    owner: &str,
) -> anyhow::Result<(Vec<String>, String)> {
    let client = Client::from_channel(net::connect(server, None).await?);
    client
        .login(owner, accounts::PASSWORD)
        .await
        .with_context(|| format!("logging in {owner}"))?;
    let mut chat = client.chat().await?;
    let existing: HashMap<String, String> = chat
        .list_rooms(pb::ListRoomsRequest::default())
        .await
        .context("listing the rooms")?
        .into_inner()
        .rooms
        .into_iter()
        .map(|room| (room.name, room.id))
        .collect();
    let names = (0..opts.rooms)
        .map(|k| format!("{}-room-{k}", opts.prefix))
        .chain([format!("{}-lobby", opts.prefix)]);
    let mut ids = Vec::new();
    for name in names {
        let id = match existing.get(&name) {
            Some(id) => id.clone(),
            None => {
                chat.create_room(pb::CreateRoomRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating {name}"))?
                .into_inner()
                .room
                .context("the server sent no room")?
                .id
            }
        };
        ids.push(id);
    }
    user::log_out(&client)
        .await
        .with_context(|| format!("logging {owner} out"))?;
    let lobby = ids.pop().context("the lobby is last")?;
    Ok((ids, lobby))
}

/// Starts every user's life, each with its own seeded dice and shared rooms.
fn spawn_users(world: &Arc<World>) -> JoinSet<()> {
    let opts = &world.opts;
    let mut users = JoinSet::new();
    for index in 0..opts.users {
        let mut dice = Dice::seeded(opts.seed ^ (index as u64).wrapping_mul(0x9E37));
        let rooms = dice.sample(&world.rooms, opts.rooms_per_user);
        users.spawn(user::live(Arc::clone(world), User::new(index, rooms, dice)));
    }
    users
}

/// Shows the churn's progress until it is over: a bar on a terminal, and
/// a line every `--progress`.
async fn follow(world: &World, started: Instant, progress: &Progress) {
    let bar = progress.timer(world.opts.duration, "soak");
    let mut redraw = tokio::time::interval(BAR_TICK);
    let mut lines = tokio::time::interval_at(started + world.opts.progress, world.opts.progress);
    loop {
        tokio::select! {
            () = world.stopped() => break,
            _ = redraw.tick() => {
                bar.set_position(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                bar.set_message(world.status());
            }
            _ = lines.tick() => progress.note(format!(
                "soak: t={:>4}s {}",
                started.elapsed().as_secs(),
                world.status()
            )),
        }
    }
    bar.finish_and_clear();
}

/// Waits up to `LEAVE_WAIT` for every user to finish its visit, then stops
/// the rest. Returns how many had to be stopped.
async fn wait_for_leaving(users: &mut JoinSet<()>, progress: &Progress) -> usize {
    let leaving = async { while users.join_next().await.is_some() {} };
    if timeout(LEAVE_WAIT, leaving).await.is_ok() {
        return 0;
    }
    let still_busy = users.len();
    progress.note(format!(
        "soak: {still_busy} users still busy after {LEAVE_WAIT:?}; stopping them"
    ));
    users.shutdown().await;
    still_busy
}

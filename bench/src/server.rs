//! The server under test: either started here (the release `chat-server`
//! binary on a free port, a fresh SQLite database in a temporary folder,
//! limits raised for the load, metrics off) or one already running, given
//! by address. Memory figures read `VmRSS` from `/proc/PID/status`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::cli::{Synchronous, TargetOpts};
use crate::{cpu, net};

/// How long a started server may take to answer its health check
/// (creating and migrating the database).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two health checks while it starts.
const START_POLL: Duration = Duration::from_millis(100);
/// Lines of the server's log shown when it fails.
const LOG_TAIL_LINES: usize = 30;

/// Flags every started server gets, besides its address and database:
/// no per-user send, room or login limit (a login storm logs the same
/// accounts in at once, from one address), connection and stream limits
/// far above any scenario, queues deep enough that a benchmark step
/// overloading the server shows as latency before streams are cut, tokens
/// that outlive the longest run, and no metrics listener to compete for a
/// port.
const SERVER_FLAGS: &[&str] = &[
    "--metrics-listen=off",
    "--send-rate=0",
    "--room-create-rate=0",
    "--room-join-rate=0",
    "--max-rooms-per-user=1000000",
    "--max-sessions-per-user=1000000",
    "--login-free-attempts=1000000",
    "--max-login-failures-per-ip=0",
    "--max-connections-per-ip=0",
    "--max-connections=1000000",
    "--max-streams-per-session=1000000",
    "--max-streams-per-user=1000000",
    "--stream-queue=8192",
    "--access-token-ttl=6h",
    "--idle-timeout=1h",
];

pub struct Server {
    pub addr: SocketAddr,
    pid: Option<u32>,
    synchronous: Option<Synchronous>,
    process: Option<Spawned>,
}

struct Spawned {
    child: Child,
    log: PathBuf,
    /// The database and the log, removed when the server is dropped; none
    /// when the folder was given (`start_in`).
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with `synchronous`, or returns the one given with
    /// `--server` (whose setting is its own).
    ///
    /// # Errors
    /// When the binary cannot be started or never becomes healthy.
    pub async fn start(target: &TargetOpts, synchronous: Synchronous) -> anyhow::Result<Self> {
        if let Some(addr) = target.server {
            wait_until_serving(addr, None).await?;
            return Ok(Self {
                addr,
                pid: target.server_pid,
                synchronous: None,
                process: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("chat-bench.")
            .tempdir()
            .context("creating a folder for the server's database")?;
        let path = dir.path().to_owned();
        Self::spawned(target, synchronous, &path, Some(dir)).await
    }

    /// Starts a server on the database `dir/chat.db` (created if missing),
    /// which outlives it: for a scenario that writes into the database
    /// between two starts. Its log is `dir/server.log`.
    ///
    /// # Errors
    /// When a server is given with `--server` (its database is out of
    /// reach), or the binary cannot be started or never becomes healthy.
    pub async fn start_in(
        target: &TargetOpts,
        synchronous: Synchronous,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        if target.server.is_some() {
            bail!("this scenario writes into the server's database: it starts its own server, without --server");
        }
        Self::spawned(target, synchronous, dir, None).await
    }

    async fn spawned(
        target: &TargetOpts,
        synchronous: Synchronous,
        dir: &Path,
        owned: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let bin = match &target.server_bin {
            Some(bin) => bin.clone(),
            None => default_server_bin()?,
        };
        let addr = free_port()?;
        let log = dir.join("server.log");
        let child = spawn(&bin, addr, dir, &log, synchronous, &target.server_arg)?;
        if let Some(pid) = child.id() {
            cpu::register(pid);
        }
        let mut server = Self {
            addr,
            pid: child.id(),
            synchronous: Some(synchronous),
            process: Some(Spawned {
                child,
                log,
                _dir: owned,
            }),
        };
        let ready = {
            let process = server.process.as_mut().map(|p| &mut p.child);
            wait_until_serving(addr, process).await
        };
        if let Err(error) = ready {
            let tail = server.log_tail();
            server.stop().await;
            bail!("{error:#}\nthe server's log ends with:\n{tail}");
        }
        Ok(server)
    }

    /// The server's resident memory in KiB, when its pid is known.
    pub fn rss_kib(&self) -> Option<u64> {
        self.pid.and_then(rss_kib_of)
    }

    /// A reader of the server's resident memory, for a sampling task.
    pub fn rss_kib_reader(&self) -> impl Fn() -> Option<u64> + Send + 'static {
        let pid = self.pid;
        move || pid.and_then(rss_kib_of)
    }

    /// The server's open-file limit (soft), when its pid is known.
    pub fn open_file_limit(&self) -> Option<u64> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid?)).ok()?;
        open_files(&limits)
    }

    /// Its SQLite `synchronous` setting, when it was started here.
    pub fn synchronous(&self) -> Option<Synchronous> {
        self.synchronous
    }

    /// The last lines of a started server's log.
    pub fn log_tail(&self) -> String {
        let Some(process) = &self.process else {
            return String::new();
        };
        let text = std::fs::read_to_string(&process.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Whether a started server has exited (crashed) by now.
    pub fn has_exited(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(|p| !matches!(p.child.try_wait(), Ok(None)))
    }

    /// Stops a started server (SIGKILL: its database is thrown away, or,
    /// after `start_in`, left for SQLite to recover from its WAL on the next
    /// open) and removes its temporary folder; a given server is left alone.
    pub async fn stop(mut self) {
        if let Some(mut process) = self.process.take() {
            if let Some(pid) = self.pid {
                cpu::unregister(pid);
            }
            let _ = process.child.kill().await;
        }
    }
}

/// Which server binary a run starts: the server changes between runs, so
/// the results say which build they measured.
#[derive(Clone, Debug, Serialize)]
pub struct BinaryInfo {
    pub path: PathBuf,
    pub bytes: u64,
    /// Last modified, seconds since the Unix epoch.
    pub modified_unix: u64,
}

/// The binary `Server::start` would run, unless a server is given.
pub fn binary_info(target: &TargetOpts) -> Option<BinaryInfo> {
    if target.server.is_some() {
        return None;
    }
    let path = match &target.server_bin {
        Some(bin) => bin.clone(),
        None => default_server_bin().ok()?,
    };
    let metadata = std::fs::metadata(&path).ok()?;
    let modified_unix = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(BinaryInfo {
        path: std::fs::canonicalize(&path).unwrap_or(path),
        bytes: metadata.len(),
        modified_unix,
    })
}

/// `chat-server` beside this binary (both are built into target/release).
fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let bin = exe.with_file_name("chat-server");
    if !bin.exists() {
        bail!(
            "no server binary at {}: build it with `cargo build --release --bin chat-server`, or pass --server-bin or --server",
            bin.display()
        );
    }
    Ok(bin)
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("finding a free port")
}

fn spawn(
    bin: &Path,
    addr: SocketAddr,
    dir: &Path,
    log: &Path,
    synchronous: Synchronous,
    extra: &[String],
) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log).context("creating the server's log")?;
    let mut command = Command::new(bin);
    command
        .arg(format!("--listen={addr}"))
        .arg(format!("--database-url=sqlite://{}/chat.db", dir.display()))
        .arg(format!("--sqlite-synchronous={}", synchronous.flag()))
        .args(SERVER_FLAGS.iter().filter(|flag| !overridden(flag, extra)))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Whether `extra` sets the flag of `default` (`--name=value`) itself.
fn overridden(default: &str, extra: &[String]) -> bool {
    let name = default.split('=').next().unwrap_or(default);
    extra.iter().any(|arg| {
        arg == name
            || arg
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
    })
}

/// Polls the standard gRPC health check until the server says SERVING.
async fn wait_until_serving(addr: SocketAddr, mut child: Option<&mut Child>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_error = String::from("no answer");
    while started.elapsed() < START_TIMEOUT {
        if let Some(child) = child.as_deref_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("the server exited at start with {status}");
            }
        }
        match check_health(addr).await {
            Ok(true) => return Ok(()),
            Ok(false) => last_error = "NOT_SERVING".into(),
            Err(error) => last_error = format!("{error:#}"),
        }
        tokio::time::sleep(START_POLL).await;
    }
    bail!("the server at {addr} was not serving after {START_TIMEOUT:?}: {last_error}")
}

async fn check_health(addr: SocketAddr) -> anyhow::Result<bool> {
    let channel = net::connect(addr, None).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status == ServingStatus::Serving as i32)
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss(&status)
}

/// This process's own `VmRSS`, in KiB.
pub fn own_rss_kib() -> Option<u64> {
    vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The soft "Max open files" of a `/proc/PID/limits` text.
fn open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

fn vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        assert_eq!(
            vm_rss("Name:\tx\nVmRSS:\t  12345 kB\nThreads: 2\n"),
            Some(12345)
        );
        assert_eq!(vm_rss("Name:\tx\n"), None);
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
    }

    #[test]
    fn a_flag_given_with_server_arg_replaces_the_default() {
        let extra = vec![
            "--stream-queue=1024".to_owned(),
            "--send-rate".to_owned(),
            "5".to_owned(),
        ];
        assert!(overridden("--stream-queue=8192", &extra));
        assert!(overridden("--send-rate=0", &extra));
        assert!(!overridden("--max-connections=1000000", &extra));
        assert!(!overridden("--stream", &extra));
    }

    #[test]
    fn the_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(open_files(limits), Some(20000));
    }
}

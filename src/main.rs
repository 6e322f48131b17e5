//! `chat-server`: parse the configuration, start logging, serve; or run
//! one `admin` command on the database (`chat_server::admin`).

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;

use chat_server::cli::{Cli, Command};
use chat_server::state::AppState;
use chat_server::{admin, metrics, startup, telemetry};

/// jemalloc instead of glibc's malloc: 10 to 20% more durable sends and a
/// lower fan-out latency in alternated runs, for 1% more memory per idle
/// stream (BENCHMARKS.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once at start (`_RJEM_MALLOC_CONF` in the
/// environment overrides them). Without a background thread, jemalloc
/// returns freed pages only while the program goes on allocating: after a
/// burst (resumes catching up, a crowd leaving) an idle server kept its
/// peak size for good, 262 MiB of 270 in tests/api/pressure.rs. With one,
/// and pages unused for a second given back at once (muzzy pages would
/// count in RSS until the kernel wants them), it was back to 90 MiB within
/// five seconds.
#[cfg(not(target_env = "msvc"))]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 60] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Admin(command)) = command {
        // No logging: the tool prints its result, or one line of error.
        std::process::exit(admin::run(&config, command).await);
    }
    telemetry::init(config.log_format);
    if std::env::args().any(|arg| arg == "--jwt-secret" || arg.starts_with("--jwt-secret=")) {
        tracing::warn!(
            "--jwt-secret on the command line shows in `ps` to every user of this machine: \
             use CHAT_JWT_SECRET or --jwt-secret-file"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening for metrics on {address}"))?,
        ),
        None => None,
    };
    let state = AppState::build(config).await?;
    let stopped = CancellationToken::new();
    if let Some(listener) = metrics_listener {
        let stopped = stopped.clone();
        let serving = metrics::serve(listener, state.metrics.clone(), async move {
            stopped.cancelled().await;
        });
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(error = format!("{error:#}"), "metrics endpoint failed");
            }
        });
    }
    let served = startup::run(listener, state, startup::shutdown_signal()).await;
    stopped.cancel();
    served
}

//! `chat-server`: parse the configuration, start logging, serve.

use anyhow::Context as _;
use clap::Parser as _;

use chat_server::config::Config;
use chat_server::state::AppState;
use chat_server::{startup, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let state = AppState::build(config).await?;
    startup::run(listener, state, startup::shutdown_signal()).await
}

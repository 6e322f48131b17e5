//! Configuration, from flags or environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// A real-time chat server over gRPC (and grpc-web).
#[derive(Parser, Debug, Clone)]
#[command(name = "chat-server", version, about)]
pub struct Config {
    /// Address to listen on (gRPC, grpc-web and HTTP/1.1 on one port).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (created if missing).
    #[arg(
        long,
        env = "CHAT_DATABASE_URL",
        default_value = "sqlite://data/chat.db"
    )]
    pub database_url: String,

    /// Secret that signs access tokens. When absent, one is generated at
    /// first start and kept in the database, so tokens survive restarts.
    #[arg(long, env = "CHAT_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// The `iss` claim of access tokens.
    #[arg(long, env = "CHAT_JWT_ISSUER", default_value = "chat-server")]
    pub jwt_issuer: String,

    /// The `aud` claim of access tokens.
    #[arg(long, env = "CHAT_JWT_AUDIENCE", default_value = "chat")]
    pub jwt_audience: String,

    /// Lifetime of access tokens (e.g. `15m`, `90s`).
    #[arg(long, env = "CHAT_ACCESS_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Duration,

    /// Lifetime of refresh tokens, and so of an unused session.
    #[arg(long, env = "CHAT_REFRESH_TOKEN_TTL", default_value = "30days", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Duration,

    /// How often idle streams get a heartbeat, so proxies keep them open.
    #[arg(long, env = "CHAT_HEARTBEAT_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,

    /// Events a stream may have waiting before it is ended as too slow.
    #[arg(long, env = "CHAT_STREAM_QUEUE", default_value_t = 1024)]
    pub stream_queue: usize,

    /// SQLite's `synchronous` setting. `full` (the default) acknowledges a
    /// message only once it survives a power loss; `normal` survives a crash
    /// of the server but may lose the last acknowledged messages on power
    /// loss, for more throughput.
    #[arg(long, env = "CHAT_SQLITE_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub sqlite_synchronous: Synchronous,

    /// Log format.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["chat-server"])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret string: usable, but never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value.len() < 16 {
            return Err("the JWT secret must be at least 16 bytes".into());
        }
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

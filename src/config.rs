//! Configuration, from flags or environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// A real-time chat server over gRPC (and grpc-web).
#[derive(Parser, Debug, Clone)]
#[command(name = "chat-server", version, about)]
pub struct Config {
    /// Address to listen on (gRPC, grpc-web and HTTP/1.1 on one port).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` (created if missing) or
    /// `postgres://USER@HOST/DB` (an existing database; several nodes may share it).
    #[arg(
        long,
        env = "CHAT_DATABASE_URL",
        default_value = "sqlite://data/chat.db"
    )]
    pub database_url: String,

    /// PostgreSQL connections per node (ignored for SQLite). Every node of
    /// a cluster opens this many against one server's `max_connections`.
    #[arg(long, env = "CHAT_DATABASE_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..))]
    pub database_pool_size: u32,

    /// NATS server(s) linking the nodes of a cluster (`nats://HOST:PORT`,
    /// comma-separated for several). Without it, this node routes events
    /// to its own streams only.
    #[arg(long, env = "CHAT_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,

    /// The NATS subjects of this cluster start with this (several clusters
    /// may share one NATS server).
    #[arg(long, env = "CHAT_NATS_SUBJECT_PREFIX", default_value = "chat", value_parser = parse_subject_prefix)]
    pub nats_subject_prefix: String,

    /// File of cluster secrets, one per line (at least 16 bytes each),
    /// the same on every node: the first seals what this node says on the
    /// bus, every one opens what it hears, so a secret can be rotated
    /// without stopping the cluster. Required with `--nats-url` unless
    /// `CHAT_CLUSTER_SECRET` holds the secret.
    #[arg(
        long,
        env = "CHAT_CLUSTER_SECRET_FILE",
        conflicts_with = "cluster_secret"
    )]
    pub cluster_secret_file: Option<PathBuf>,

    /// The cluster secret itself (at least 16 bytes), from the environment
    /// (a flag would show in `ps`): prefer `--cluster-secret-file`.
    #[arg(long, env = "CHAT_CLUSTER_SECRET", hide = true, hide_env_values = true)]
    pub cluster_secret: Option<Hidden>,

    /// NATS user name; its password comes from `CHAT_NATS_PASSWORD`. (A
    /// `nats://user:password@host` URL works too.)
    #[arg(long, env = "CHAT_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,

    /// The password of `--nats-user`, from the environment.
    #[arg(
        long,
        env = "CHAT_NATS_PASSWORD",
        hide = true,
        hide_env_values = true,
        requires = "nats_user"
    )]
    pub nats_password: Option<Hidden>,

    /// File holding the NATS authentication token (or `CHAT_NATS_TOKEN`
    /// holding it).
    #[arg(long, env = "CHAT_NATS_TOKEN_FILE", conflicts_with = "nats_token")]
    pub nats_token_file: Option<PathBuf>,

    /// The NATS authentication token itself, from the environment.
    #[arg(long, env = "CHAT_NATS_TOKEN", hide = true, hide_env_values = true)]
    pub nats_token: Option<Hidden>,

    /// File holding the NKey seed (`SU…`) this node authenticates to NATS
    /// with.
    #[arg(long, env = "CHAT_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,

    /// NATS credentials file (a user JWT and its NKey seed, as `nsc`
    /// writes them).
    #[arg(long, env = "CHAT_NATS_CREDS_FILE")]
    pub nats_creds_file: Option<PathBuf>,

    /// PEM CA certificate(s) that NATS servers' certificates must chain
    /// to. Any `--nats-tls-*` flag makes TLS required.
    #[arg(long, env = "CHAT_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// PEM client certificate for NATS (TLS client authentication), with
    /// `--nats-tls-key`.
    #[arg(long, env = "CHAT_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// PEM private key of `--nats-tls-cert`.
    #[arg(long, env = "CHAT_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,

    /// Secret that signs access tokens, at least 16 bytes. On the command
    /// line it shows in `ps`: prefer the environment variable or
    /// `--jwt-secret-file`. With neither, a SQLite server generates one at
    /// first start into a file readable only by its user beside the
    /// database; a PostgreSQL cluster must be given one.
    #[arg(
        long,
        env = "CHAT_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_secret_file",
        value_parser = Secret::unchecked
    )]
    pub jwt_secret: Option<Secret>,

    /// File of signing secrets, one per line (at least 16 bytes each): the
    /// first signs new tokens, every one verifies, so a key can be rotated
    /// without logging anyone out (add the new key first, drop the old one
    /// after the access-token lifetime).
    #[arg(long, env = "CHAT_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

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

    /// The longest a session lives, however often it is refreshed: then
    /// its user logs in again.
    #[arg(long, env = "CHAT_SESSION_MAX_AGE", default_value = "90days", value_parser = humantime::parse_duration)]
    pub session_max_age: Duration,

    /// Live sessions (logins) per user; a new login beyond it ends the
    /// oldest session, and its streams.
    #[arg(long, env = "CHAT_MAX_SESSIONS_PER_USER", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions_per_user: u32,

    /// How long a session found live is trusted before the database is
    /// asked again (`0s`: on every call). A revocation this node hears of
    /// takes effect at once; this bounds only one lost on its way from
    /// another node.
    #[arg(long, env = "CHAT_SESSION_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub session_cache_ttl: Duration,

    /// How often idle streams get a heartbeat, so proxies keep them open.
    /// `ready` tells each stream this interval: a client that hears nothing
    /// for about two of them takes its connection for dead and reconnects,
    /// so 15s finds a dead connection within about 30 s. Above zero.
    #[arg(long, env = "CHAT_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = parse_heartbeat_interval)]
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

    /// Where Prometheus metrics are served (`GET /metrics`), or `off`. Kept
    /// off the public port: bind it to an address only operators reach.
    #[arg(long, env = "CHAT_METRICS_LISTEN", default_value = "127.0.0.1:9464", value_parser = parse_optional_addr)]
    pub metrics_listen: MaybeAddr,

    /// PEM certificate chain: with `--tls-key`, serve TLS (HTTP/2 and
    /// HTTP/1.1 by ALPN) instead of plain text.
    #[arg(long, env = "CHAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "CHAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How long a shutdown waits for calls in flight before it closes the
    /// connections anyway. Streams are ended at once.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub limits: Limits,
}

/// What any one client may take: every limit that protects the others.
#[derive(Args, Debug, Clone)]
pub struct Limits {
    /// Largest gRPC message a client may send, in bytes. A chat message is
    /// at most 4096 characters, 16 KiB of UTF-8; 64 KiB is far more than
    /// any request needs.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024)]
    pub max_message_size: usize,

    /// Largest gRPC message the server encodes, in bytes: a full history
    /// page (200 messages of up to 16 KiB of text, 3.2 MiB) or a long room
    /// list is larger than any request needs to be.
    #[arg(long, env = "CHAT_MAX_RESPONSE_SIZE", default_value_t = 4 * 1024 * 1024)]
    pub max_response_size: usize,

    /// Largest HTTP/2 header list (metadata), in bytes.
    #[arg(long, env = "CHAT_MAX_HEADER_LIST_SIZE", default_value_t = 16 * 1024)]
    pub max_header_list_size: u32,

    /// Concurrent HTTP/2 streams (calls) per connection.
    #[arg(long, env = "CHAT_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    pub max_concurrent_streams: u32,

    /// Open connections per node; more get RESOURCE_EXHAUSTED. When the
    /// cap is reached, a connection with no call in flight is closed to
    /// make room before a new one is refused.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Open connections per client address (an IPv6 client's /64); more
    /// get RESOURCE_EXHAUSTED. 0 turns it off. The address is the TCP
    /// peer's: behind a proxy that hides clients' addresses, raise it or
    /// turn it off.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// How long a new connection may take to send its first request
    /// (TLS handshake included): a socket that only opens, or only sends
    /// the HTTP/2 preface, is closed then.
    #[arg(long, env = "CHAT_FIRST_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub first_request_timeout: Duration,

    /// How often an HTTP/2 connection is pinged to find dead peers.
    #[arg(long, env = "CHAT_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// How long a ping may go unanswered before the connection is closed.
    #[arg(long, env = "CHAT_HTTP2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// TCP keepalive: the kernel probes a silent peer after this long.
    #[arg(long, env = "CHAT_TCP_KEEPALIVE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub tcp_keepalive: Duration,

    /// A connection with no call in flight for this long is closed.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Open streams (ChatStream and Subscribe) per session, i.e. device.
    #[arg(long, env = "CHAT_MAX_STREAMS_PER_SESSION", default_value_t = 10)]
    pub max_streams_per_session: usize,

    /// Open streams per user, over all their sessions.
    #[arg(long, env = "CHAT_MAX_STREAMS_PER_USER", default_value_t = 50)]
    pub max_streams_per_user: usize,

    /// Messages per second a user may send, on average (token bucket).
    #[arg(long, env = "CHAT_SEND_RATE", default_value_t = 10)]
    pub send_rate: u32,

    /// Messages a user may send at once after a quiet spell.
    #[arg(long, env = "CHAT_SEND_BURST", default_value_t = 20)]
    pub send_burst: u32,

    /// Failed logins an account may have from one client address before
    /// logins to it from that address back off.
    #[arg(long, env = "CHAT_LOGIN_FREE_ATTEMPTS", default_value_t = 5)]
    pub login_free_attempts: u32,

    /// The longest login back-off: each further failure doubles it from
    /// one second up to this, so nobody can lock an account for longer.
    #[arg(long, env = "CHAT_LOGIN_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub login_max_backoff: Duration,

    /// Failed logins one client address may have per minute, over all
    /// accounts, before its logins are refused for a while. Generous, so an
    /// office behind one address is not locked out. 0 turns it off.
    #[arg(long, env = "CHAT_MAX_LOGIN_FAILURES_PER_IP", default_value_t = 100)]
    pub max_login_failures_per_ip: u32,

    /// Reverse proxies (addresses or CIDR blocks, comma-separated) whose
    /// `x-forwarded-for` header names the client. From any other peer the
    /// header is ignored and the peer address is the client's.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ProxyNet>,

    /// Group rooms a user may create per minute, on average (token
    /// bucket); 0 turns it off.
    #[arg(long, env = "CHAT_ROOM_CREATE_RATE", default_value_t = 10)]
    pub room_create_rate: u32,

    /// Group rooms a user may create at once after a quiet spell.
    #[arg(long, env = "CHAT_ROOM_CREATE_BURST", default_value_t = 20)]
    pub room_create_burst: u32,

    /// Rooms a user may join (or direct rooms open) per minute, on average;
    /// 0 turns it off.
    #[arg(long, env = "CHAT_ROOM_JOIN_RATE", default_value_t = 60)]
    pub room_join_rate: u32,

    /// Rooms a user may join at once after a quiet spell.
    #[arg(long, env = "CHAT_ROOM_JOIN_BURST", default_value_t = 60)]
    pub room_join_burst: u32,

    /// Changes a user may make to rooms per minute, on average: settings,
    /// invitations, roles, removals, bans and unbans (each an event for the
    /// whole room); 0 turns it off.
    #[arg(long, env = "CHAT_ROOM_CHANGE_RATE", default_value_t = 600)]
    pub room_change_rate: u32,

    /// Room changes a user may make at once after a quiet spell: enough to
    /// invite a team to a new room in one go.
    #[arg(long, env = "CHAT_ROOM_CHANGE_BURST", default_value_t = 100)]
    pub room_change_burst: u32,

    /// Group rooms a user may be a member of at once.
    #[arg(long, env = "CHAT_MAX_ROOMS_PER_USER", default_value_t = 1000)]
    pub max_rooms_per_user: u32,

    /// Password hashes computed at once (argon2id takes 19 MiB and a core
    /// each); 0 means one per CPU.
    #[arg(long, env = "CHAT_PASSWORD_HASHERS", default_value_t = 0)]
    pub password_hashers: usize,

    /// Logins and registrations that may wait for a hasher; more are
    /// refused with RESOURCE_EXHAUSTED instead of queueing without bound.
    #[arg(long, env = "CHAT_PASSWORD_QUEUE", default_value_t = 256)]
    pub password_queue: usize,

    /// Browser origins allowed to call through grpc-web, besides the
    /// server's own origin and localhost (comma-separated, e.g.
    /// `https://chat.example.com`). `*` allows any origin.
    #[arg(long, env = "CHAT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl Config {
    /// The defaults, as if started with no flags and no environment.
    pub fn defaults() -> Self {
        Self::parse_from(["chat-server"])
    }
}

/// An optional address with a default; clap would take a plain `Option` as
/// "no value unless given".
pub type MaybeAddr = Option<SocketAddr>;

/// An address, or `off` for none.
fn parse_optional_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|e| format!("{e}: expected HOST:PORT or off"))
}

/// A heartbeat interval, as `--heartbeat-interval` takes it.
fn parse_heartbeat_interval(value: &str) -> Result<Duration, String> {
    check_heartbeat_interval(humantime::parse_duration(value).map_err(|e| e.to_string())?)
}

/// The interval, if above zero: a timer with a zero period would fire
/// without end (tokio's panics instead, and the task that ends expired
/// streams and sends heartbeats would be gone).
///
/// # Errors
/// When it is zero, saying so.
pub fn check_heartbeat_interval(interval: Duration) -> Result<Duration, String> {
    if interval.is_zero() {
        return Err("the heartbeat interval must be above zero (e.g. 15s)".into());
    }
    Ok(interval)
}

/// A NATS subject prefix: tokens of letters, digits, `-` and `_`, joined
/// by dots.
fn parse_subject_prefix(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if valid {
        Ok(value.to_owned())
    } else {
        Err("expected dot-separated tokens of letters, digits, - and _".into())
    }
}

/// A credential (a NATS password or token, the cluster secret): usable,
/// but never printed. Checked where it is used, so that a refusal does not
/// echo it either.
#[derive(Clone)]
pub struct Hidden(String);

impl Hidden {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Hidden {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hidden(<redacted>)")
    }
}

/// A URL fit for logs: any password in it replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// An address or a CIDR block of trusted reverse proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyNet(ipnet::IpNet);

impl ProxyNet {
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        self.0.contains(&address)
    }
}

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if let Ok(address) = value.parse::<std::net::IpAddr>() {
            return Ok(Self(ipnet::IpNet::from(address)));
        }
        value
            .parse()
            .map(Self)
            .map_err(|_| format!("{value:?} is neither an IP address nor a CIDR block"))
    }
}

pub use chat_store::Synchronous;

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

    /// Takes any value, to be checked later (`checked`): clap echoes a
    /// value it refuses, and a refused secret must not reach a terminal or
    /// a log either.
    ///
    /// # Errors
    /// Never; the signature is clap's.
    pub fn unchecked(value: &str) -> Result<Self, String> {
        Ok(Self(value.to_owned()))
    }

    /// The secret, if it is long enough to sign with.
    ///
    /// # Errors
    /// When it is under 16 bytes, without showing it.
    pub fn checked(self) -> Result<Self, String> {
        self.0.parse()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://chat:hunter2@db:5432/chat"),
            "postgres://chat:***@db:5432/chat"
        );
        assert_eq!(
            redact_url("postgres://chat@db/chat"),
            "postgres://chat@db/chat"
        );
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
        assert_eq!(redact_url("nats://a:b@h:4222"), "nats://a:***@h:4222");
    }

    #[test]
    fn a_zero_heartbeat_interval_is_refused() {
        let refused = Config::try_parse_from(["chat-server", "--heartbeat-interval", "0s"])
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(
                "invalid value '0s' for '--heartbeat-interval <HEARTBEAT_INTERVAL>': \
                 the heartbeat interval must be above zero (e.g. 15s)"
            ),
            "{refused}"
        );
        let config =
            Config::try_parse_from(["chat-server", "--heartbeat-interval", "250ms"]).unwrap();
        assert_eq!(config.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(
            Config::defaults().heartbeat_interval,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn subject_prefixes_are_checked() {
        assert!(parse_subject_prefix("chat").is_ok());
        assert!(parse_subject_prefix("prod.chat-1").is_ok());
        for bad in ["", "a..b", "a b", "a.*", "a.>", "."] {
            assert!(parse_subject_prefix(bad).is_err(), "{bad:?}");
        }
    }
}

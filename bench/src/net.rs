//! Connections as real clients make them: one HTTP/2 connection (a tonic
//! `Channel`) per simulated user. Every connection goes through our own
//! connector, which can bind the socket to a chosen loopback source address
//! first: one address has about 28 000 ephemeral ports, so tens of thousands
//! of connections to one server port are spread over 127.0.0.1, .2, .3, …
//! (the server listens on 127.0.0.1, which every 127.x address reaches).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connections per loopback source address: below the default ephemeral
/// port range (32768–60999), with room for other connections.
pub const CONNECTIONS_PER_ADDRESS: usize = 20_000;
/// File descriptors asked for: far more than any scenario opens, and at
/// most the kernel's `nr_open` default.
const WANTED_FILES: u64 = 1 << 20;
/// A connection that takes longer than this has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Calls a channel may have queued before its connection takes them: a
/// simulated user makes only a few at a time.
const CHANNEL_BUFFER: usize = 64;

/// Raises this process's open-file limit (soft and, as root, hard); the
/// server started from here inherits it. Returns the soft limit now.
pub fn raise_fd_limit() -> u64 {
    use rlimit::Resource;
    if let Ok((soft, hard)) = Resource::NOFILE.get() {
        let wanted = WANTED_FILES.max(hard);
        if soft < wanted && Resource::NOFILE.set(wanted, wanted).is_ok() {
            return wanted;
        }
    }
    rlimit::increase_nofile_limit(WANTED_FILES).unwrap_or(0)
}

/// This process's open-file limit (soft).
pub fn fd_limit() -> u64 {
    rlimit::Resource::NOFILE.get().map_or(0, |(soft, _)| soft)
}

/// The loopback source addresses for `connections` connections.
pub fn loopback_sources(connections: usize, addresses: Option<u8>) -> Vec<IpAddr> {
    let count = addresses.map_or_else(
        || connections.div_ceil(CONNECTIONS_PER_ADDRESS).clamp(1, 254),
        |n| usize::from(n.max(1)),
    );
    (1..=count)
        .map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(host).unwrap_or(254))))
        .collect()
}

/// Opens one HTTP/2 connection to `server`, from `source` when given.
///
/// # Errors
/// When the socket cannot be bound or the connection fails.
pub async fn connect(server: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{server}"))
        .context("server address as a URI")?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .buffer_size(CHANNEL_BUFFER);
    let connector = tower::service_fn(move |_: Uri| async move {
        let socket = match server {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // Ports of closed connections in TIME_WAIT may be bound again.
        socket.set_reuseaddr(true)?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.set_nodelay(true)?;
        let stream = socket.connect(server).await?;
        Ok::<_, std::io::Error>(TokioIo::new(stream))
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .with_context(|| match source {
            Some(ip) => format!("connecting to {server} from {ip}"),
            None => format!("connecting to {server}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_grow_with_the_connections() {
        assert_eq!(loopback_sources(200, None).len(), 1);
        assert_eq!(loopback_sources(20_000, None).len(), 1);
        assert_eq!(loopback_sources(50_000, None).len(), 3);
        assert_eq!(
            loopback_sources(10, Some(2)),
            vec![
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
            ]
        );
    }
}

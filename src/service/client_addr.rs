//! Who is on the other end of a call: the client's IP address, for limits
//! keyed by address and for the audit log.
//!
//! The peer address of the connection is the client's, unless the peer is a
//! reverse proxy the operator trusts (`--trusted-proxies`): then the
//! `x-forwarded-for` header names the client. It is read from the right,
//! skipping trusted proxies, because every proxy appends the address it saw
//! and only the entries that trusted proxies appended are trustworthy; an
//! untrusted peer's header is ignored, so a client cannot pick its own
//! address.

use std::net::{IpAddr, Ipv6Addr};

use tonic::Request;

use crate::config::ProxyNet;

/// The client's address, if the connection has one (calls made through an
/// in-process transport have none).
pub fn client_ip<T>(request: &Request<T>, trusted: &[ProxyNet]) -> Option<IpAddr> {
    let peer = canonical(request.remote_addr()?.ip());
    if !trusted.iter().any(|proxy| proxy.contains(peer)) {
        return Some(peer);
    }
    let forwarded = request
        .metadata()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut client = peer;
    for entry in forwarded.rsplit(',') {
        let Ok(address) = entry.trim().parse::<IpAddr>() else {
            // A malformed entry: nothing left of it can be trusted.
            break;
        };
        client = canonical(address);
        if !trusted.iter().any(|proxy| proxy.contains(client)) {
            break;
        }
    }
    Some(client)
}

/// An IPv4 address mapped into IPv6 is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What limits per client address key on: the address itself for IPv4, its
/// /64 for IPv6, since one IPv6 client usually holds a whole /64 and could
/// otherwise take a fresh address for every attempt.
pub fn address_key(address: Option<IpAddr>) -> IpAddr {
    match address.map(canonical) {
        Some(IpAddr::V6(v6)) => {
            let [a, b, c, d, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tonic::transport::server::TcpConnectInfo;

    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request<()> {
        let mut request = Request::new(());
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer.parse::<SocketAddr>().unwrap()),
        });
        for value in forwarded {
            request
                .metadata_mut()
                .append("x-forwarded-for", value.parse().unwrap());
        }
        request
    }

    fn proxies(list: &[&str]) -> Vec<ProxyNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_untrusted_peers_forwarded_header_is_ignored() {
        let request = request("203.0.113.7:5000", &["198.51.100.1"]);
        assert_eq!(client_ip(&request, &[]), ip("203.0.113.7"));
        assert_eq!(
            client_ip(&request, &proxies(&["10.0.0.0/8"])),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_read_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.1"]);
        // The client claims an address; the proxies append what they saw.
        let request = request("10.0.0.2:443", &["6.6.6.6, 198.51.100.9", "192.0.2.1"]);
        assert_eq!(client_ip(&request, &trusted), ip("198.51.100.9"));
        let only_proxies = request_through_proxies_only();
        assert_eq!(client_ip(&only_proxies, &trusted), ip("10.0.0.9"));
    }

    fn request_through_proxies_only() -> Request<()> {
        request("10.0.0.2:443", &["10.0.0.9"])
    }

    #[test]
    fn a_malformed_forwarded_entry_stops_the_walk() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let request = request("10.0.0.2:443", &["198.51.100.9, garbage"]);
        assert_eq!(client_ip(&request, &trusted), ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_v4_by_v4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address_key(ip("::ffff:198.51.100.9")),
            "198.51.100.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(address_key(None), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
}

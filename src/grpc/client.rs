//! Who the end user is: the client address through the configured trusted proxy hops
//! in `x-forwarded-for`, else the peer; the agent from `x-forwarded-user-agent`, else
//! `user-agent`. Both header names are configurable.
//!
//! The forwarded headers are the caller's word, so they count only from a caller we
//! trust: one authenticated by a key or a client certificate (a backend acting for its
//! user), or a peer inside `--trusted-proxies` (a sidecar or edge proxy). Anyone else
//! is limited by the address it connects from, and its own `user-agent`.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tonic::metadata::MetadataMap;

use super::auth::Authenticated;
use crate::domain::model::ClientInfo;

/// Longest user agent kept; longer ones are cut at a character boundary.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest forwarded-for header read; a longer one is ignored as forged or broken.
const MAX_FORWARDED_BYTES: usize = 2048;

#[derive(Debug, Clone)]
pub struct ClientIpSettings {
    /// Proxies in front of the service that append to `forwarded_for_header`.
    pub trusted_hops: usize,
    /// Peers whose forwarded headers are believed without a key or certificate.
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_for_header: String,
    pub user_agent_header: String,
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        Self {
            trusted_hops: 1,
            trusted_proxies: default_trusted_proxies(),
            forwarded_for_header: "x-forwarded-for".into(),
            user_agent_header: "x-forwarded-user-agent".into(),
        }
    }
}

/// Loopback, where a mesh sidecar connects from.
pub fn default_trusted_proxies() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse().ok()).collect()
}

impl ClientIpSettings {
    /// The end user behind a request, also recorded as `client_ip` on the RPC's span.
    pub fn of<T>(&self, request: &tonic::Request<T>) -> ClientInfo {
        let authenticated = request.extensions().get::<Authenticated>().is_some();
        let client = self.client(request.metadata(), request.remote_addr(), authenticated);
        tracing::Span::current().record("client_ip", tracing::field::display(client.ip_string()));
        client
    }

    /// Whether the forwarded headers of this caller are believed: a list entry matches
    /// the peer as it arrived or as its IPv4 address.
    fn trusts(&self, peer: Option<SocketAddr>, authenticated: bool) -> bool {
        authenticated
            || peer.is_some_and(|p| {
                self.trusted_proxies.iter().any(|net| net.contains(&p.ip()) || net.contains(&p.ip().to_canonical()))
            })
    }

    pub fn client(&self, metadata: &MetadataMap, peer: Option<SocketAddr>, authenticated: bool) -> ClientInfo {
        let trusted = self.trusts(peer, authenticated);
        let header = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
        let forwarded =
            header(&self.forwarded_for_header).filter(|_| trusted).and_then(|v| forwarded_client(v, self.trusted_hops));
        // An IPv4 client of a dual-stack listener (`[::]`) arrives as `::ffff:a.b.c.d`
        // (and a proxy may forward it so): it is that IPv4 address, for the limits
        // (not one IPv6 /64 shared by every IPv4 client) and the audit log alike.
        let ip = forwarded.or_else(|| peer.map(|p| p.ip())).map(|ip| ip.to_canonical());
        let agent = header(&self.user_agent_header).filter(|_| trusted).or_else(|| header("user-agent"));
        ClientInfo { ip, user_agent: truncate(agent.unwrap_or_default(), MAX_USER_AGENT_BYTES).to_owned() }
    }
}

/// The address `hops` entries from the right of an `x-forwarded-for` list (each
/// trusted proxy appends the address it saw), or the leftmost if the list is shorter.
fn forwarded_client(header: &str, hops: usize) -> Option<IpAddr> {
    if hops == 0 || header.len() > MAX_FORWARDED_BYTES {
        return None;
    }
    let entries: Vec<&str> = header.split(',').map(str::trim).collect();
    let index = entries.len().saturating_sub(hops);
    let entry = entries.get(index)?;
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn one_trusted_hop_takes_the_rightmost_address() {
        assert_eq!(forwarded_client("203.0.113.7", 1), ip("203.0.113.7"));
        assert_eq!(forwarded_client("198.51.100.1, 203.0.113.7", 1), ip("203.0.113.7"));
    }

    #[test]
    fn more_hops_walk_left_and_stop_at_the_first_entry() {
        assert_eq!(forwarded_client("198.51.100.1, 203.0.113.7, 10.0.0.2", 2), ip("203.0.113.7"));
        assert_eq!(forwarded_client("198.51.100.1", 3), ip("198.51.100.1"));
    }

    #[test]
    fn garbage_and_zero_hops_fall_back() {
        assert_eq!(forwarded_client("not-an-ip", 1), None);
        assert_eq!(forwarded_client("203.0.113.7", 0), None);
        assert_eq!(forwarded_client("[2001:db8::1]:443", 1), ip("2001:db8::1"));
    }

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap_or_else(|_| unreachable!()));
        }
        m
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers_or_authenticated_callers() {
        let settings = ClientIpSettings::default();
        let m = metadata(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-user-agent", "forged"),
            ("user-agent", "own"),
        ]);
        let sidecar: Option<SocketAddr> = "127.0.0.1:4000".parse().ok();
        let stranger: Option<SocketAddr> = "198.51.100.9:4000".parse().ok();
        assert_eq!(settings.client(&m, sidecar, false).ip, ip("203.0.113.7"));
        assert_eq!(settings.client(&m, sidecar, false).user_agent, "forged");
        assert_eq!(settings.client(&m, stranger, false).ip, ip("198.51.100.9"), "a stranger's header is ignored");
        assert_eq!(settings.client(&m, stranger, false).user_agent, "own");
        assert_eq!(settings.client(&m, stranger, true).ip, ip("203.0.113.7"), "an authenticated backend is believed");
        let none = ClientIpSettings { trusted_proxies: Vec::new(), ..ClientIpSettings::default() };
        assert_eq!(none.client(&m, sidecar, false).ip, ip("127.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        let settings = ClientIpSettings::default();
        let m = metadata(&[("x-forwarded-for", "::ffff:203.0.113.7")]);
        // The loopback default trusts a mapped loopback peer, and reads its header.
        let mapped_sidecar: Option<SocketAddr> = "[::ffff:127.0.0.2]:4000".parse().ok();
        assert_eq!(settings.client(&m, mapped_sidecar, false).ip, ip("203.0.113.7"));
        let mapped_stranger: Option<SocketAddr> = "[::ffff:198.51.100.9]:4000".parse().ok();
        assert_eq!(settings.client(&MetadataMap::new(), mapped_stranger, false).ip, ip("198.51.100.9"));
        assert_eq!(settings.client(&m, mapped_stranger, false).ip, ip("198.51.100.9"), "not trusted");
        let v6: Option<SocketAddr> = "[2001:db8::1]:4000".parse().ok();
        assert_eq!(settings.client(&MetadataMap::new(), v6, false).ip, ip("2001:db8::1"), "real IPv6 stays");
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
    }
}

//! Who the end user is: the client address through the configured trusted proxy hops
//! in `x-forwarded-for`, else the peer; the agent from `x-forwarded-user-agent`, else
//! `user-agent`. Both header names are configurable.

use std::net::{IpAddr, SocketAddr};

use tonic::metadata::MetadataMap;

use crate::domain::ClientInfo;

/// Longest user agent kept; longer ones are cut at a character boundary.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest forwarded-for header read; a longer one is ignored as forged or broken.
const MAX_FORWARDED_BYTES: usize = 2048;

#[derive(Debug, Clone)]
pub struct ClientIpSettings {
    /// Proxies in front of the service that append to `forwarded_for_header`.
    pub trusted_hops: usize,
    pub forwarded_for_header: String,
    pub user_agent_header: String,
}

impl Default for ClientIpSettings {
    fn default() -> Self {
        Self {
            trusted_hops: 1,
            forwarded_for_header: "x-forwarded-for".into(),
            user_agent_header: "x-forwarded-user-agent".into(),
        }
    }
}

impl ClientIpSettings {
    /// The end user behind a request, also recorded as `client_ip` on the RPC's span.
    pub fn of<T>(&self, request: &tonic::Request<T>) -> ClientInfo {
        let client = self.client(request.metadata(), request.remote_addr());
        tracing::Span::current().record("client_ip", tracing::field::display(client.ip_string()));
        client
    }

    pub fn client(&self, metadata: &MetadataMap, peer: Option<SocketAddr>) -> ClientInfo {
        let forwarded = metadata
            .get(self.forwarded_for_header.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| forwarded_client(v, self.trusted_hops));
        let ip = forwarded.or_else(|| peer.map(|p| p.ip()));
        let agent = [self.user_agent_header.as_str(), "user-agent"]
            .iter()
            .find_map(|h| metadata.get(*h).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .unwrap_or_default();
        ClientInfo { ip, user_agent: truncate(agent, MAX_USER_AGENT_BYTES).to_owned() }
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

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
    }
}

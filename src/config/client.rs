//! How the end user's address and agent are read when a proxy calls for them.

use crate::cli::ClientArgs;
use crate::grpc::client::ClientIpSettings;

pub(super) fn clients(args: &ClientArgs) -> anyhow::Result<ClientIpSettings> {
    Ok(ClientIpSettings {
        trusted_hops: args.trusted_proxy_hops,
        trusted_proxies: trusted_proxies(&args.trusted_proxies)?,
        forwarded_for_header: args.client_ip_header.to_ascii_lowercase(),
        user_agent_header: args.user_agent_header.to_ascii_lowercase(),
    })
}

/// CIDRs or single addresses; "none" (or nothing) for no trusted proxy.
fn trusted_proxies(list: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    match list {
        [none] if none.trim().eq_ignore_ascii_case("none") || none.trim().is_empty() => Ok(Vec::new()),
        list => list
            .iter()
            .map(|net| {
                let net = net.trim();
                net.parse::<ipnet::IpNet>()
                    .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("--trusted-proxies: {net:?} is not an address or CIDR"))
            })
            .collect(),
    }
}

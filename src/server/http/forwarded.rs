//! Who an HTTP client is behind a proxy: every request through nginx comes
//! from 127.0.0.1, so bans, per-address limits, logs and the console would
//! all see one client. From a trusted proxy (`--trusted-proxy`),
//! `X-Forwarded-For` (or `Forwarded`) names the client; from anyone else
//! those headers are a client's own words, and ignored.

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderMap};
use ipnet::IpNet;

/// The client's address: `peer` itself, unless `peer` is a trusted proxy
/// and the request says whom it forwards for. The forwarding chain is read
/// from its end, skipping trusted proxies, so a client cannot name itself
/// by writing its own `X-Forwarded-For` in front of the proxy's. The port
/// is the peer's (the client's own is not known).
pub(crate) fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if !is_trusted(peer.ip()) {
        return peer;
    }
    let chain = forwarded_for(headers);
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) if is_trusted(*ip) => continue,
            Some(ip) => return SocketAddr::new(*ip, peer.port()),
            // Something that is no address: nothing further left is
            // to be believed.
            None => break,
        }
    }
    peer
}

/// The addresses a request was forwarded for, first to last, from
/// `X-Forwarded-For`, else `Forwarded`'s `for=` (`None`: a hop that is no
/// address, such as `unknown` or an obfuscated name).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect::<Vec<&str>>()
    };
    let xff = values(header::HeaderName::from_static("x-forwarded-for"));
    if !xff.is_empty() {
        return xff.into_iter().map(parse_hop).collect();
    }
    values(header::FORWARDED)
        .into_iter()
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then_some(value)
                })
                .and_then(|value| parse_hop(value.trim_matches('"')))
        })
        .collect()
}

/// `203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|rest| rest.split(']').next())
                .and_then(|ip| ip.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().unwrap());
        }
        headers
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_nobody_else_can() {
        let proxy: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:50000".parse().unwrap();
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            client_addr(proxy, &xff, &trusted).ip().to_string(),
            "203.0.113.7"
        );
        // Not from a trusted proxy: its headers are its own words.
        assert_eq!(client_addr(stranger, &xff, &trusted), stranger);
        // Nothing trusted: the peer, whatever it says.
        assert_eq!(client_addr(proxy, &xff, &[]), proxy);
        // A client's own header in front of the proxy's is not believed:
        // the last untrusted hop is.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.1.2.3")]);
        assert_eq!(
            client_addr(proxy, &forged, &trusted).ip().to_string(),
            "203.0.113.7"
        );
        // Forwarded (RFC 7239), with IPv6 and a port.
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::7]:4711\";proto=https")]);
        assert_eq!(
            client_addr(proxy, &forwarded, &trusted).ip().to_string(),
            "2001:db8::7"
        );
        // Garbage stops the walk: the peer.
        let garbage = headers(&[("x-forwarded-for", "unknown")]);
        assert_eq!(client_addr(proxy, &garbage, &trusted), proxy);
    }
}

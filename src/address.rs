//! Addresses as people write them: where a listener listens
//! (`--listen`, the config's `listen`) and where a client connects
//! (`connect`, `send`, `device`). One grammar for both, so that what
//! `serve --listen` takes, `connect` takes too, and a mistake is told
//! plainly with an example that works.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The port a client connects to when its address names only a host: the
/// server's own default (`text://0.0.0.0:12345`).
pub const DEFAULT_PORT: u16 = 12345;

/// What is wrong with an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("the address is empty: expected HOST:PORT, e.g. 0.0.0.0:12345")]
    Empty,
    /// A listener address without a port; an example with one.
    #[error("{0:?} has no port: expected IP:PORT, e.g. {1} (port 0 picks a free one)")]
    NoPort(String, String),
    /// The port is not a number from 0 to 65535.
    #[error("{port:?} in {addr:?} is not a port: expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:12345")]
    BadPort {
        /// The whole address.
        addr: String,
        /// What stood where the port goes.
        port: String,
    },
    /// A listener address that names a host rather than an IP address.
    #[error("{0:?} is a host name: a listener listens on an IP address, e.g. 0.0.0.0:12345 (every IPv4 address), [::]:12345 (every address) or 127.0.0.1:12345 (this machine only)")]
    HostName(String),
    /// An IPv6 address without its brackets.
    #[error("{0:?}: write an IPv6 address in brackets, e.g. [::1]:12345")]
    Brackets(String),
}

/// Splits `HOST:PORT`, `[IPv6]:PORT`, `:PORT`, `PORT` or `HOST` into its
/// host (empty when none is given) and port (`None` when none is given).
fn split(addr: &str) -> Result<(&str, Option<u16>), AddressError> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(AddressError::Empty);
    }
    let port = |text: &str| {
        text.parse::<u16>().map_err(|_| AddressError::BadPort {
            addr: addr.to_owned(),
            port: text.to_owned(),
        })
    };
    if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(AddressError::Brackets(addr.to_owned()));
        };
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(AddressError::Brackets(addr.to_owned())),
        };
    }
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(("", Some(port(addr)?)));
    }
    match addr.rsplit_once(':') {
        // Two colons or more, no brackets: an IPv6 address alone.
        Some((host, _)) if host.contains(':') => match addr.parse::<IpAddr>() {
            Ok(_) => Ok((addr, None)),
            Err(_) => Err(AddressError::Brackets(addr.to_owned())),
        },
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((addr, None)),
    }
}

/// Where a listener listens: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`,
/// or a bare `PORT` or `:PORT` on every IPv4 address.
///
/// ```
/// use switchboard::address::listen_addr;
/// assert_eq!(listen_addr("12345").unwrap().to_string(), "0.0.0.0:12345");
/// assert_eq!(listen_addr(":8080").unwrap().to_string(), "0.0.0.0:8080");
/// assert!(listen_addr("0.0.0.0").unwrap_err().to_string().contains("no port"));
/// ```
pub fn listen_addr(addr: &str) -> Result<SocketAddr, AddressError> {
    let (host, port) = split(addr)?;
    let Some(port) = port else {
        let example = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{DEFAULT_PORT}"),
            _ => format!("{host}:{DEFAULT_PORT}"),
        };
        return Err(AddressError::NoPort(addr.trim().to_owned(), example));
    };
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        host if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        host => host
            .parse()
            .map_err(|_| AddressError::HostName(host.to_owned()))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Where a client connects, as `HOST:PORT` (a name is kept, for TLS to
/// check the certificate against it): a bare `PORT` or `:PORT` means this
/// machine, a bare `HOST` the default port ([`DEFAULT_PORT`]).
///
/// ```
/// use switchboard::address::client_target;
/// assert_eq!(client_target("21345").unwrap(), "localhost:21345");
/// assert_eq!(client_target("relay.example.com").unwrap(), "relay.example.com:12345");
/// assert_eq!(client_target("[::1]").unwrap(), "[::1]:12345");
/// ```
pub fn client_target(addr: &str) -> Result<String, AddressError> {
    let (host, port) = split(addr)?;
    let host = if host.is_empty() { "localhost" } else { host };
    let port = port.unwrap_or(DEFAULT_PORT);
    Ok(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_take_ports_addresses_and_localhost() {
        for (given, expected) in [
            ("12345", "0.0.0.0:12345"),
            (":21360", "0.0.0.0:21360"),
            ("0.0.0.0:0", "0.0.0.0:0"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("[::]:12345", "[::]:12345"),
            ("[::1]:1", "[::1]:1"),
            ("localhost:5000", "127.0.0.1:5000"),
            (" 8080 ", "0.0.0.0:8080"),
        ] {
            assert_eq!(listen_addr(given).unwrap().to_string(), expected, "{given}");
        }
    }

    #[test]
    fn a_bad_listener_address_is_told_what_is_wrong_with_an_example() {
        for (given, says) in [
            ("0.0.0.0", "has no port"),
            ("[::]", "has no port"),
            ("127.0.0.1:99999", "a port from 0 to 65535"),
            ("127.0.0.1:http", "is not a port"),
            ("99999", "a port from 0 to 65535"),
            ("relay.example.com:80", "is a host name"),
            ("::1", "has no port"),
            ("fe80::1::2:80", "in brackets"),
            ("[::1", "in brackets"),
            ("", "empty"),
        ] {
            let error = listen_addr(given).unwrap_err().to_string();
            assert!(error.contains(says), "{given}: {error}");
            assert!(error.contains("e.g."), "{given}: {error}");
        }
    }

    #[test]
    fn clients_take_what_listeners_take_and_default_the_rest() {
        for (given, expected) in [
            ("21345", "localhost:21345"),
            (":21345", "localhost:21345"),
            ("localhost", "localhost:12345"),
            ("127.0.0.1", "127.0.0.1:12345"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("relay.example.com:443", "relay.example.com:443"),
            ("[::1]:9000", "[::1]:9000"),
            ("::1", "[::1]:12345"),
        ] {
            assert_eq!(client_target(given).unwrap(), expected, "{given}");
        }
        assert!(client_target("host:port").is_err());
    }
}

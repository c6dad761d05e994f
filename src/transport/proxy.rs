//! The PROXY protocol, versions 1 and 2 (HAProxy's): a load balancer in
//! front of a listener with `?proxy=v1` or `?proxy=v2` first says whom the
//! connection is really from, so that per-address limits, bans and logs
//! count the client, not the balancer.
//!
//! The header is read exactly (never a byte of what follows it), so the
//! stream can then go on to TLS or straight to the client's protocol.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub use crate::config::ProxyVersion;

/// The longest v1 header, `\r\n` included (the protocol's own limit).
const V1_MAX: usize = 107;

/// The fixed part of a v2 header: signature, version and command, family,
/// length.
const V2_FIXED: usize = 16;

/// Most bytes of addresses and TLVs a v2 header may carry here. Balancers
/// send a few dozen (AWS adds a VPC endpoint id, Azure a link id); the
/// protocol allows 65,535, which a connection that has proved nothing yet
/// does not get to make the server hold.
const V2_MAX_BODY: usize = 1024;

/// The v2 header's first twelve bytes.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Nothing, or not all of it, came in time.
    #[error("no PROXY protocol header within {}", crate::units::format_duration(*.0))]
    Timeout(Duration),
    /// What came is not a header of the expected version.
    #[error("not a PROXY protocol {0} header: {1}")]
    Malformed(ProxyVersion, String),
    /// The connection failed or closed while the header was read.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a `version` header from `stream` within `within`. `Some`: the
/// client's address; `None`: the balancer speaks for itself (a health
/// check: `LOCAL`, `UNKNOWN`, or a family without addresses), and the
/// connection's own peer stands.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    version: ProxyVersion,
    within: Duration,
) -> Result<Option<SocketAddr>, ProxyError> {
    let reading = async {
        match version {
            ProxyVersion::V1 => read_v1(stream).await,
            ProxyVersion::V2 => read_v2(stream).await,
        }
    };
    tokio::time::timeout(within, reading)
        .await
        .map_err(|_| ProxyError::Timeout(within))?
}

async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    let malformed = |why: String| ProxyError::Malformed(ProxyVersion::V1, why);
    // A byte at a time: reading ahead would take the client's first bytes.
    // Balancers send the whole line at once, so these reads find it
    // waiting.
    let mut line = Vec::with_capacity(V1_MAX);
    loop {
        let byte = stream.read_u8().await?;
        line.push(byte);
        if line.ends_with(b"\r\n") {
            break;
        }
        if line.len() == 6 && !line.starts_with(b"PROXY ") {
            return Err(malformed(format!(
                "it starts {:?}",
                String::from_utf8_lossy(&line)
            )));
        }
        if line.len() >= V1_MAX {
            return Err(malformed(format!("no end of line in {V1_MAX} bytes")));
        }
    }
    let text = std::str::from_utf8(&line).map_err(|_| malformed("not ASCII".into()))?;
    let header = ppp::v1::Header::try_from(text).map_err(|error| malformed(error.to_string()))?;
    Ok(match header.addresses {
        ppp::v1::Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v1::Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v1::Addresses::Unknown => None,
    })
}

async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    let malformed = |why: String| ProxyError::Malformed(ProxyVersion::V2, why);
    let mut header = vec![0; V2_FIXED];
    stream.read_exact(&mut header).await?;
    if header[..12] != V2_SIGNATURE {
        return Err(malformed(format!(
            "it starts {:?}",
            String::from_utf8_lossy(&header[..12])
        )));
    }
    let body = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if body > V2_MAX_BODY {
        return Err(malformed(format!(
            "it announces {body} bytes of addresses and extensions, more than the {V2_MAX_BODY} accepted"
        )));
    }
    header.resize(V2_FIXED + body, 0);
    stream.read_exact(&mut header[V2_FIXED..]).await?;
    let header =
        ppp::v2::Header::try_from(&header[..]).map_err(|error| malformed(error.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v2::Addresses::IPv6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const SECOND: Duration = Duration::from_secs(1);

    async fn read(
        version: ProxyVersion,
        bytes: &[u8],
    ) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let mut stream = bytes;
        let header = read_header(&mut stream, version, SECOND).await;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        (header, rest)
    }

    fn v2(command: ppp::v2::Command, addresses: ppp::v2::Addresses) -> Vec<u8> {
        let version_command = ppp::v2::Version::Two as u8 | command as u8;
        ppp::v2::Builder::with_addresses(version_command, ppp::v2::Protocol::Stream, addresses)
            .write_tlv(ppp::v2::Type::NoOp, b"ignored")
            .unwrap()
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_v1_header_gives_the_clients_address_and_leaves_its_bytes() {
        let (header, rest) = read(
            ProxyVersion::V1,
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 12345\r\nhello\n",
        )
        .await;
        assert_eq!(header.unwrap(), Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(rest, b"hello\n");
        let (header, _) = read(
            ProxyVersion::V1,
            b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 12345\r\n",
        )
        .await;
        assert_eq!(
            header.unwrap(),
            Some("[2001:db8::7]:51234".parse().unwrap())
        );
        let (header, _) = read(ProxyVersion::V1, b"PROXY UNKNOWN\r\n").await;
        assert_eq!(header.unwrap(), None);
    }

    #[tokio::test]
    async fn a_v2_header_gives_the_clients_address_and_leaves_its_bytes() {
        let source: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        let destination: SocketAddr = "[2001:db8::1]:12345".parse().unwrap();
        let mut bytes = v2(ppp::v2::Command::Proxy, (source, destination).into());
        bytes.extend_from_slice(b"\x01\x02raw");
        let (header, rest) = read(ProxyVersion::V2, &bytes).await;
        assert_eq!(header.unwrap(), Some(source));
        assert_eq!(rest, b"\x01\x02raw");

        let local = v2(ppp::v2::Command::Local, ppp::v2::Addresses::Unspecified);
        let (header, _) = read(ProxyVersion::V2, &local).await;
        assert_eq!(header.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_but_a_header_is_refused_saying_why() {
        let (header, _) = read(ProxyVersion::V1, b"hello there, server\r\n").await;
        let error = header.unwrap_err().to_string();
        assert!(error.contains("not a PROXY protocol v1 header"), "{error}");

        let (header, _) = read(
            ProxyVersion::V2,
            b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2\r\n",
        )
        .await;
        let error = header.unwrap_err().to_string();
        assert!(error.contains("not a PROXY protocol v2 header"), "{error}");

        let (header, _) = read(ProxyVersion::V1, &[b'P'; 200]).await;
        assert!(header.is_err());

        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (header, _) = read(ProxyVersion::V2, &huge).await;
        let error = header.unwrap_err().to_string();
        assert!(error.contains("65535 bytes"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_that_does_not_come_times_out() {
        let (_client, mut server) = tokio::io::duplex(64);
        let error = read_header(&mut server, ProxyVersion::V2, SECOND)
            .await
            .unwrap_err();
        assert!(matches!(error, ProxyError::Timeout(_)), "{error}");
    }
}

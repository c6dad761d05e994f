//! How the bench speaks to each relay: switchboard's text and raw modes,
//! plain newline broadcast (`ncat --broker`), NATS and Redis pub/sub.
//!
//! Every adapter delivers the same payload; receivers find it by its
//! marker inside whatever the relay wraps around it, so one receive loop
//! serves all of them.

use std::fmt;
use std::str::FromStr;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use super::stream::Connection;
use super::websocket;
use crate::ClientTls;

/// A relay protocol the bench can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// switchboard's text mode: rooms, names, one line per message.
    Text,
    /// switchboard's raw mode: the listener's room, bytes as they are.
    Raw,
    /// Any server that copies each client's lines to all others (`ncat --broker`).
    Line,
    /// NATS core pub/sub: one subject per room.
    Nats,
    /// Redis pub/sub: one channel per room.
    Redis,
    /// switchboard's `/ws`, as a browser: JSON in WebSocket text frames
    /// (`--addr` is the `--http` address).
    Ws,
}

impl FromStr for Adapter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Adapter::Text),
            "raw" => Ok(Adapter::Raw),
            "line" => Ok(Adapter::Line),
            "nats" => Ok(Adapter::Nats),
            "redis" => Ok(Adapter::Redis),
            "ws" => Ok(Adapter::Ws),
            _ => Err(format!(
                "unknown protocol {s:?}: expected text, raw, line, nats, redis or ws"
            )),
        }
    }
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Adapter::Text => "text",
            Adapter::Raw => "raw",
            Adapter::Line => "line",
            Adapter::Nats => "nats",
            Adapter::Redis => "redis",
            Adapter::Ws => "ws",
        })
    }
}

/// NATS options: no +OK per message, and no echo of a client's own
/// messages (the others do not echo either).
const NATS_CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"switchboard-bench\"}\r\n";

impl Adapter {
    /// Whether one connection can both publish to a room and receive from
    /// it. A Redis connection that subscribes can do nothing else.
    pub fn publishes_while_subscribed(self) -> bool {
        self != Adapter::Redis
    }

    /// Opens a connection (over TLS with `tls`) that receives what is
    /// published to `room`. `name`, where the protocol has names, is taken
    /// first.
    pub async fn subscriber(
        self,
        addr: &str,
        tls: Option<&ClientTls>,
        room: &str,
        name: Option<&str>,
    ) -> std::io::Result<Connection> {
        let mut stream = Connection::open(addr, tls).await?;
        let mut setup = Vec::new();
        match self {
            Adapter::Ws => {
                websocket::handshake(&mut stream, addr, &format!("/ws?room={room}")).await?;
                if let Some(name) = name {
                    let nick = format!(r#"{{"type":"nick","name":"{name}"}}"#);
                    websocket::text_frame(nick.as_bytes(), &mut setup);
                }
            }
            Adapter::Text => {
                if let Some(name) = name {
                    setup.extend_from_slice(format!("/nick {name}\n").as_bytes());
                }
                if room != "lobby" {
                    setup.extend_from_slice(format!("/join {room}\n").as_bytes());
                }
            }
            Adapter::Raw | Adapter::Line => {}
            Adapter::Nats => {
                setup.extend_from_slice(NATS_CONNECT);
                setup.extend_from_slice(format!("SUB {room} 1\r\n").as_bytes());
            }
            Adapter::Redis => setup.extend_from_slice(&resp(&[b"SUBSCRIBE", room.as_bytes()])),
        }
        if !setup.is_empty() {
            stream.write_all(&setup).await?;
            stream.flush().await?;
        }
        Ok(stream)
    }

    /// Opens a connection (over TLS with `tls`) that only publishes to
    /// `room`.
    pub async fn publisher(
        self,
        addr: &str,
        tls: Option<&ClientTls>,
        room: &str,
    ) -> std::io::Result<Connection> {
        match self {
            Adapter::Redis => Connection::open(addr, tls).await,
            Adapter::Nats => {
                let mut stream = Connection::open(addr, tls).await?;
                stream.write_all(NATS_CONNECT).await?;
                stream.flush().await?;
                Ok(stream)
            }
            _ => self.subscriber(addr, tls, room, None).await,
        }
    }

    /// Appends the bytes that publish `payload` to `room`.
    pub fn frame(self, room: &str, payload: &[u8], out: &mut Vec<u8>) {
        match self {
            Adapter::Text | Adapter::Raw | Adapter::Line => {
                out.extend_from_slice(payload);
                out.push(b'\n');
            }
            Adapter::Nats => {
                out.extend_from_slice(format!("PUB {room} {}\r\n", payload.len()).as_bytes());
                out.extend_from_slice(payload);
                out.extend_from_slice(b"\r\n");
            }
            Adapter::Redis => out.extend_from_slice(&resp(&[b"PUBLISH", room.as_bytes(), payload])),
            Adapter::Ws => {
                // Payloads are plain ASCII: no JSON escaping needed.
                let mut say = Vec::with_capacity(payload.len() + 32);
                say.extend_from_slice(br#"{"type":"say","text":""#);
                say.extend_from_slice(payload);
                say.extend_from_slice(br#""}"#);
                websocket::text_frame(&say, out);
            }
        }
    }

    /// What a receiving connection reads, as lines: WebSocket frames are
    /// unwrapped, other protocols are lines already.
    pub fn lines<R: AsyncRead + Unpin>(self, reader: R) -> Lines<R> {
        match self {
            Adapter::Ws => Lines::WebSocket(websocket::FrameLines::new(reader)),
            _ => Lines::Plain(reader),
        }
    }
}

/// A receiving connection's bytes, as lines.
#[derive(Debug)]
pub enum Lines<R> {
    /// A protocol of lines.
    Plain(R),
    /// WebSocket frames, one line each.
    WebSocket(websocket::FrameLines<R>),
}

impl<R: AsyncRead + Unpin> AsyncRead for Lines<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Lines::Plain(reader) => std::pin::Pin::new(reader).poll_read(cx, buf),
            Lines::WebSocket(reader) => std::pin::Pin::new(reader).poll_read(cx, buf),
        }
    }
}

/// A Redis command in RESP.
fn resp(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads and discards everything a publisher's connection receives (the
/// relay's notices, Redis's reply counts), so the relay never blocks on it.
pub async fn drain<R: tokio::io::AsyncRead + Unpin>(reader: R) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    loop {
        let n = match reader.fill_buf().await {
            Ok([]) | Err(_) => return,
            Ok(buf) => buf.len(),
        };
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapter_frames_a_payload_its_server_understands() {
        let mut out = Vec::new();
        Adapter::Text.frame("lobby", b"SB1 x", &mut out);
        assert_eq!(out, b"SB1 x\n");
        out.clear();
        Adapter::Nats.frame("lobby", b"SB1 x", &mut out);
        assert_eq!(out, b"PUB lobby 5\r\nSB1 x\r\n");
        out.clear();
        Adapter::Redis.frame("lobby", b"SB1 x", &mut out);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$5\r\nlobby\r\n$5\r\nSB1 x\r\n"
        );
    }

    #[test]
    fn protocol_names_parse() {
        for name in ["text", "raw", "line", "nats", "redis", "ws"] {
            assert_eq!(name.parse::<Adapter>().unwrap().to_string(), name);
        }
        assert!("http".parse::<Adapter>().is_err());
    }
}

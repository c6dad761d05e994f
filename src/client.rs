//! A client for switchboard's line protocols (text and JSON), used by the
//! `connect` and `send` commands and by the tests.

use std::fmt;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::transport::ClientTls;

/// A line from a text-mode server, classified by the documented rule: the
/// first character tells what it is (see docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLine {
    /// `[#room] from: text`: said in a room.
    Message {
        /// The room.
        room: String,
        /// The sender.
        from: String,
        /// What was said.
        text: String,
    },
    /// `[#room 12:03:04] from: text`: said in a room earlier, shown again
    /// from its history (`/history`, a listener's `?history=N`).
    Kept {
        /// The room.
        room: String,
        /// When it was said, as the server shows it (UTC): `12:03:04`, or
        /// `2026-12-04 12:03:04` on another day.
        at: String,
        /// The sender.
        from: String,
        /// What was said.
        text: String,
    },
    /// `[dm] from: text`: sent to this client alone.
    Direct {
        /// The sender.
        from: String,
        /// What was said.
        text: String,
    },
    /// `* text`: a notice from the server.
    Notice(String),
    /// `! text`: an error from the server.
    Error(String),
    /// Anything else, e.g. an operator's verbatim welcome or ack.
    Other(String),
}

impl ServerLine {
    /// Classifies one line (without its newline).
    pub fn parse(line: &str) -> ServerLine {
        if let Some(text) = line.strip_prefix("* ") {
            return ServerLine::Notice(text.to_owned());
        }
        if let Some(text) = line.strip_prefix("! ") {
            return ServerLine::Error(text.to_owned());
        }
        let message = line.strip_prefix('[').and_then(|rest| {
            let (target, rest) = rest.split_once("] ")?;
            let (from, text) = rest.split_once(": ")?;
            Some((target, from.to_owned(), text.to_owned()))
        });
        match message {
            Some(("dm", from, text)) => ServerLine::Direct { from, text },
            Some((target, from, text)) if target.starts_with('#') => {
                match target[1..].split_once(' ') {
                    // Room names hold no spaces: what follows is the time.
                    Some((room, at)) => ServerLine::Kept {
                        room: room.to_owned(),
                        at: at.to_owned(),
                        from,
                        text,
                    },
                    None => ServerLine::Message {
                        room: target[1..].to_owned(),
                        from,
                        text,
                    },
                }
            }
            _ => ServerLine::Other(line.to_owned()),
        }
    }
}

impl fmt::Display for ServerLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerLine::Message { room, from, text } => write!(f, "[#{room}] {from}: {text}"),
            ServerLine::Kept {
                room,
                at,
                from,
                text,
            } => write!(f, "[#{room} {at}] {from}: {text}"),
            ServerLine::Direct { from, text } => write!(f, "[dm] {from}: {text}"),
            ServerLine::Notice(text) => write!(f, "* {text}"),
            ServerLine::Error(text) => write!(f, "! {text}"),
            ServerLine::Other(text) => f.write_str(text),
        }
    }
}

/// The server's last words before it closes a connection, in either line
/// protocol: a text `* bye` / `! disconnected: ...` / `! refused: ...`, or
/// a JSON `bye` event or `refused` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// Whether the server closed the connection because of a problem.
    pub error: bool,
    /// Why, as the server put it.
    pub reason: String,
}

impl Goodbye {
    /// Recognizes a goodbye line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Goodbye> {
        let goodbye = |error, reason: &str| {
            Some(Goodbye {
                error,
                reason: reason.to_owned(),
            })
        };
        if line == "* bye" {
            return goodbye(false, "bye");
        }
        if let Some(reason) = line
            .strip_prefix("! disconnected: ")
            .or_else(|| line.strip_prefix("! refused: "))
        {
            return goodbye(true, reason);
        }
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        match (value["type"].as_str(), value["code"].as_str()) {
            (Some("bye"), _) => goodbye(
                value["error"].as_bool().unwrap_or(true),
                value["reason"].as_str().unwrap_or("bye"),
            ),
            (Some("error"), Some("refused")) => {
                goodbye(true, value["message"].as_str().unwrap_or("refused"))
            }
            _ => None,
        }
    }
}

/// A connection to a switchboard listener, speaking lines: over TCP by
/// default, or over anything else read and written as two halves (see
/// [`Client::connect_tls`]).
pub struct Client<R = OwnedReadHalf, W = OwnedWriteHalf> {
    reader: BufReader<R>,
    writer: W,
    line: Vec<u8>,
}

impl<R, W> fmt::Debug for Client<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A client whose transport is decided at run time (TCP or TLS).
pub type AnyClient = Client<Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>>;

impl Client {
    /// Connects to `addr`. The error names the address and the OS reason.
    pub async fn connect(addr: impl ToSocketAddrs + fmt::Display) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(&addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(Client::from_stream(stream))
    }

    /// A client on a connection made otherwise, e.g. one that has already
    /// sent a PROXY protocol header.
    pub fn from_stream(stream: TcpStream) -> Client {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Client {
            reader: BufReader::new(reader),
            writer,
            line: Vec::new(),
        }
    }

    /// Connects to `addr` (`HOST:PORT`) over TLS, checking the server's
    /// certificate as `tls` says.
    pub async fn connect_tls(addr: &str, tls: &ClientTls) -> anyhow::Result<AnyClient> {
        let (reader, writer) = tokio::io::split(tls.connect(addr).await?);
        Ok(Client {
            reader: BufReader::new(Box::new(reader) as Box<dyn AsyncRead + Send + Unpin>),
            writer: Box::new(writer) as Box<dyn AsyncWrite + Send + Unpin>,
            line: Vec::new(),
        })
    }

    /// Connects to `addr`, over TLS if `tls` is given.
    pub async fn connect_any(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<AnyClient> {
        match tls {
            Some(tls) => Client::connect_tls(addr, tls).await,
            None => Ok(Client::connect(addr).await?.boxed()),
        }
    }

    /// The same client, with its transport's type erased.
    pub fn boxed(self) -> AnyClient {
        Client {
            reader: BufReader::new(
                Box::new(self.reader.into_inner()) as Box<dyn AsyncRead + Send + Unpin>
            ),
            writer: Box::new(self.writer) as Box<dyn AsyncWrite + Send + Unpin>,
            line: self.line,
        }
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Client<R, W> {
    /// Sends one line as is (a newline is added).
    pub async fn send_line(&mut self, line: impl AsRef<[u8]>) -> std::io::Result<()> {
        let line = line.as_ref();
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line);
        out.push(b'\n');
        self.writer.write_all(&out).await
    }

    /// Says `text` to the current room in text mode, doubling a leading
    /// `/` so it is not taken for a command.
    pub async fn say(&mut self, text: &str) -> std::io::Result<()> {
        if text.starts_with('/') {
            self.send_line(format!("/{text}")).await
        } else {
            self.send_line(text).await
        }
    }

    /// The next line from the server as bytes, without its line ending;
    /// `None` once the server has closed the connection.
    pub async fn next_line_bytes(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line).await? == 0 {
            return Ok(None);
        }
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
        }
        Ok(Some(std::mem::take(&mut self.line)))
    }

    /// The next line from the server as text (invalid UTF-8 replaced).
    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        Ok(self
            .next_line_bytes()
            .await?
            .map(|line| String::from_utf8_lossy(&line).into_owned()))
    }

    /// The next line from a text-mode server, classified.
    pub async fn next(&mut self) -> std::io::Result<Option<ServerLine>> {
        Ok(self.next_line().await?.map(|line| ServerLine::parse(&line)))
    }

    /// The next JSON event from a JSON-mode server.
    pub async fn next_json(&mut self) -> anyhow::Result<Option<serde_json::Value>> {
        match self.next_line_bytes().await? {
            Some(line) => Ok(Some(
                serde_json::from_slice(&line).context("the server sent malformed JSON")?,
            )),
            None => Ok(None),
        }
    }

    /// Splits the client into its reading and writing halves.
    pub fn into_split(self) -> (BufReader<R>, W) {
        (self.reader, self.writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines_are_classified_by_their_first_character() {
        assert_eq!(
            ServerLine::parse("[#lobby] alice: hi: there"),
            ServerLine::Message {
                room: "lobby".into(),
                from: "alice".into(),
                text: "hi: there".into()
            }
        );
        assert_eq!(
            ServerLine::parse("[dm] bob: psst"),
            ServerLine::Direct {
                from: "bob".into(),
                text: "psst".into()
            }
        );
        assert_eq!(
            ServerLine::parse("* pong"),
            ServerLine::Notice("pong".into())
        );
        assert_eq!(
            ServerLine::parse("! nope"),
            ServerLine::Error("nope".into())
        );
        assert_eq!(
            ServerLine::parse("connect"),
            ServerLine::Other("connect".into())
        );
        let line = "[#lobby] 小明: 你好";
        assert_eq!(ServerLine::parse(line).to_string(), line);
    }

    #[test]
    fn goodbyes_are_recognized_in_both_line_protocols() {
        assert_eq!(Goodbye::parse("* bye").map(|g| g.error), Some(false));
        let slow = Goodbye::parse("! disconnected: slow consumer: ...").unwrap();
        assert!(slow.error && slow.reason.starts_with("slow consumer"));
        assert!(Goodbye::parse("! refused: server full").unwrap().error);
        let json = Goodbye::parse(r#"{"type":"bye","reason":"client quit","error":false}"#);
        assert_eq!(json.map(|g| g.error), Some(false));
        assert!(
            Goodbye::parse(r#"{"type":"error","code":"refused","message":"full"}"#)
                .unwrap()
                .error
        );
        assert_eq!(Goodbye::parse("! unknown command /x"), None);
        assert_eq!(Goodbye::parse("[#lobby] a: * bye"), None);
    }
}
